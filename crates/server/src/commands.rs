//! `POST /api/v1/devices/{id}/commands`: a command to a device, delivered
//! over MQTT to `medmesh/v1/devices/{id}/commands` (QoS 1).
//!
//! The body is any JSON the device understands (e.g. `{"measure": "blood_pressure"}`).
//! The answer says how many subscribed sessions got it now and how many hold
//! it for an off-line device (a persistent session), so a caller can tell a
//! device that is listening from one that is not.

use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use medmesh_model::DeviceId;
use medmesh_sources::mqtt::{Broker, Delivery, Message, command_topic};
use std::sync::Arc;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/api/v1/devices/{id}/commands", post(send_command))
        .with_state(broker)
}

async fn send_command(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let device = DeviceId::new(id.clone())
        .map_err(|e| ApiError::bad_request(format!("device id {id:?}: {e}")))?;
    let Json(command) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let delivery = broker.publish(Message {
        topic: command_topic(device.as_str()),
        payload: serde_json::to_vec(&command)
            .expect("JSON value serialises")
            .into(),
        qos: 1,
    });
    tracing::info!(%device, ?delivery, "command sent");
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}
