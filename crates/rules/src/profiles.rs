//! Alarm profiles: named sets of limits, trend rules and a stale-data delay
//! that a patient is given (see `settings`).
//!
//! Limits are in the vital sign's canonical UCUM unit (`VitalSign::ucum`). A
//! value strictly below `low` or strictly above `high` is out of range.
//!
//! Where the built-in numbers come from:
//!
//! - `adult-ward`: the limits sit where RCP NEWS2 (2017) Chart 1 starts
//!   scoring a parameter 2 or more on SpO2 scale 1 (respiration at most 8
//!   or at least 21/min, SpO2 at most 93 %, systolic at most 100 or at
//!   least 220 mmHg, pulse at most 40 or at least 111/min, temperature at
//!   most 35.0 or at least 39.1 Cel), so a parameter drifting
//!   towards a red score is flagged before the aggregate moves. The 60 s
//!   sustained-for delay and 15 min stale-data delay are product defaults.
//! - `paediatric`: product defaults, not a clinical standard, for a
//!   school-age child (5-12 years), set around the APLS (Advanced Paediatric
//!   Life Support) normal ranges for that age (pulse 80-120/min, respiration
//!   20-25/min, systolic 90-110 mmHg) with room for sleep and activity.
//!   Paediatric ranges change steeply with age: give younger children
//!   per-patient thresholds or a profile of their own.
//! - `home-copd`: the SpO2 low limit of 88 % is the bottom of the 88-92 %
//!   target range the BTS guideline for oxygen use in adults (O'Driscoll et
//!   al., Thorax 2017) sets for patients at risk of hypercapnic respiratory
//!   failure. The other limits and the 24 h stale-data delay (one reading a
//!   day expected) are product defaults.
//! - `home-heart-failure`: the weight rule (a gain of more than 2 kg within
//!   3 days) is the warning sign the ESC 2021 heart-failure guideline
//!   (McDonagh et al., Eur Heart J 2021) teaches patients to act on; the
//!   blood-pressure and pulse limits and the 24 h stale delay are product
//!   defaults.
//! - `adult-ward` raises "observations overdue" on RCP NEWS2 (2017) Chart 4's
//!   frequency of monitoring (`observations_due`, intervals sourced there).
//!   The other built-in profiles leave it off: RCP NEWS2 (2017) is not meant
//!   for children under 16, whose paediatric scores have their own charts,
//!   and home patients send a reading a day by design (their stale-data
//!   delay watches that).
//! - NEWS2 freshness: a parameter counts in the aggregate while its reading
//!   is at most 4 h old (`news2::DEFAULT_MAX_AGE_S`, sourced there); the
//!   home profiles expect a reading a day, so they allow 24 h, the same as
//!   their stale-data delay (a product default: beyond it the stale-data
//!   alarm is raised anyway).

use crate::observations_due::DueConfig;
use medmesh_model::{Priority, VitalSign};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest sustained-for delay (a day): longer is a trend, not a threshold.
pub const MAX_SUSTAINED_S: u64 = 86_400;
/// Longest trend window (30 days), which also bounds the memory it takes.
pub const MAX_WINDOW_S: u64 = 30 * 86_400;

fn medium() -> Priority {
    Priority::Medium
}

/// Limits on one vital sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default = "medium")]
    pub priority: Priority,
    /// How long (seconds, judged on the readings' own timestamps) values
    /// must stay out of range before the alarm is raised; 0 raises at once.
    #[serde(default)]
    pub sustained_s: u64,
}

/// A rate-of-change rule: the newest value is more than `rise` above the
/// lowest (or more than `fall` below the highest) value of the last
/// `window_s` seconds of readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trend {
    pub vital: VitalSign,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<f64>,
    pub window_s: u64,
    #[serde(default = "medium")]
    pub priority: Priority,
}

/// A named set of rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    /// Limits per vital-sign key (`[rules.profiles.NAME.thresholds.spo2]`).
    pub thresholds: BTreeMap<VitalSign, Limits>,
    /// Rate-of-change rules (`[[rules.profiles.NAME.trends]]`), at most one
    /// per vital sign.
    pub trends: Vec<Trend>,
    /// No reading from the patient for this long (seconds) raises a
    /// stale-data alarm; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_after_s: Option<u64>,
    /// A NEWS2 parameter's latest reading counts while at most this old
    /// (seconds, by the server clock); absent: `news2::DEFAULT_MAX_AGE_S`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub news2_max_age_s: Option<u64>,
    /// How long (seconds) an alarm's condition must stay clear before it
    /// resolves; absent: `[rules] clear_after_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_after_s: Option<u64>,
    /// The observations-due timer (RCP NEWS2 Chart 4's frequency of
    /// monitoring); absent or `enabled = false`: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observations_due: Option<DueConfig>,
}

