//! Observations charted by hand: a nurse's (or physician's) full set of
//! NEWS2 observations, taken at the bedside and recorded under their name.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | /api/v1/patients/{id}/observation-sets | record a set: stored, scored and alarmed like a device's readings |
//!
//! The body names each parameter by its vital-sign key, a number in the
//! key's UCUM unit (`{"value": 100.4, "unit": "[degF]"}` for another unit
//! the catalogue converts), consciousness as an ACVPU letter, oxygen as
//! its flow (0: air), and `taken` (RFC 3339 or epoch milliseconds; default:
//! now). Every value goes through the vital-sign catalogue's unit and
//! plausibility checks; one bad value refuses the whole set (422 naming
//! each), so a typo is corrected rather than half a set stored. A set
//! dated too far ahead of the server clock is refused like a device's
//! reading. Charting needs the right to chart (a physician or nurse of the
//! patient's care team); the outcome is audited with who, the patient,
//! when the set was taken and what it held.

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use medmesh_access::{Outcome, PatientRight};
use medmesh_model::{Observation, PatientId, TimestampMs, VitalSign, now_ms};
use medmesh_pipeline::{Decoded, LiveObservation, Pipeline, RecordError};
use medmesh_rules::news2::Aggregate;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const ACTION: &str = "chart observations";

pub fn router() -> Router<App> {
    Router::new().route("/api/v1/patients/{id}/observation-sets", post(record_set))
}

/// A value in the vital sign's UCUM unit, or with a unit of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(f64),
    WithUnit(WithUnit),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithUnit {
    value: f64,
    unit: String,
}

/// When the set was taken: epoch milliseconds or an RFC 3339 time.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Taken {
    Ms(i64),
    Text(String),
}

/// `POST .../observation-sets`: every parameter optional, at least one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    taken: Option<Taken>,
    respiratory_rate: Option<Quantity>,
    spo2: Option<Quantity>,
    /// Inhaled oxygen flow, L/min; 0 is air.
    oxygen_flow: Option<Quantity>,
    systolic_bp: Option<Quantity>,
    diastolic_bp: Option<Quantity>,
    heart_rate: Option<Quantity>,
    body_temperature: Option<Quantity>,
    /// ACVPU: "A", "C" (new confusion), "V", "P" or "U".
    consciousness: Option<String>,
}

#[derive(Serialize)]
struct SetRecorded {
    patient_id: PatientId,
    charted_by: String,
    taken_ms: TimestampMs,
    accepted: usize,
    rejected: Vec<RecordError>,
    /// What was stored, in the vital signs' UCUM units.
    observations: Vec<LiveObservation>,
    /// The patient's NEWS2 after the set (fresh readings only).
    news2: Option<Aggregate>,
}

/// The set as validated observations, or every reason it cannot be.
fn validate(body: &SetBody, taken: TimestampMs) -> Result<Vec<Observation>, Vec<String>> {
    let quantities = [
        (VitalSign::RespiratoryRate, &body.respiratory_rate),
        (VitalSign::OxygenSaturation, &body.spo2),
        (VitalSign::OxygenFlow, &body.oxygen_flow),
        (VitalSign::SystolicBloodPressure, &body.systolic_bp),
        (VitalSign::DiastolicBloodPressure, &body.diastolic_bp),
        (VitalSign::HeartRate, &body.heart_rate),
        (VitalSign::BodyTemperature, &body.body_temperature),
    ];
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (vital, q) in quantities {
        let Some(q) = q else { continue };
        let (value, unit) = match q {
            Quantity::Number(v) => (*v, vital.ucum()),
            Quantity::WithUnit(w) => (w.value, w.unit.as_str()),
        };
        match Observation::measured(vital, value, unit, taken) {
            Ok(o) => out.push(o),
            Err(e) => problems.push(format!("{}: {e}", vital.key())),
        }
    }
    if let Some(letter) = &body.consciousness {
        let vital = VitalSign::Consciousness;
        match vital.coded(letter) {
            Some(level) => out.push(
                Observation::measured(vital, level, vital.ucum(), taken)
                    .expect("an ACVPU level is plausible"),
            ),
            None => problems.push(format!(
                "consciousness: {letter:?} is not an ACVPU level; use A, C (new confusion), V, P or U"
            )),
        }
    }
    if let (Some(sys), Some(dia)) = (
        out.iter()
            .find(|o| o.vital == VitalSign::SystolicBloodPressure),
        out.iter()
            .find(|o| o.vital == VitalSign::DiastolicBloodPressure),
    ) && dia.value >= sys.value
    {
        problems.push(format!(
            "diastolic_bp {} mm[Hg] is not below systolic_bp {} mm[Hg]",
            dia.value, sys.value
        ));
    }
    if out.is_empty() && problems.is_empty() {
        problems.push(
            "no observation: give at least one of respiratory_rate, spo2, oxygen_flow, \
             systolic_bp, diastolic_bp, heart_rate, body_temperature, consciousness"
                .into(),
        );
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn taken_ms(taken: &Option<Taken>) -> Result<TimestampMs, ApiError> {
    match taken {
        None => Ok(now_ms()),
        Some(Taken::Ms(ms)) => Ok(*ms),
        Some(Taken::Text(s)) => humantime::parse_rfc3339_weak(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "taken {s:?} is not a time; use RFC 3339 (2026-01-31T08:00:00Z) or epoch milliseconds"
                ))
            }),
    }
}

