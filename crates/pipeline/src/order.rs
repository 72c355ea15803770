//! Turns: the rules see one device's messages in the order they arrived.
//!
//! Sources store messages concurrently (an MQTT connection with 64 QoS 1
//! publishes in flight has 64 appends sharing group commits), and the
//! appends may finish in any order. The rules must not: a short dip followed
//! by a normal reading, judged in the wrong order, would never raise its
//! alarm. So every message takes a [`Turn`] for its device when it arrives
//! (synchronously, before any task is spawned), stores its samples without
//! waiting for anyone, and then waits for the previous message's turn to end
//! before the rules see it.
//!
//! A turn ends when it is dropped: after its rules ran, or when its message
//! failed (storage refused it, the task was cancelled). Nothing can wait on a
//! later turn, so there is no cycle: the chain always drains.

use medmesh_model::DeviceId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The latest turn taken per device.
#[derive(Default)]
pub(crate) struct Turns {
    last: Mutex<HashMap<DeviceId, oneshot::Receiver<()>>>,
}

/// One message's place in its device's order. Dropping it lets the next
/// message of the device go on.
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    /// Never sent: dropping it is the signal.
    _ends: oneshot::Sender<()>,
}

impl Turns {
    /// Takes the next turn of `device`.
    pub(crate) fn take(&self, device: &DeviceId) -> Turn {
        let (ends, ended) = oneshot::channel();
        let mut last = self.last.lock().expect("turns lock");
        let previous = match last.get_mut(device) {
            Some(slot) => Some(std::mem::replace(slot, ended)),
            None => {
                last.insert(device.clone(), ended);
                None
            }
        };
        Turn {
            previous,
            _ends: ends,
        }
    }
}

impl Turn {
    /// A turn that follows no other (tests, internal re-judging).
    pub fn first() -> Turn {
        Turn {
            previous: None,
            _ends: oneshot::channel().0,
        }
    }

    /// Waits until every earlier message of the device has been judged (or
    /// failed). Waiting again returns at once.
    pub(crate) async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the previous turn was dropped: it has ended.
            let _ = previous.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn turns_end_in_the_order_they_were_taken_whatever_order_they_finish() {
        let turns = Turns::default();
        let device = DeviceId::new("mon-1").unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let mut turn = turns.take(&device);
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                // Later messages finish storing first.
                tokio::time::sleep(std::time::Duration::from_millis(40 - 2 * i)).await;
                turn.wait().await;
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dropped_turn_lets_the_next_one_go_on() {
        let turns = Turns::default();
        let device = DeviceId::new("mon-1").unwrap();
        let failed = turns.take(&device);
        let mut next = turns.take(&device);
        drop(failed);
        tokio::time::timeout(std::time::Duration::from_secs(5), next.wait())
            .await
            .expect("the next turn is not held by a failed one");
        // Another device never waits on this one.
        let mut other = turns.take(&DeviceId::new("mon-2").unwrap());
        other.wait().await;
    }
}
