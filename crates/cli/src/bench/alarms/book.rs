//! Matching each alarm-raising publish to the alarm it caused.
//!
//! A device's publish is noted (device index and the instant just before
//! the publish call) and stays pending until the system under test reports
//! an alarm raised for that device; the difference is one latency sample.
//! Whatever is still pending at the end was missed, and an alarm for a
//! device with nothing pending is counted as unexpected: neither is dropped
//! silently.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Book {
    pending: Mutex<HashMap<u32, Instant>>,
    latencies: Mutex<Vec<Duration>>,
    injected: AtomicU64,
    /// Publishes whose alarm never came before the next one for the same device.
    superseded: AtomicU64,
    unexpected: AtomicU64,
}

/// What a book recorded, at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Alarm-raising publishes.
    pub injected: u64,
    /// Latency of each alarm matched to its publish, sorted.
    pub latencies: Vec<Duration>,
    /// Publishes whose alarm never arrived.
    pub missed: u64,
    /// Alarms raised for a device with no alarm-raising publish pending.
    pub unexpected: u64,
}

impl Book {
    /// Device `device` is about to publish a value that must raise an alarm.
    pub fn published(&self, device: u32, at: Instant) {
        self.injected.fetch_add(1, Ordering::Relaxed);
        if self
            .pending
            .lock()
            .expect("book lock")
            .insert(device, at)
            .is_some()
        {
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The system raised an alarm for `device`, observed at `at`. Returns
    /// whether it matched a pending publish.
    pub fn raised(&self, device: u32, at: Instant) -> bool {
        let sent = self.pending.lock().expect("book lock").remove(&device);
        match sent {
            Some(sent) => {
                self.latencies
                    .lock()
                    .expect("book lock")
                    .push(at.saturating_duration_since(sent));
                true
            }
            None => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().expect("book lock").len()
    }

    pub fn delivered(&self) -> usize {
        self.latencies.lock().expect("book lock").len()
    }

    /// The figures so far; what is still pending counts as missed.
    pub fn tally(&self) -> Tally {
        let mut latencies = self.latencies.lock().expect("book lock").clone();
        latencies.sort_unstable();
        Tally {
            injected: self.injected.load(Ordering::Relaxed),
            latencies,
            missed: self.pending() as u64 + self.superseded.load(Ordering::Relaxed),
            unexpected: self.unexpected.load(Ordering::Relaxed),
        }
    }
}

impl Tally {
    /// The `p` quantile (0..=1) of the latencies, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = (p * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_matched_to_their_publish_and_the_rest_counted() {
        let book = Book::default();
        let t0 = Instant::now();
        book.published(1, t0);
        book.published(2, t0);
        book.published(3, t0);
        assert!(book.raised(2, t0 + Duration::from_millis(7)));
        // Device 9 published nothing that should raise an alarm.
        assert!(!book.raised(9, t0 + Duration::from_millis(8)));
        // A second publish for device 1 before its alarm: the first is missed.
        book.published(1, t0 + Duration::from_millis(10));
        assert!(book.raised(1, t0 + Duration::from_millis(13)));
        let t = book.tally();
        assert_eq!(t.injected, 4);
        assert_eq!(
            t.latencies,
            [Duration::from_millis(3), Duration::from_millis(7)]
        );
        // Device 3 never got its alarm; device 1's first publish neither.
        assert_eq!(t.missed, 2);
        assert_eq!(t.unexpected, 1);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let t = Tally {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Tally::default()
        };
        assert_eq!(t.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(t.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(t.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(Tally::default().percentile(0.99), None);
    }
}
