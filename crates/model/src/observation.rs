//! Observations: one measured value of one vital sign at one instant.

use crate::{UnitError, VitalSign};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC. Millisecond resolution covers
/// every numeric vital sign medmesh stores (waveforms are out of scope).
pub type TimestampMs = i64;

/// The current wall-clock time in [`TimestampMs`].
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A validated measurement: the value is finite, plausible, and expressed in
/// the vital sign's canonical UCUM unit ([`VitalSign::ucum`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observation {
    pub vital: VitalSign,
    pub value: f64,
    pub time_ms: TimestampMs,
}

/// Why a measured value cannot become an [`Observation`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObservationError {
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("{vital} value is not a finite number")]
    NotFinite { vital: VitalSign },
    /// A value a device writes when it has none (probe off, no pulse
    /// signal): a technical condition, never a clinical reading.
    #[error(
        "{vital} 0 {unit} is the monitor's \"not measured\" marker (probe off or no signal): no reading"
    )]
    NotMeasured {
        vital: VitalSign,
        unit: &'static str,
    },
    #[error("{vital} value {value} {unit} is outside the plausible range {lo}..{hi} {unit}")]
    Implausible {
        vital: VitalSign,
        value: f64,
        unit: &'static str,
        lo: f64,
        hi: f64,
    },
}

impl Observation {
    /// Validates a measured value: converts it from `unit` to the vital
    /// sign's UCUM unit, then checks that it is finite and plausible (judged
    /// in the canonical unit, hence after conversion). Every decoder builds
    /// observations through here, so every source applies the same rules.
    pub fn measured(
        vital: VitalSign,
        value: f64,
        unit: &str,
        time_ms: TimestampMs,
    ) -> Result<Observation, ObservationError> {
        if !value.is_finite() {
            return Err(ObservationError::NotFinite { vital });
        }
        let value = vital.to_canonical(value, unit)?;
        // Bedside-monitor exports (and many pulse oximeters) send SpO2 0
        // when the probe is off; no patient has a saturation of 0 on a
        // working probe.
        if value == 0.0 && vital == VitalSign::OxygenSaturation {
            return Err(ObservationError::NotMeasured {
                vital,
                unit: vital.ucum(),
            });
        }
        let (lo, hi) = vital.plausible_range();
        if !(lo..=hi).contains(&value) {
            return Err(ObservationError::Implausible {
                vital,
                value,
                unit: vital.ucum(),
                lo,
                hi,
            });
        }
        Ok(Observation {
            vital,
            value,
            time_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_then_checks_plausibility() {
        let o = Observation::measured(VitalSign::BodyTemperature, 98.6, "[degF]", 5).unwrap();
        assert!((o.value - 37.0).abs() < 1e-9);
        // 98.6 would be implausible in Cel; it is fine in degF.
        let err = Observation::measured(VitalSign::BodyTemperature, 98.6, "Cel", 5).unwrap_err();
        assert!(matches!(err, ObservationError::Implausible { .. }), "{err}");
        assert!(err.to_string().contains("plausible range"));
        // SpO2 0 is "not measured"; 0.95 under "%" is a ratio sent as percent.
        let err = Observation::measured(VitalSign::OxygenSaturation, 0.0, "%", 5).unwrap_err();
        assert!(matches!(err, ObservationError::NotMeasured { .. }), "{err}");
        let err = Observation::measured(VitalSign::OxygenSaturation, 0.95, "%", 5).unwrap_err();
        assert!(matches!(err, ObservationError::Implausible { .. }), "{err}");
        let ok = Observation::measured(VitalSign::OxygenSaturation, 0.95, "/", 5).unwrap();
        assert!((ok.value - 95.0).abs() < 1e-9);
        let err = Observation::measured(VitalSign::HeartRate, f64::NAN, "/min", 5).unwrap_err();
        assert_eq!(
            err,
            ObservationError::NotFinite {
                vital: VitalSign::HeartRate
            }
        );
    }
}
