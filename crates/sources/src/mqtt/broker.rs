//! The broker side that goes beyond ingest: sessions, subscriptions and
//! delivery, so that medmesh can send commands to devices and route last
//! wills, without an external broker.
//!
//! A session belongs to a client ID. It holds the client's subscriptions,
//! the QoS 1 messages sent but not yet acknowledged, and, while the client is
//! away, the QoS 1 messages waiting for it. A clean session ends with its
//! connection; a persistent one (MQTT 3.1.1 clean session 0, MQTT 5 session
//! expiry > 0) is kept, and on reconnect unacknowledged messages are sent again
//! (DUP set) before the queued ones. Sessions live in memory: a restart of
//! medmesh ends them (sensor data is durable; commands are not).
//!
//! An account's session (an integration signed in with an `alarm-feed`
//! token, [`Account`]) is its own: keyed by the account as well as the
//! client ID, so no device or other client can take it over or be taken
//! over by it, and every message routed to it by topic is put to the
//! account again ([`Account::may_receive`]) before it is sent or queued,
//! and again when a queued or unacknowledged one is sent on reconnect.

use super::account::{Account, AlarmSubject};
use super::codec::Outbound;
use bytes::Bytes;
use medmesh_model::DeviceId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

/// Messages kept for an offline persistent session; older ones are dropped.
const MAX_QUEUED: usize = 1000;

/// A message to route to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// 0 or 1 (QoS 2 is delivered as 1).
    pub qos: u8,
    /// The alarm an alarm change is about, for the accounts whose feed is
    /// filtered per alarm; `None` for anything else (commands, wills),
    /// which no account receives.
    pub alarm: Option<AlarmSubject>,
}

/// Whose session: a client ID alone, or a client ID of one account (so an
/// account's session cannot be reached by a client that is not it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SessionKey {
    Client(String),
    Account { username: String, client_id: String },
}

/// What [`Broker::publish`] did with a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Sent to connected subscribers.
    pub delivered: usize,
    /// Kept for subscribers whose persistent session is offline.
    pub queued: usize,
}

/// The live connection of a session.
struct Link {
    id: u64,
    out: mpsc::Sender<Outbound>,
    /// The device the connection acts for (authenticated, or named by an
    /// anonymous client's ID), so that changing its credentials closes it.
    device: Option<DeviceId>,
    /// Told to close when another connection takes the session over, or
    /// when its device's credentials are revoked or replaced.
    kick: Arc<Notify>,
    /// Set before `kick` when the connection taking over acts for the same
    /// device: the device is not off line, it came back on a new connection.
    taken_over: Arc<AtomicBool>,
}

#[derive(Default)]
struct Session {
    /// The account the session belongs to: every message is put to it.
    account: Option<Arc<dyn Account>>,
    subscriptions: Vec<(String, u8)>,
    persistent: bool,
    link: Option<Link>,
    inflight: BTreeMap<u16, Message>,
    queue: VecDeque<Message>,
    next_pkid: u16,
}

impl Session {
    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Whether the session's account (if any) may be sent `m` now.
    fn may_receive(&self, m: &Message) -> bool {
        match &self.account {
            None => true,
            Some(account) => m.alarm.as_ref().is_some_and(|a| account.may_receive(a)),
        }
    }

    /// Sends (or, offline, queues) `m` at `qos`; true if sent now.
    fn deliver(&mut self, m: &Message, qos: u8) -> bool {
        let Some(link) = &self.link else {
            if qos == 1 {
                if self.queue.len() >= MAX_QUEUED {
                    self.queue.pop_front();
                    tracing::warn!(topic = %m.topic, "offline session queue full; oldest message dropped");
                }
                self.queue.push_back(Message { qos, ..m.clone() });
            }
            return false;
        };
        let out = link.out.clone();
        let pkid = if qos == 1 { self.pkid() } else { 0 };
        let packet = Outbound::Publish {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos,
            pkid,
            dup: false,
        };
        if qos == 1 {
            self.inflight.insert(pkid, Message { qos, ..m.clone() });
        }
        // A client too slow to take messages keeps them as unacknowledged;
        // they are sent again when it reconnects.
        out.try_send(packet).is_ok()
    }
}

