//! NEWS2 scoring.
//!
//! Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2:
//! Standardising the assessment of acute-illness severity in the NHS*, 2017,
//! Chart 1 (the NEWS2 scoring system) and Chart 2 (thresholds and triggers).
//! Each parameter scores 0-3; the aggregate is their sum. Rows of Chart 1 are
//! integer ranges; a fractional reading falls in the row whose upper bound it
//! does not exceed (e.g. a respiration rate of 20.5/min scores as 21-24).
//!
//! SpO2 is scored on scale 1, or on scale 2 for patients with hypercapnic
//! respiratory failure for whom a clinician chose it (per patient, see
//! `profiles::AlarmSettings`). "Air or oxygen?" comes from the latest
//! inhaled oxygen flow reading (LOINC 3151-8): above 0 L/min is on oxygen,
//! no reading is taken as air. Consciousness (ACVPU) is not collected yet,
//! so the aggregate assumes alert and says so.

use medmesh_model::VitalSign;
use serde::Serialize;

/// The NEWS2 score (0-3) of one reading, or `None` for a vital sign that is
/// not a NEWS2 parameter.
pub fn parameter_score(vital: VitalSign, value: f64) -> Option<u8> {
    let score = match vital {
        // Respiration rate (per minute): <=8: 3, 9-11: 1, 12-20: 0, 21-24: 2, >=25: 3
        VitalSign::RespiratoryRate => band(value, &[(8.0, 3), (11.0, 1), (20.0, 0), (24.0, 2)], 3),
        // SpO2 scale 1 (%): <=91: 3, 92-93: 2, 94-95: 1, >=96: 0
        VitalSign::OxygenSaturation => band(value, &[(91.0, 3), (93.0, 2), (95.0, 1)], 0),
        // Systolic BP (mmHg): <=90: 3, 91-100: 2, 101-110: 1, 111-219: 0, >=220: 3
        VitalSign::SystolicBloodPressure => {
            band(value, &[(90.0, 3), (100.0, 2), (110.0, 1), (219.0, 0)], 3)
        }
        // Pulse (per minute): <=40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >=131: 3
        VitalSign::HeartRate => band(
            value,
            &[(40.0, 3), (50.0, 1), (90.0, 0), (110.0, 1), (130.0, 2)],
            3,
        ),
        // Temperature (Cel): <=35.0: 3, 35.1-36.0: 1, 36.1-38.0: 0, 38.1-39.0: 1, >=39.1: 2
        VitalSign::BodyTemperature => band(value, &[(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2),
        // Air or oxygen? (any supplemental oxygen): air 0, oxygen 2.
        VitalSign::OxygenFlow => on_oxygen_score(value > 0.0),
        VitalSign::DiastolicBloodPressure
        | VitalSign::BodyWeight
        | VitalSign::MeanBloodPressure
        | VitalSign::BloodGlucose => return None,
    };
    Some(score)
}

/// Chart 1 "Air or oxygen?": supplemental oxygen scores 2.
fn on_oxygen_score(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Which SpO2 scale of Chart 1 a patient is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Spo2Scale {
    /// Scale 1: every patient unless a clinician chose scale 2.
    #[default]
    Scale1,
    /// Scale 2: hypercapnic respiratory failure with a prescribed target
    /// range of 88-92 % (RCP NEWS2 2017, section on SpO2 scale 2).
    Scale2,
}

/// What scoring needs beyond the reading itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    pub scale: Spo2Scale,
    /// On supplemental oxygen (latest inhaled oxygen flow above 0).
    pub on_oxygen: bool,
}

/// SpO2 scale 2 (Chart 1): <=83: 3, 84-85: 2, 86-87: 1, 88-92: 0, on
/// air >=93: 0; on oxygen 93-94: 1, 95-96: 2, >=97: 3 (over-oxygenation
/// risks hypercapnia in these patients).
pub fn spo2_scale2_score(value: f64, on_oxygen: bool) -> u8 {
    let low = band(value, &[(83.0, 3), (85.0, 2), (87.0, 1), (92.0, 0)], 4);
    match (low, on_oxygen) {
        (0..=3, _) => low,
        (_, false) => 0,
        (_, true) => band(value, &[(94.0, 1), (96.0, 2)], 3),
    }
}

/// The NEWS2 score of one reading given the patient's scale and oxygen.
pub fn score_with(vital: VitalSign, value: f64, inputs: Inputs) -> Option<u8> {
    match (vital, inputs.scale) {
        (VitalSign::OxygenSaturation, Spo2Scale::Scale2) => {
            Some(spo2_scale2_score(value, inputs.on_oxygen))
        }
        _ => parameter_score(vital, value),
    }
}

/// The first row whose upper bound `value` does not exceed, else `above`.
fn band(value: f64, rows: &[(f64, u8)], above: u8) -> u8 {
    rows.iter()
        .find(|(upper, _)| value <= *upper)
        .map(|(_, s)| *s)
        .unwrap_or(above)
}

/// Clinical risk per Chart 2, which sets the clinical response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// Aggregate 0-4: ward-based response.
    Low,
    /// A score of 3 in any single parameter: urgent ward-based response.
    LowMedium,
    /// Aggregate 5-6: key threshold for urgent response.
    Medium,
    /// Aggregate 7 or more: urgent or emergency response.
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    pub score: u8,
    pub risk: Risk,
}

/// The five NEWS2 parameters medmesh measures.
pub const PARAMETERS: [VitalSign; 5] = [
    VitalSign::RespiratoryRate,
    VitalSign::OxygenSaturation,
    VitalSign::SystolicBloodPressure,
    VitalSign::HeartRate,
    VitalSign::BodyTemperature,
];

/// Aggregate NEWS2 from the latest reading of each parameter on SpO2 scale
/// 1, assuming alert; see [`aggregate_with`].
pub fn aggregate(latest: impl Fn(VitalSign) -> Option<f64>) -> Option<Aggregate> {
    aggregate_with(latest, Spo2Scale::Scale1)
}

/// Whether the latest readings say the patient is on supplemental oxygen.
pub fn on_oxygen(latest: impl Fn(VitalSign) -> Option<f64>) -> bool {
    latest(VitalSign::OxygenFlow).is_some_and(|flow| flow > 0.0)
}

/// Aggregate NEWS2 from the latest reading of each parameter, SpO2 on
/// `scale`, "air or oxygen" from the latest oxygen flow (air without one),
/// consciousness assumed alert (0). `None` unless all five measured
/// parameters have a reading: a partial score would look falsely reassuring.
pub fn aggregate_with(
    latest: impl Fn(VitalSign) -> Option<f64>,
    scale: Spo2Scale,
) -> Option<Aggregate> {
    let inputs = Inputs {
        scale,
        on_oxygen: on_oxygen(&latest),
    };
    let mut score = on_oxygen_score(inputs.on_oxygen);
    let mut any_red = false;
    for vital in PARAMETERS {
        let s = score_with(vital, latest(vital)?, inputs)?;
        any_red |= s == 3;
        score += s;
    }
    let risk = match score {
        7.. => Risk::High,
        5..=6 => Risk::Medium,
        _ if any_red => Risk::LowMedium,
        _ => Risk::Low,
    };
    Some(Aggregate { score, risk })
}

#[cfg(test)]
mod tests {
    use super::*;
    use VitalSign::*;

    /// Every row of Chart 1 for the five parameters, probed at both edges.
    #[test]
    fn chart_1_rows() {
        let cases: &[(VitalSign, &[(f64, u8)])] = &[
            // Respiration rate rows: <=8, 9-11, 12-20, 21-24, >=25
            (
                RespiratoryRate,
                &[
                    (0.0, 3),
                    (8.0, 3),
                    (9.0, 1),
                    (11.0, 1),
                    (12.0, 0),
                    (20.0, 0),
                    (21.0, 2),
                    (24.0, 2),
                    (25.0, 3),
                    (60.0, 3),
                ],
            ),
            // SpO2 scale 1 rows: <=91, 92-93, 94-95, >=96
            (
                OxygenSaturation,
                &[
                    (80.0, 3),
                    (91.0, 3),
                    (92.0, 2),
                    (93.0, 2),
                    (94.0, 1),
                    (95.0, 1),
                    (96.0, 0),
                    (100.0, 0),
                ],
            ),
            // Systolic BP rows: <=90, 91-100, 101-110, 111-219, >=220
            (
                SystolicBloodPressure,
                &[
                    (60.0, 3),
                    (90.0, 3),
                    (91.0, 2),
                    (100.0, 2),
                    (101.0, 1),
                    (110.0, 1),
                    (111.0, 0),
                    (219.0, 0),
                    (220.0, 3),
                ],
            ),
            // Pulse rows: <=40, 41-50, 51-90, 91-110, 111-130, >=131
            (
                HeartRate,
                &[
                    (30.0, 3),
                    (40.0, 3),
                    (41.0, 1),
                    (50.0, 1),
                    (51.0, 0),
                    (90.0, 0),
                    (91.0, 1),
                    (110.0, 1),
                    (111.0, 2),
                    (130.0, 2),
                    (131.0, 3),
                ],
            ),
            // Temperature rows: <=35.0, 35.1-36.0, 36.1-38.0, 38.1-39.0, >=39.1
            (
                BodyTemperature,
                &[
                    (34.0, 3),
                    (35.0, 3),
                    (35.1, 1),
                    (36.0, 1),
                    (36.1, 0),
                    (38.0, 0),
                    (38.1, 1),
                    (39.0, 1),
                    (39.1, 2),
                    (41.0, 2),
                ],
            ),
        ];
        for (vital, rows) in cases {
            for (value, want) in *rows {
                assert_eq!(
                    parameter_score(*vital, *value),
                    Some(*want),
                    "{vital} {value}"
                );
            }
        }
        assert_eq!(parameter_score(DiastolicBloodPressure, 50.0), None);
    }

    fn readings(
        rr: f64,
        spo2: f64,
        sbp: f64,
        hr: f64,
        temp: f64,
    ) -> impl Fn(VitalSign) -> Option<f64> {
        move |v| match v {
            RespiratoryRate => Some(rr),
            OxygenSaturation => Some(spo2),
            SystolicBloodPressure => Some(sbp),
            HeartRate => Some(hr),
            BodyTemperature => Some(temp),
            _ => None,
        }
    }

    /// Chart 2 bands: 0-4 low, single red parameter low-medium, 5-6 medium, >=7 high.
    #[test]
    fn chart_2_risk_bands() {
        let a = aggregate(readings(16.0, 98.0, 120.0, 70.0, 37.0)).unwrap();
        assert_eq!((a.score, a.risk), (0, Risk::Low));
        // RR 8 alone scores 3: low score but a red parameter.
        let a = aggregate(readings(8.0, 98.0, 120.0, 70.0, 37.0)).unwrap();
        assert_eq!((a.score, a.risk), (3, Risk::LowMedium));
        // RR 22 (2) + SpO2 94 (1) + pulse 105 (1) + temp 38.5 (1) = 5
        let a = aggregate(readings(22.0, 94.0, 120.0, 105.0, 38.5)).unwrap();
        assert_eq!((a.score, a.risk), (5, Risk::Medium));
        // RR 26 (3) + SpO2 92 (2) + SBP 95 (2) + pulse 120 (2) = 9
        let a = aggregate(readings(26.0, 92.0, 95.0, 120.0, 37.0)).unwrap();
        assert_eq!((a.score, a.risk), (9, Risk::High));
    }

    #[test]
    fn no_aggregate_without_every_parameter() {
        assert_eq!(aggregate(|v| (v == HeartRate).then_some(70.0)), None);
    }

    /// Chart 1, SpO2 scale 2 rows, on air and on oxygen, probed at both edges:
    /// <=83, 84-85, 86-87, 88-92, >=93 on air, 93-94 / 95-96 / >=97 on oxygen.
    #[test]
    fn chart_1_spo2_scale_2_rows() {
        let rows: &[(f64, bool, u8)] = &[
            (70.0, false, 3),
            (83.0, true, 3),
            (84.0, false, 2),
            (85.0, true, 2),
            (86.0, false, 1),
            (87.0, true, 1),
            (88.0, false, 0),
            (92.0, true, 0),
            (93.0, false, 0),
            (100.0, false, 0),
            (93.0, true, 1),
            (94.0, true, 1),
            (95.0, true, 2),
            (96.0, true, 2),
            (97.0, true, 3),
            (100.0, true, 3),
        ];
        for (value, oxygen, want) in rows {
            assert_eq!(
                spo2_scale2_score(*value, *oxygen),
                *want,
                "{value} {oxygen}"
            );
            let inputs = Inputs {
                scale: Spo2Scale::Scale2,
                on_oxygen: *oxygen,
            };
            assert_eq!(score_with(OxygenSaturation, *value, inputs), Some(*want));
        }
        // Scale 1 is untouched by the choice for other patients: 88 scores 3.
        assert_eq!(
            score_with(OxygenSaturation, 88.0, Inputs::default()),
            Some(3)
        );
    }

    /// Chart 1 "Air or oxygen?" row: oxygen 2, air 0, added to the aggregate.
    #[test]
    fn chart_1_air_or_oxygen_row() {
        assert_eq!(parameter_score(OxygenFlow, 0.0), Some(0));
        assert_eq!(parameter_score(OxygenFlow, 2.0), Some(2));
        let with_o2 = |flow: f64| {
            let base = readings(16.0, 96.0, 120.0, 70.0, 37.0);
            move |v| if v == OxygenFlow { Some(flow) } else { base(v) }
        };
        assert_eq!(aggregate(with_o2(0.0)).unwrap().score, 0);
        assert_eq!(aggregate(with_o2(2.0)).unwrap().score, 2);
        // Scale 2 on oxygen: SpO2 96 scores 2 (row 95-96), plus 2 for oxygen.
        let a = aggregate_with(with_o2(2.0), Spo2Scale::Scale2).unwrap();
        assert_eq!((a.score, a.risk), (4, Risk::Low));
        // Scale 2 on air: SpO2 96 scores 0 (row >=93 on air).
        let a = aggregate_with(with_o2(0.0), Spo2Scale::Scale2).unwrap();
        assert_eq!(a.score, 0);
    }
}
