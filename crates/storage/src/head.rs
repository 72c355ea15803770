//! The in-memory series store.
//!
//! Each series keeps its recent points in an open buffer, sorted by time.
//! When the buffer holds [`CHUNK_POINTS`] points it is sealed into an
//! immutable Gorilla-compressed [`Chunk`], so memory (and, once checkpointed,
//! disk) costs under 2 bytes a sample for regular vital signs.
//!
//! A point older than the open buffer (a late or re-sent reading) still goes
//! into the open buffer, so chunks of a series may overlap in time. Reads merge
//! them; for equal timestamps the most recently written point wins, which is
//! what makes QoS 1 redelivery idempotent.

use crate::aggregate::{Bucket, Summary, bucket_start, to_buckets};
use crate::gorilla;
use medmesh_model::{TimestampMs, VitalSign};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Points per sealed chunk: 4 minutes of a 1 Hz vital sign. Large enough to
/// amortise the chunk header (16 bytes), small enough that a range read
/// decodes little outside the range.
pub(crate) const CHUNK_POINTS: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub time_ms: TimestampMs,
    pub value: f64,
}

/// An immutable, compressed run of points of one series.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub min_ts: TimestampMs,
    pub max_ts: TimestampMs,
    pub count: u32,
    pub data: Vec<u8>,
    /// Min, max and sum of the values: the chunk's roll-up.
    pub summary: Summary,
    /// The checkpoint that holds (or is writing) this chunk; 0 = none yet.
    pub checkpoint: AtomicU64,
}

impl Chunk {
    pub(crate) fn seal(points: &[Point]) -> Chunk {
        Chunk {
            min_ts: points.first().map_or(0, |p| p.time_ms),
            max_ts: points.last().map_or(0, |p| p.time_ms),
            count: points.len() as u32,
            data: gorilla::encode(points),
            summary: Summary::of(points),
            checkpoint: AtomicU64::new(0),
        }
    }

    pub(crate) fn points(&self) -> Vec<Point> {
        // Chunks are only built by `seal` or checked on load, so they decode.
        gorilla::decode(&self.data).unwrap_or_default()
    }
}

#[derive(Default)]
struct Series {
    sealed: Vec<Arc<Chunk>>,
    open: Vec<Point>,
    /// The newest point, for O(1) latest-value reads.
    last: Option<Point>,
}

impl Series {
    /// Returns true if the point was new (not a replacement).
    fn insert(&mut self, point: Point) -> bool {
        if self.last.is_none_or(|l| point.time_ms >= l.time_ms) {
            self.last = Some(point);
        }
        let added = match self.open.last() {
            Some(last) if last.time_ms < point.time_ms => {
                self.open.push(point);
                true
            }
            None => {
                self.open.push(point);
                true
            }
            _ => match self
                .open
                .binary_search_by_key(&point.time_ms, |p| p.time_ms)
            {
                Ok(i) => {
                    self.open[i] = point;
                    false
                }
                Err(i) => {
                    self.open.insert(i, point);
                    true
                }
            },
        };
        if self.open.len() >= CHUNK_POINTS {
            self.sealed.push(Arc::new(Chunk::seal(&self.open)));
            self.open.clear();
        }
        added
    }

    fn range(&self, from: TimestampMs, to: TimestampMs) -> Vec<Point> {
        self.range_skipping(from, to, &[])
    }

    /// Like `range`, leaving out the sealed chunks whose index is in `skip`.
    fn range_skipping(&self, from: TimestampMs, to: TimestampMs, skip: &[usize]) -> Vec<Point> {
        let mut out = Vec::new();
        for (_, chunk) in self
            .sealed
            .iter()
            .enumerate()
            .filter(|(i, c)| c.max_ts >= from && c.min_ts <= to && !skip.contains(i))
        {
            out.extend(
                chunk
                    .points()
                    .into_iter()
                    .filter(|p| p.time_ms >= from && p.time_ms <= to),
            );
        }
        let start = self.open.partition_point(|p| p.time_ms < from);
        let end = self.open.partition_point(|p| p.time_ms <= to).max(start);
        out.extend_from_slice(&self.open[start..end]);
        if !out.windows(2).all(|w| w[0].time_ms < w[1].time_ms) {
            // Overlapping chunks: order by time, keeping the newest write of
            // each timestamp (the stable sort keeps write order among equals).
            out.sort_by_key(|p| p.time_ms);
            let mut dedup: Vec<Point> = Vec::with_capacity(out.len());
            for p in out {
                match dedup.last_mut() {
                    Some(last) if last.time_ms == p.time_ms => *last = p,
                    _ => dedup.push(p),
                }
            }
            out = dedup;
        }
        out
    }

