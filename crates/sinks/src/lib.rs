//! Sinks: where events leave medmesh. Each sink subscribes to the pipeline's
//! live stream, so it only ever sees durable data, and runs as its own task
//! (a slow sink can lag, never slow ingest; if it lags past the stream's
//! buffer it logs how many events it missed).

pub mod mqtt_alarms;
