//! What a simulated device reports about itself and detects, besides vital
//! signs: its battery level (slowly draining, swapped when flat) and, for a
//! wearable, a rare fall. Times are the device's clock, so the drain and the
//! fall rate do not depend on how often it sends.

use medmesh_model::TimestampMs;
use rand::Rng;

/// A device's battery level report is due this often (ms).
const BATTERY_EVERY_MS: TimestampMs = 60_000;

/// A draining battery that reports its level once a minute.
#[derive(Debug, Clone)]
pub struct Battery {
    percent: f64,
    /// Percentage points lost per hour.
    drain_per_hour: f64,
    last_ms: Option<TimestampMs>,
    next_report_ms: Option<TimestampMs>,
}

impl Battery {
    pub fn new(percent: f64, drain_per_hour: f64) -> Battery {
        Battery {
            percent,
            drain_per_hour,
            last_ms: None,
            next_report_ms: None,
        }
    }

    /// The level (whole percent, as devices report it) if a report is due at
    /// `now_ms`. A flat battery is swapped for a full one, as a nurse would.
    pub fn due(&mut self, now_ms: TimestampMs) -> Option<f64> {
        let elapsed_h = self
            .last_ms
            .map_or(0.0, |l| (now_ms - l).max(0) as f64 / 3_600_000.0);
        self.last_ms = Some(now_ms);
        self.percent -= self.drain_per_hour * elapsed_h;
        if self.percent <= 0.0 {
            self.percent = 100.0;
        }
        let next = self.next_report_ms.get_or_insert(now_ms);
        if now_ms < *next {
            return None;
        }
        *next = now_ms + BATTERY_EVERY_MS;
        Some(self.percent.round())
    }
}

/// A wearable's fall detector: falls come at random, on average one every
/// `mean_interval_ms`.
#[derive(Debug, Clone)]
pub struct FallDetector {
    mean_interval_ms: f64,
    last_ms: Option<TimestampMs>,
}

impl FallDetector {
    pub fn new(mean_interval_ms: f64) -> FallDetector {
        FallDetector {
            mean_interval_ms,
            last_ms: None,
        }
    }

    /// Whether the wearer fell since the last call (a Poisson process).
    pub fn fell(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> bool {
        let Some(last) = self.last_ms.replace(now_ms) else {
            return false;
        };
        let dt = (now_ms - last).max(0) as f64;
        rng.random::<f64>() < 1.0 - (-dt / self.mean_interval_ms).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn a_battery_reports_once_a_minute_and_drains_then_is_swapped() {
        let mut b = Battery::new(21.0, 6.0);
        let reports: Vec<_> = (0..=600).filter_map(|s| b.due(s * 1000)).collect();
        // 0 s, 60 s, ... 600 s: 11 reports, losing 1 point in 10 minutes.
        assert_eq!(reports.len(), 11, "{reports:?}");
        assert_eq!((reports[0], reports[10]), (21.0, 20.0));
        let mut flat = Battery::new(0.5, 60.0);
        assert_eq!(flat.due(0), Some(1.0));
        assert_eq!(flat.due(60_000), Some(100.0), "swapped once flat");
    }

    #[test]
    fn falls_are_rare_at_the_mean_rate() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut d = FallDetector::new(3_600_000.0);
        // 100 hours at 1 Hz: about 100 falls.
        let falls = (0..360_000).filter(|s| d.fell(s * 1000, &mut rng)).count();
        assert!((70..=130).contains(&falls), "{falls}");
    }
}
