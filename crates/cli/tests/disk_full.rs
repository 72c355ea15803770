//! A full disk stops acknowledgements, says so, corrupts nothing, and the
//! server resumes by itself once space returns.
//!
//! The data directory is a small tmpfs mounted by the test, so this test
//! needs root (CI runs as root); it fails, rather than skips, without it.

mod common;

use common::{mqtt_client, send_as, spawn_serve, topic};
use rumqttc::QoS;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Unmounts the tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Mount {
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("mount(8) runs");
    assert!(
        status.success(),
        "mounting a tmpfs failed: this test needs root (CI runs as root)"
    );
    Mount(dir.to_path_buf())
}

fn pack(first_ms: i64) -> serde_json::Value {
    let records: Vec<_> = (0..60)
        .map(|i| json!({"n": "heart_rate", "u": "/min", "v": 60 + i % 40, "t": (first_ms + i * 1000) as f64 / 1000.0}))
        .collect();
    json!(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_reports_and_recovers_without_losing_acknowledged_data() {
    let root = tempfile::tempdir().unwrap();
    let _mount = mount_tmpfs(root.path(), "4m");
    let data = root.path().join("data");
    let filler = root.path().join("filler");
    std::fs::create_dir_all(&data).unwrap();
    let http = common::http_client(&common::provision_admin(&data));
    // Readings come from the device (anonymous here), never from a user.
    let device = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    let mut t = 1_765_440_000_000i64;
    // While the disk was full: from the first refusal until space returned.
    let full_from_ms;
    let full_until_ms;
    {
        let (_server, http_addr, mqtt_addr) = spawn_serve(&data);
        let api = format!("http://{http_addr}/api/v1");
        http.post(format!("{api}/patients"))
            .json(&json!({"id": "p1", "name": "Full Disk"}))
            .send()
            .await
            .unwrap();
        http.put(format!("{api}/devices/mon-1"))
            .json(&json!({"patient_id": "p1"}))
            .send()
            .await
            .unwrap();
        // Leave roughly 256 KiB free.
        std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024 - 256 * 1024 - 64 * 1024]).unwrap_or(());

        let mut refusal = None;
        for _ in 0..2000 {
            let r = device
                .post(format!("{api}/devices/mon-1/senml"))
                .json(&pack(t))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                acked.extend((0..60).map(|i| t + i * 1000));
                t += 60_000;
            } else {
                refusal = Some((
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                ));
                break;
            }
        }
        let (status, body) = refusal.expect("the disk filled up");
        full_from_ms = now_ms();
        assert_eq!(status, 503, "{body}");
        let reason = body["error"]["reason"].as_str().unwrap();
        assert!(reason.contains("No space left"), "{reason}");
        assert!(!acked.is_empty());
        // Take every byte left, so that the journals (audit, alarms) fail
        // too once the room in their last page is used up.
        let rest = root.path().join("filler-rest");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&rest).unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
        }

        // Health and metrics say so.
        let r = http
            .get(format!("http://{http_addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let health: serde_json::Value = r.json().await.unwrap();
        assert_eq!(health["storage"]["healthy"], false);
        assert!(
            health["storage"]["error"]
                .as_str()
                .unwrap()
                .contains("No space left")
        );
        let metrics = metrics_text(&http, http_addr).await;
        assert!(metrics.contains("medmesh_storage_healthy 0"), "{metrics}");

        // One system alarm tells operations (within the alarm timer's
        // second), and no patient or device alarm stands for our failure.
        let system = wait_for_system_alarm(&http, &api, |a| a["resolved_ms"].is_null()).await;
        assert_eq!(system["condition"], "storage", "{system}");
        assert!(
            system["message"]
                .as_str()
                .unwrap()
                .contains("No space left"),
            "{system}"
        );
        let metrics = metrics_text(&http, http_addr).await;
        assert!(
            metrics.contains("medmesh_system_alarms_active 1"),
            "{metrics}"
        );

        // An MQTT QoS 1 publish is not acknowledged: the connection is closed
        // so the device keeps the message and sends it again later.
        let (client, mut acks) = mqtt_client(mqtt_addr, "mon-1").await;
        client
            .publish(topic("mon-1"), QoS::AtLeastOnce, false, pack(t).to_string())
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("connection closed in time");
        assert_eq!(got, None, "no PUBACK while the disk is full");

        // A fall cannot be recorded: not acknowledged (the device sends it
        // again), but the alarm is on the board at once: care before record.
        let fall = json!([{"n": "fall", "vb": true}]);
        let r = device
            .post(format!("{api}/devices/mon-1/senml"))
            .json(&fall)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "a fall not on disk is not acknowledged");
        let alarms = get_json(&http, format!("{api}/alarms")).await;
        assert!(has_fall(&alarms), "{alarms}");
        // Clinicians keep reading while the disk is full: each read is an
        // audit line more than a page holds, held until space returns.
        for _ in 0..40 {
            let r = http.get(format!("{api}/alarms")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }

        // Space returns: writes are acknowledged again, health is green.
        full_until_ms = now_ms();
        std::fs::remove_file(&filler).unwrap();
        std::fs::remove_file(&rest).unwrap();
        let r = device
            .post(format!("{api}/devices/mon-1/senml"))
            .json(&fall)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the resent fall is acknowledged");
        let r = device
            .post(format!("{api}/devices/mon-1/senml"))
            .json(&pack(t))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        acked.extend((0..60).map(|i| t + i * 1000));
        let r = http
            .get(format!("http://{http_addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The system alarm resolves by itself; it was one, not one per
        // device or reconnect.
        wait_for_system_alarm(&http, &api, |a| a["resolved_ms"].is_i64()).await;
        let all = get_json(&http, format!("{api}/system/alarms")).await;
        assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
        let alarms = get_json(&http, format!("{api}/alarms")).await;
        assert!(
            !alarms
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == "device-offline"),
            "our failure is no device's: {alarms}"
        );

        // What was audited while the disk was full was held, not dropped:
        // it is in the log now that space is back.
        let audit: Vec<medmesh_access::AuditEntry> = serde_json::from_value(
            get_json(&http, format!("{api}/audit?since_ms={full_from_ms}")).await,
        )
        .unwrap();
        assert!(
            audit
                .iter()
                .any(|e| e.time_ms <= full_until_ms && e.action == "read alarms"),
            "{audit:?}"
        );
    }

    // Nothing acknowledged was lost, nothing stored is damaged.
    let (_server, http_addr, _) = spawn_serve(&data);
    let body = get_json(&http, format!(
            "http://{http_addr}/api/v1/patients/p1/observations?code=heart_rate&from=1765440000000&to={}",
            t + 60_000
        )).await;
    let stored: BTreeSet<i64> = body["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // The fall is still on the board after the restart (from the alarm log).
    let alarms = get_json(&http, format!("http://{http_addr}/api/v1/alarms")).await;
    assert!(has_fall(&alarms), "{alarms}");

    // After the restart the audit log still holds those entries, and its
    // hash chain has no gap or fragment from the failed writes.
    let audit: Vec<medmesh_access::AuditEntry> = serde_json::from_value(
        get_json(
            &http,
            format!("http://{http_addr}/api/v1/audit?limit=1000000"),
        )
        .await,
    )
    .unwrap();
    let oldest_first: Vec<_> = audit.into_iter().rev().collect();
    assert_eq!(medmesh_access::verify_chain(&oldest_first), Ok(()));
    assert!(
        oldest_first
            .iter()
            .any(|e| (full_from_ms..=full_until_ms).contains(&e.time_ms)),
        "no audit entry from while the disk was full"
    );
}

/// GET `url` and its JSON answer.
async fn get_json(http: &reqwest::Client, url: String) -> serde_json::Value {
    send_as(http, reqwest::Method::GET, url, serde_json::Value::Null)
        .await
        .1
}

async fn metrics_text(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The system alarm `matches` wants, waiting for it (the alarm timer runs
/// every second).
async fn wait_for_system_alarm(
    http: &reqwest::Client,
    api: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = get_json(http, format!("{api}/system/alarms")).await;
        if let Some(a) = list.as_array().unwrap().iter().find(|a| matches(a)) {
            return a.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such system alarm: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a list of alarms holds a fall.
fn has_fall(alarms: &serde_json::Value) -> bool {
    alarms
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["rule"] == "fall"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
