//! Plausible, varying vital signs for one simulated patient.
//!
//! Each vital sign is its patient's baseline plus slow random variation (a
//! mean-reverting random walk, so values wander but stay near the baseline)
//! plus, for a deteriorating patient, episodes of a drift towards the
//! picture of sepsis: faster heart and breathing, falling saturation and
//! blood pressure, fever.
//!
//! An episode is what a ward sees: the patient worsens until someone acts.
//! Acting is either an alarm of theirs acknowledged (the demo passes that on
//! through [`Treatment`]) or, if nobody does, the escalation reaching the
//! outreach team after a while ([`RESPONSE_S`]); untreated until then, the
//! patient keeps worsening towards the full picture. Once treated the drift
//! ebbs away over minutes ([`RECOVERY_TAU_S`]), and the patient stays well
//! for hours ([`RELAPSE_S`]) before the next episode.

use medmesh_model::{TimestampMs, VitalSign};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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
    /// Episodes of deterioration: the first from `onset_s` after the start,
    /// worsening to the full picture over `ramp_s` seconds unless treated
    /// first; later ones [`RELAPSE_S`] after recovering.
    Deteriorating {
        onset_s: f64,
        ramp_s: f64,
    },
}

/// Seconds from an episode's onset until the ward acts on it when nobody
/// acknowledged an alarm: the escalation ladder's reach to the outreach team
/// and their arrival (a product choice for the demo, not a clinical figure).
pub const RESPONSE_S: std::ops::Range<f64> = 900.0..1500.0;
/// Time constant (seconds) of the recovery once treated: about 95 % of the
/// drift is gone after three of them.
pub const RECOVERY_TAU_S: std::ops::Range<f64> = 150.0..300.0;
/// Seconds from recovering until the next episode.
pub const RELAPSE_S: std::ops::Range<f64> = 10_800.0..25_200.0;

/// Change at full deterioration, per vital sign in [`MONITORED`] order.
const SEPSIS_SHIFT: [f64; 6] = [45.0, 14.0, -9.0, 2.3, -38.0, -22.0];
/// Spread of the random walk per vital sign.
const VARIABILITY: [f64; 6] = [3.0, 1.2, 0.8, 0.12, 5.0, 3.5];
/// Mean reversion rate per second of the random walk.
const REVERSION: f64 = 0.05;

/// A request to treat a patient, shared between whoever acts (the demo, on
/// an acknowledgement) and the patient's physiology: the time (ms) of the
/// latest request, 0 for none. An episode is treated by a request made
/// after it began.
#[derive(Debug, Clone, Default)]
pub struct Treatment(Arc<AtomicI64>);

impl Treatment {
    /// Someone acted at `at_ms` (acknowledged one of the patient's alarms).
    pub fn order(&self, at_ms: TimestampMs) {
        self.0.fetch_max(at_ms, Ordering::Relaxed);
    }

    fn ordered_since(&self, since_ms: TimestampMs) -> bool {
        self.0.load(Ordering::Relaxed) >= since_ms
    }
}

