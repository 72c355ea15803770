//! Retention: how long each kind of data is kept.
//!
//! Reads never return data older than its retention (they clamp to the
//! cutoff), so expiry is exact to the millisecond. Space is reclaimed by the
//! checkpoint thread after each checkpoint (and once at start): expired
//! chunks leave memory, and checkpoint files holding them are rewritten
//! without them, or deleted once empty.

use crate::checkpoint;
use crate::head::Head;
use medmesh_model::{TimestampMs, VitalSign};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

/// How long to keep data, per vital sign, with a default for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// `None` keeps forever.
    default: Option<Duration>,
    per_vital: BTreeMap<VitalSign, Option<Duration>>,
}

impl Retention {
    /// Keeps everything forever (the default).
    pub fn forever() -> Retention {
        Retention::default()
    }

    /// Sets the retention of every vital sign not given its own.
    pub fn with_default(mut self, keep: Option<Duration>) -> Retention {
        self.default = keep;
        self
    }

    /// Sets the retention of one vital sign (`None`: forever).
    pub fn with(mut self, vital: VitalSign, keep: Option<Duration>) -> Retention {
        self.per_vital.insert(vital, keep);
        self
    }

    fn keep(&self, vital: VitalSign) -> Option<Duration> {
        self.per_vital.get(&vital).copied().unwrap_or(self.default)
    }

    /// The oldest time still kept for `vital` at `now`; `None` keeps all.
    pub fn cutoff(&self, vital: VitalSign, now: TimestampMs) -> Option<TimestampMs> {
        self.keep(vital)
            .map(|d| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    fn is_forever(&self) -> bool {
        VitalSign::ALL.iter().all(|v| self.keep(*v).is_none())
    }
}

/// Drops data expired at `now` from the head and rewrites the checkpoint
/// files (up to `committed`, the newest committed checkpoint) that held it.
pub(crate) fn enforce(
    head: &RwLock<Head>,
    chunks_dir: &Path,
    retention: &Retention,
    now: TimestampMs,
    committed: u64,
) -> std::io::Result<()> {
    if retention.is_forever() {
        return Ok(());
    }
    let affected: BTreeSet<u64> = head
        .write()
        .expect("head lock")
        .expire(|v| retention.cutoff(v, now), committed);
    if affected.is_empty() {
        return Ok(());
    }
    let remaining = head.read().expect("head lock").chunks_of(&affected);
    let mut reclaimed = 0u64;
    for n in &affected {
        let chunks = remaining.get(n).map(Vec::as_slice).unwrap_or_default();
        let before =
            std::fs::metadata(checkpoint::sealed_path(chunks_dir, *n)).map_or(0, |m| m.len());
        let after = if chunks.is_empty() && *n < committed {
            // The newest checkpoint file is kept even if empty: it names the
            // open-buffer file that start-up loads.
            std::fs::remove_file(checkpoint::sealed_path(chunks_dir, *n))?;
            0
        } else {
            checkpoint::rewrite_sealed(chunks_dir, *n, chunks)?
        };
        reclaimed += before.saturating_sub(after);
    }
    crate::sync_dir(chunks_dir)?;
    tracing::info!(
        files = affected.len(),
        reclaimed_bytes = reclaimed,
        "expired data removed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_vital_retention_overrides_the_default() {
        let day = Duration::from_secs(86_400);
        let r = Retention::forever()
            .with_default(Some(day * 30))
            .with(VitalSign::HeartRate, Some(day))
            .with(VitalSign::BodyWeight, None);
        let now = 100 * 86_400_000;
        assert_eq!(r.cutoff(VitalSign::HeartRate, now), Some(99 * 86_400_000));
        assert_eq!(
            r.cutoff(VitalSign::OxygenSaturation, now),
            Some(70 * 86_400_000)
        );
        assert_eq!(r.cutoff(VitalSign::BodyWeight, now), None);
        assert!(!r.is_forever());
        assert!(Retention::forever().is_forever());
    }
}
