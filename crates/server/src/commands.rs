//! `POST /api/v1/devices/{id}/commands`: a command to a device, delivered
//! over MQTT to `medmesh/v1/devices/{id}/commands` (QoS 1).
//!
//! The body is any JSON the device understands (e.g. `{"measure": "blood_pressure"}`).
//! The answer says how many subscribed sessions got it now and how many hold
//! it for an off-line device (a persistent session), so a caller can tell a
//! device that is listening from one that is not.

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use medmesh_access::{GlobalRight, Outcome, PatientRight};
use medmesh_model::DeviceId;
use medmesh_sources::mqtt::{Delivery, Message, command_topic};

pub fn router() -> Router<App> {
    Router::new().route("/api/v1/devices/{id}/commands", post(send_command))
}

/// Administrators and operations command any device; a clinician, the
/// devices of patients they care for.
async fn send_command(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let device = DeviceId::new(id.clone())
        .map_err(|e| ApiError::bad_request(format!("device id {id:?}: {e}")))?;
    let patient = app
        .pipeline
        .registry
        .device(&device)
        .and_then(|d| d.patient_id)
        .and_then(|pid| app.pipeline.registry.patient(&pid));
    let permitted = caller.may_global(GlobalRight::ManageDevices)
        || patient
            .as_ref()
            .is_some_and(|pt| caller.may(PatientRight::Care, pt));
    let action = format!("command device {device}");
    let patient_id = patient.as_ref().map(|pt| &pt.id);
    if !permitted {
        caller.audit(&action, patient_id, Outcome::Denied);
        return Err(caller.forbidden("command this device"));
    }
    caller.audit(&action, patient_id, Outcome::Allowed);
    let broker = &app.broker;
    let Json(command) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let delivery = broker.publish(Message {
        topic: command_topic(device.as_str()),
        payload: serde_json::to_vec(&command)
            .expect("JSON value serialises")
            .into(),
        qos: 1,
        alarm: None,
    });
    tracing::info!(%device, ?delivery, "command sent");
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
