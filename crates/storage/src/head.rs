//! The in-memory head: every series, its points sorted by time.

use medmesh_model::{TimestampMs, VitalSign};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub time_ms: TimestampMs,
    pub value: f64,
}

#[derive(Default)]
pub(crate) struct Head {
    subjects: HashMap<String, BTreeMap<VitalSign, Vec<Point>>>,
    samples: u64,
    series: u64,
}

impl Head {
    /// Inserts a point keeping the series sorted. A point with the same
    /// timestamp replaces the old one: a device re-sending a message it was
    /// not sure got through (MQTT QoS 1 redelivery) must not create duplicates.
    pub(crate) fn insert(&mut self, subject: &str, vital: VitalSign, point: Point) {
        let by_vital = match self.subjects.get_mut(subject) {
            Some(s) => s,
            None => self.subjects.entry(subject.to_string()).or_default(),
        };
        let series = by_vital.entry(vital).or_insert_with(|| {
            self.series += 1;
            Vec::new()
        });
        match series.last() {
            Some(last) if last.time_ms < point.time_ms => series.push(point),
            None => series.push(point),
            _ => match series.binary_search_by_key(&point.time_ms, |p| p.time_ms) {
                Ok(i) => {
                    series[i] = point;
                    return;
                }
                Err(i) => series.insert(i, point),
            },
        }
        self.samples += 1;
    }

    pub(crate) fn latest(&self, subject: &str) -> Vec<(VitalSign, Point)> {
        self.subjects
            .get(subject)
            .map(|m| {
                m.iter()
                    .filter_map(|(v, s)| s.last().map(|p| (*v, *p)))
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
        let Some(series) = self.subjects.get(subject).and_then(|m| m.get(&vital)) else {
            return Vec::new();
        };
        let start = series.partition_point(|p| p.time_ms < from);
        let end = series.partition_point(|p| p.time_ms <= to);
        series[start..end.max(start)].to_vec()
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
}
