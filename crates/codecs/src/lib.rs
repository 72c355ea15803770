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
    /// The record each observation came from (parallel to `observations`),
    /// so a check made after decoding can reject it by its place.
    pub records: Vec<usize>,
}

impl Decoded {
    /// Keeps an observation decoded from record `index`.
    pub fn accept(&mut self, index: usize, observation: Observation) {
        self.observations.push(observation);
        self.records.push(index);
    }

    /// Moves every observation `refuse` gives a reason for to `rejected`
    /// (under its record's index), keeping the order of both lists.
    pub fn reject_where(&mut self, mut refuse: impl FnMut(&Observation) -> Option<String>) {
        let mut kept = Vec::with_capacity(self.observations.len());
        let mut kept_records = Vec::with_capacity(self.records.len());
        let mut refused = false;
        for (i, o) in self.observations.drain(..).enumerate() {
            let index = self.records.get(i).copied().unwrap_or(i);
            match refuse(&o) {
                Some(reason) => {
                    self.rejected.push(RecordError { index, reason });
                    refused = true;
                }
                None => {
                    kept.push(o);
                    kept_records.push(index);
                }
            }
        }
        self.observations = kept;
        self.records = kept_records;
        if refused {
            self.rejected.sort_by_key(|r| r.index);
        }
    }
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
