//! The vital signs medmesh understands, with their LOINC codes and UCUM units.
//!
//! Codes follow the HL7 FHIR R4 vital-signs profile
//! (<http://hl7.org/fhir/R4/observation-vitalsigns.html>), which names the
//! LOINC code and UCUM unit for each vital sign. Devices may name a
//! measurement by its LOINC code or by one of the aliases below, and may spell
//! the unit the SenML way (RFC 8428 section 12.1, e.g. `beat/min`) or the UCUM
//! way (`/min`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
    MeanBloodPressure,
    BloodGlucose,
    OxygenFlow,
    Consciousness,
}

/// A value arrived in a unit medmesh cannot convert to the vital sign's unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit {got:?} is not accepted for {vital}; send {expected:?}{others}")]
pub struct UnitError {
    pub vital: &'static str,
    pub got: String,
    pub expected: &'static str,
    /// ", or one of ..." listing the convertible units, or empty.
    others: String,
}

/// `canonical = value * scale + offset`.
struct Conversion {
    unit: &'static str,
    scale: f64,
    offset: f64,
}

const fn conv(unit: &'static str, scale: f64, offset: f64) -> Conversion {
    Conversion {
        unit,
        scale,
        offset,
    }
}

/// 1 mm[Hg] = 133.322387415 Pa (UCUM), so 1 kPa = 1000 / 133.322387415 mm[Hg].
const MMHG_PER_KPA: f64 = 1000.0 / 133.322_387_415;
/// Glucose, C6H12O6, 180.156 g/mol: 1 mmol/L = 18.0156 mg/dL.
const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.0156;
/// The international avoirdupois pound, exactly (UCUM [lb_av]).
const KG_PER_LB: f64 = 0.453_592_37;

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
    /// Other units converted to `ucum` on arrival.
    conversions: &'static [Conversion],
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
        conversions: &[],
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
        conversions: &[],
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
        // SenML "/" and UCUM "1": a ratio, 0.97 for 97 %.
        conversions: &[conv("/", 100.0, 0.0), conv("1", 100.0, 0.0)],
        // Below 1 % is no saturation a body has: a 0 is a monitor's "not
        // measured" marker (see `Observation::measured`) and 0.95 "%" is a
        // ratio sent under the percent unit. Either, scored, would be a
        // false red NEWS2 parameter.
        plausible: (1.0, 100.0),
    },
    Spec {
        vital: VitalSign::BodyTemperature,
        loinc: "8310-5",
        display: "Body temperature",
        key: "body_temperature",
        aliases: &["temp", "temperature"],
        ucum: "Cel",
        unit_spellings: &[],
        conversions: &[
            conv("[degF]", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            conv("degF", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
            conv("K", 1.0, -273.15),
        ],
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
        conversions: &[conv("kPa", MMHG_PER_KPA, 0.0)],
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
        conversions: &[conv("kPa", MMHG_PER_KPA, 0.0)],
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
        conversions: &[
            conv("[lb_av]", KG_PER_LB, 0.0),
            conv("lb", KG_PER_LB, 0.0),
            conv("g", 0.001, 0.0),
        ],
        plausible: (0.2, 700.0),
    },
    Spec {
        vital: VitalSign::MeanBloodPressure,
        loinc: "8478-0",
        display: "Mean blood pressure",
        key: "mean_bp",
        aliases: &["map", "mean_arterial_pressure"],
        ucum: "mm[Hg]",
        unit_spellings: &["mmHg"],
        conversions: &[conv("kPa", MMHG_PER_KPA, 0.0)],
        plausible: (0.0, 300.0),
    },
    Spec {
        vital: VitalSign::BloodGlucose,
        // 2339-0 is "Glucose [Mass/volume] in Blood"; 15074-8, the
        // moles/volume code, is accepted and converted.
        loinc: "2339-0",
        display: "Blood glucose",
        key: "blood_glucose",
        aliases: &["glucose", "15074-8"],
        ucum: "mg/dL",
        unit_spellings: &[],
        conversions: &[conv("mmol/L", GLUCOSE_MG_DL_PER_MMOL_L, 0.0)],
        plausible: (10.0, 1500.0),
    },
    Spec {
        vital: VitalSign::OxygenFlow,
        // 3151-8 is "Inhaled oxygen flow rate", in L/min: the component the
        // FHIR (US Core) pulse-oximetry profile uses for supplemental oxygen.
        // NEWS2 scores "on oxygen" from it (any flow above 0 L/min); 0 means
        // the patient breathes air.
        loinc: "3151-8",
        display: "Inhaled oxygen flow rate",
        key: "oxygen_flow",
        aliases: &["o2_flow", "inhaled_oxygen_flow"],
        ucum: "L/min",
        unit_spellings: &["l/min"],
        conversions: &[],
        // High-flow nasal therapy reaches 60-70 L/min.
        plausible: (0.0, 80.0),
    },
    Spec {
        vital: VitalSign::Consciousness,
        // 67775-7 is LOINC "Level of responsiveness". RCP NEWS2 (2017)
        // scores it on the ACVPU scale; medmesh stores the level as a
        // number, its position on that scale (see `ACVPU`): 0 alert, 1 new
        // confusion, 2 voice, 3 pain, 4 unresponsive. SenML may send the
        // letter as a string value (`"vs": "C"`).
        loinc: "67775-7",
        display: "Consciousness (ACVPU)",
        key: "consciousness",
        aliases: &["acvpu", "avpu", "level_of_responsiveness"],
        ucum: "{ACVPU}",
        unit_spellings: &["1"],
        conversions: &[],
        plausible: (0.0, 4.0),
    },
];

/// The ACVPU levels in their stored order (0 to 4), by letter: Alert, new
/// Confusion, responds to Voice, to Pain, Unresponsive (RCP NEWS2 2017).
pub const ACVPU: [char; 5] = ['A', 'C', 'V', 'P', 'U'];

/// LOINC answer codes (system `http://loinc.org`) for a coded consciousness
/// reading of LOINC 67775-7, with the ACVPU level each stands for and its
/// LOINC display. A, V, P and U are the four answers of 67775-7's own
/// answer list (the AVPU list that HL7's CDA EMS Patient Care Report guide
/// binds to its "Level of responsiveness" template,
/// 2.16.840.1.113883.17.3.10.1.165). That list has no answer for NEWS2's
/// "new confusion", so C is LOINC's answer "Confused" (LA6560-2, from the
/// Glasgow coma score verbal list), as vital-sign guides that carry ACVPU
/// in 67775-7 use it. SNOMED CT codes are not accepted: published value
/// sets disagree on which concept is "responds to voice".
pub const ACVPU_LOINC_ANSWERS: [(&str, char, &str); 5] = [
    ("LA9340-6", 'A', "Alert"),
    ("LA6560-2", 'C', "Confused"),
    ("LA17108-4", 'V', "Verbal"),
    ("LA17107-6", 'P', "Painful"),
    ("LA9343-0", 'U', "Unresponsive"),
];

impl VitalSign {
    /// Every vital sign, in display order.
    pub const ALL: [VitalSign; 11] = [
        VitalSign::HeartRate,
        VitalSign::RespiratoryRate,
        VitalSign::OxygenSaturation,
        VitalSign::BodyTemperature,
        VitalSign::SystolicBloodPressure,
        VitalSign::DiastolicBloodPressure,
        VitalSign::BodyWeight,
        VitalSign::MeanBloodPressure,
        VitalSign::BloodGlucose,
        VitalSign::OxygenFlow,
        VitalSign::Consciousness,
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

    /// The stored value of a coded reading sent as text: an ACVPU letter
    /// (case-insensitive) for consciousness; `None` for anything else.
    pub fn coded(self, text: &str) -> Option<f64> {
        if self != VitalSign::Consciousness {
            return None;
        }
        let mut chars = text.trim().chars();
        let letter = chars.next()?.to_ascii_uppercase();
        if chars.next().is_some() {
            return None;
        }
        ACVPU.iter().position(|c| *c == letter).map(|i| i as f64)
    }

    /// The stored value of a coded reading given as a LOINC answer code
    /// (see [`ACVPU_LOINC_ANSWERS`]): consciousness only.
    pub fn loinc_answer(self, code: &str) -> Option<f64> {
        if self != VitalSign::Consciousness {
            return None;
        }
        let (_, letter, _) = ACVPU_LOINC_ANSWERS.iter().find(|(c, _, _)| *c == code)?;
        self.coded(&letter.to_string())
    }

    /// Whether readings of this vital sign are coded answers rather than
    /// quantities (ACVPU), so decoders ask for a code, not a number.
    pub fn is_coded(self) -> bool {
        self == VitalSign::Consciousness
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

    /// `value` in `unit` expressed in this vital sign's UCUM unit: as is for
    /// the unit or a spelling of it, converted for a known other unit
    /// (degrees Fahrenheit, kPa, pounds, mmol/L of glucose...).
    pub fn to_canonical(self, value: f64, unit: &str) -> Result<f64, UnitError> {
        let spec = self.spec();
        if unit == spec.ucum || spec.unit_spellings.contains(&unit) {
            return Ok(value);
        }
        if let Some(c) = spec.conversions.iter().find(|c| c.unit == unit) {
            return Ok(value * c.scale + c.offset);
        }
        let others = if spec.conversions.is_empty() {
            String::new()
        } else {
            let units: Vec<_> = spec.conversions.iter().map(|c| c.unit).collect();
            format!(", or one of {}", units.join(", "))
        };
        Err(UnitError {
            vital: spec.key,
            got: unit.to_string(),
            expected: spec.ucum,
            others,
        })
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

/// Read back from its key (as written by `Serialize`), or a LOINC code or alias.
impl<'de> Deserialize<'de> for VitalSign {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VitalSign::lookup(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown vital sign {s:?}")))
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
        assert_eq!(VitalSign::lookup("lactate"), None);
        assert_eq!(VitalSign::lookup("15074-8"), Some(VitalSign::BloodGlucose));
        assert_eq!(VitalSign::lookup("3151-8"), Some(VitalSign::OxygenFlow));
        assert_eq!(VitalSign::OxygenFlow.ucum(), "L/min");
        assert_eq!(VitalSign::lookup("67775-7"), Some(VitalSign::Consciousness));
        assert_eq!(VitalSign::lookup("ACVPU"), Some(VitalSign::Consciousness));
        assert_eq!(VitalSign::Consciousness.coded("c"), Some(1.0));
        assert_eq!(VitalSign::Consciousness.coded("U"), Some(4.0));
        assert_eq!(VitalSign::Consciousness.coded("X"), None);
        assert_eq!(VitalSign::HeartRate.coded("A"), None);
        assert_eq!(VitalSign::Consciousness.loinc_answer("LA9340-6"), Some(0.0));
        assert_eq!(VitalSign::Consciousness.loinc_answer("LA6560-2"), Some(1.0));
        assert_eq!(
            VitalSign::Consciousness.loinc_answer("LA17108-4"),
            Some(2.0)
        );
        assert_eq!(
            VitalSign::Consciousness.loinc_answer("LA17107-6"),
            Some(3.0)
        );
        assert_eq!(VitalSign::Consciousness.loinc_answer("LA9343-0"), Some(4.0));
        assert_eq!(VitalSign::Consciousness.loinc_answer("248234008"), None);
        assert_eq!(VitalSign::HeartRate.loinc_answer("LA9340-6"), None);
    }

    #[test]
    fn fhir_vital_signs_codes_and_units() {
        assert_eq!(VitalSign::RespiratoryRate.loinc(), "9279-1");
        assert_eq!(VitalSign::BodyTemperature.ucum(), "Cel");
        assert_eq!(VitalSign::SystolicBloodPressure.ucum(), "mm[Hg]");
    }

    #[test]
    fn accepts_senml_spellings_and_rejects_unknown_units() {
        assert_eq!(
            VitalSign::HeartRate.to_canonical(72.0, "beat/min"),
            Ok(72.0)
        );
        assert_eq!(
            VitalSign::SystolicBloodPressure.to_canonical(120.0, "mmHg"),
            Ok(120.0)
        );
        let err = VitalSign::HeartRate.to_canonical(1.2, "Hz").unwrap_err();
        assert_eq!(err.expected, "/min");
        assert!(err.to_string().contains("Hz"));
        let err = VitalSign::BodyTemperature
            .to_canonical(300.0, "Ra")
            .unwrap_err();
        assert!(err.to_string().contains("[degF]"), "{err}");
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn converts_to_the_canonical_unit() {
        // 98.6 degF is 37 Cel; 212 degF boils at 100 Cel.
        assert!(close(
            VitalSign::BodyTemperature
                .to_canonical(98.6, "[degF]")
                .unwrap(),
            37.0
        ));
        assert!(close(
            VitalSign::BodyTemperature
                .to_canonical(212.0, "degF")
                .unwrap(),
            100.0
        ));
        assert!(close(
            VitalSign::BodyTemperature
                .to_canonical(310.15, "K")
                .unwrap(),
            37.0
        ));
        // 1 [lb_av] = 0.45359237 kg exactly.
        assert!(close(
            VitalSign::BodyWeight
                .to_canonical(150.0, "[lb_av]")
                .unwrap(),
            68.0388555
        ));
        // 5.5 mmol/L of glucose is 99.0858 mg/dL.
        assert!(close(
            VitalSign::BloodGlucose.to_canonical(5.5, "mmol/L").unwrap(),
            99.0858
        ));
        // 16 kPa is 120.00985 mm[Hg] (1 mm[Hg] = 133.322387415 Pa).
        assert!(close(
            VitalSign::SystolicBloodPressure
                .to_canonical(16.0, "kPa")
                .unwrap(),
            120.009_852_135
        ));
        assert!(close(
            VitalSign::OxygenSaturation.to_canonical(0.97, "/").unwrap(),
            97.0
        ));
    }
}
