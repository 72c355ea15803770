//! Ingest sources: the ways devices deliver data to medmesh.
//!
//! Each source speaks one protocol and hands payloads to the shared
//! [`medmesh_pipeline::Pipeline`]; it acknowledges to the device only after the
//! pipeline reports the samples durable. A new source goes in its own module
//! here (see ARCHITECTURE.md).

pub mod coap;
pub mod hl7;
pub mod limits;
pub mod mqtt;
pub mod tls;
