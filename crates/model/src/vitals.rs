//! The vital signs medmesh understands, with their LOINC codes and UCUM units.
//!
//! Codes follow the HL7 FHIR R4 vital-signs profile
//! (<http://hl7.org/fhir/R4/observation-vitalsigns.html>), which names the
//! LOINC code and UCUM unit for each vital sign. Devices may name a
//! measurement by its LOINC code or by one of the aliases below, and may spell
//! the unit the SenML way (RFC 8428 section 12.1, e.g. `beat/min`) or the UCUM
//! way (`/min`).

use serde::{Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VitalSign {
    HeartRate,
    RespiratoryRate,
    OxygenSaturation,
    BodyTemperature,
    SystolicBloodPressure,
    DiastolicBloodPressure,
    BodyWeight,
}

/// A value arrived in a unit that is not the vital sign's unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit {got:?} is not accepted for {vital}; send {expected:?}")]
pub struct UnitError {
    pub vital: &'static str,
    pub got: String,
    pub expected: &'static str,
}

struct Spec {
    vital: VitalSign,
    loinc: &'static str,
    display: &'static str,
    /// Short name used in SenML records and the REST API.
    key: &'static str,
    aliases: &'static [&'static str],
    ucum: &'static str,
    /// Other spellings of `ucum` that devices send (SenML registry names).
    unit_spellings: &'static [&'static str],
    /// Values outside this range cannot come from a living patient or a
    /// working sensor; they are rejected rather than stored as readings.
    plausible: (f64, f64),
}

const SPECS: &[Spec] = &[
    Spec {
        vital: VitalSign::HeartRate,
        loinc: "8867-4",
        display: "Heart rate",
        key: "heart_rate",
        aliases: &["hr", "pulse"],
        ucum: "/min",
        unit_spellings: &["beat/min", "beats/min", "1/min", "{beats}/min", "bpm"],
        plausible: (0.0, 350.0),
    },
    Spec {
        vital: VitalSign::RespiratoryRate,
        loinc: "9279-1",
        display: "Respiratory rate",
        key: "respiratory_rate",
        aliases: &["rr", "resp_rate"],
        ucum: "/min",
        unit_spellings: &["breaths/min", "1/min", "{breaths}/min"],
        plausible: (0.0, 150.0),
    },
    Spec {
        vital: VitalSign::OxygenSaturation,
        // 59408-5 is "Oxygen saturation in Arterial blood by Pulse oximetry",
        // the code the FHIR vital-signs profile uses for SpO2. 2708-6
        // (arterial oxygen saturation) is accepted as an alias.
        loinc: "59408-5",
        display: "Oxygen saturation (SpO2)",
        key: "spo2",
        aliases: &["2708-6", "oxygen_saturation"],
        ucum: "%",
        unit_spellings: &[],
        plausible: (0.0, 100.0),
    },
    Spec {
        vital: VitalSign::BodyTemperature,
        loinc: "8310-5",
        display: "Body temperature",
        key: "body_temperature",
        aliases: &["temp", "temperature"],
        ucum: "Cel",
        unit_spellings: &[],
        plausible: (10.0, 50.0),
    },
    Spec {
        vital: VitalSign::SystolicBloodPressure,
        loinc: "8480-6",
        display: "Systolic blood pressure",
        key: "systolic_bp",
        aliases: &["sbp", "systolic"],
        ucum: "mm[Hg]",
        unit_spellings: &["mmHg"],
        plausible: (0.0, 400.0),
    },
    Spec {
        vital: VitalSign::DiastolicBloodPressure,
        loinc: "8462-4",
        display: "Diastolic blood pressure",
        key: "diastolic_bp",
        aliases: &["dbp", "diastolic"],
        ucum: "mm[Hg]",
        unit_spellings: &["mmHg"],
        plausible: (0.0, 300.0),
    },
    Spec {
        vital: VitalSign::BodyWeight,
        loinc: "29463-7",
        display: "Body weight",
        key: "body_weight",
        aliases: &["weight"],
        ucum: "kg",
        unit_spellings: &[],
        plausible: (0.2, 700.0),
    },
];

impl VitalSign {
    /// Every vital sign, in display order.
    pub const ALL: [VitalSign; 7] = [
        VitalSign::HeartRate,
        VitalSign::RespiratoryRate,
        VitalSign::OxygenSaturation,
        VitalSign::BodyTemperature,
        VitalSign::SystolicBloodPressure,
        VitalSign::DiastolicBloodPressure,
        VitalSign::BodyWeight,
    ];

    fn spec(self) -> &'static Spec {
        // SPECS is ordered like the enum; the test below keeps it so.
        &SPECS[self as usize]
    }

    pub fn loinc(self) -> &'static str {
        self.spec().loinc
    }

    pub fn display(self) -> &'static str {
        self.spec().display
    }

    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// The canonical UCUM unit values are stored in.
    pub fn ucum(self) -> &'static str {
        self.spec().ucum
    }

    pub fn plausible_range(self) -> (f64, f64) {
        self.spec().plausible
    }

    /// Finds a vital sign by LOINC code, key or alias (case-insensitive).
    pub fn lookup(name: &str) -> Option<VitalSign> {
        SPECS
            .iter()
            .find(|s| {
                s.loinc == name
                    || s.key.eq_ignore_ascii_case(name)
                    || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .map(|s| s.vital)
    }

    /// Checks that `unit` (UCUM or a known SenML spelling) is this vital
    /// sign's unit. Conversion between different units is not done here.
    pub fn accept_unit(self, unit: &str) -> Result<(), UnitError> {
        let spec = self.spec();
        if unit == spec.ucum || spec.unit_spellings.contains(&unit) {
            Ok(())
        } else {
            Err(UnitError {
                vital: spec.key,
                got: unit.to_string(),
                expected: spec.ucum,
            })
        }
    }
}

impl fmt::Display for VitalSign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Serialised as its key (`"heart_rate"`); the API adds code and unit beside it.
impl Serialize for VitalSign {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table_is_in_enum_order() {
        for (i, v) in VitalSign::ALL.iter().enumerate() {
            assert_eq!(SPECS[i].vital, *v);
        }
        assert_eq!(SPECS.len(), VitalSign::ALL.len());
    }

    #[test]
    fn looks_up_by_loinc_key_and_alias() {
        assert_eq!(VitalSign::lookup("8867-4"), Some(VitalSign::HeartRate));
        assert_eq!(VitalSign::lookup("heart_rate"), Some(VitalSign::HeartRate));
        assert_eq!(VitalSign::lookup("SpO2"), Some(VitalSign::OxygenSaturation));
        assert_eq!(
            VitalSign::lookup("2708-6"),
            Some(VitalSign::OxygenSaturation)
        );
        assert_eq!(VitalSign::lookup("glucose"), None);
    }

    #[test]
    fn fhir_vital_signs_codes_and_units() {
        assert_eq!(VitalSign::RespiratoryRate.loinc(), "9279-1");
        assert_eq!(VitalSign::BodyTemperature.ucum(), "Cel");
        assert_eq!(VitalSign::SystolicBloodPressure.ucum(), "mm[Hg]");
    }

    #[test]
    fn accepts_senml_spellings_and_rejects_other_units() {
        assert!(VitalSign::HeartRate.accept_unit("beat/min").is_ok());
        assert!(VitalSign::SystolicBloodPressure.accept_unit("mmHg").is_ok());
        let err = VitalSign::BodyTemperature.accept_unit("degF").unwrap_err();
        assert_eq!(err.expected, "Cel");
        assert!(err.to_string().contains("degF"));
    }
}
