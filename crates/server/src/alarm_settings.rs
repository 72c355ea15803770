//! A patient's alarm settings: profile, per-vital threshold overrides and
//! NEWS2 SpO2 scale.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | /api/v1/patients/{id}/alarm-settings | the settings and the rules in force |
//! | PUT | /api/v1/patients/{id}/alarm-settings | replace them (`{"profile", "thresholds", "spo2_scale"}`) |
//! | DELETE | /api/v1/patients/{id}/alarm-settings | back to the default profile |
//! | GET | /api/v1/alarm-profiles | every profile (built-in and configured) |
//!
//! Reading needs the right to read the patient's alarms; changing needs
//! the right to care for them (their care team, or an admin), like any
//! other write about a patient. Both are audited.

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use medmesh_access::PatientRight;
use medmesh_model::PatientId;
use medmesh_pipeline::{Pipeline, SettingsError};
use medmesh_rules::profiles::Profile;
use medmesh_rules::{AlarmSettings, Effective};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/api/v1/patients/{id}/alarm-settings",
            get(get_settings).put(put_settings).delete(delete_settings),
        )
        .route("/api/v1/alarm-profiles", get(profiles))
}

#[derive(Serialize)]
struct SettingsView {
    patient_id: PatientId,
    /// What was set for this patient; `null` when they follow the default.
    settings: Option<AlarmSettings>,
    /// The rules in force (profile merged with overrides); `null`: NEWS2,
    /// device, battery and fall alarms only.
    effective: Option<Effective>,
}

fn patient_id(raw: &str) -> Result<PatientId, ApiError> {
    PatientId::new(raw).map_err(|e| ApiError::bad_request(format!("patient id {raw:?}: {e}")))
}

fn view(p: &Pipeline, id: PatientId) -> SettingsView {
    let (settings, effective) = p.alarm_settings(&id);
    SettingsView {
        patient_id: id,
        settings,
        effective: effective.map(|e| (*e).clone()),
    }
}

async fn get_settings(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SettingsView>, ApiError> {
    let id = patient_id(&id)?;
    caller.require(&p, PatientRight::ReadAlarms, &id, "read alarm settings")?;
    Ok(Json(view(&p, id)))
}

async fn change(
    p: &Pipeline,
    caller: &Caller,
    id: &str,
    settings: Option<AlarmSettings>,
) -> Result<Json<SettingsView>, ApiError> {
    let id = patient_id(id)?;
    caller.require(p, PatientRight::Care, &id, "change alarm settings")?;
    p.set_alarm_settings(&id, settings).map_err(|e| match e {
        SettingsError::Invalid(reason) => ApiError::bad_request(reason),
        SettingsError::Storage(e) => ApiError::unavailable(format!("not saved, retry later: {e}")),
    })?;
    Ok(Json(view(p, id)))
}

async fn put_settings(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<AlarmSettings>, JsonRejection>,
) -> Result<Json<SettingsView>, ApiError> {
    let Json(settings) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    change(&p, &caller, &id, Some(settings)).await
}

async fn delete_settings(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SettingsView>, ApiError> {
    change(&p, &caller, &id, None).await
}

/// Profiles are configuration, not health data: any signed-in user.
async fn profiles(
    State(p): State<Arc<Pipeline>>,
    _caller: Caller,
) -> Json<BTreeMap<String, Profile>> {
    Json(p.alarm_profiles())
}
