//! Devices sending readings over HTTP prove who they are as over MQTT: with
//! the token issued to them, as `Authorization: Bearer <token>` or as HTTP
//! Basic with the device ID as user name. A device that was issued a token
//! must use it; one that was not is accepted only while anonymous devices
//! are allowed (`devices.allow_anonymous`). A token is only ever good for
//! its own device, so no device can send readings as another.
//!
//! Only device principals send device readings. A user's API token or
//! browser session, whatever the role, is refused (403, audited): an
//! operations account manages devices but must not be able to make one say
//! anything about a patient, and a clinician's readings name their patient
//! through FHIR (`POST /api/v1/fhir/Observation`, checked per patient), not
//! through a device. A gateway forwarding for devices sends each with that
//! device's token (or over MQTT, CoAP or HL7 as itself).

use crate::app::App;
use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use base64::Engine;
use medmesh_access::{Event, Outcome, Principal};
use medmesh_model::DeviceId;
use medmesh_pipeline::Proof;

/// The secret a request presents for `device`, if any.
fn presented(headers: &HeaderMap, device: &DeviceId) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        if user != device.as_str() {
            return Err(ApiError::forbidden(format!(
                "device {user:?} may not send readings as device {device}"
            )));
        }
        return Ok(Some(password.to_string()));
    }
    Err(ApiError::unauthorized(
        "use Authorization: Bearer <device token> or Basic with the device ID",
    ))
}

/// Admits or refuses a request sending readings as `device`; refusals are
/// counted (`ingest_refused_messages`) and logged. Device tokens go through
/// the pipeline's one device-identity decision, as on MQTT and CoAP.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    device: &DeviceId,
) -> Result<(), ApiError> {
    let refused = |e: ApiError| {
        app.pipeline
            .metrics
            .refused_message(medmesh_pipeline::SourceKind::Http);
        tracing::warn!(%device, reason = %e.reason, "device refused on HTTP");
        e
    };
    // A browser session is a user's, never a device's.
    if let Some(session) = crate::auth::session_cookie(headers) {
        let who = app.access.principal_for_session(session);
        return Err(refused(user_refused(app, who.as_ref(), device)));
    }
    let secret = presented(headers, device).map_err(refused)?;
    if let Some(who) = secret
        .as_deref()
        .filter(|s| s.starts_with("mm_"))
        .and_then(|s| app.access.directory.principal_for_token(s))
    {
        return Err(refused(user_refused(app, Some(&who), device)));
    }
    let proof = match secret {
        Some(token) => Proof::Token {
            device: device.clone(),
            token,
        },
        None => Proof::Nothing,
    };
    app.pipeline
        .admit_device(
            medmesh_pipeline::SourceKind::Http,
            proof,
            device,
            app.allow_anonymous_devices,
        )
        .await
        .map(|_| ())
        .map_err(|r| ApiError::unauthorized(r.reason().to_string()))
}

/// The refusal of a user (`None`: a session that no longer stands) sending
/// as a device, audited on the device's patient's record.
fn user_refused(app: &App, who: Option<&Principal>, device: &DeviceId) -> ApiError {
    let patient = app
        .pipeline
        .registry
        .device(device)
        .and_then(|d| d.patient_id);
    app.access.audit.record(Event {
        actor: who.map_or("anonymous", |w| w.username.as_str()),
        role: who.map(|w| w.role),
        action: &format!("send readings as device {device}"),
        patient: patient.as_ref(),
        outcome: Outcome::Denied,
        detail: "only the device itself sends its readings".into(),
    });
    ApiError::forbidden(format!(
        "{} may not send readings as device {device}: device readings take the device's own \
         credentials (a user records readings with POST /api/v1/fhir/Observation)",
        who.map_or("a browser session".to_string(), |w| format!(
            "{} ({})",
            w.username, w.role
        ))
    ))
}
