//! NEWS2 scoring.
//!
//! Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2:
//! Standardising the assessment of acute-illness severity in the NHS*, 2017,
//! Chart 1 (the NEWS2 scoring system) and Chart 2 (thresholds and triggers).
//! Each parameter scores 0-3; the aggregate is their sum.
//!
//! **Precision and rounding.** Chart 1 writes its rows in whole numbers for
//! respiration rate, SpO2, systolic blood pressure and pulse, and to one
//! decimal for temperature (35.0, 35.1-36.0, ...): that is the precision a
//! reading is charted at. The chart gives no rounding rule, so medmesh
//! rounds a reading to that precision *before* choosing its row, half away
//! from zero (IEEE 754-2019 roundTiesToAway, what Rust's `f64::round` does;
//! the everyday rule for a displayed reading): SpO2 91.4 % is charted 91 and
//! scores 3, 91.5 is charted 92 and scores 2, 38.04 Cel is 38.0 and scores
//! 0. A nudge of 1e-9 of the last kept digit is added before rounding (away
//! from zero), far below any instrument's resolution and far above binary
//! floating-point noise: 35.05 (stored as 35.04999...) rounds to 35.1, and
//! 100.4 degF converted (38.00000000000001 Cel) to 38.0. Stored readings
//! keep their full value; only the scoring rounds.
//!
//! SpO2 is scored on scale 1, or on scale 2 for patients with hypercapnic
//! respiratory failure for whom a clinician chose it (per patient, see
//! `profiles::AlarmSettings`). "Air or oxygen?" comes from the latest
//! inhaled oxygen flow reading (LOINC 3151-8): above 0 L/min is on oxygen,
//! no reading is taken as air (and the aggregate says so). Consciousness
//! (ACVPU, LOINC 67775-7, stored 0-4 for A, C, V, P, U) scores 0 when
//! alert and 3 otherwise; without a reading the aggregate assumes alert
//! and says so.
//!
//! **Freshness and partial sets.** A parameter counts only while its latest
//! reading is at most `max_age` old by the server clock (default
//! [`DEFAULT_MAX_AGE_S`], 4 h: the longest interval RCP NEWS2 recommends
//! between routine observations of a patient scoring 1-4 is 4-6 hours, so an
//! older reading belongs to an earlier round; per profile,
//! `news2_max_age_s`). A parameter without a fresh reading is *missing* (no
//! reading) or *stale* (too old). A missing parameter can only add to the
//! score, so an incomplete set still gives a lower bound ("at least 8,
//! temperature missing") and an upper bound (each missing parameter scoring
//! 3): the aggregate alarm is raised as soon as the lower bound reaches a
//! trigger, and cleared only once the upper bound is below it.

use medmesh_model::{TimestampMs, VitalSign};
use serde::Serialize;

/// Default maximum age of a parameter's reading (see the module comment).
pub const DEFAULT_MAX_AGE_S: u64 = 4 * 3600;

/// Added to a reading scaled to its last charted digit before rounding, so
/// that binary floating-point noise cannot move a reading across a row.
const ROUNDING_NUDGE: f64 = 1e-9;

/// How many decimals Chart 1 charts `vital` with, for its parameters.
fn chart_decimals(vital: VitalSign) -> Option<i32> {
    match vital {
        VitalSign::RespiratoryRate
        | VitalSign::OxygenSaturation
        | VitalSign::SystolicBloodPressure
        | VitalSign::HeartRate
        | VitalSign::Consciousness => Some(0),
        VitalSign::BodyTemperature => Some(1),
        _ => None,
    }
}

/// `value` as Chart 1 charts it: rounded half away from zero to the
/// parameter's precision (whole numbers; temperature one decimal). Other
/// vital signs are returned as they are.
pub fn charted(vital: VitalSign, value: f64) -> f64 {
    let Some(decimals) = chart_decimals(vital) else {
        return value;
    };
    let factor = 10f64.powi(decimals);
    let scaled = value * factor;
    (scaled + scaled.signum() * ROUNDING_NUDGE).round() / factor
}

