//! Plausible, varying vital signs for one simulated patient.
//!
//! Each vital sign is its patient's baseline plus slow random variation (a
//! mean-reverting random walk, so values wander but stay near the baseline)
//! plus, for a deteriorating patient, a drift towards the picture of sepsis:
//! faster heart and breathing, falling saturation and blood pressure, fever.

use medmesh_model::{TimestampMs, VitalSign};
use rand::Rng;

/// The vital signs a simulated bedside monitor reports, in order.
pub const MONITORED: [VitalSign; 6] = [
    VitalSign::HeartRate,
    VitalSign::RespiratoryRate,
    VitalSign::OxygenSaturation,
    VitalSign::BodyTemperature,
    VitalSign::SystolicBloodPressure,
    VitalSign::DiastolicBloodPressure,
];

/// How a patient's condition evolves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trajectory {
    Stable,
    /// Deteriorates from `onset_s` after the start, reaching the full picture
    /// `ramp_s` seconds later.
    Deteriorating {
        onset_s: f64,
        ramp_s: f64,
    },
}

/// Change at full deterioration, per vital sign in [`MONITORED`] order.
const SEPSIS_SHIFT: [f64; 6] = [45.0, 14.0, -9.0, 2.3, -38.0, -22.0];
/// Spread of the random walk per vital sign.
const VARIABILITY: [f64; 6] = [3.0, 1.2, 0.8, 0.12, 5.0, 3.5];
/// Mean reversion rate per second of the random walk.
const REVERSION: f64 = 0.05;

#[derive(Debug, Clone)]
pub struct Physiology {
    baseline: [f64; 6],
    walk: [f64; 6],
    trajectory: Trajectory,
    started_ms: Option<TimestampMs>,
    last_ms: Option<TimestampMs>,
}

impl Physiology {
    /// A healthy-adult baseline varied per patient.
    pub fn new(rng: &mut impl Rng, trajectory: Trajectory) -> Physiology {
        let baseline = [
            rng.random_range(62.0..88.0),   // heart rate /min
            rng.random_range(13.0..18.0),   // respiratory rate /min
            rng.random_range(95.5..99.0),   // SpO2 %
            rng.random_range(36.4..37.2),   // temperature Cel
            rng.random_range(112.0..138.0), // systolic mm[Hg]
            rng.random_range(68.0..84.0),   // diastolic mm[Hg]
        ];
        Physiology {
            baseline,
            walk: [0.0; 6],
            trajectory,
            started_ms: None,
            last_ms: None,
        }
    }

    /// The same patient with a chronically low saturation (`spo2` %), as in
    /// COPD with hypercapnic respiratory failure.
    pub fn with_spo2_baseline(mut self, spo2: f64) -> Physiology {
        self.baseline[2] = spo2;
        self
    }

    pub fn trajectory(&self) -> Trajectory {
        self.trajectory
    }

    /// The readings at `now_ms`, rounded as a monitor displays them.
    pub fn sample(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> [(VitalSign, f64); 6] {
        let start = *self.started_ms.get_or_insert(now_ms);
        let dt = self
            .last_ms
            .map_or(1.0, |l| ((now_ms - l) as f64 / 1000.0).clamp(0.0, 60.0));
        self.last_ms = Some(now_ms);
        let progress = match self.trajectory {
            Trajectory::Stable => 0.0,
            Trajectory::Deteriorating { onset_s, ramp_s } => {
                (((now_ms - start) as f64 / 1000.0 - onset_s) / ramp_s).clamp(0.0, 1.0)
            }
        };
        let mut out = [(VitalSign::HeartRate, 0.0); 6];
        for i in 0..6 {
            // Ornstein-Uhlenbeck step: pull back towards 0 plus Gaussian noise.
            self.walk[i] += -REVERSION * self.walk[i] * dt
                + VARIABILITY[i] * (2.0 * REVERSION * dt).sqrt() * gaussian(rng);
            let v = self.baseline[i] + self.walk[i] + SEPSIS_SHIFT[i] * progress;
            let (lo, hi) = MONITORED[i].plausible_range();
            let v = v.clamp(lo, hi);
            let rounded = if MONITORED[i] == VitalSign::BodyTemperature {
                (v * 10.0).round() / 10.0
            } else {
                v.round()
            };
            out[i] = (MONITORED[i], rounded);
        }
        out
    }
}

/// A standard normal variate (Box-Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn stable_patients_stay_in_normal_ranges_and_vary() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut p = Physiology::new(&mut rng, Trajectory::Stable);
        let mut hr = Vec::new();
        for s in 0..600 {
            let r = p.sample(s * 1000, &mut rng);
            let spo2 = r[2].1;
            assert!((88.0..=100.0).contains(&spo2), "SpO2 {spo2}");
            assert!((45.0..=120.0).contains(&r[0].1), "HR {}", r[0].1);
            hr.push(r[0].1);
        }
        let distinct = hr
            .iter()
            .map(|v| *v as i64)
            .collect::<std::collections::BTreeSet<_>>();
        assert!(distinct.len() > 3, "heart rate should vary: {distinct:?}");
    }

    #[test]
    fn deteriorating_patients_end_up_tachycardic_and_hypoxic() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut p = Physiology::new(
            &mut rng,
            Trajectory::Deteriorating {
                onset_s: 10.0,
                ramp_s: 60.0,
            },
        );
        let mut last = p.sample(0, &mut rng);
        for s in 1..=120 {
            last = p.sample(s * 1000, &mut rng);
        }
        assert!(last[0].1 > 100.0, "HR {}", last[0].1);
        assert!(last[2].1 < 93.0, "SpO2 {}", last[2].1);
    }
}
