//! The store's durability contract, exercised through its public API.

use medmesh_model::{Observation, VitalSign};
use medmesh_storage::{Point, Store, StoreOptions};
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
    let wal = only_wal_segment(dir.path());
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

fn wal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// The segment holding data, when a single session wrote to the store.
fn only_wal_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let segs = wal_segments(dir);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

/// One 1 Hz heart-rate series per patient, values varying by whole beats.
fn vitals(patients: usize, seconds: i64) -> Vec<(String, Observation)> {
    let mut out = Vec::new();
    for s in 0..seconds {
        for p in 0..patients {
            let v = 60.0 + ((s * 7 + p as i64 * 3) % 11) as f64;
            out.push((
                format!("p{p}"),
                obs(VitalSign::HeartRate, 1_800_000_000_000 + s * 1000, v),
            ));
        }
    }
    out
}

async fn write_all(store: &Store, data: &[(String, Observation)]) {
    for (subject, o) in data {
        store.append(subject, vec![*o]).await.unwrap();
    }
}

fn assert_holds(store: &Store, data: &[(String, Observation)], patients: usize) {
    for p in 0..patients {
        let subject = format!("p{p}");
        let want: Vec<Point> = data
            .iter()
            .filter(|(s, _)| *s == subject)
            .map(|(_, o)| Point {
                time_ms: o.time_ms,
                value: o.value,
            })
            .collect();
        let have = store.range(&subject, VitalSign::HeartRate, i64::MIN, i64::MAX);
        assert_eq!(have, want, "{subject}");
    }
}

#[tokio::test]
async fn checkpoint_compresses_and_replaces_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data = vitals(5, 1000);
    {
        let store = Store::open(dir.path()).unwrap();
        write_all(&store, &data).await;
        let before = store.stats();
        store.checkpoint().await.unwrap();
        let after = store.stats();
        assert!(
            after.wal_bytes < 4096,
            "WAL after checkpoint: {} bytes",
            after.wal_bytes
        );
        let per_sample = after.chunk_bytes as f64 / data.len() as f64;
        assert!(
            per_sample < 2.0,
            "{per_sample} bytes a sample (WAL had {})",
            before.wal_bytes
        );
        assert_holds(&store, &data, 5);
    }
    let store = Store::open(dir.path()).unwrap();
    assert_holds(&store, &data, 5);
    assert_eq!(store.stats().samples, data.len() as u64);
}

#[tokio::test]
async fn full_segments_are_checkpointed_on_their_own_and_everything_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        wal_segment_bytes: 64 << 10,
        ..StoreOptions::default()
    };
    let data = vitals(3, 3000);
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        write_all(&store, &data).await;
        // Several segments filled up while writing; their checkpoints ran in the background.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("chunks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let sealed = names.iter().filter(|n| n.ends_with(".chk")).count();
        let open = names.iter().filter(|n| n.ends_with(".open")).count();
        assert!(sealed >= 2, "{names:?}");
        // Each checkpoint supersedes the open buffers of the one before.
        assert_eq!(open, 1, "{names:?}");
        assert!(store.stats().wal_bytes < 3 * (64 << 10));
    }
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    assert_holds(&store, &data, 3);
    // Reopening again (provisional chunks of the newest checkpoint plus the
    // replayed tail) must not duplicate anything.
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_holds(&store, &data, 3);
}

#[tokio::test]
async fn a_crash_between_checkpoint_and_wal_cleanup_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = vitals(2, 500);
    let saved = {
        let store = Store::open(dir.path()).unwrap();
        write_all(&store, &data).await;
        let seg = wal_segments(dir.path()).pop().unwrap();
        let saved = (seg.clone(), std::fs::read(&seg).unwrap());
        store.checkpoint().await.unwrap();
        saved
    };
    // As if the process died before deleting the checkpointed segment.
    std::fs::write(&saved.0, &saved.1).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_holds(&store, &data, 2);
    assert!(!saved.0.exists(), "covered segment is removed at start");
}

#[tokio::test]
async fn writes_after_a_checkpoint_survive_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = vitals(2, 700);
    let (first, second) = data.split_at(600);
    {
        let store = Store::open(dir.path()).unwrap();
        write_all(&store, first).await;
        store.checkpoint().await.unwrap();
        write_all(&store, second).await;
    }
    let store = Store::open(dir.path()).unwrap();
    assert_holds(&store, &data, 2);
}

#[tokio::test]
async fn retention_expires_each_kind_on_its_own_schedule() {
    use medmesh_storage::Retention;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86_400);
    let options = StoreOptions {
        retention: Retention::forever().with(VitalSign::HeartRate, Some(day)),
        ..StoreOptions::default()
    };
    let now = medmesh_model::now_ms();
    let three_days_ago = now - 3 * 86_400_000;
    let old: Vec<Observation> = (0..2000)
        .flat_map(|s| {
            let t = three_days_ago + s * 1000;
            [
                obs(VitalSign::HeartRate, t, 70.0),
                obs(VitalSign::OxygenSaturation, t, 97.0),
            ]
        })
        .collect();
    let recent: Vec<Observation> = (0..100)
        .map(|s| obs(VitalSign::HeartRate, now - 3_600_000 + s * 1000, 80.0))
        .collect();
    let chunks_before;
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        for batch in old.chunks(500) {
            store.append("p1", batch.to_vec()).await.unwrap();
        }
        store.append("p1", recent.clone()).await.unwrap();
        // Reads hide expired heart rates at once, before any clean-up.
        let hr = store.range("p1", VitalSign::HeartRate, i64::MIN, i64::MAX);
        assert_eq!(hr.len(), 100);
        assert!(hr.iter().all(|p| p.value == 80.0));
        assert_eq!(
            store
                .range("p1", VitalSign::OxygenSaturation, i64::MIN, i64::MAX)
                .len(),
            2000
        );
        let buckets = store.aggregate("p1", VitalSign::HeartRate, i64::MIN, now, 86_400_000);
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 100);

        store.checkpoint().await.unwrap();
        chunks_before = store.stats().chunk_bytes;
        assert!(store.stats().samples < 2000 + 2000 + 100);
    }
    // The same data kept forever takes clearly more room: the checkpoint file
    // was rewritten without the expired heart-rate chunks.
    let full_dir = tempfile::tempdir().unwrap();
    let full = Store::open(full_dir.path()).unwrap();
    for batch in old.chunks(500) {
        full.append("p1", batch.to_vec()).await.unwrap();
    }
    full.append("p1", recent.clone()).await.unwrap();
    full.checkpoint().await.unwrap();
    let full_bytes = full.stats().chunk_bytes;
    assert!(
        (chunks_before as f64) < full_bytes as f64 * 0.75,
        "with retention {chunks_before} bytes, without {full_bytes}"
    );
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(
        store
            .range("p1", VitalSign::HeartRate, i64::MIN, i64::MAX)
            .len(),
        100
    );
    assert_eq!(
        store
            .range("p1", VitalSign::OxygenSaturation, i64::MIN, i64::MAX)
            .len(),
        2000
    );
    let stats = store.stats();
    assert!(
        stats.samples <= 2000 + 100 + 240,
        "expired chunks are gone from memory: {}",
        stats.samples
    );
    assert!(
        stats.chunk_bytes <= chunks_before,
        "{} > {chunks_before}",
        stats.chunk_bytes
    );
}
