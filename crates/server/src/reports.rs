//! Reports over the alarm log.
//!
//! | method | path | who |
//! |---|---|---|
//! | GET | /api/v1/reports/alarm-load?since_ms=&until_ms=&ward= | admin, operations: every ward; physicians, nurses: their care teams' wards |
//!
//! The alarm load report (figures per ward and rule; what they mean and
//! how alarms and patient-days are counted: `medmesh_pipeline`'s
//! `alarm_load.rs`) is aggregate: it names a patient in its top list only
//! to a reader who may read that patient's alarms, and each patient named
//! is audited as read.

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use medmesh_access::{Outcome, PatientRight};
use medmesh_model::{Patient, TimestampMs, now_ms};
use medmesh_pipeline::{AlarmLoad, LoadQuery, Pipeline};
use serde::Deserialize;
use std::sync::Arc;

pub fn router() -> Router<App> {
    Router::new().route("/api/v1/reports/alarm-load", get(alarm_load))
}

const DAY_MS: TimestampMs = 86_400_000;
/// The longest period one report covers: a year, as committees review
/// (the report reads every line of the alarms it covers).
const MAX_PERIOD_MS: TimestampMs = 366 * DAY_MS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadParams {
    /// Alarms raised at or after this time (epoch ms); default a day
    /// before `until_ms`.
    since_ms: Option<TimestampMs>,
    /// ...and before this time; default now.
    until_ms: Option<TimestampMs>,
    /// One ward only.
    ward: Option<String>,
}

async fn alarm_load(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
    query: Result<Query<LoadParams>, QueryRejection>,
) -> Result<Json<AlarmLoad>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wards = caller.alarm_load_wards();
    let action = match &q.ward {
        Some(ward) => format!("read alarm load report of ward {ward:?}"),
        None => "read alarm load report".to_string(),
    };
    if wards.is_none() || q.ward.as_deref().is_some_and(|w| !wards.contains(w)) {
        caller.audit(&action, None, Outcome::Denied);
        return Err(caller.forbidden(&match &q.ward {
            Some(ward) => format!("read the alarm load report of ward {ward:?}"),
            None => "read the alarm load report".to_string(),
        }));
    }
    let until = q.until_ms.unwrap_or_else(now_ms);
    let since = q.since_ms.unwrap_or(until.saturating_sub(DAY_MS));
    if since >= until {
        return Err(ApiError::bad_request(format!(
            "since_ms ({since}) must be before until_ms ({until})"
        )));
    }
    if until.saturating_sub(since) > MAX_PERIOD_MS {
        return Err(ApiError::bad_request(
            "a report covers at most 366 days: choose a shorter period",
        ));
    }
    caller.audit(&action, None, Outcome::Allowed);
    let pipeline = p.clone();
    let reader = caller.clone();
    let only = q.ward;
    // Reads the alarm log from disk: off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        let ward = |w: &str| wards.contains(w) && only.as_deref().is_none_or(|o| o == w);
        let may_name = |patient: &Patient| reader.may(PatientRight::ReadAlarms, patient);
        pipeline.alarm_load(&LoadQuery {
            since_ms: since,
            until_ms: until,
            ward: &ward,
            may_name: &may_name,
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("alarm log unreadable: {e}")))?;
    // A patient named is a patient's data read: on their record.
    for named in report
        .wards
        .iter()
        .flat_map(|w| &w.top_patients)
        .filter_map(|t| t.patient_id.as_ref())
    {
        caller.audit("read alarm load report", Some(named), Outcome::Allowed);
    }
    Ok(Json(report))
}