#[derive(Default)]
pub struct Broker {
    sessions: Mutex<HashMap<SessionKey, Session>>,
    next_link: AtomicU64,
}

/// What a new connection gets from its session.
pub(crate) struct Attached {
    pub link_id: u64,
    pub session_present: bool,
    pub kick: Arc<Notify>,
    /// Whether a kick means that the same device took the session over.
    pub taken_over: Arc<AtomicBool>,
}

impl Broker {
    /// Attaches a connection to `client_id`'s session (taking it over from
    /// any other connection), and sends what the session owes the client.
    pub(crate) fn attach(
        &self,
        key: &SessionKey,
        device: Option<DeviceId>,
        account: Option<Arc<dyn Account>>,
        persistent: bool,
        out: mpsc::Sender<Outbound>,
    ) -> Attached {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        // MQTT 3.1.1 section 3.1.4: a second connection with the same
        // client ID takes over; the first one is closed.
        if let Some(old) = sessions.get_mut(key).and_then(|s| s.link.take()) {
            if old.device == device {
                old.taken_over.store(true, Ordering::Release);
            }
            old.kick.notify_one();
        }
        if !persistent {
            sessions.remove(key);
        }
        let session_present = sessions.contains_key(key);
        let session = sessions.entry(key.clone()).or_default();
        session.persistent = persistent;
        // The account as it signed in now (its token may be a new one).
        session.account = account;
        let kick = Arc::new(Notify::new());
        let taken_over = Arc::new(AtomicBool::new(false));
        let link_id = self.next_link.fetch_add(1, Ordering::Relaxed);
        // What the account may no longer see (a care team changed while it
        // was away) is not sent again.
        let refused: Vec<u16> = session
            .inflight
            .iter()
            .filter(|(_, m)| !session.may_receive(m))
            .map(|(pkid, _)| *pkid)
            .collect();
        for pkid in refused {
            session.inflight.remove(&pkid);
        }
        // Unacknowledged messages first, flagged as duplicates, then the queue.
        for (pkid, m) in &session.inflight {
            let _ = out.try_send(Outbound::Publish {
                topic: m.topic.clone(),
                payload: m.payload.clone(),
                qos: 1,
                pkid: *pkid,
                dup: true,
            });
        }
        session.link = Some(Link {
            id: link_id,
            out,
            device,
            kick: kick.clone(),
            taken_over: taken_over.clone(),
        });
        let queued: Vec<Message> = session.queue.drain(..).collect();
        for m in &queued {
            if session.may_receive(m) {
                session.deliver(m, m.qos);
            }
        }
        Attached {
            link_id,
            session_present,
            kick,
            taken_over,
        }
    }

    /// Closes every connection acting for `device` at once (its credentials
    /// were revoked or replaced: what it proved no longer holds); returns
    /// how many. Each ends as if its network went away: its session is
    /// kept or ended as usual and a reconnect must authenticate again.
    pub fn close_device(&self, device: &DeviceId) -> usize {
        let sessions = self.sessions.lock().expect("sessions lock");
        let mut closed = 0;
        for link in sessions.values().filter_map(|s| s.link.as_ref()) {
            if link.device.as_ref() == Some(device) {
                // notify_one stores a permit, so a connection between two
                // reads still sees it.
                link.kick.notify_one();
                closed += 1;
            }
        }
        closed
    }

    /// Closes every connection of account `username` (only those signed in
    /// with token `token_id`, when given) at once: the token was revoked or
    /// the user disabled. Returns how many.
    pub fn close_account(&self, username: &str, token_id: Option<&str>) -> usize {
        let sessions = self.sessions.lock().expect("sessions lock");
        let mut closed = 0;
        for session in sessions.values() {
            let (Some(account), Some(link)) = (&session.account, &session.link) else {
                continue;
            };
            if account.username() == username && token_id.is_none_or(|t| account.token_id() == t) {
                link.kick.notify_one();
                closed += 1;
            }
        }
        closed
    }

