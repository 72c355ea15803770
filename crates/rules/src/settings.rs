//! A patient's alarm settings (profile, threshold overrides, SpO2 scale),
//! the `[rules]` configuration, and the effective rules that result.

use crate::news2::Spo2Scale;
use crate::observations_due::DueConfig;
use crate::profiles::{self, Limits, Profile, Trend};
use medmesh_model::{Priority, VitalSign};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default clear delay (`clear_after_s`): long enough to span the
/// seconds-long dips that made most of a ward's alarms (motion, a probe
/// moving), short enough that a recovered patient's alarm goes within a
/// minute. Product choice; configurable globally and per profile.
pub const DEFAULT_CLEAR_AFTER_S: u64 = 30;
/// The longest clear delay accepted.
pub const MAX_CLEAR_AFTER_S: u64 = 3600;

/// The `[rules]` table of the server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Profile of patients who were given no alarm settings; none: such
    /// patients get NEWS2, device, battery and fall alarms only.
    pub default_profile: Option<String>,
    /// A device reporting less battery than this (percent) raises a
    /// low-priority alarm for its patient.
    pub battery_low_percent: f64,
    /// How often (seconds) timer rules (stale data, observations due) are
    /// checked.
    pub timer_interval_s: u64,
    /// How long (seconds) an alarm's condition must stay clear before the
    /// alarm resolves by itself, for profiles that set none: a reading
    /// dipping in and out of range keeps one alarm instead of flapping.
    /// 0 resolves at the first clear reading.
    pub clear_after_s: u64,
    /// Profiles besides (or replacing) the built-in ones, by name.
    pub profiles: BTreeMap<String, Profile>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            default_profile: None,
            battery_low_percent: 20.0,
            timer_interval_s: 10,
            clear_after_s: DEFAULT_CLEAR_AFTER_S,
            profiles: BTreeMap::new(),
        }
    }
}

/// Per-patient changes to one vital sign's limits; absent fields keep the
/// profile's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sustained_s: Option<u64>,
}

fn scale_1() -> u8 {
    1
}

/// What a clinician set for one patient (`PUT .../alarm-settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSettings {
    /// A profile name; none: only the overrides below.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub thresholds: BTreeMap<VitalSign, LimitsOverride>,
    /// NEWS2 SpO2 scale, 1 or 2. Scale 2 is for hypercapnic respiratory
    /// failure and, per RCP NEWS2 2017, a decision for a competent clinical
    /// decision maker, recorded in the notes: never a profile default.
    #[serde(default = "scale_1")]
    pub spo2_scale: u8,
}

/// The rules in force for a patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    pub profile: Option<String>,
    pub thresholds: BTreeMap<VitalSign, Limits>,
    pub trends: Vec<Trend>,
    pub stale_after_s: Option<u64>,
    /// How old a NEWS2 parameter's reading may be and still count (seconds).
    pub news2_max_age_s: u64,
    /// The profile's clear delay (seconds); `None`: `[rules] clear_after_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_after_s: Option<u64>,
    /// The observations-due timer's intervals; `None`: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observations_due: Option<DueConfig>,
    #[serde(serialize_with = "scale_number")]
    pub spo2_scale: Spo2Scale,
}

fn scale_number<S: serde::Serializer>(scale: &Spo2Scale, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(match scale {
        Spo2Scale::Scale1 => 1,
        Spo2Scale::Scale2 => 2,
    })
}

/// Every profile known: the built-in ones and those of the configuration.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub profiles: BTreeMap<String, Profile>,
}

