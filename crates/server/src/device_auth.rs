//! Devices sending readings over HTTP prove who they are as over MQTT: with
//! the token issued to them, as `Authorization: Bearer <token>` or as HTTP
//! Basic with the device ID as user name. A device that was issued a token
//! must use it; one that was not is accepted only while anonymous devices
//! are allowed (`devices.allow_anonymous`). A token is only ever good for
//! its own device, so no device can send readings as another.
//!
//! A program with a user API token (a gateway, an integration) may send
//! readings for devices its user manages or whose patient it cares for.

use crate::app::App;
use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use base64::Engine;
use medmesh_access::{Event, GlobalRight, Outcome, PatientRight, Principal};
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
    let secret = presented(headers, device).map_err(refused)?;
    // A user's API token (a gateway or integration program) may send readings
    // for devices it manages or whose patient it cares for.
    if let Some(who) = secret
        .as_deref()
        .filter(|s| s.starts_with("mm_"))
        .and_then(|s| app.access.directory.principal_for_token(s))
    {
        return user_token(app, &who, device).map_err(refused);
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

fn user_token(app: &App, who: &Principal, device: &DeviceId) -> Result<(), ApiError> {
    let registry = &app.pipeline.registry;
    let patient = registry
        .device(device)
        .and_then(|d| d.patient_id)
        .and_then(|id| registry.patient(&id));
    let allowed = app.access.may_global(who, GlobalRight::ManageDevices)
        || patient
            .as_ref()
            .is_some_and(|pt| app.access.may(who, PatientRight::Care, &pt.id, &pt.ward));
    app.access.audit.record(Event {
        actor: &who.username,
        role: Some(who.role),
        action: &format!("send readings as device {device}"),
        patient: patient.as_ref().map(|pt| &pt.id),
        outcome: if allowed {
            Outcome::Allowed
        } else {
            Outcome::Denied
        },
        detail: String::new(),
    });
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} ({}) may not send readings as device {device}",
            who.username, who.role
        )))
    }
}
