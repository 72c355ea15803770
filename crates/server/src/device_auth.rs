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
use medmesh_access::{Event, GlobalRight, Outcome, PatientRight};
use medmesh_model::DeviceId;

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
/// counted as rejected messages of the HTTP source.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    device: &DeviceId,
) -> Result<(), ApiError> {
    let result = check(app, headers, device).await;
    if let Err(e) = &result {
        app.pipeline
            .metrics
            .malformed_message(medmesh_pipeline::SourceKind::Http);
        tracing::warn!(%device, reason = %e.reason, "device refused on HTTP");
    }
    result
}

async fn check(app: &App, headers: &HeaderMap, device: &DeviceId) -> Result<(), ApiError> {
    let registry = &app.pipeline.registry;
    let secret = presented(headers, device)?;
    // A user's API token (a gateway or integration program) may send readings
    // for devices it manages or whose patient it cares for.
    if let Some(who) = secret
        .as_deref()
        .filter(|s| s.starts_with("mm_"))
        .and_then(|s| app.access.directory.principal_for_token(s))
    {
        let patient = registry
            .device(device)
            .and_then(|d| d.patient_id)
            .and_then(|id| registry.patient(&id));
        let allowed = app.access.may_global(&who, GlobalRight::ManageDevices)
            || patient
                .as_ref()
                .is_some_and(|pt| app.access.may(&who, PatientRight::Care, &pt.id, &pt.ward));
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
        return if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} ({}) may not send readings as device {device}",
                who.username, who.role
            )))
        };
    }
    match secret {
        Some(token) => {
            if registry.credential_hash(device).is_none() {
                return Err(ApiError::unauthorized(format!(
                    "device {device} has no credentials; provision them first"
                )));
            }
            if app.pipeline.verify_device_token(device, token).await {
                Ok(())
            } else {
                Err(ApiError::unauthorized(format!(
                    "wrong token for device {device}"
                )))
            }
        }
        None if registry.credential_hash(device).is_some() => Err(ApiError::unauthorized(format!(
            "device {device} has credentials but sent none"
        ))),
        None if !app.allow_anonymous_devices => Err(ApiError::unauthorized(
            "anonymous devices are not allowed: send the device's token",
        )),
        None => Ok(()),
    }
}
