//! Device battery levels across restarts: a [`Journal`] of reported levels,
//! replayed at start to give each device its last one.
//!
//! Batteries drain slowly and devices report often, so the caller records a
//! level only when its whole percent changes; at start, a journal holding
//! many more lines than devices is rewritten with one line per device, so
//! it stays small however long the server runs.

use crate::journal::Journal;
use medmesh_model::{DeviceId, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const FILE: &str = "device_battery.jsonl";

/// A device's battery level (percent) and when the device measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatteryLevel {
    pub percent: f64,
    pub time_ms: TimestampMs,
}

#[derive(Serialize, Deserialize)]
struct Line {
    device: DeviceId,
    #[serde(flatten)]
    level: BatteryLevel,
}

pub struct BatteryLog {
    journal: Journal<Line>,
}

impl BatteryLog {
    /// Opens (creating) the battery journal under `dir`; returns it and each
    /// device's last recorded level.
    pub fn open(dir: &Path) -> std::io::Result<(BatteryLog, HashMap<DeviceId, BatteryLevel>)> {
        let (journal, lines) = Journal::<Line>::open(dir, FILE)?;
        let count = lines.len();
        let last: HashMap<DeviceId, BatteryLevel> =
            lines.into_iter().map(|l| (l.device, l.level)).collect();
        if count <= 2 * last.len() + 64 {
            return Ok((BatteryLog { journal }, last));
        }
        // Compact: dropping the journal first waits for its writer.
        drop(journal);
        let mut bytes = Vec::new();
        for (device, level) in &last {
            let line = Line {
                device: device.clone(),
                level: *level,
            };
            serde_json::to_writer(&mut bytes, &line).expect("a battery line serialises");
            bytes.push(b'\n');
        }
        crate::write_atomically(&dir.join(FILE), &bytes)?;
        let (journal, _) = Journal::open(dir, FILE)?;
        Ok((BatteryLog { journal }, last))
    }

    /// Queues a device's new level (a crash can lose the last few; the
    /// device's next report restores it).
    pub fn record(&self, device: &DeviceId, level: BatteryLevel) {
        self.journal.append(&Line {
            device: device.clone(),
            level,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(percent: f64, time_ms: TimestampMs) -> BatteryLevel {
        BatteryLevel { percent, time_ms }
    }

    #[test]
    fn the_last_level_of_each_device_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (DeviceId::new("a").unwrap(), DeviceId::new("b").unwrap());
        let (log, last) = BatteryLog::open(dir.path()).unwrap();
        assert!(last.is_empty());
        log.record(&a, level(80.0, 1));
        log.record(&b, level(50.0, 2));
        log.record(&a, level(79.0, 3));
        drop(log);
        let (_, last) = BatteryLog::open(dir.path()).unwrap();
        assert_eq!(
            last,
            HashMap::from([(a, level(79.0, 3)), (b, level(50.0, 2))])
        );
    }

    #[test]
    fn a_long_journal_is_compacted_at_start_and_keeps_the_last_levels() {
        let dir = tempfile::tempdir().unwrap();
        let a = DeviceId::new("a").unwrap();
        let (log, _) = BatteryLog::open(dir.path()).unwrap();
        for i in 0..500 {
            log.record(&a, level(100.0 - f64::from(i) / 5.0, i64::from(i)));
        }
        drop(log);
        let before = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        let (log, last) = BatteryLog::open(dir.path()).unwrap();
        assert_eq!(last[&a], level(100.0 - 499.0 / 5.0, 499));
        let after = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(after * 100 < before, "{after} of {before} bytes");
        // Still appendable after compaction.
        log.record(&a, level(5.0, 1_000));
        drop(log);
        assert_eq!(
            BatteryLog::open(dir.path()).unwrap().1[&a],
            level(5.0, 1_000)
        );
    }
}
