//! Consents: a patient decides who else sees their data.
//!
//! | method | path | who |
//! |---|---|---|
//! | GET | /api/v1/patients/{id}/consents | the patient; an admin |
//! | POST | /api/v1/patients/{id}/consents | the patient: grant `{grantee, scopes, purpose, expires_ms?}` |
//! | DELETE | /api/v1/consents/{id} | the patient who granted it; an admin on their behalf |
//! | GET | /api/v1/consents | consents in force that the caller holds (caregivers, insurers, researchers) |

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use medmesh_access::{Consent, Outcome, PatientRight, Scope};
use medmesh_model::{PatientId, TimestampMs};
use serde::Deserialize;

pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/api/v1/patients/{id}/consents",
            get(list_consents).post(grant_consent),
        )
        .route("/api/v1/consents", get(held_consents))
        .route("/api/v1/consents/{id}", delete(revoke_consent))
}

fn patient_id(raw: &str) -> Result<PatientId, ApiError> {
    PatientId::new(raw).map_err(|e| ApiError::bad_request(format!("patient id {raw:?}: {e}")))
}

async fn list_consents(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Consent>>, ApiError> {
    let id = patient_id(&id)?;
    // Reading who may see a record is for the patient and administrators.
    let right = if caller.who.role == medmesh_access::Role::Admin {
        PatientRight::RevokeConsents
    } else {
        PatientRight::ManageConsents
    };
    caller.require(&app.pipeline, right, &id, "list consents")?;
    Ok(Json(app.access.directory.consents_of(&id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    /// Username of the caregiver, insurer or researcher.
    grantee: String,
    scopes: Vec<Scope>,
    purpose: String,
    expires_ms: Option<TimestampMs>,
}

async fn grant_consent(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Grant>, JsonRejection>,
) -> Result<(StatusCode, Json<Consent>), ApiError> {
    let id = patient_id(&id)?;
    caller.require(
        &app.pipeline,
        PatientRight::ManageConsents,
        &id,
        "grant consent",
    )?;
    let Json(g) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let consent = app.access.directory.grant_consent(
        id.clone(),
        &g.grantee,
        g.scopes,
        &g.purpose,
        g.expires_ms,
        &caller.who.username,
    )?;
    caller.audit(
        &format!("consent {} granted to {}", consent.id, consent.grantee),
        Some(&id),
        Outcome::Allowed,
    );
    Ok((StatusCode::CREATED, Json(consent)))
}

async fn revoke_consent(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Consent>, ApiError> {
    let action = "revoke consent";
    // A consent of someone else's and no consent at all look alike (403).
    let found = app.access.directory.consent(&id);
    let Some(consent) = found
        .clone()
        .filter(|c| caller.may_id(&app.pipeline, PatientRight::RevokeConsents, &c.patient))
    else {
        return Err(caller.unseen(
            PatientRight::RevokeConsents,
            action,
            found.as_ref().map(|c| &c.patient),
            format!("no consent {id:?}"),
        ));
    };
    caller.require(
        &app.pipeline,
        PatientRight::RevokeConsents,
        &consent.patient,
        action,
    )?;
    Ok(Json(app.access.directory.revoke_consent(&id)?))
}

async fn held_consents(State(app): State<App>, caller: Caller) -> Json<Vec<Consent>> {
    Json(app.access.directory.consents_held_by(&caller.who.username))
}