    /// The connection `link_id` ended: a clean session ends with it.
    pub(crate) fn detach(&self, key: &SessionKey, link_id: u64) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let Some(session) = sessions.get_mut(key) else {
            return;
        };
        if session.link.as_ref().is_none_or(|l| l.id != link_id) {
            return; // Taken over by a newer connection.
        }
        if session.persistent {
            session.link = None;
        } else {
            sessions.remove(key);
        }
    }

    /// Adds subscriptions; returns the QoS granted per filter (`None`: invalid filter).
    pub(crate) fn subscribe(&self, key: &SessionKey, filters: &[(String, u8)]) -> Vec<Option<u8>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.entry(key.clone()).or_default();
        filters
            .iter()
            .map(|(filter, qos)| {
                if !rumqttc::valid_filter(filter) {
                    return None;
                }
                let granted = (*qos).min(1);
                session.subscriptions.retain(|(f, _)| f != filter);
                session.subscriptions.push((filter.clone(), granted));
                Some(granted)
            })
            .collect()
    }

    pub(crate) fn unsubscribe(&self, key: &SessionKey, filters: &[String]) {
        if let Some(session) = self.sessions.lock().expect("sessions lock").get_mut(key) {
            session.subscriptions.retain(|(f, _)| !filters.contains(f));
        }
    }

    /// The client acknowledged a QoS 1 message.
    pub(crate) fn acked(&self, key: &SessionKey, pkid: u16) {
        if let Some(session) = self.sessions.lock().expect("sessions lock").get_mut(key) {
            session.inflight.remove(&pkid);
        }
    }

    /// Routes a message to every session subscribed to its topic, at the
    /// lower of the message's and the subscription's QoS; an account's
    /// session only if the account may receive it (asked while the sessions
    /// are locked: an account's check must never call back into the broker).
    pub fn publish(&self, message: Message) -> Delivery {
        let mut delivery = Delivery::default();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        for session in sessions.values_mut() {
            let Some(qos) = session
                .subscriptions
                .iter()
                .filter(|(f, _)| rumqttc::matches(&message.topic, f))
                .map(|(_, q)| *q)
                .max()
            else {
                continue;
            };
            if !session.may_receive(&message) {
                continue;
            }
            let qos = qos.min(message.qos.min(1));
            if session.deliver(&message, qos) {
                delivery.delivered += 1;
            } else if qos == 1 && session.link.is_none() {
                delivery.queued += 1;
            }
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"{}"),
            qos: 1,
            alarm: None,
        }
    }

    fn key(client_id: &str) -> SessionKey {
        SessionKey::Client(client_id.into())
    }

    #[test]
    fn wildcard_subscriptions_route_and_offline_persistent_sessions_queue() {
        let broker = Broker::default();
        let (tx, mut rx) = mpsc::channel(16);
        let a = broker.attach(&key("dev-1"), None, None, true, tx);
        assert!(!a.session_present);
        assert_eq!(
            broker.subscribe(
                &key("dev-1"),
                &[
                    ("medmesh/v1/devices/dev-1/#".into(), 1),
                    ("bad/#/x".into(), 0)
                ]
            ),
            [Some(1), None]
        );
        assert_eq!(
            broker.publish(msg("medmesh/v1/devices/dev-1/commands")),
            Delivery {
                delivered: 1,
                queued: 0
            }
        );
        assert_eq!(
            broker.publish(msg("medmesh/v1/devices/dev-2/commands")),
            Delivery::default()
        );
        let Outbound::Publish {
            pkid, dup: false, ..
        } = rx.try_recv().unwrap()
        else {
            panic!("a publish")
        };

        // Offline without acknowledging: the message is owed, and a new one queues.
        broker.detach(&key("dev-1"), a.link_id);
        assert_eq!(
            broker.publish(msg("medmesh/v1/devices/dev-1/commands")),
            Delivery {
                delivered: 0,
                queued: 1
            }
        );
        let (tx, mut rx) = mpsc::channel(16);
        let b = broker.attach(&key("dev-1"), None, None, true, tx);
        assert!(b.session_present);
        let Outbound::Publish {
            pkid: again,
            dup: true,
            ..
        } = rx.try_recv().unwrap()
        else {
            panic!("a resend")
        };
        assert_eq!(again, pkid);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Outbound::Publish { dup: false, .. }
        ));
    }

    #[test]
    fn clean_sessions_end_with_their_connection_and_takeover_kicks_the_old_one() {
        let broker = Broker::default();
        let (tx, _rx) = mpsc::channel(16);
        let a = broker.attach(&key("c"), None, None, false, tx);
        broker.subscribe(&key("c"), &[("t".into(), 1)]);
        let (tx2, _rx2) = mpsc::channel(16);
        let b = broker.attach(&key("c"), None, None, false, tx2);
        assert!(!b.session_present);
        // The first connection was told to go; its late detach changes nothing.
        let kicked = a.kick.notified();
        futures_lite_ready(kicked);
        broker.detach(&key("c"), a.link_id);
        broker.subscribe(&key("c"), &[("t".into(), 1)]);
        assert_eq!(broker.publish(msg("t")).delivered, 1);
        broker.detach(&key("c"), b.link_id);
        assert_eq!(broker.publish(msg("t")), Delivery::default());
    }

    /// An account that sees the patients listed in `sees`.
    struct Feed {
        sees: Mutex<Vec<&'static str>>,
    }

    impl Account for Feed {
        fn username(&self) -> &str {
            "nursecall"
        }
        fn token_id(&self) -> &str {
            "tok-1"
        }
        fn may_receive(&self, alarm: &AlarmSubject) -> bool {
            self.sees.lock().unwrap().contains(&alarm.patient.as_str())
        }
        fn audit(&self, _: &str, _: bool, _: &str) {}
    }

    fn alarm(patient: &str) -> Message {
        Message {
            alarm: Some(AlarmSubject {
                patient: medmesh_model::PatientId::new(patient).unwrap(),
                priority: medmesh_model::Priority::High,
                level: 0,
            }),
            ..msg(&format!("medmesh/v1/alarms/{patient}"))
        }
    }

    #[test]
    fn an_accounts_session_is_its_own_and_gets_only_what_it_may_receive() {
        let broker = Broker::default();
        let feed = Arc::new(Feed {
            sees: Mutex::new(vec!["p1"]),
        });
        let mine = SessionKey::Account {
            username: "nursecall".into(),
            client_id: "pager".into(),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let a = broker.attach(&mine, None, Some(feed.clone()), true, tx);
        broker.subscribe(&mine, &[("medmesh/v1/alarms/+".into(), 1)]);
        // Another client with the same client ID has a session of its own:
        // the account's is neither taken over nor shared.
        let (tx2, mut rx2) = mpsc::channel(16);
        broker.attach(&key("pager"), None, None, false, tx2);
        broker.subscribe(&key("pager"), &[("medmesh/v1/alarms/+".into(), 1)]);
        let kicked = std::pin::pin!(a.kick.notified());
        assert!(!kicked.enable(), "the account's connection stays");
        assert_eq!(broker.publish(alarm("p1")).delivered, 2);
        assert!(matches!(rx.try_recv(), Ok(Outbound::Publish { .. })));
        assert!(rx2.try_recv().is_ok());
        // Another ward's patient, or a message that is no alarm: not to it.
        assert_eq!(broker.publish(alarm("p2")).delivered, 1);
        assert_eq!(
            broker.publish(msg("medmesh/v1/alarms/p1")).delivered,
            1,
            "no alarm subject, no account"
        );
        assert!(rx.try_recv().is_err());
        // Decided per message: the account's reach changed, so does its feed.
        feed.sees.lock().unwrap().push("p2");
        assert_eq!(broker.publish(alarm("p2")).delivered, 2);
        // Offline, what it may no longer see is neither queued nor resent.
        broker.detach(&mine, a.link_id);
        feed.sees.lock().unwrap().clear();
        assert_eq!(broker.publish(alarm("p1")).queued, 0);
        let (tx, mut rx) = mpsc::channel(16);
        let b = broker.attach(&mine, None, Some(feed.clone()), true, tx);
        assert!(b.session_present);
        assert!(
            rx.try_recv().is_err(),
            "the unacknowledged ones are dropped"
        );
        // Closed by token, or by user; another token's revocation leaves it.
        assert_eq!(broker.close_account("nursecall", Some("tok-2")), 0);
        assert_eq!(broker.close_account("someone", None), 0);
        assert_eq!(broker.close_account("nursecall", Some("tok-1")), 1);
        assert_eq!(broker.close_account("nursecall", None), 1);
    }

    /// The notification was stored: awaiting it completes at once.
    fn futures_lite_ready(n: tokio::sync::futures::Notified<'_>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(100), n)
                .await
                .expect("kicked");
        });
    }
}
