//! Clinical rules, evaluated on every accepted observation.
//!
//! - [`news2`]: the National Early Warning Score 2 of the Royal College of
//!   Physicians, per parameter and aggregated.
//! - [`AlarmBoard`]: turns rule results into alarms, keeping one alarm per
//!   condition (a repeat updates it, a return to normal resolves it).
//! - [`escalation`]: when an unacknowledged alarm climbs its escalation chain.

mod board;
pub mod escalation;
pub mod news2;

pub use board::{
    AlarmBoard, AlarmChange, BoardError, RULE_NEWS2_AGGREGATE, RULE_NEWS2_RED, SYSTEM,
};
