//! The live stream (`GET /api/v1/stream`) and a reader that falls behind:
//! it loses observations (and is told so), never an alarm change.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A central station whose network stalls: it opens the stream with a
/// small receive window and reads nothing while 10,000 alarm changes and
/// their readings happen (more than the server buffers for any reader).
/// When it reads again, it gets every alarm change exactly once, and an
/// `observations_skipped` event for the readings it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_loses_observations_never_alarms() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut station = socket.connect(s.running.http_addr).await.unwrap();
    // HTTP/1.0: the body is the event stream itself, until the server closes.
    let request = format!(
        "GET /api/v1/stream HTTP/1.0\r\nHost: medmesh\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        s.token
    );
    station.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    station.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.0 200", "{}", String::from_utf8_lossy(&head));

    // Pulse 135 scores 3 (RCP NEWS2 Chart 1, pulse row >=131), 80 scores 0:
    // alternating at 1 Hz, with no clear delay (this test's server), each
    // reading raises or resolves: 1,000 changes a pack.
    let t0 = medmesh_model::now_ms() / 1000 - 3 * 3600;
    for pack in 0..10 {
        let records: Vec<Value> = (0..1000)
            .map(|i| {
                let k = pack * 1000 + i;
                json!({"n": "heart_rate", "u": "/min", "t": t0 + k, "v": if k % 2 == 0 { 135 } else { 80 }})
            })
            .collect();
        let (status, report) = s
            .device_post("/api/v1/devices/mon-1/senml", json!(records))
            .await;
        assert_eq!(status, 200, "{report}");
    }

    // The station reads again: every change, 1 to 10,000, each once.
    let mut seqs = BTreeSet::new();
    let mut duplicates = 0;
    let mut skipped = 0u64;
    let mut text = String::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seqs.len() < 10_000 {
        let n = tokio::time::timeout_at(deadline, station.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {} alarm changes arrived", seqs.len()))
            .unwrap();
        assert!(n > 0, "stream closed after {} alarm changes", seqs.len());
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let field = |f: &str| event.lines().find_map(|l| l.strip_prefix(f));
            match (field("event: "), field("data: ")) {
                (Some("alarm"), Some(data)) => {
                    let v: Value = serde_json::from_str(data).unwrap();
                    if !seqs.insert(v["seq"].as_u64().unwrap()) {
                        duplicates += 1;
                    }
                }
                (Some("observations_skipped"), Some(data)) => {
                    skipped += data.parse::<u64>().unwrap();
                }
                _ => {}
            }
        }
    }
    assert_eq!(duplicates, 0);
    assert_eq!(seqs.first(), Some(&1));
    assert_eq!(seqs.last(), Some(&10_000), "no change lost or invented");
    assert!(
        skipped > 0,
        "the reader was told its observations were skipped"
    );
}
