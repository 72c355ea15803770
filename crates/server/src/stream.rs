//! `GET /api/v1/stream`: live events as server-sent events.
//!
//! Each event's `event:` field is its type (`observations`, `alarm`,
//! `device_status`) and its data the JSON of [`medmesh_pipeline::LiveEvent`].
//! A client too slow to keep up receives a `resync` event and should reload
//! its view.
//!
//! A caller receives only what they may see: readings of patients whose
//! observations they may read (an unassigned device's readings only with
//! `ReadUnassignedReadings`: never operations), alarms they may see (their
//! patients', and one an escalation step naming them has reached), device
//! status and battery for devices they manage or whose patient they care
//! for. The decision is made per event, so a consent revoked or a care team
//! changed takes effect on an open stream at once.
//!
//! A stream lasts only as long as the credential that opened it: every
//! [`RECHECK`] the caller's session or API token is checked again, and the
//! stream ends once the session has ended (sign-out, idle or too old), the
//! token was revoked or the user disabled. An open stream does not count as
//! use of its session, so an unattended screen still signs out; the
//! dashboard then shows the sign-in page.

use crate::app::App;
use crate::auth::Caller;
use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use medmesh_access::{AlarmReach, GlobalRight, Outcome, PatientRight};
use medmesh_model::PatientId;
use medmesh_pipeline::LiveEvent;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt};

/// How often an open stream checks that its caller's credential still stands.
pub const RECHECK: Duration = Duration::from_secs(1);

pub fn router() -> Router<App> {
    Router::new().route("/api/v1/stream", get(stream))
}

fn visible(app: &App, caller: &Caller, event: &LiveEvent) -> bool {
    let may = |right, id: &PatientId| {
        app.pipeline
            .registry
            .patient(id)
            .is_some_and(|pt| caller.may(right, &pt))
    };
    match event {
        // An unassigned device's readings are someone's health data too:
        // not for operations, who manage devices but see no patient.
        LiveEvent::Observations { patient_id, .. } => patient_id.as_ref().map_or(
            caller.may_global(GlobalRight::ReadUnassignedReadings),
            |id| may(PatientRight::ReadObservations, id),
        ),
        LiveEvent::Alarm { alarm, .. } => may(
            PatientRight::SeeAlarm(AlarmReach {
                priority: alarm.priority,
                level: alarm.escalation_level,
            }),
            &alarm.patient_id,
        ),
        LiveEvent::DeviceStatus { device_id, .. } | LiveEvent::DeviceBattery { device_id, .. } => {
            caller.may_global(GlobalRight::ManageDevices)
                || app
                    .pipeline
                    .registry
                    .device(device_id)
                    .and_then(|d| d.patient_id)
                    .is_some_and(|id| may(PatientRight::Care, &id))
        }
    }
}

async fn stream(
    State(app): State<App>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    caller.audit("open live stream", None, Outcome::Allowed);
    let credential = caller.clone();
    let events = BroadcastStream::new(app.pipeline.subscribe()).filter_map(move |item| {
        Some(Ok(match item {
            Ok(ev) => {
                if !visible(&app, &caller, &ev) {
                    return None;
                }
                let name = match &ev {
                    LiveEvent::Observations { .. } => "observations",
                    LiveEvent::Alarm { .. } => "alarm",
                    LiveEvent::DeviceStatus { .. } => "device_status",
                    LiveEvent::DeviceBattery { .. } => "device_battery",
                };
                Event::default()
                    .event(name)
                    .json_data(&ev)
                    .unwrap_or_else(|_| Event::default().comment("unencodable"))
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("resync").data(n.to_string())
            }
        }))
    });
    Sse::new(WhileValid {
        inner: Box::pin(events),
        recheck: Box::pin(tokio::time::sleep(RECHECK)),
        caller: credential,
        ended: false,
    })
    .keep_alive(KeepAlive::default())
}

/// A stream that ends once its caller's credential no longer stands.
struct WhileValid<S> {
    inner: Pin<Box<S>>,
    recheck: Pin<Box<tokio::time::Sleep>>,
    caller: Caller,
    ended: bool,
}

impl<S: Stream> Stream for WhileValid<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        // Polling the timer again after resetting it registers the wake-up.
        while this.recheck.as_mut().poll(cx).is_ready() {
            if !this.caller.still_valid() {
                this.ended = true;
                this.caller
                    .audit("live stream closed", None, Outcome::Allowed);
                return Poll::Ready(None);
            }
            this.recheck
                .as_mut()
                .reset(tokio::time::Instant::now() + RECHECK);
        }
        this.inner.as_mut().poll_next(cx)
    }
}