/// "respiratory_rate 18 /min, consciousness 0 {ACVPU}" for the audit log.
fn describe(observations: &[Observation]) -> String {
    observations
        .iter()
        .map(|o| format!("{} {} {}", o.vital.key(), o.value, o.vital.ucum()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn record_set(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<SetBody>, JsonRejection>,
) -> Result<(StatusCode, Json<SetRecorded>), ApiError> {
    let id = PatientId::new(id.clone())
        .map_err(|e| ApiError::bad_request(format!("patient id {id:?}: {e}")))?;
    // The decision first, whatever the body: someone who may not chart
    // learns nothing from how their request was malformed.
    let Some(patient) = p
        .registry
        .patient(&id)
        .filter(|pt| caller.may(PatientRight::Chart, pt))
    else {
        // Audits the refusal; 403, or 404 to a caller who could chart.
        caller.require(&p, PatientRight::Chart, &id, ACTION)?;
        return Err(ApiError::not_found(format!("no patient with id {id:?}")));
    };
    let refuse = |status: StatusCode, reason: String| {
        caller.audit_detail(ACTION, Some(&patient.id), Outcome::Failed, &reason);
        ApiError { status, reason }
    };
    let Json(body) = body.map_err(|e| refuse(StatusCode::BAD_REQUEST, e.body_text()))?;
    let taken = taken_ms(&body.taken).map_err(|e| refuse(e.status, e.reason))?;
    let observations = validate(&body, taken)
        .map_err(|problems| refuse(StatusCode::UNPROCESSABLE_ENTITY, problems.join("; ")))?;
    let mut decoded = Decoded::default();
    for (i, o) in observations.into_iter().enumerate() {
        decoded.accept(i, o);
    }
    let by = caller.who.username.clone();
    let submitted = describe(&decoded.observations);
    let stored: Vec<Observation> = decoded.observations.clone();
    let (report, news2) = match p.record_chart(&patient.id, &by, decoded).await {
        Ok(done) => done,
        Err(e) => {
            let e = ApiError::from(e);
            return Err(refuse(e.status, e.reason));
        }
    };
    let kept: Vec<LiveObservation> = stored
        .iter()
        .enumerate()
        .filter(|(i, _)| !report.rejected.iter().any(|r| r.index == *i))
        .map(|(_, o)| LiveObservation::from(o))
        .collect();
    let (status, outcome) = if report.accepted == 0 {
        (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Failed)
    } else {
        (StatusCode::CREATED, Outcome::Allowed)
    };
    let refused: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
    caller.audit_detail(
        ACTION,
        Some(&patient.id),
        outcome,
        &format!(
            "taken_ms {taken}: {submitted}; stored {}{}",
            report.accepted,
            if refused.is_empty() {
                String::new()
            } else {
                format!("; refused: {}", refused.join("; "))
            }
        ),
    );
    Ok((
        status,
        Json(SetRecorded {
            patient_id: patient.id,
            charted_by: by,
            taken_ms: taken,
            accepted: report.accepted,
            rejected: report.rejected,
            observations: kept,
            news2,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> SetBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_set_is_validated_whole() {
        let ok = validate(
            &body(
                r#"{"respiratory_rate": 18, "spo2": 96, "oxygen_flow": 0, "systolic_bp": 120,
                    "diastolic_bp": 80, "heart_rate": 72,
                    "body_temperature": {"value": 100.4, "unit": "[degF]"}, "consciousness": "c"}"#,
            ),
            5,
        )
        .unwrap();
        assert_eq!(ok.len(), 8);
        let temp = ok
            .iter()
            .find(|o| o.vital == VitalSign::BodyTemperature)
            .unwrap();
        assert!((temp.value - 38.0).abs() < 1e-9);
        assert_eq!(ok.last().unwrap().value, 1.0, "C is level 1");
        let problems = validate(
            &body(r#"{"spo2": 0, "heart_rate": 720, "body_temperature": {"value": 37, "unit": "Hz"}, "consciousness": "X"}"#),
            5,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("spo2: "), "{problems:?}");
        assert!(problems[1].contains("plausible range"), "{problems:?}");
        assert!(problems[2].contains("unit \"Hz\""), "{problems:?}");
        assert!(problems[3].contains("ACVPU"), "{problems:?}");
        let problems =
            validate(&body(r#"{"systolic_bp": 80, "diastolic_bp": 90}"#), 5).unwrap_err();
        assert!(problems[0].contains("not below systolic"), "{problems:?}");
        assert!(validate(&body("{}"), 5).unwrap_err()[0].contains("at least one"));
        assert!(serde_json::from_str::<SetBody>(r#"{"pulse": 70}"#).is_err());
    }
}
