//! NEWS2 scoring.
//!
//! Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2:
//! Standardising the assessment of acute-illness severity in the NHS*, 2017,
//! Chart 1 (the NEWS2 scoring system) and Chart 2 (thresholds and triggers).
//! Each parameter scores 0-3; the aggregate is their sum. Rows of Chart 1 are
//! integer ranges; a fractional reading falls in the row whose upper bound it
//! does not exceed (e.g. a respiration rate of 20.5/min scores as 21-24).
//!
//! Only SpO2 scale 1 is implemented here; scale 2 (hypercapnic respiratory
//! failure), supplemental oxygen and consciousness (ACVPU) need inputs medmesh
//! does not collect yet, so [`aggregate`] assumes air and alert and says so.

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
        VitalSign::DiastolicBloodPressure
        | VitalSign::BodyWeight
        | VitalSign::MeanBloodPressure
        | VitalSign::BloodGlucose => return None,
    };
    Some(score)
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

/// Aggregate NEWS2 from the latest reading of each parameter, assuming the
/// patient breathes air and is alert (both score 0). `None` unless all five
/// parameters have a reading: a partial score would look falsely reassuring.
pub fn aggregate(latest: impl Fn(VitalSign) -> Option<f64>) -> Option<Aggregate> {
    let mut score = 0;
    let mut any_red = false;
    for vital in PARAMETERS {
        let s = parameter_score(vital, latest(vital)?)?;
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
}
