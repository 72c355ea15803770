//! The medmesh simulator: a fleet of simulated patients and their bedside
//! monitors, publishing SenML over MQTT like real devices.
//!
//! It drives both `medmesh demo` (a ward on the built-in listener) and
//! `medmesh simulate` (a load generator against any MQTT broker).

mod load;
mod physiology;
mod transport;
mod ward;

pub use load::{LoadConfig, LoadStats, run_load};
pub use physiology::{Physiology, Trajectory};
pub use transport::Protocol;
pub use ward::{SimPatient, demo_ward};