    /// Buckets of `width_ms` over `[from, to]`, and how many chunks were
    /// served by their summary. Chunks wholly inside one bucket and the
    /// range, overlapping no other data, count by summary without decoding.
    fn aggregate(&self, from: TimestampMs, to: TimestampMs, width_ms: i64) -> (Vec<Bucket>, usize) {
        let overlapping = self.overlapping_chunks();
        let mut acc = std::collections::BTreeMap::<TimestampMs, Summary>::new();
        let mut summarised = Vec::new();
        for (i, c) in self.sealed.iter().enumerate() {
            let start = bucket_start(c.min_ts, width_ms);
            if c.min_ts >= from
                && c.max_ts <= to
                && bucket_start(c.max_ts, width_ms) == start
                && !overlapping[i]
            {
                acc.entry(start).or_insert(Summary::EMPTY).merge(&c.summary);
                summarised.push(i);
            }
        }
        // Points come sorted: fold runs of one bucket locally and touch the
        // map once per bucket, not once per point.
        let mut run: Option<(TimestampMs, Summary)> = None;
        for p in self.range_skipping(from, to, &summarised) {
            let start = bucket_start(p.time_ms, width_ms);
            match &mut run {
                Some((s, summary)) if *s == start => summary.add(p.value),
                _ => {
                    if let Some((s, summary)) = run.take() {
                        acc.entry(s).or_insert(Summary::EMPTY).merge(&summary);
                    }
                    let mut summary = Summary::EMPTY;
                    summary.add(p.value);
                    run = Some((start, summary));
                }
            }
        }
        if let Some((s, summary)) = run {
            acc.entry(s).or_insert(Summary::EMPTY).merge(&summary);
        }
        (to_buckets(acc), summarised.len())
    }

    /// For each sealed chunk: does its time span share any timestamp range
    /// with another chunk or hold a point of the open buffer?
    fn overlapping_chunks(&self) -> Vec<bool> {
        let mut order: Vec<usize> = (0..self.sealed.len()).collect();
        order.sort_by_key(|&i| self.sealed[i].min_ts);
        let mut flags = vec![false; self.sealed.len()];
        let mut reach: Option<(TimestampMs, usize)> = None; // furthest max_ts so far, and whose
        for &i in &order {
            let c = &self.sealed[i];
            if let Some((_, j)) = reach.filter(|(max, _)| *max >= c.min_ts) {
                flags[i] = true;
                flags[j] = true;
            }
            if reach.is_none_or(|(max, _)| c.max_ts > max) {
                reach = Some((c.max_ts, i));
            }
            let k = self.open.partition_point(|p| p.time_ms < c.min_ts);
            if self.open.get(k).is_some_and(|p| p.time_ms <= c.max_ts) {
                flags[i] = true;
            }
        }
        flags
    }
}

/// Everything a checkpoint must write: sealed chunks no checkpoint holds yet
/// (now claimed by this one) and a copy of every open buffer.
pub(crate) struct Snapshot {
    pub sealed: Vec<(String, VitalSign, Arc<Chunk>)>,
    pub open: Vec<(String, VitalSign, Vec<Point>)>,
}

#[derive(Default)]
pub(crate) struct Head {
    subjects: HashMap<String, BTreeMap<VitalSign, Series>>,
    samples: u64,
    series: u64,
}

impl Head {
    fn series_mut(&mut self, subject: &str, vital: VitalSign) -> &mut Series {
        // Look up by &str first: allocating the key for every sample would
        // cost more than the insert itself.
        if !self.subjects.contains_key(subject) {
            self.subjects.insert(subject.to_string(), BTreeMap::new());
        }
        let by_vital = self.subjects.get_mut(subject).expect("inserted above");
        by_vital.entry(vital).or_insert_with(|| {
            self.series += 1;
            Series::default()
        })
    }

    /// Inserts a point. A point with the timestamp of a point already in the
    /// open buffer replaces it (QoS 1 redelivery must not create duplicates).
    pub(crate) fn insert(&mut self, subject: &str, vital: VitalSign, point: Point) {
        if self.series_mut(subject, vital).insert(point) {
            self.samples += 1;
        }
    }

    /// Adds a chunk loaded from a checkpoint.
    pub(crate) fn add_sealed(&mut self, subject: &str, vital: VitalSign, chunk: Arc<Chunk>) {
        self.samples += u64::from(chunk.count);
        let series = self.series_mut(subject, vital);
        if let Some(p) = chunk
            .points()
            .last()
            .filter(|p| series.last.is_none_or(|l| p.time_ms >= l.time_ms))
        {
            series.last = Some(*p);
        }
        series.sealed.push(chunk);
    }

