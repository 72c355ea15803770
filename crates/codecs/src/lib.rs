//! Payload decoders: device bytes in, validated [`Observation`]s out.
//!
//! A decoder never panics on input and never lets one bad record spoil a
//! message: it returns every valid observation together with a list of the
//! records it rejected and why, so the caller can store the good ones and
//! report the bad ones back to the sender.

pub mod fhir;
pub mod gatt;
pub mod hl7v2;
pub mod ieee11073;
pub mod senml;

use medmesh_model::{DeviceReport, Observation};
use serde::Serialize;

/// The outcome of decoding one message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub observations: Vec<Observation>,
    pub rejected: Vec<RecordError>,
    /// Device telemetry and events (battery level, falls) in the message.
    pub device: Vec<DeviceReport>,
}

/// Why one record of a message was rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordError {
    /// Zero-based position of the record in the message.
    pub index: usize,
    pub reason: String,
}

/// The message as a whole could not be read; nothing in it was accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);
