//! Alarms published over MQTT: every recorded change (raised, updated,
//! acknowledged, snoozed, escalated, resolved) goes to
//! `medmesh/v1/alarms/{patient_id}` as JSON, QoS 1, for nurse-call systems,
//! pagers and wall displays subscribed to the embedded broker, numbered
//! without gaps (`seq`). An "updated" is something a viewer sees (a worse
//! reading, a reason joined or left, a lower priority), never a repeat of
//! the same condition, so a pager that buzzes on it does not buzz every
//! second; a pager may also page on "raised" and "escalated" only.
//!
//! Subscribers are accounts signed in with an `alarm-feed` token; each
//! message carries its alarm's patient, priority and escalation level so the
//! broker puts it to the policy for every account before sending it.

use medmesh_pipeline::LiveEvent;
use medmesh_sources::mqtt::{ALARM_TOPIC_PREFIX, AlarmSubject, Broker, Message};
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// The topic a patient's alarms are published to.
pub fn alarm_topic(patient: &str) -> String {
    format!("{ALARM_TOPIC_PREFIX}{patient}")
}

/// Publishes the alarm changes `events` carries (subscribed before the task
/// is spawned, so none raised meanwhile is missed) until the pipeline goes away.
pub async fn run(mut events: broadcast::Receiver<LiveEvent>, broker: Arc<Broker>) {
    loop {
        match events.recv().await {
            Ok(LiveEvent::Alarm { change, alarm, seq }) => {
                // `seq` numbers the change in the alarm log: a subscriber
                // can order one alarm's changes and see a gap.
                let body = serde_json::json!({"change": change, "seq": seq, "alarm": alarm});
                broker.publish(Message {
                    topic: alarm_topic(alarm.patient_id.as_str()),
                    payload: serde_json::to_vec(&body).expect("alarm JSON").into(),
                    qos: 1,
                    // Accounts receive it only if the policy lets them see
                    // this alarm: decided per message, by the broker.
                    alarm: Some(AlarmSubject {
                        patient: alarm.patient_id.clone(),
                        priority: alarm.priority,
                        level: alarm.escalation_level,
                    }),
                });
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => tracing::warn!(
                missed = n,
                "MQTT alarm sink fell behind; alarm changes missed"
            ),
            Err(RecvError::Closed) => return,
        }
    }
}