/// The NEWS2 score (0-3) of one reading (SpO2 on scale 1), or `None` for a
/// vital sign that is not a NEWS2 parameter. The reading is first charted
/// ([`charted`]), then its row chosen.
pub fn parameter_score(vital: VitalSign, value: f64) -> Option<u8> {
    let value = charted(vital, value);
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
        // Consciousness: alert (0) 0; new confusion, voice, pain or
        // unresponsive (1-4, see `medmesh_model::ACVPU`) 3.
        VitalSign::Consciousness => consciousness_score(value),
        VitalSign::DiastolicBloodPressure
        | VitalSign::BodyWeight
        | VitalSign::MeanBloodPressure
        | VitalSign::BloodGlucose => return None,
    };
    Some(score)
}

/// Chart 1 "Consciousness": alert 0, CVPU 3 (`value` charted, 0 alert).
fn consciousness_score(value: f64) -> u8 {
    if value >= 1.0 { 3 } else { 0 }
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
    /// On supplemental oxygen (latest fresh inhaled oxygen flow above 0).
    pub on_oxygen: bool,
}

/// A patient's NEWS2 settings: SpO2 scale and how old a reading may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub scale: Spo2Scale,
    /// A parameter's latest reading counts while at most this old (ms).
    pub max_age_ms: TimestampMs,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scale: Spo2Scale::Scale1,
            max_age_ms: DEFAULT_MAX_AGE_S as i64 * 1000,
        }
    }
}

/// SpO2 scale 2 (Chart 1): <=83: 3, 84-85: 2, 86-87: 1, 88-92: 0, on
/// air >=93: 0; on oxygen 93-94: 1, 95-96: 2, >=97: 3 (over-oxygenation
/// risks hypercapnia in these patients). Charted to whole percent first.
pub fn spo2_scale2_score(value: f64, on_oxygen: bool) -> u8 {
    let value = charted(VitalSign::OxygenSaturation, value);
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
/// `value` is charted, so it lies on the chart's grid.
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

/// A parameter's latest reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub value: f64,
    pub time_ms: TimestampMs,
}

/// One parameter counted in an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub vital: VitalSign,
    pub value: f64,
    pub score: u8,
    pub time_ms: TimestampMs,
    /// Age of the reading by the server clock when scored, in seconds.
    pub age_s: u64,
}

/// A patient's NEWS2 from their fresh readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    /// The sum of the fresh parameters' scores: the NEWS2 when `complete`,
    /// else the least the full set can score.
    pub score: u8,
    /// The most the full set can score (each parameter without a fresh
    /// reading scoring 3, an unknown oxygen the worse of air and oxygen);
    /// `score` when complete.
    pub score_max: u8,
    /// Chart 2 risk of `score`.
    pub risk: Risk,
    /// Every parameter has a fresh reading.
    pub complete: bool,
    /// Parameters never measured (or never since a restart of the series).
    pub missing: Vec<VitalSign>,
    /// Parameters whose latest reading is too old to count.
    pub stale: Vec<VitalSign>,
    /// What was counted, with each reading's value, score and age.
    pub components: Vec<Component>,
    /// No oxygen flow reading: scored as breathing air.
    pub assumed_air: bool,
    /// No fresh consciousness (ACVPU) reading: scored as alert (0).
    pub assumed_alert: bool,
}

impl Aggregate {
    /// "8 (consciousness assumed alert)", or for an incomplete set "at
    /// least 8 (Body temperature missing; ...)": the gaps and assumptions.
    pub fn describe(&self) -> String {
        let mut gaps: Vec<String> = self
            .missing
            .iter()
            .map(|v| format!("{} missing", v.display()))
            .collect();
        gaps.extend(
            self.stale
                .iter()
                .map(|v| format!("{} too old", v.display())),
        );
        if self.assumed_alert {
            gaps.push("consciousness assumed alert".into());
        }
        let score = if self.complete {
            self.score.to_string()
        } else {
            format!("at least {}", self.score)
        };
        if gaps.is_empty() {
            score
        } else {
            format!("{score} ({})", gaps.join("; "))
        }
    }
}

/// The five NEWS2 parameters medmesh measures.
pub const PARAMETERS: [VitalSign; 5] = [
    VitalSign::RespiratoryRate,
    VitalSign::OxygenSaturation,
    VitalSign::SystolicBloodPressure,
    VitalSign::HeartRate,
    VitalSign::BodyTemperature,
];

