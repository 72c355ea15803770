//! Clinical rules, evaluated on every accepted observation and on timers.
//!
//! - [`news2`]: the National Early Warning Score 2 of the Royal College of
//!   Physicians, per parameter and aggregated (SpO2 scales 1 and 2, air or
//!   oxygen).
//! - [`profiles`]: named alarm profiles (limits, trends, stale-data delay);
//!   [`settings`]: a patient's profile and overrides, the `[rules]` config.
//! - [`thresholds`] (limits with sustained-for delays), [`trend`] (rate of
//!   change), [`stale`] (no reading for too long), [`observations_due`] (no
//!   complete set for as long as the patient's NEWS2 allows), [`device`]
//!   (low battery, falls): pure judgements.
//! - [`RuleEngine`]: the per-patient state those rules keep, producing
//!   [`Finding`]s.
//! - [`AlarmBoard`]: turns rule results into alarms, keeping one alarm per
//!   condition (a repeat updates it, a return to normal resolves it).
//! - [`escalation`]: when an unacknowledged alarm climbs its escalation chain.

mod board;
pub mod device;
mod engine;
pub mod escalation;
mod finding;
pub mod news2;
pub mod observations_due;
pub mod profiles;
pub mod settings;
pub mod stale;
pub mod thresholds;
pub mod trend;

pub use board::{
    AlarmBoard, AlarmChange, BoardError, RULE_BATTERY_LOW, RULE_DEVICE_CLOCK, RULE_DEVICE_OFFLINE,
    RULE_FALL, RULE_MONITORING_STOPPED, RULE_NEWS2_AGGREGATE, RULE_NEWS2_RED,
    RULE_OBSERVATIONS_DUE, RULE_RATE_OF_CHANGE, RULE_STALE_DATA, RULE_THRESHOLD, SYSTEM,
};
pub use engine::{DueWatch, RuleEngine};
pub use finding::{Finding, Verdict, Worse};
pub use settings::{AlarmSettings, DEFAULT_CLEAR_AFTER_S, Effective, RulesConfig};
