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

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The latest turn taken per key (a device for the rules; an alarm and
/// receiver for the notifying sinks). A key whose last turn ended is
/// forgotten, so the map holds only keys with messages under way.
pub struct Turns<K: Eq + Hash + Clone> {
    last: Arc<Mutex<Chains<K>>>,
}

struct Chains<K> {
    /// The newest turn of each key: its number, and what ends with it.
    newest: HashMap<K, (u64, oneshot::Receiver<()>)>,
    taken: u64,
}

impl<K: Eq + Hash + Clone> Default for Turns<K> {
    fn default() -> Self {
        Turns {
            last: Arc::new(Mutex::new(Chains {
                newest: HashMap::new(),
                taken: 0,
            })),
        }
    }
}

/// One message's place in its key's order. Dropping it lets the next
/// message of the key go on.
pub struct Turn<K: Eq + Hash + Clone = medmesh_model::DeviceId> {
    previous: Option<oneshot::Receiver<()>>,
    /// Never sent: dropping it is the signal.
    _ends: oneshot::Sender<()>,
    /// Where to forget the key if this is still its newest turn.
    chains: Arc<Mutex<Chains<K>>>,
    key: K,
    number: u64,
}

impl<K: Eq + Hash + Clone> Turns<K> {
    /// Takes the next turn of `key`.
    pub fn take(&self, key: &K) -> Turn<K> {
        let (ends, ended) = oneshot::channel();
        let mut chains = self.last.lock().expect("turns lock");
        chains.taken += 1;
        let number = chains.taken;
        let previous = chains
            .newest
            .insert(key.clone(), (number, ended))
            .map(|(_, previous)| previous);
        Turn {
            previous,
            _ends: ends,
            chains: self.last.clone(),
            key: key.clone(),
            number,
        }
    }
}

impl<K: Eq + Hash + Clone> Turn<K> {
    /// Waits until every earlier message of the key has been handled (or
    /// failed). Waiting again returns at once.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // An error means the previous turn was dropped: it has ended.
            let _ = previous.await;
        }
    }
}

impl<K: Eq + Hash + Clone> Drop for Turn<K> {
    fn drop(&mut self) {
        let mut chains = self.chains.lock().expect("turns lock");
        if chains
            .newest
            .get(&self.key)
            .is_some_and(|(n, _)| *n == self.number)
        {
            chains.newest.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn turns_end_in_the_order_they_were_taken_whatever_order_they_finish() {
        let turns = Turns::default();
        let device = medmesh_model::DeviceId::new("mon-1").unwrap();
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
        let device = medmesh_model::DeviceId::new("mon-1").unwrap();
        let failed = turns.take(&device);
        let mut next = turns.take(&device);
        drop(failed);
        tokio::time::timeout(std::time::Duration::from_secs(5), next.wait())
            .await
            .expect("the next turn is not held by a failed one");
        // Another device never waits on this one.
        let mut other = turns.take(&medmesh_model::DeviceId::new("mon-2").unwrap());
        other.wait().await;
        drop((next, other));
        assert!(
            turns.last.lock().unwrap().newest.is_empty(),
            "keys with no turn under way are forgotten"
        );
    }
}
