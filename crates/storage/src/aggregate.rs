//! Aggregates per time bucket (min, max, mean, count).
//!
//! Long ranges (a trend over 90 days) are served from per-chunk summaries
//! computed when a chunk is sealed: a chunk that falls inside one bucket and
//! overlaps no other data contributes its summary without being decoded.
//! With 240-point chunks this is a 240-fold roll-up kept for free.

use crate::head::Point;
use medmesh_model::TimestampMs;
use serde::Serialize;

/// Min, max, sum and count of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Summary {
    pub(crate) const EMPTY: Summary = Summary {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum: 0.0,
        count: 0,
    };

    pub(crate) fn of(points: &[Point]) -> Summary {
        let mut s = Summary::EMPTY;
        for p in points {
            s.add(p.value);
        }
        s
    }

    pub(crate) fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
    }

    pub(crate) fn merge(&mut self, o: &Summary) {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.count += o.count;
    }
}

/// One time bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket; buckets are aligned to multiples of their width
    /// since the Unix epoch, so the same query always gives the same edges.
    pub start_ms: TimestampMs,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

pub(crate) fn bucket_start(t: TimestampMs, width_ms: i64) -> TimestampMs {
    t - t.rem_euclid(width_ms)
}

pub(crate) fn to_buckets(acc: std::collections::BTreeMap<TimestampMs, Summary>) -> Vec<Bucket> {
    acc.into_iter()
        .filter(|(_, s)| s.count > 0)
        .map(|(start_ms, s)| Bucket {
            start_ms,
            count: s.count,
            min: s.min,
            max: s.max,
            mean: s.sum / s.count as f64,
        })
        .collect()
}
