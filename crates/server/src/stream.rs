//! `GET /api/v1/stream`: live events as server-sent events.
//!
//! Each event's `event:` field is its type (`observations`, `alarm`,
//! `device_status`) and its
//! data the JSON of [`medmesh_pipeline::LiveEvent`]. A client too slow to keep
//! up receives a `resync` event and should reload its view.

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use medmesh_pipeline::{LiveEvent, Pipeline};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/api/v1/stream", get(stream))
        .with_state(pipeline)
}

async fn stream(
    State(p): State<Arc<Pipeline>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = BroadcastStream::new(p.subscribe()).map(|item| {
        Ok(match item {
            Ok(ev) => {
                let name = match &ev {
                    LiveEvent::Observations { .. } => "observations",
                    LiveEvent::Alarm { .. } => "alarm",
                    LiveEvent::DeviceStatus { .. } => "device_status",
                };
                Event::default()
                    .event(name)
                    .json_data(&ev)
                    .unwrap_or_else(|_| Event::default().comment("unencodable"))
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("resync").data(n.to_string())
            }
        })
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
