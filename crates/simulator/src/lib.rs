//! The medmesh simulator: a fleet of simulated patients and their bedside
//! monitors, publishing SenML over MQTT like real devices.
//!
//! It drives both `medmesh demo` (a ward on the built-in listener, with
//! battery reports, oxygen, falls and alarm profiles: [`clinical_demo_ward`])
//! and `medmesh simulate` (a load generator against any MQTT broker, bedside
//! monitors only: [`demo_ward`], as the benchmarks use).

mod load;
mod physiology;
mod reports;
mod transport;
mod ward;

pub use load::{LoadConfig, LoadStats, run_load};
pub use physiology::{Physiology, RECOVERY_TAU_S, RELAPSE_S, RESPONSE_S, Trajectory, Treatment};
pub use reports::{Battery, FallDetector};
pub use transport::Protocol;
pub use ward::{Cycle, Extras, SimPatient, clinical_demo_ward, demo_ward};