/// Where a deteriorating patient is in their current episode.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Episode {
    /// Well until `onset_ms`.
    Quiet { onset_ms: TimestampMs },
    /// Worsening since `since_ms`; acted on at `respond_ms` at the latest.
    Worsening {
        since_ms: TimestampMs,
        ramp_s: f64,
        respond_ms: TimestampMs,
    },
    /// Treated at `since_ms`, when the drift stood at `from`.
    Recovering {
        since_ms: TimestampMs,
        from: f64,
        tau_s: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Physiology {
    baseline: [f64; 6],
    walk: [f64; 6],
    trajectory: Trajectory,
    treatment: Treatment,
    episode: Option<Episode>,
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
            treatment: Treatment::default(),
            episode: None,
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

    /// The same patient breathing more calmly: at most `max` breaths a
    /// minute at rest (a patient already on oxygen scores 2 NEWS2 points for
    /// it, so ordinary variation of a fast breather would add up to 5).
    pub fn with_respiration_at_most(mut self, max: f64) -> Physiology {
        self.baseline[1] = self.baseline[1].min(max);
        self
    }

    pub fn trajectory(&self) -> Trajectory {
        self.trajectory
    }

    /// The handle through which the patient is treated (shared by clones).
    pub fn treatment(&self) -> Treatment {
        self.treatment.clone()
    }

    /// How far along the picture of sepsis the patient is at `now_ms`, 0 to
    /// 1, moving the episode on (onset, response, recovery, relapse).
    fn drift(&mut self, start: TimestampMs, now_ms: TimestampMs, rng: &mut impl Rng) -> f64 {
        let Trajectory::Deteriorating { onset_s, ramp_s } = self.trajectory else {
            return 0.0;
        };
        let secs = |s: f64| (s * 1000.0) as TimestampMs;
        let mut episode = *self.episode.get_or_insert(Episode::Quiet {
            onset_ms: start + secs(onset_s),
        });
        let level = loop {
            match episode {
                Episode::Quiet { onset_ms } if now_ms >= onset_ms => {
                    episode = Episode::Worsening {
                        since_ms: onset_ms,
                        ramp_s,
                        respond_ms: onset_ms + secs(rng.random_range(RESPONSE_S)),
                    };
                }
                Episode::Quiet { .. } => break 0.0,
                Episode::Worsening {
                    since_ms,
                    ramp_s,
                    respond_ms,
                } => {
                    // Smoothstep: slow to start and to peak, quickest
                    // through the middle, where limits are crossed.
                    let x = ((now_ms - since_ms) as f64 / 1000.0 / ramp_s).clamp(0.0, 1.0);
                    let level = x * x * (3.0 - 2.0 * x);
                    if now_ms >= respond_ms || self.treatment.ordered_since(since_ms) {
                        episode = Episode::Recovering {
                            since_ms: now_ms,
                            from: level,
                            tau_s: rng.random_range(RECOVERY_TAU_S),
                        };
                        continue;
                    }
                    break level;
                }
                Episode::Recovering {
                    since_ms,
                    from,
                    tau_s,
                } => {
                    let level = from * (-((now_ms - since_ms) as f64) / 1000.0 / tau_s).exp();
                    if level < 0.01 {
                        episode = Episode::Quiet {
                            onset_ms: now_ms + secs(rng.random_range(RELAPSE_S)),
                        };
                        continue;
                    }
                    break level;
                }
            }
        };
        self.episode = Some(episode);
        level
    }

    /// The readings at `now_ms`, rounded as a monitor displays them.
    pub fn sample(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> [(VitalSign, f64); 6] {
        let start = *self.started_ms.get_or_insert(now_ms);
        let dt = self
            .last_ms
            .map_or(1.0, |l| ((now_ms - l) as f64 / 1000.0).clamp(0.0, 60.0));
        self.last_ms = Some(now_ms);
        let progress = self.drift(start, now_ms, rng);
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

    /// Heart rate over `secs` seconds from `from_s`, one reading a second.
    fn heart_rates(p: &mut Physiology, rng: &mut SmallRng, from_s: i64, secs: i64) -> Vec<f64> {
        (from_s..from_s + secs)
            .map(|s| p.sample(s * 1000, rng)[0].1)
            .collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn a_treated_episode_recovers_and_an_untreated_one_worsens_until_the_ward_responds() {
        let episode = Trajectory::Deteriorating {
            onset_s: 60.0,
            ramp_s: 600.0,
        };
        let mut rng = SmallRng::seed_from_u64(11);
        let mut treated = Physiology::new(&mut rng, episode);
        let mut untreated = treated.clone();
        untreated.treatment = Treatment::default();
        let baseline = mean(&heart_rates(&mut treated.clone(), &mut rng, 0, 60));
        // Five minutes into the episode both are worse; one has an alarm
        // acknowledged then.
        let t = heart_rates(&mut treated, &mut rng, 0, 360);
        let u = heart_rates(&mut untreated, &mut rng, 0, 360);
        assert!(mean(&t[330..]) > baseline + 12.0, "{baseline} {t:?}");
        assert!(mean(&u[330..]) > baseline + 12.0, "{baseline} {u:?}");
        treated.treatment().order(360_000);
        // Fifteen minutes later the treated patient is back near baseline;
        // the untreated one has kept worsening to the full picture.
        let t = heart_rates(&mut treated, &mut rng, 360, 900);
        let u = heart_rates(&mut untreated, &mut rng, 360, 480);
        assert!(mean(&t[840..]) < baseline + 6.0, "{baseline} {t:?}");
        assert!(mean(&u[420..]) > baseline + 38.0, "{baseline} {u:?}");
        // Nobody acknowledged: the ward responds within RESPONSE_S of the
        // onset, and the patient recovers from there.
        let end = (60.0 + RESPONSE_S.end) as i64 + 3 * RECOVERY_TAU_S.end as i64;
        let u = heart_rates(&mut untreated, &mut rng, 840, end - 840 + 120);
        assert!(
            mean(&u[u.len() - 120..]) < baseline + 6.0,
            "{baseline} {u:?}"
        );
    }

    #[test]
    fn episodes_come_back_hours_later() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut p = Physiology::new(
            &mut rng,
            Trajectory::Deteriorating {
                onset_s: 0.0,
                ramp_s: 300.0,
            },
        );
        // Twelve hours, a reading every 10 s; count the onsets of tachycardia
        // (drift past 60 % of the full picture).
        let mut onsets = 0;
        let mut sick = false;
        for s in (0..12 * 3600).step_by(10) {
            p.sample(s * 1000, &mut rng);
            let now_sick = matches!(p.episode, Some(Episode::Worsening { since_ms, ramp_s, .. })
                if (s * 1000 - since_ms) as f64 / 1000.0 / ramp_s > 0.6);
            onsets += usize::from(now_sick && !sick);
            sick = now_sick;
        }
        // The first at once, then one every 3-7 hours plus the episode.
        assert!((2..=4).contains(&onsets), "{onsets}");
    }
}
