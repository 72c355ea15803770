//! The store's durability contract, exercised through its public API.

use medmesh_model::{Observation, VitalSign};
use medmesh_storage::{Point, Store};
use std::io::Write;

fn obs(vital: VitalSign, t: i64, v: f64) -> Observation {
    Observation {
        vital,
        value: v,
        time_ms: t,
    }
}

#[tokio::test]
async fn acknowledged_samples_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append(
                "p1",
                vec![
                    obs(VitalSign::HeartRate, 1000, 70.0),
                    obs(VitalSign::OxygenSaturation, 1000, 97.0),
                ],
            )
            .await
            .unwrap();
        store
            .append("p2", vec![obs(VitalSign::HeartRate, 2000, 90.0)])
            .await
            .unwrap();
        store
            .append("p1", vec![obs(VitalSign::HeartRate, 2000, 72.0)])
            .await
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.range("p1", VitalSign::HeartRate, 0, 5000),
        vec![
            Point {
                time_ms: 1000,
                value: 70.0
            },
            Point {
                time_ms: 2000,
                value: 72.0
            }
        ]
    );
    assert_eq!(
        store.latest("p2"),
        vec![(
            VitalSign::HeartRate,
            Point {
                time_ms: 2000,
                value: 90.0
            }
        )]
    );
    let stats = store.stats();
    assert_eq!((stats.series, stats.samples), (3, 4));
}

#[tokio::test]
async fn concurrent_appends_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for w in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    store
                        .append(
                            &format!("p{w}"),
                            vec![obs(VitalSign::HeartRate, i, i as f64)],
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stats().samples, 16 * 50);
    for w in 0..16 {
        assert_eq!(
            store
                .range(&format!("p{w}"), VitalSign::HeartRate, 0, 100)
                .len(),
            50
        );
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append("p1", vec![obs(VitalSign::HeartRate, 1, 60.0)])
            .await
            .unwrap();
    }
    let wal = dir.path().join("wal/000001.wal");
    let good_len = std::fs::metadata(&wal).unwrap().len();
    // A crash mid-write leaves a partial frame behind.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 2, 1])
        .unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stats().samples, 1);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), good_len);
        // New writes follow the last good frame and are readable after reopen.
        store
            .append("p1", vec![obs(VitalSign::HeartRate, 2, 61.0)])
            .await
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.range("p1", VitalSign::HeartRate, 0, 10).len(), 2);
}