impl Catalogue {
    /// The built-in profiles plus the configured ones (a configured profile
    /// of the same name replaces the built-in one), all validated.
    pub fn new(config: &RulesConfig) -> Result<Catalogue, String> {
        let mut profiles = profiles::builtin();
        for (name, p) in &config.profiles {
            p.validate(name)
                .map_err(|e| format!("rules.profiles.{name}: {e}"))?;
            profiles.insert(name.clone(), p.clone());
        }
        if let Some(d) = &config.default_profile
            && !profiles.contains_key(d)
        {
            return Err(format!(
                "rules.default_profile {d:?} is not a profile; use one of {}",
                profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !(0.0..=100.0).contains(&config.battery_low_percent) {
            return Err("rules.battery_low_percent must be from 0 to 100".into());
        }
        if config.timer_interval_s == 0 {
            return Err("rules.timer_interval_s must be at least 1".into());
        }
        if config.clear_after_s > MAX_CLEAR_AFTER_S {
            return Err(format!(
                "rules.clear_after_s must be from 0 to {MAX_CLEAR_AFTER_S} seconds"
            ));
        }
        Ok(Catalogue { profiles })
    }

    /// The rules a patient's settings put in force, or why they cannot.
    pub fn resolve(&self, settings: &AlarmSettings) -> Result<Effective, String> {
        let base = match &settings.profile {
            Some(name) => self.profiles.get(name).cloned().ok_or_else(|| {
                format!(
                    "no alarm profile {name:?}; use one of {}",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?,
            None => Profile::default(),
        };
        let spo2_scale = match settings.spo2_scale {
            1 => Spo2Scale::Scale1,
            2 => Spo2Scale::Scale2,
            n => return Err(format!("spo2_scale {n}: NEWS2 has scales 1 and 2")),
        };
        let mut thresholds = base.thresholds;
        for (vital, o) in &settings.thresholds {
            let limits = thresholds.entry(*vital).or_insert(Limits {
                low: None,
                high: None,
                priority: Priority::Medium,
                sustained_s: 0,
            });
            limits.low = o.low.or(limits.low);
            limits.high = o.high.or(limits.high);
            limits.priority = o.priority.unwrap_or(limits.priority);
            limits.sustained_s = o.sustained_s.unwrap_or(limits.sustained_s);
            limits.validate(&format!("thresholds.{vital}"))?;
        }
        Ok(Effective {
            profile: settings.profile.clone(),
            thresholds,
            trends: base.trends,
            stale_after_s: base.stale_after_s,
            news2_max_age_s: base
                .news2_max_age_s
                .unwrap_or(crate::news2::DEFAULT_MAX_AGE_S),
            clear_after_s: base.clear_after_s,
            observations_due: base.observations_due.filter(|d| d.enabled),
            spo2_scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> AlarmSettings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let c = Catalogue::new(&RulesConfig::default()).unwrap();
        let e = c
            .resolve(&settings(
                r#"{"profile": "home-copd", "thresholds": {"spo2": {"low": 86}, "heart_rate": {"priority": "high"}}, "spo2_scale": 2}"#,
            ))
            .unwrap();
        assert_eq!(e.spo2_scale, Spo2Scale::Scale2);
        let spo2 = &e.thresholds[&VitalSign::OxygenSaturation];
        assert_eq!((spo2.low, spo2.priority), (Some(86.0), Priority::Medium));
        let hr = &e.thresholds[&VitalSign::HeartRate];
        assert_eq!(
            (hr.low, hr.high, hr.priority),
            (Some(40.0), Some(120.0), Priority::High)
        );
        assert_eq!(e.stale_after_s, Some(86_400));
        assert_eq!(e.news2_max_age_s, 86_400);
        // No profile: the overrides alone.
        let e = c
            .resolve(&settings(r#"{"thresholds": {"spo2": {"low": 90}}}"#))
            .unwrap();
        assert_eq!(e.thresholds.len(), 1);
        assert_eq!(e.spo2_scale, Spo2Scale::Scale1);
        assert_eq!(e.news2_max_age_s, 4 * 3600);
    }

    #[test]
    fn bad_settings_say_why() {
        let c = Catalogue::new(&RulesConfig::default()).unwrap();
        let err = c.resolve(&settings(r#"{"profile": "icu"}"#)).unwrap_err();
        assert!(err.contains("adult-ward"), "{err}");
        let err = c.resolve(&settings(r#"{"spo2_scale": 3}"#)).unwrap_err();
        assert!(err.contains("scales 1 and 2"));
        let err = c
            .resolve(&settings(
                r#"{"profile": "adult-ward", "thresholds": {"heart_rate": {"low": 120}}}"#,
            ))
            .unwrap_err();
        assert!(err.contains("below high"), "{err}");
        assert!(serde_json::from_str::<AlarmSettings>(r#"{"profil": "x"}"#).is_err());
    }

    #[test]
    fn configured_profiles_join_and_replace_builtin_ones() {
        let config: RulesConfig = toml::from_str(
            "default_profile = \"step-down\"\n[profiles.step-down.thresholds.heart_rate]\nhigh = 100\n[profiles.adult-ward]\nstale_after_s = 60\n",
        )
        .unwrap();
        let c = Catalogue::new(&config).unwrap();
        assert!(c.profiles.contains_key("step-down"));
        assert!(c.profiles["adult-ward"].thresholds.is_empty());
        let bad: RulesConfig = toml::from_str("default_profile = \"nope\"\n").unwrap();
        assert!(Catalogue::new(&bad).unwrap_err().contains("nope"));
        let bad: RulesConfig =
            toml::from_str("[profiles.x.thresholds.spo2]\nlow = 95\nhigh = 90\n").unwrap();
        assert!(
            Catalogue::new(&bad)
                .unwrap_err()
                .contains("rules.profiles.x")
        );
    }
}
