//! `GET /api/v1/stream`: live events as server-sent events.
//!
//! Each event's `event:` field is its type (`observations`, `alarm`,
//! `device_status`, `device_battery`) and its data the JSON of
//! [`medmesh_pipeline::LiveEvent`].
//!
//! A stream never loses an alarm change: alarm changes come from the alarm
//! feed (`medmesh_sinks::feed`), in the numbering of the alarm log, and a
//! reader that falls behind gets the ones it missed read back from the log.
//! What a slow reader loses is observations and device events: it then
//! receives an `observations_skipped` event (data: how many were skipped)
//! and should reload the latest values; its alarms stay whole.
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
use medmesh_sinks::feed::{Change, Feed};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
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
        LiveEvent::SystemAlarm { .. } => caller.may_global(GlobalRight::ReadMetrics),
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

/// Events a stream holds for a slow reader before the newest observations
/// are skipped for it (alarm changes are read back from the log instead).
const BUFFER: usize = 256;

async fn stream(
    State(app): State<App>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    caller.audit("open live stream", None, Outcome::Allowed);
    // Subscribed before the response starts: nothing from now on is missed.
    let alarms = Feed::from_now(
        "live stream",
        app.pipeline.clone(),
        app.pipeline.subscribe_alarms(),
    );
    let live = app.pipeline.subscribe();
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(forward(app, caller.clone(), alarms, live, tx));
    Sse::new(WhileValid {
        inner: Box::pin(ReceiverStream::new(rx).map(Ok)),
        recheck: Box::pin(tokio::time::sleep(RECHECK)),
        caller,
        ended: false,
    })
    .keep_alive(KeepAlive::default())
}

/// Feeds one stream until its reader goes: alarm changes first and whole,
/// then observations and device events as far as the reader keeps up.
async fn forward(
    app: App,
    caller: Caller,
    mut alarms: Feed,
    mut live: broadcast::Receiver<LiveEvent>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        let event = tokio::select! {
            biased;
            // The reader went (or its credential ended): stop at once, not
            // at the next event.
            () = tx.closed() => return,
            change = alarms.next() => {
                let Some(Change { seq, change, alarm }) = change else { return };
                alarms.taken(seq);
                LiveEvent::Alarm { change: change_kind(&change), alarm, seq: Some(seq) }
            }
            event = live.recv() => match event {
                // Alarm changes come from the feed, in order and whole.
                Ok(LiveEvent::Alarm { .. }) => continue,
                Ok(event) => event,
                Err(RecvError::Lagged(skipped)) => {
                    let skipped = Event::default()
                        .event("observations_skipped")
                        .data(skipped.to_string());
                    if tx.send(skipped).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if !visible(&app, &caller, &event) {
            continue;
        }
        let name = match &event {
            LiveEvent::Observations { .. } => "observations",
            LiveEvent::Alarm { .. } => "alarm",
            LiveEvent::DeviceStatus { .. } => "device_status",
            LiveEvent::DeviceBattery { .. } => "device_battery",
            LiveEvent::SystemAlarm { .. } => "system_alarm",
        };
        let event = Event::default()
            .event(name)
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().comment("unencodable"));
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// The kind of an alarm change read back from the alarm log, as the live
/// events name it.
fn change_kind(kind: &str) -> &'static str {
    match kind {
        "raised" => "raised",
        "acknowledged" => "acknowledged",
        "snoozed" => "snoozed",
        "escalated" => "escalated",
        "resolved" => "resolved",
        _ => "updated",
    }
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