/// Whether fresh readings say the patient is on supplemental oxygen: the
/// latest oxygen flow is at most `max_age_ms` old at `now_ms` and above 0.
pub fn on_oxygen(
    latest: impl Fn(VitalSign) -> Option<Reading>,
    settings: Settings,
    now_ms: TimestampMs,
) -> bool {
    latest(VitalSign::OxygenFlow)
        .is_some_and(|r| now_ms - r.time_ms <= settings.max_age_ms && r.value > 0.0)
}

/// The scoring inputs (scale, fresh oxygen) from the latest readings.
pub fn inputs(
    latest: impl Fn(VitalSign) -> Option<Reading>,
    settings: Settings,
    now_ms: TimestampMs,
) -> Inputs {
    Inputs {
        scale: settings.scale,
        on_oxygen: on_oxygen(latest, settings, now_ms),
    }
}

/// Aggregate NEWS2 at `now_ms` from the latest reading of each parameter,
/// SpO2 on the patient's scale, counting only readings at most
/// `settings.max_age_ms` old. "Air or oxygen" from the latest fresh oxygen
/// flow: none is air, unless the latest flow said oxygen and is too old
/// (then oxygen is stale: air for the lower bound, the worse for the upper).
/// Consciousness likewise from the latest fresh ACVPU: none is alert, an old
/// one that said otherwise is stale. `None` when none of the five measured
/// parameters is fresh.
pub fn aggregate_at(
    latest: impl Fn(VitalSign) -> Option<Reading>,
    settings: Settings,
    now_ms: TimestampMs,
) -> Option<Aggregate> {
    let age = |r: &Reading| (now_ms - r.time_ms).max(0);
    let fresh = |r: &Reading| now_ms - r.time_ms <= settings.max_age_ms;
    let mut missing = Vec::new();
    let mut stale = Vec::new();
    let mut components = Vec::new();
    let flow = latest(VitalSign::OxygenFlow);
    // On oxygen for sure, or possibly (a stale flow that said oxygen).
    let (on_oxygen, oxygen_unknown) = match flow {
        Some(r) if fresh(&r) => (r.value > 0.0, false),
        Some(r) if r.value > 0.0 => {
            stale.push(VitalSign::OxygenFlow);
            (false, true)
        }
        _ => (false, false),
    };
    // Alert for sure (fresh), assumed (no reading, or an old one that said
    // alert), or unknown (an old one that said otherwise).
    let acvpu = latest(VitalSign::Consciousness);
    let alert_assumed = match acvpu {
        Some(r) if fresh(&r) => false,
        Some(r) if consciousness_score(charted(VitalSign::Consciousness, r.value)) > 0 => {
            stale.push(VitalSign::Consciousness);
            false
        }
        _ => true,
    };
    let mut readings = Vec::new();
    if let Some(r) = acvpu.filter(|r| fresh(r)) {
        readings.push((VitalSign::Consciousness, r));
    }
    for vital in PARAMETERS {
        match latest(vital) {
            Some(r) if fresh(&r) => readings.push((vital, r)),
            Some(_) => stale.push(vital),
            None => missing.push(vital),
        }
    }
    if readings.iter().all(|(v, _)| *v == VitalSign::Consciousness) {
        return None;
    }
    // The fresh parameters' sum with or without oxygen.
    let sum = |on_oxygen: bool| -> u8 {
        let inputs = Inputs {
            scale: settings.scale,
            on_oxygen,
        };
        let params: u8 = readings
            .iter()
            .filter_map(|(v, r)| score_with(*v, r.value, inputs))
            .sum();
        params + on_oxygen_score(on_oxygen)
    };
    let inputs = Inputs {
        scale: settings.scale,
        on_oxygen,
    };
    let mut any_red = false;
    for (vital, r) in &readings {
        let score = score_with(*vital, r.value, inputs).unwrap_or(0);
        any_red |= score == 3;
        components.push(Component {
            vital: *vital,
            value: r.value,
            score,
            time_ms: r.time_ms,
            age_s: (age(r) / 1000) as u64,
        });
    }
    if let Some(r) = flow.filter(|r| fresh(r)) {
        components.push(Component {
            vital: VitalSign::OxygenFlow,
            value: r.value,
            score: on_oxygen_score(on_oxygen),
            time_ms: r.time_ms,
            age_s: (age(&r) / 1000) as u64,
        });
    }
    let score = sum(on_oxygen);
    // Each parameter without a fresh reading could score 3 (oxygen apart).
    let unknown = (missing.len() + stale.len() - usize::from(oxygen_unknown)) as u8;
    let worst = if oxygen_unknown {
        sum(false).max(sum(true))
    } else {
        score
    };
    let risk = match score {
        7.. => Risk::High,
        5..=6 => Risk::Medium,
        _ if any_red => Risk::LowMedium,
        _ => Risk::Low,
    };
    Some(Aggregate {
        score,
        score_max: worst + 3 * unknown,
        risk,
        complete: missing.is_empty() && stale.is_empty(),
        missing,
        stale,
        components,
        assumed_air: flow.is_none_or(|r| !fresh(&r) && r.value <= 0.0),
        assumed_alert: alert_assumed,
    })
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

    /// Between two rows: a reading is charted (rounded half away from zero
    /// to the chart's precision) before its row is chosen. For every pair
    /// of neighbouring Chart 1 rows, a reading just under half a step above
    /// the lower row's top scores as the lower row, half a step as the upper.
    #[test]
    fn chart_1_rows_values_between_rows() {
        // (vital, step, [(row top, row score)], score above the last row)
        type Rows<'a> = &'a [(VitalSign, f64, &'a [(f64, u8)], u8)];
        let rows: Rows = &[
            // (vital, step, [(row top, row score)], score above the last row)
            (
                RespiratoryRate,
                1.0,
                &[(8.0, 3), (11.0, 1), (20.0, 0), (24.0, 2)],
                3,
            ),
            (OxygenSaturation, 1.0, &[(91.0, 3), (93.0, 2), (95.0, 1)], 0),
            (
                SystolicBloodPressure,
                1.0,
                &[(90.0, 3), (100.0, 2), (110.0, 1), (219.0, 0)],
                3,
            ),
            (
                HeartRate,
                1.0,
                &[(40.0, 3), (50.0, 1), (90.0, 0), (110.0, 1), (130.0, 2)],
                3,
            ),
            (
                BodyTemperature,
                0.1,
                &[(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)],
                2,
            ),
        ];
        for (vital, step, tops, above) in rows {
            for (i, (top, score)) in tops.iter().enumerate() {
                let next = tops.get(i + 1).map_or(*above, |(_, s)| *s);
                let under = top + step * 0.49;
                let half = top + step * 0.5;
                assert_eq!(
                    parameter_score(*vital, under),
                    Some(*score),
                    "{vital} {under}"
                );
                assert_eq!(parameter_score(*vital, half), Some(next), "{vital} {half}");
            }
        }
        // The values the issue found scored on the wrong side.
        assert_eq!(parameter_score(OxygenSaturation, 91.4), Some(3));
        assert_eq!(parameter_score(OxygenSaturation, 91.5), Some(2));
        assert_eq!(parameter_score(SystolicBloodPressure, 90.4), Some(3));
        assert_eq!(parameter_score(HeartRate, 40.4), Some(3));
        assert_eq!(parameter_score(HeartRate, 40.5), Some(1));
        // Decimal literals just under .5 in binary still round up.
        assert_eq!(parameter_score(BodyTemperature, 35.05), Some(1));
        assert_eq!(parameter_score(BodyTemperature, 38.05), Some(1));
        assert_eq!(parameter_score(BodyTemperature, 38.04), Some(0));
        assert_eq!(charted(BodyTemperature, 36.05), 36.1);
        assert_eq!(charted(HeartRate, 72.5), 73.0);
        assert_eq!(charted(DiastolicBloodPressure, 80.4), 80.4);
    }

    /// Chart 1 temperature rows 36.1-38.0 (0) and 38.1-39.0 (1) through the
    /// degF conversion of `medmesh_model`: 100.4 degF is 38.0 Cel.
    #[test]
    fn chart_1_temperature_rows_36_1_to_38_0_and_38_1_to_39_0_from_degf() {
        let cel = |f: f64| BodyTemperature.to_canonical(f, "[degF]").unwrap();
        // The conversion leaves 38.00000000000001: charted 38.0, row 36.1-38.0.
        assert!(cel(100.4) > 38.0);
        assert_eq!(parameter_score(BodyTemperature, cel(100.4)), Some(0));
        // 100.5 degF = 38.06 Cel, charted 38.1: row 38.1-39.0.
        assert_eq!(parameter_score(BodyTemperature, cel(100.5)), Some(1));
        // 95.0 degF = 35.0 Cel: row <=35.0; 95.2 degF = 35.11: row 35.1-36.0.
        assert_eq!(parameter_score(BodyTemperature, cel(95.0)), Some(3));
        assert_eq!(parameter_score(BodyTemperature, cel(95.2)), Some(1));
    }

    /// Chart 1 systolic rows <=90 (3) and 91-100 (2) through the kPa
    /// conversion: 12.0 kPa is 90.0 mmHg.
    #[test]
    fn chart_1_systolic_rows_le_90_and_91_to_100_from_kpa() {
        let mmhg = |kpa: f64| SystolicBloodPressure.to_canonical(kpa, "kPa").unwrap();
        assert_eq!(charted(SystolicBloodPressure, mmhg(12.0)), 90.0);
        assert_eq!(parameter_score(SystolicBloodPressure, mmhg(12.0)), Some(3));
        // 12.1 kPa = 90.76 mmHg, charted 91.
        assert_eq!(parameter_score(SystolicBloodPressure, mmhg(12.1)), Some(2));
    }

    /// Chart 1 SpO2 scale 2 rows between their whole numbers.
    #[test]
    fn chart_1_spo2_scale_2_rows_values_between_rows() {
        let rows: &[(f64, bool, u8)] = &[
            (83.4, false, 3),
            (83.5, false, 2),
            (85.4, true, 2),
            (85.5, true, 1),
            (87.4, false, 1),
            (87.5, false, 0),
            (92.4, true, 0),
            (92.5, true, 1),
            (92.5, false, 0),
            (94.4, true, 1),
            (94.5, true, 2),
            (96.4, true, 2),
            (96.5, true, 3),
        ];
        for (value, oxygen, want) in rows {
            assert_eq!(
                spo2_scale2_score(*value, *oxygen),
                *want,
                "{value} {oxygen}"
            );
        }
    }

    const NOW: TimestampMs = 1_000_000_000_000;
    const HOUR: TimestampMs = 3_600_000;

    /// Readings taken `ago` ms before [`NOW`].
    fn set_at(values: Vec<(VitalSign, f64, TimestampMs)>) -> impl Fn(VitalSign) -> Option<Reading> {
        move |v| {
            values
                .iter()
                .find(|(x, _, _)| *x == v)
                .map(|(_, value, ago)| Reading {
                    value: *value,
                    time_ms: NOW - ago,
                })
        }
    }

    fn readings(
        rr: f64,
        spo2: f64,
        sbp: f64,
        hr: f64,
        temp: f64,
    ) -> impl Fn(VitalSign) -> Option<Reading> {
        set_at(vec![
            (RespiratoryRate, rr, 0),
            (OxygenSaturation, spo2, 0),
            (SystolicBloodPressure, sbp, 0),
            (HeartRate, hr, 0),
            (BodyTemperature, temp, 0),
        ])
    }

    fn aggregate(
        latest: impl Fn(VitalSign) -> Option<Reading>,
        scale: Spo2Scale,
    ) -> Option<Aggregate> {
        let settings = Settings {
            scale,
            ..Settings::default()
        };
        aggregate_at(latest, settings, NOW)
    }

    /// Chart 2 bands: 0-4 low, single red parameter low-medium, 5-6 medium, >=7 high.
    #[test]
    fn chart_2_risk_bands() {
        let s1 = Spo2Scale::Scale1;
        let a = aggregate(readings(16.0, 98.0, 120.0, 70.0, 37.0), s1).unwrap();
        assert_eq!((a.score, a.risk, a.complete), (0, Risk::Low, true));
        assert_eq!(a.score_max, 0);
        // RR 8 alone scores 3: low score but a red parameter.
        let a = aggregate(readings(8.0, 98.0, 120.0, 70.0, 37.0), s1).unwrap();
        assert_eq!((a.score, a.risk), (3, Risk::LowMedium));
        // RR 22 (2) + SpO2 94 (1) + pulse 105 (1) + temp 38.5 (1) = 5
        let a = aggregate(readings(22.0, 94.0, 120.0, 105.0, 38.5), s1).unwrap();
        assert_eq!((a.score, a.risk), (5, Risk::Medium));
        // RR 26 (3) + SpO2 92 (2) + SBP 95 (2) + pulse 120 (2) = 9
        let a = aggregate(readings(26.0, 92.0, 95.0, 120.0, 37.0), s1).unwrap();
        assert_eq!((a.score, a.risk), (9, Risk::High));
        // Between rows: SpO2 91.4 is charted 91 (3), SBP 90.4 is 90 (3).
        let a = aggregate(readings(16.0, 91.4, 90.4, 70.0, 37.0), s1).unwrap();
        assert_eq!((a.score, a.risk), (6, Risk::Medium));
        assert!(a.assumed_air && a.assumed_alert);
        assert_eq!(a.describe(), "6 (consciousness assumed alert)");
    }

    /// Chart 2 on a partial set: four parameters worth 8 with no temperature
    /// is at least 8 (high); the temperature could add up to 3.
    #[test]
    fn chart_2_partial_set_gives_a_lower_bound() {
        // RR 26 (3) + SpO2 92 (2) + SBP 95 (2) + pulse 95 (1), no temperature.
        let latest = set_at(vec![
            (RespiratoryRate, 26.0, 0),
            (OxygenSaturation, 92.0, 0),
            (SystolicBloodPressure, 95.0, 0),
            (HeartRate, 95.0, 0),
        ]);
        let a = aggregate(latest, Spo2Scale::Scale1).unwrap();
        assert_eq!((a.score, a.score_max, a.risk), (8, 11, Risk::High));
        assert!(!a.complete);
        assert_eq!(a.missing, vec![BodyTemperature]);
        assert!(a.stale.is_empty());
        assert_eq!(a.components.len(), 4);
        assert_eq!(
            a.describe(),
            "at least 8 (Body temperature missing; consciousness assumed alert)"
        );
        // Nothing measured at all: no score.
        assert_eq!(aggregate(set_at(vec![]), Spo2Scale::Scale1), None);
    }

    /// A reading counts while at most `max_age` old: a 6-hour-old systolic
    /// (Chart 1 row <=90, 3) and a day-old oxygen flow (row "oxygen", 2)
    /// are stale and count for nothing; each component's age is given.
    #[test]
    fn chart_1_rows_count_only_fresh_readings() {
        let latest = set_at(vec![
            (RespiratoryRate, 16.0, 60_000),
            (OxygenSaturation, 97.0, 60_000),
            (SystolicBloodPressure, 85.0, 6 * HOUR),
            (HeartRate, 70.0, 4 * HOUR),
            (BodyTemperature, 37.0, 4 * HOUR + 1),
            (OxygenFlow, 2.0, 24 * HOUR),
        ]);
        let a = aggregate(&latest, Spo2Scale::Scale1).unwrap();
        assert_eq!(a.score, 0);
        assert!(!a.complete);
        assert_eq!(
            a.stale,
            vec![OxygenFlow, SystolicBloodPressure, BodyTemperature]
        );
        // Exactly 4 h old still counts.
        let pulse = a.components.iter().find(|c| c.vital == HeartRate).unwrap();
        assert_eq!((pulse.age_s, pulse.score), (4 * 3600, 0));
        assert_eq!(
            a.components
                .iter()
                .find(|c| c.vital == RespiratoryRate)
                .unwrap()
                .age_s,
            60
        );
        // Upper bound: systolic and temperature 3 each, oxygen 2.
        assert_eq!(a.score_max, 8);
        assert!(!a.assumed_air, "a stale oxygen flow is not air");
        assert!(!on_oxygen(&latest, Settings::default(), NOW));
        // A profile allowing a day counts them all: 3 (SBP 85) + 2 (oxygen).
        let day = Settings {
            max_age_ms: 24 * HOUR,
            ..Settings::default()
        };
        let a = aggregate_at(&latest, day, NOW).unwrap();
        assert_eq!((a.score, a.complete), (5, true));
        assert!(on_oxygen(&latest, day, NOW));
        // Nothing fresh: no score.
        let old = set_at(vec![(HeartRate, 70.0, 5 * HOUR)]);
        assert_eq!(aggregate(old, Spo2Scale::Scale1), None);
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
            move |v| {
                if v == OxygenFlow {
                    Some(Reading {
                        value: flow,
                        time_ms: NOW,
                    })
                } else {
                    base(v)
                }
            }
        };
        let a = aggregate(with_o2(0.0), Spo2Scale::Scale1).unwrap();
        assert_eq!((a.score, a.assumed_air), (0, false));
        let a = aggregate(with_o2(2.0), Spo2Scale::Scale1).unwrap();
        assert_eq!(a.score, 2);
        assert_eq!(a.components.last().unwrap().vital, OxygenFlow);
        // Scale 2 on oxygen: SpO2 96 scores 2 (row 95-96), plus 2 for oxygen.
        let a = aggregate(with_o2(2.0), Spo2Scale::Scale2).unwrap();
        assert_eq!((a.score, a.risk), (4, Risk::Low));
        // Scale 2 on air: SpO2 96 scores 0 (row >=93 on air).
        let a = aggregate(with_o2(0.0), Spo2Scale::Scale2).unwrap();
        assert_eq!(a.score, 0);
    }

    /// Chart 1 "Consciousness" row: alert 0, new confusion, voice, pain or
    /// unresponsive 3 (stored 0-4); counted in the aggregate instead of
    /// assuming alert while fresh.
    #[test]
    fn chart_1_consciousness_row() {
        let scores: Vec<_> = (0..=4)
            .map(|level| parameter_score(Consciousness, f64::from(level)))
            .collect();
        assert_eq!(scores, [Some(0), Some(3), Some(3), Some(3), Some(3)]);
        let normal = [
            (RespiratoryRate, 16.0, 0),
            (OxygenSaturation, 97.0, 0),
            (SystolicBloodPressure, 120.0, 0),
            (HeartRate, 70.0, 0),
            (BodyTemperature, 37.0, 0),
        ];
        let with = |acvpu: f64, ago| {
            let mut v = normal.to_vec();
            v.push((Consciousness, acvpu, ago));
            aggregate(set_at(v), Spo2Scale::Scale1).unwrap()
        };
        // New confusion (C), fresh: 3, a red parameter; nothing assumed.
        let a = with(1.0, 0);
        assert_eq!((a.score, a.risk, a.complete), (3, Risk::LowMedium, true));
        assert!(!a.assumed_alert);
        assert_eq!(a.describe(), "3");
        // Alert, fresh: 0.
        assert_eq!(with(0.0, 0).score, 0);
        // Confusion 5 hours ago: unknown now, up to 3.
        let a = with(1.0, 5 * HOUR);
        assert_eq!((a.score, a.score_max), (0, 3));
        assert_eq!(a.stale, vec![Consciousness]);
        // Alert 5 hours ago: as good as no reading, alert assumed.
        let a = with(0.0, 5 * HOUR);
        assert!(a.complete && a.assumed_alert);
        // Consciousness alone is no NEWS2.
        let alone = set_at(vec![(Consciousness, 0.0, 0)]);
        assert_eq!(aggregate(alone, Spo2Scale::Scale1), None);
    }

    /// Scale 2 with a stale oxygen flow: air for the lower bound (SpO2 97
    /// scores 0 on air), the worse for the upper (3 on oxygen, plus 2).
    #[test]
    fn chart_1_spo2_scale_2_rows_with_stale_oxygen() {
        let latest = set_at(vec![
            (RespiratoryRate, 16.0, 0),
            (OxygenSaturation, 97.0, 0),
            (SystolicBloodPressure, 120.0, 0),
            (HeartRate, 70.0, 0),
            (BodyTemperature, 37.0, 0),
            (OxygenFlow, 2.0, 5 * HOUR),
        ]);
        let a = aggregate(latest, Spo2Scale::Scale2).unwrap();
        assert_eq!((a.score, a.score_max, a.complete), (0, 5, false));
        assert_eq!(a.stale, vec![OxygenFlow]);
    }
}