    pub(crate) fn latest(&self, subject: &str) -> Vec<(VitalSign, Point)> {
        self.subjects
            .get(subject)
            .map(|m| {
                m.iter()
                    .filter_map(|(v, s)| s.last.map(|p| (*v, p)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn range(
        &self,
        subject: &str,
        vital: VitalSign,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<Point> {
        if from > to {
            return Vec::new();
        }
        self.subjects
            .get(subject)
            .and_then(|m| m.get(&vital))
            .map(|s| s.range(from, to))
            .unwrap_or_default()
    }

    pub(crate) fn aggregate(
        &self,
        subject: &str,
        vital: VitalSign,
        from: TimestampMs,
        to: TimestampMs,
        width_ms: i64,
    ) -> Vec<Bucket> {
        if from > to || width_ms <= 0 {
            return Vec::new();
        }
        self.subjects
            .get(subject)
            .and_then(|m| m.get(&vital))
            .map(|s| s.aggregate(from, to, width_ms).0)
            .unwrap_or_default()
    }

    /// Claims every unclaimed sealed chunk for checkpoint `n` and copies the
    /// open buffers.
    pub(crate) fn snapshot(&self, n: u64) -> Snapshot {
        let mut snap = Snapshot {
            sealed: Vec::new(),
            open: Vec::new(),
        };
        for (subject, by_vital) in &self.subjects {
            for (vital, series) in by_vital {
                for chunk in &series.sealed {
                    if chunk
                        .checkpoint
                        .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        snap.sealed.push((subject.clone(), *vital, chunk.clone()));
                    }
                }
                if !series.open.is_empty() {
                    snap.open
                        .push((subject.clone(), *vital, series.open.clone()));
                }
            }
        }
        snap
    }

    /// Removes sealed chunks wholly older than their vital sign's cutoff
    /// (only those never checkpointed or held by a checkpoint up to
    /// `committed`, whose file can be rewritten) and expired open points.
    /// Returns the checkpoints whose files held removed chunks.
    pub(crate) fn expire(
        &mut self,
        cutoff: impl Fn(VitalSign) -> Option<TimestampMs>,
        committed: u64,
    ) -> std::collections::BTreeSet<u64> {
        let mut affected = std::collections::BTreeSet::new();
        let mut removed = 0u64;
        for by_vital in self.subjects.values_mut() {
            for (vital, series) in by_vital.iter_mut() {
                let Some(cut) = cutoff(*vital) else { continue };
                series.sealed.retain(|c| {
                    let n = c.checkpoint.load(Ordering::Acquire);
                    let expired = c.max_ts < cut && n <= committed;
                    if expired {
                        removed += u64::from(c.count);
                        if n > 0 {
                            affected.insert(n);
                        }
                    }
                    !expired
                });
                let keep_from = series.open.partition_point(|p| p.time_ms < cut);
                removed += keep_from as u64;
                series.open.drain(..keep_from);
            }
        }
        self.samples = self.samples.saturating_sub(removed);
        affected
    }

    /// The sealed chunks held by each of the checkpoints `ns`.
    pub(crate) fn chunks_of(
        &self,
        ns: &std::collections::BTreeSet<u64>,
    ) -> BTreeMap<u64, Vec<(String, VitalSign, Arc<Chunk>)>> {
        let mut out: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for (subject, by_vital) in &self.subjects {
            for (vital, series) in by_vital {
                for c in &series.sealed {
                    let n = c.checkpoint.load(Ordering::Acquire);
                    if ns.contains(&n) {
                        out.entry(n)
                            .or_default()
                            .push((subject.clone(), *vital, c.clone()));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn sample_count(&self) -> u64 {
        self.samples
    }

    pub(crate) fn series_count(&self) -> u64 {
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, v: f64) -> Point {
        Point {
            time_ms: t,
            value: v,
        }
    }

    #[test]
    fn out_of_order_points_are_sorted_and_duplicates_replaced() {
        let mut h = Head::default();
        for (t, v) in [(10, 1.0), (30, 3.0), (20, 2.0), (30, 3.5), (5, 0.5)] {
            h.insert("p1", VitalSign::HeartRate, p(t, v));
        }
        let all = h.range("p1", VitalSign::HeartRate, i64::MIN, i64::MAX);
        assert_eq!(all, vec![p(5, 0.5), p(10, 1.0), p(20, 2.0), p(30, 3.5)]);
        assert_eq!(h.sample_count(), 4);
        assert_eq!(h.latest("p1"), vec![(VitalSign::HeartRate, p(30, 3.5))]);
    }

    #[test]
    fn range_bounds_are_inclusive() {
        let mut h = Head::default();
        for t in 0..10 {
            h.insert("p1", VitalSign::RespiratoryRate, p(t, t as f64));
        }
        let r = h.range("p1", VitalSign::RespiratoryRate, 3, 5);
        assert_eq!(r.iter().map(|p| p.time_ms).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(h.range("p1", VitalSign::RespiratoryRate, 7, 2).is_empty());
        assert!(
            h.range("nobody", VitalSign::RespiratoryRate, 0, 9)
                .is_empty()
        );
    }

    #[test]
    fn ranges_span_sealed_chunks_and_the_open_buffer() {
        let mut h = Head::default();
        let n = CHUNK_POINTS as i64 * 3 + 17;
        for t in 0..n {
            h.insert("p1", VitalSign::HeartRate, p(t * 1000, (60 + t % 7) as f64));
        }
        let all = h.range("p1", VitalSign::HeartRate, 0, i64::MAX);
        assert_eq!(all.len() as i64, n);
        assert!(all.windows(2).all(|w| w[1].time_ms - w[0].time_ms == 1000));
        // A window crossing a chunk boundary.
        let edge = CHUNK_POINTS as i64 * 1000;
        let w = h.range("p1", VitalSign::HeartRate, edge - 2000, edge + 2000);
        assert_eq!(
            w.iter().map(|p| p.time_ms).collect::<Vec<_>>(),
            (-2..=2).map(|d| edge + d * 1000).collect::<Vec<_>>()
        );
        assert_eq!(h.latest("p1")[0].1.time_ms, (n - 1) * 1000);
    }

    #[test]
    fn a_resent_point_in_a_sealed_chunk_replaces_the_old_value() {
        let mut h = Head::default();
        for t in 0..CHUNK_POINTS as i64 + 5 {
            h.insert("p1", VitalSign::HeartRate, p(t, 70.0));
        }
        h.insert("p1", VitalSign::HeartRate, p(3, 99.0));
        let r = h.range("p1", VitalSign::HeartRate, 2, 4);
        assert_eq!(r, vec![p(2, 70.0), p(3, 99.0), p(4, 70.0)]);
        // The latest value is still the newest timestamp, not the late write.
        assert_eq!(h.latest("p1")[0].1.time_ms, CHUNK_POINTS as i64 + 4);
    }

    #[test]
    fn buckets_agree_whether_chunks_are_summarised_or_decoded() {
        let mut h = Head::default();
        // 3 hours at 1 Hz: many sealed chunks, then a late re-send that
        // overlaps one of them (that chunk must be decoded, not summarised).
        for t in 0..3 * 3600 {
            h.insert(
                "p1",
                VitalSign::HeartRate,
                p(t * 1000, (60 + t % 13) as f64),
            );
        }
        h.insert("p1", VitalSign::HeartRate, p(100_000, 200.0));
        let hourly = h.aggregate("p1", VitalSign::HeartRate, 0, i64::MAX, 3_600_000);
        assert_eq!(hourly.len(), 3);
        let points = h.range("p1", VitalSign::HeartRate, 0, i64::MAX);
        for b in &hourly {
            let inside: Vec<f64> = points
                .iter()
                .filter(|q| q.time_ms >= b.start_ms && q.time_ms < b.start_ms + 3_600_000)
                .map(|q| q.value)
                .collect();
            assert_eq!(b.count, inside.len() as u64);
            assert_eq!(b.max, inside.iter().cloned().fold(f64::MIN, f64::max));
            assert_eq!(b.min, inside.iter().cloned().fold(f64::MAX, f64::min));
            let mean = inside.iter().sum::<f64>() / inside.len() as f64;
            assert!((b.mean - mean).abs() < 1e-9);
        }
        assert_eq!(
            hourly[0].max, 200.0,
            "the re-sent value counts once, replacing the old one"
        );
        let series = &h.subjects["p1"][&VitalSign::HeartRate];
        let (_, summarised) = series.aggregate(0, i64::MAX, 3_600_000);
        // 45 chunks; the one overlapped by the re-send, and those cut by an
        // hour boundary, are decoded; the rest come from their summaries.
        assert!(
            summarised >= 40,
            "{summarised} of {} chunks summarised",
            series.sealed.len()
        );
        assert_eq!(hourly[0].count, 3600);
        // A window that cuts chunks: partial chunks are decoded.
        let w = h.aggregate("p1", VitalSign::HeartRate, 10_500, 70_499, 60_000);
        assert_eq!(w.iter().map(|b| b.count).sum::<u64>(), 60);
    }

    #[test]
    fn snapshot_claims_each_sealed_chunk_once() {
        let mut h = Head::default();
        for t in 0..CHUNK_POINTS as i64 + 3 {
            h.insert("p1", VitalSign::HeartRate, p(t, 70.0));
        }
        let first = h.snapshot(1);
        assert_eq!((first.sealed.len(), first.open[0].2.len()), (1, 3));
        let second = h.snapshot(2);
        assert!(second.sealed.is_empty());
        assert_eq!(second.open.len(), 1);
    }
}