impl Limits {
    pub fn validate(&self, what: &str) -> Result<(), String> {
        for (name, v) in [("low", self.low), ("high", self.high)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(format!("{what}: {name} is not a finite number"));
            }
        }
        if let (Some(low), Some(high)) = (self.low, self.high)
            && low >= high
        {
            return Err(format!("{what}: low {low} must be below high {high}"));
        }
        if self.low.is_none() && self.high.is_none() {
            return Err(format!("{what}: give a low or a high limit"));
        }
        if self.sustained_s > MAX_SUSTAINED_S {
            return Err(format!(
                "{what}: sustained_s {} is above the {MAX_SUSTAINED_S} s maximum",
                self.sustained_s
            ));
        }
        Ok(())
    }
}

impl Profile {
    /// Checks limits, trends and delays; `name` goes into the messages.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        for (vital, limits) in &self.thresholds {
            limits.validate(&format!("profile {name}: {vital}"))?;
        }
        for (i, t) in self.trends.iter().enumerate() {
            let what = format!("profile {name}: trend on {}", t.vital);
            if self.trends[..i].iter().any(|o| o.vital == t.vital) {
                return Err(format!("{what}: one trend per vital sign"));
            }
            if t.rise.is_none() && t.fall.is_none() {
                return Err(format!("{what}: give rise or fall"));
            }
            if [t.rise, t.fall]
                .iter()
                .flatten()
                .any(|d| !d.is_finite() || *d <= 0.0)
            {
                return Err(format!("{what}: rise and fall must be positive numbers"));
            }
            if !(1..=MAX_WINDOW_S).contains(&t.window_s) {
                return Err(format!(
                    "{what}: window_s must be from 1 to {MAX_WINDOW_S} seconds"
                ));
            }
        }
        if self.stale_after_s == Some(0) {
            return Err(format!("profile {name}: stale_after_s must be at least 1"));
        }
        if self
            .news2_max_age_s
            .is_some_and(|s| !(60..=MAX_WINDOW_S).contains(&s))
        {
            return Err(format!(
                "profile {name}: news2_max_age_s must be from 60 to {MAX_WINDOW_S} seconds"
            ));
        }
        if self
            .clear_after_s
            .is_some_and(|s| s > crate::settings::MAX_CLEAR_AFTER_S)
        {
            return Err(format!(
                "profile {name}: clear_after_s must be from 0 to {} seconds",
                crate::settings::MAX_CLEAR_AFTER_S
            ));
        }
        if let Some(due) = &self.observations_due {
            due.validate(&format!("profile {name}: observations_due"))?;
        }
        Ok(())
    }
}

fn limits(low: Option<f64>, high: Option<f64>, sustained_s: u64) -> Limits {
    Limits {
        low,
        high,
        priority: Priority::Medium,
        sustained_s,
    }
}

