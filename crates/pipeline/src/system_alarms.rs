//! medmesh's own failures as system alarms, for operations.
//!
//! A full disk or a failing volume stops medmesh from storing readings; that
//! is one condition of the platform, not of any patient or device. It is
//! raised once, to operations (the live stream's `system_alarm` events,
//! `GET /api/v1/system/alarms`, the `medmesh_system_alarms_active` gauge),
//! and resolved once storage works again, whatever number of devices and
//! patients it touched. Clinical alarms stay for patients: devices that
//! reconnect meanwhile raise no device-offline alarm for a failure that is
//! ours (`End::StorageFailed` in the MQTT session).
//!
//! Conditions are judged on the 1-second alarm timer from the store's
//! health (`Store::health`), so a failure is seen within a second even when
//! no device is sending.

use crate::{LiveEvent, Pipeline};
use medmesh_model::TimestampMs;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The condition of the write-ahead log: samples cannot be made durable.
pub const CONDITION_STORAGE: &str = "storage";
/// Resolved system alarms kept for the API.
const HISTORY: usize = 100;

/// One failure of medmesh itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemAlarm {
    pub id: u64,
    /// What failed ("storage").
    pub condition: &'static str,
    /// What operations should know and do.
    pub message: String,
    /// When the failure began (medmesh's clock).
    pub raised_ms: TimestampMs,
    /// When it ended; `None` while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<TimestampMs>,
}

/// The active system alarms and the recently resolved ones.
#[derive(Default)]
pub struct SystemAlarms {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    active: Vec<SystemAlarm>,
    resolved: VecDeque<SystemAlarm>,
    next_id: u64,
}

/// What changed in a check.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemChange {
    Raised(SystemAlarm),
    Resolved(SystemAlarm),
}

impl SystemAlarms {
    /// Judges one condition: `failing` carries the reason while it fails.
    pub fn judge(
        &self,
        condition: &'static str,
        failing: Option<String>,
        now: TimestampMs,
    ) -> Option<SystemChange> {
        let mut state = self.state.lock().expect("system alarms lock");
        let active = state.active.iter().position(|a| a.condition == condition);
        match (failing, active) {
            (Some(message), None) => {
                state.next_id += 1;
                let alarm = SystemAlarm {
                    id: state.next_id,
                    condition,
                    message,
                    raised_ms: now,
                    resolved_ms: None,
                };
                state.active.push(alarm.clone());
                Some(SystemChange::Raised(alarm))
            }
            (None, Some(i)) => {
                let mut alarm = state.active.remove(i);
                alarm.resolved_ms = Some(now);
                if state.resolved.len() >= HISTORY {
                    state.resolved.pop_front();
                }
                state.resolved.push_back(alarm.clone());
                Some(SystemChange::Resolved(alarm))
            }
            _ => None,
        }
    }

    /// Active alarms first, then the resolved ones, newest first.
    pub fn list(&self) -> Vec<SystemAlarm> {
        let state = self.state.lock().expect("system alarms lock");
        state
            .active
            .iter()
            .rev()
            .chain(state.resolved.iter().rev())
            .cloned()
            .collect()
    }

    pub fn active_count(&self) -> usize {
        self.state.lock().expect("system alarms lock").active.len()
    }
}

impl Pipeline {
    /// Judges medmesh's own conditions at `now` (the alarm timer, every
    /// second): raises or resolves their system alarms, logs and streams
    /// each change.
    pub fn check_system(&self, now: TimestampMs) {
        let health = self.store.health();
        let failing = (!health.healthy).then(|| {
            format!(
                "Readings cannot be stored: {}. Devices are refused (not acknowledged, so they \
                 resend) until it is fixed; free space or repair the data volume",
                health.error.as_deref().unwrap_or("write failed")
            )
        });
        let Some(change) = self.system_alarms.judge(CONDITION_STORAGE, failing, now) else {
            return;
        };
        let (kind, alarm) = match change {
            SystemChange::Raised(a) => {
                tracing::error!(condition = a.condition, message = %a.message, "system alarm raised");
                ("raised", a)
            }
            SystemChange::Resolved(a) => {
                tracing::warn!(
                    condition = a.condition,
                    "system alarm resolved: storage works again"
                );
                ("resolved", a)
            }
        };
        self.metrics
            .system_alarms_active(self.system_alarms.active_count());
        let _ = self.live.send(LiveEvent::SystemAlarm {
            change: kind,
            alarm,
        });
    }

    /// medmesh's own alarms: active first, then recently resolved.
    pub fn system_alarms(&self) -> Vec<SystemAlarm> {
        self.system_alarms.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alarm_per_condition_raised_once_and_resolved_once() {
        let s = SystemAlarms::default();
        let raised = s.judge(CONDITION_STORAGE, Some("disk full".into()), 10);
        assert!(matches!(raised, Some(SystemChange::Raised(ref a)) if a.raised_ms == 10));
        // Still failing, however many writes fail: nothing new.
        assert_eq!(
            s.judge(CONDITION_STORAGE, Some("disk full".into()), 11),
            None
        );
        assert_eq!(s.active_count(), 1);
        let resolved = s.judge(CONDITION_STORAGE, None, 20);
        assert!(
            matches!(resolved, Some(SystemChange::Resolved(ref a)) if a.resolved_ms == Some(20))
        );
        assert_eq!(s.judge(CONDITION_STORAGE, None, 21), None);
        assert_eq!(s.list().len(), 1);
        assert_eq!(s.active_count(), 0);
    }
}