/// The profiles medmesh ships with (sources in the module comment).
pub fn builtin() -> BTreeMap<String, Profile> {
    use VitalSign::*;
    let adult_ward = Profile {
        description: "Adult ward: NEWS2 Chart 1 score-2 boundaries, 60 s sustained".into(),
        thresholds: [
            (RespiratoryRate, limits(Some(9.0), Some(20.0), 60)),
            (OxygenSaturation, limits(Some(94.0), None, 60)),
            (SystolicBloodPressure, limits(Some(101.0), Some(219.0), 60)),
            (HeartRate, limits(Some(41.0), Some(110.0), 60)),
            (BodyTemperature, limits(Some(35.1), Some(39.0), 60)),
        ]
        .into(),
        trends: Vec::new(),
        stale_after_s: Some(15 * 60),
        news2_max_age_s: None,
        clear_after_s: None,
        observations_due: Some(DueConfig::default()),
    };
    let paediatric = Profile {
        description: "School-age child (5-12 years); product defaults around APLS normal ranges"
            .into(),
        thresholds: [
            (RespiratoryRate, limits(Some(15.0), Some(30.0), 60)),
            (OxygenSaturation, limits(Some(92.0), None, 60)),
            (SystolicBloodPressure, limits(Some(80.0), Some(130.0), 60)),
            (HeartRate, limits(Some(60.0), Some(140.0), 60)),
            (BodyTemperature, limits(Some(35.5), Some(38.0), 60)),
        ]
        .into(),
        trends: Vec::new(),
        stale_after_s: Some(15 * 60),
        news2_max_age_s: None,
        clear_after_s: None,
        observations_due: None,
    };
    let home_copd = Profile {
        description: "Home COPD: SpO2 target 88-92 % (BTS 2017), daily readings".into(),
        thresholds: [
            (OxygenSaturation, limits(Some(88.0), None, 0)),
            (RespiratoryRate, limits(None, Some(24.0), 0)),
            (HeartRate, limits(Some(40.0), Some(120.0), 0)),
            (BodyTemperature, limits(None, Some(38.0), 0)),
        ]
        .into(),
        trends: Vec::new(),
        stale_after_s: Some(24 * 3600),
        news2_max_age_s: Some(24 * 3600),
        clear_after_s: None,
        observations_due: None,
    };
    let home_heart_failure = Profile {
        description: "Home heart failure: weight gain > 2 kg in 3 days (ESC 2021), daily readings"
            .into(),
        thresholds: [
            (SystolicBloodPressure, limits(Some(90.0), Some(180.0), 0)),
            (HeartRate, limits(Some(40.0), Some(120.0), 0)),
        ]
        .into(),
        trends: vec![Trend {
            vital: BodyWeight,
            rise: Some(2.0),
            fall: None,
            window_s: 3 * 86_400,
            priority: Priority::Medium,
        }],
        stale_after_s: Some(24 * 3600),
        news2_max_age_s: Some(24 * 3600),
        clear_after_s: None,
        observations_due: None,
    };
    [
        ("adult-ward", adult_ward),
        ("paediatric", paediatric),
        ("home-copd", home_copd),
        ("home-heart-failure", home_heart_failure),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_are_valid_and_cite_their_numbers() {
        let all = builtin();
        for name in [
            "adult-ward",
            "paediatric",
            "home-copd",
            "home-heart-failure",
        ] {
            all[name].validate(name).unwrap();
        }
        // NEWS2 Chart 1: SpO2 93 scores 2 on scale 1, so adult-ward's low limit is 94.
        assert_eq!(
            all["adult-ward"].thresholds[&VitalSign::OxygenSaturation].low,
            Some(94.0)
        );
        // BTS 2017: target 88-92 % in hypercapnic respiratory failure.
        assert_eq!(
            all["home-copd"].thresholds[&VitalSign::OxygenSaturation].low,
            Some(88.0)
        );
        // ESC 2021: more than 2 kg in 3 days.
        let t = &all["home-heart-failure"].trends[0];
        assert_eq!((t.rise, t.window_s), (Some(2.0), 259_200));
    }

    #[test]
    fn profiles_from_toml_are_validated() {
        let p: Profile = toml::from_str(
            "stale_after_s = 600\n[thresholds.heart_rate]\nlow = 50\nhigh = 100\npriority = \"high\"\nsustained_s = 30\n[[trends]]\nvital = \"heart_rate\"\nrise = 30\nwindow_s = 300\n",
        )
        .unwrap();
        p.validate("t").unwrap();
        assert_eq!(p.thresholds[&VitalSign::HeartRate].priority, Priority::High);
        let bad = |text: &str| {
            let p: Profile = toml::from_str(text).unwrap();
            p.validate("t").unwrap_err()
        };
        assert!(bad("[thresholds.spo2]\nlow = 95\nhigh = 90\n").contains("below high"));
        assert!(bad("[thresholds.spo2]\npriority = \"low\"\n").contains("low or a high"));
        assert!(
            bad("[[trends]]\nvital = \"body_weight\"\nwindow_s = 60\n").contains("rise or fall")
        );
        assert!(
            bad("[[trends]]\nvital = \"body_weight\"\nrise = 2\nwindow_s = 0\n")
                .contains("window_s")
        );
        assert!(toml::from_str::<Profile>("[thresholds.pulse_ox]\nlow = 1\n").is_err());
        assert!(toml::from_str::<Profile>("[thresholds.spo2]\nlo = 1\n").is_err());
    }
}
