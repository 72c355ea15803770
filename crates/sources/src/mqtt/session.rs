//! One client connection: CONNECT, then publishes until the client leaves.
//!
//! The connection is split in two tasks. The reader decodes packets and
//! starts storing each publish at once (so publishes of one connection share
//! group commits); the writer answers in the order packets arrived, waiting
//! for each publish to be durable before acknowledging it, as MQTT requires
//! (3.1.1 section 4.6, 5.0 section 4.6).

use super::MqttSettings;
use super::account::{Account, Accounts, Login};
use super::broker::{Broker, Message, SessionKey};
use super::codec::{self, AckReason, CodecError, Granted, Inbound, Outbound, Version};
use super::topic::{may_subscribe, may_subscribe_alarm_feed, may_will, parse_topic};
use bytes::{Bytes, BytesMut};
use medmesh_model::DeviceId;
use medmesh_pipeline::{DeviceIdentity, IngestError, Pipeline, Proof, Refusal, SourceKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A client that connects must send CONNECT within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The storage outcome of one publish: the acknowledgement to send, or `Err`
/// when storage failed and the publish must not be acknowledged.
type StoreTask = JoinHandle<Result<AckReason, String>>;

enum Pending {
    Reply(Outbound),
    Publish {
        pkid: u16,
        qos: u8,
        stored: StoreTask,
    },
}

/// What every connection of a listener shares, and where this one is from.
pub(crate) struct Shared {
    pub pipeline: Arc<Pipeline>,
    pub broker: Arc<Broker>,
    pub settings: Arc<MqttSettings>,
    pub accounts: Option<Arc<dyn Accounts>>,
    pub peer: std::net::SocketAddr,
}

/// Serves one MQTT connection, over TCP or TLS. `certified` is the device a
/// verified TLS client certificate names, if any.
pub(crate) async fn serve<S>(
    stream: S,
    certified: Option<DeviceId>,
    shared: Shared,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let Shared {
        pipeline,
        broker,
        settings,
        accounts,
        peer,
    } = shared;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max = settings.max_packet_bytes;
    let mut buf = BytesMut::with_capacity(8 * 1024);

    let version =
        match tokio::time::timeout(CONNECT_TIMEOUT, read_version(&mut rd, &mut buf, max)).await {
            Err(_) => return Err("no CONNECT within 10 s".into()),
            Ok(Err(CodecError::UnsupportedVersion(why))) => {
                // Both 3.1.1 and 5 clients understand a 3.1.1 CONNACK refusal.
                let mut out = BytesMut::new();
                codec::write(
                    Version::V311,
                    &Outbound::ConnAckUnsupportedVersion,
                    &mut out,
                );
                let _ = wr.write_all(&out).await;
                return Err(format!("refused: {why}"));
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(v)) => v,
        };
    let (client_id, keep_alive_s, persistent, will, login) =
        match codec::read(version, &mut buf, max) {
            Ok(Some(Inbound::Connect {
                client_id,
                keep_alive_s,
                persistent,
                will,
                login,
            })) => (client_id, keep_alive_s, persistent, will, login),
            Ok(_) => return Err("first packet is not CONNECT".into()),
            Err(e) => return Err(e.to_string()),
        };
    // An account's login (its password is an API token) is an account's,
    // whatever its client ID; a certificate always names a device.
    let account = match (&accounts, &login, &certified) {
        (Some(accounts), Some((username, password)), None) => accounts.sign_in(&Login {
            username,
            password,
            client_id: &client_id,
            peer,
        }),
        _ => None,
    };
    let identity = match account {
        None => authenticate(&pipeline, &settings, &client_id, login, certified)
            .await
            .map(Who::Client),
        Some(Ok(account)) => Ok(Who::Account(account)),
        Some(Err(Refusal::BadCredentials(why))) => Err((Outbound::ConnAckBadCredentials, why)),
        Some(Err(Refusal::NotAuthorized(why))) => Err((Outbound::ConnAckNotAuthorized, why)),
    };
    // The authenticated device, or else a client ID that is a device ID,
    // says which device is on line and whose topics the client may use. An
    // account is no device, whatever its client ID.
    let named = !client_id.is_empty();
    let device = identity.as_ref().ok().and_then(|who| match who {
        Who::Client(who) => who
            .device()
            .cloned()
            .or_else(|| DeviceId::new(client_id.clone()).ok().filter(|_| named)),
        Who::Account(_) => None,
    });
    let identity = identity.and_then(|who| match (&will, &who) {
        (Some(_), Who::Account(account)) => {
            let why = "an alarm-feed account publishes nothing, not even a will".to_string();
            account.audit("MQTT alarm feed connect", false, &why);
            Err((Outbound::ConnAckNotAuthorized, why))
        }
        (Some(w), Who::Client(client)) => {
            may_will(client.device().is_some(), device.as_ref(), &w.topic)
                .map(|()| who)
                .map_err(|why| (Outbound::ConnAckNotAuthorized, why))
        }
        (None, _) => Ok(who),
    });
    let identity = match identity {
        Ok(identity) => identity,
        Err((refusal, why)) => {
            let mut out = BytesMut::new();
            codec::write(version, &refusal, &mut out);
            let _ = wr.write_all(&out).await;
            pipeline.metrics.refused_message(SourceKind::Mqtt);
            tracing::warn!(client_id, %peer, reason = why, "MQTT connection refused");
            return Err(format!("refused: {why}"));
        }
    };
    let account = match &identity {
        Who::Account(a) => Some(a.clone()),
        Who::Client(_) => None,
    };
    if let Some(account) = &account {
        account.audit(
            "MQTT alarm feed connect",
            true,
            &format!(
                "client {client_id:?} from {peer}, token {}",
                account.token_id()
            ),
        );
    }
    // MQTT 3.1.1 lets a clean-session client leave its ID empty: assign one.
    let client_id = if client_id.is_empty() {
        format!("anonymous-{}", ANONYMOUS.fetch_add(1, Ordering::Relaxed))
    } else {
        client_id
    };
    tracing::debug!(
        client_id,
        ?version,
        keep_alive_s,
        persistent,
        "MQTT client connected"
    );

    let key = match &account {
        Some(a) => SessionKey::Account {
            username: a.username().to_string(),
            client_id: client_id.clone(),
        },
        None => SessionKey::Client(client_id.clone()),
    };
    let (replies, queue) = mpsc::channel(settings.max_inflight);
    let (deliveries_tx, deliveries) = mpsc::channel(DELIVERY_QUEUE);
    let attached = broker.attach(
        &key,
        device.clone(),
        account.clone(),
        persistent,
        deliveries_tx,
    );
    let writer = tokio::spawn(write_loop(wr, version, queue, deliveries));
    let _ = replies
        .send(Pending::Reply(Outbound::ConnAckAccepted {
            session_present: attached.session_present,
        }))
        .await;
    if let Some(d) = &device {
        pipeline.device_status(d, true, true, "connected");
    }

    // The server may close a connection idle for 1.5 x keep-alive (MQTT 3.1.1 section 3.1.2.10).
    let idle_limit =
        (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
    let conn = Conn {
        identity: match &identity {
            Who::Client(who) => who.device(),
            Who::Account(_) => None,
        },
        account: account.as_ref(),
        own: device.as_ref(),
        key: &key,
        client_id: &client_id,
        broker: &broker,
        kick: &attached.kick,
        taken_over: &attached.taken_over,
        pipeline: &pipeline,
        version,
        max,
        idle_limit,
    };
    let end = read_loop(&mut rd, &mut buf, &replies, &conn).await;
    drop(replies);
    broker.detach(&key, attached.link_id);
    let reason = match &end {
        Ok(End::Disconnect) => "disconnected".to_string(),
        Ok(End::Closed) => "connection closed without DISCONNECT".to_string(),
        Ok(End::StorageFailed) => "closed by medmesh: storage failed".to_string(),
        Ok(End::TakenOver) => "taken over by the device's new connection".to_string(),
        Err(e) => e.clone(),
    };
    if let Some(account) = &account {
        account.audit(
            "MQTT alarm feed closed",
            true,
            &format!("client {client_id:?} from {peer}: {reason}"),
        );
    }
    if !matches!(end, Ok(End::Disconnect)) {
        // MQTT 3.1.1 section 3.1.2.5: the will is published unless the client
        // said goodbye with DISCONNECT.
        if let Some(w) = will {
            let delivery = broker.publish(Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                alarm: None,
            });
            tracing::info!(client_id, ?delivery, "last will published");
        }
    }
    if let Some(d) = &device
        && !matches!(end, Ok(End::TakenOver))
    {
        // Taken over: the device is on line on its new connection, which
        // said so already; an "off line" now would be false, and stay.
        // Our own storage failure closed it: the device did nothing wrong,
        // and one offline alarm per device per reconnect would bury the
        // real ones; the failure shows on /healthz and its metric.
        let expected = matches!(end, Ok(End::Disconnect | End::StorageFailed));
        pipeline.device_status(d, false, expected, &reason);
    }
    // Let the writer finish acknowledging what was already stored.
    let written = writer.await.unwrap_or_else(|e| Err(e.to_string()));
    end.map(|_| ()).and(written)
}

/// Client IDs handed out to clients that sent none.
static ANONYMOUS: AtomicU64 = AtomicU64::new(1);
/// Broker-originated messages (commands, wills) waiting to be written.
const DELIVERY_QUEUE: usize = 256;

/// Who a connection is: a device or anonymous client, or an account.
enum Who {
    Client(DeviceIdentity),
    Account(Arc<dyn Account>),
}

/// How a connection ended without error.
enum End {
    Disconnect,
    Closed,
    /// The writer stopped because storage failed (the publish was not
    /// acknowledged; the device resends it).
    StorageFailed,
    /// A new connection of the same device took the session over (a device
    /// reconnecting before its old connection timed out).
    TakenOver,
}

/// What the read loop needs of the connection and its session.
struct Conn<'a> {
    /// The device the client authenticated as; `None` for anonymous clients
    /// and accounts.
    identity: Option<&'a DeviceId>,
    /// The account signed in, which publishes nothing and subscribes to
    /// the alarm feed only.
    account: Option<&'a Arc<dyn Account>>,
    key: &'a SessionKey,
    /// Whose topics the client may subscribe to: the authenticated device,
    /// or the device an anonymous client's ID names.
    own: Option<&'a DeviceId>,
    client_id: &'a str,
    broker: &'a Broker,
    kick: &'a tokio::sync::Notify,
    taken_over: &'a std::sync::atomic::AtomicBool,
    pipeline: &'a Arc<Pipeline>,
    version: Version,
    max: usize,
    idle_limit: Option<Duration>,
}

async fn read_version(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: usize,
) -> Result<Version, CodecError> {
    loop {
        if let Some(v) = codec::sniff_version(buf, max)? {
            return Ok(v);
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => {
                return Err(CodecError::Malformed(
                    "connection closed before CONNECT".into(),
                ));
            }
            Ok(_) => {}
        }
    }
}

async fn read_loop(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
    replies: &mpsc::Sender<Pending>,
    conn: &Conn<'_>,
) -> Result<End, String> {
    let (session, pipeline) = (conn, conn.pipeline);
    loop {
        while let Some(packet) =
            codec::read(conn.version, buf, conn.max).map_err(|e| e.to_string())?
        {
            let pending = match packet {
                Inbound::Publish {
                    topic,
                    qos,
                    pkid,
                    payload,
                } => Pending::Publish {
                    pkid,
                    qos,
                    stored: match conn.account {
                        Some(account) => refuse_account_publish(pipeline, account, topic),
                        None => start_storing(pipeline, conn.identity.cloned(), topic, payload),
                    },
                },
                Inbound::PubRel { pkid } => Pending::Reply(Outbound::PubComp { pkid }),
                Inbound::Subscribe { pkid, filters } => {
                    let granted = filters
                        .iter()
                        .map(|(filter, qos)| subscribe(conn, filter, *qos))
                        .collect();
                    Pending::Reply(Outbound::SubAck { pkid, granted })
                }
                Inbound::Unsubscribe { pkid, filters } => {
                    session.broker.unsubscribe(session.key, &filters);
                    Pending::Reply(Outbound::UnsubAck {
                        pkid,
                        filters: filters.len(),
                    })
                }
                Inbound::PubAck { pkid } => {
                    session.broker.acked(session.key, pkid);
                    continue;
                }
                Inbound::PingReq => Pending::Reply(Outbound::PingResp),
                Inbound::Disconnect => return Ok(End::Disconnect),
                Inbound::Connect { .. } => return Err("second CONNECT on one connection".into()),
                Inbound::Unexpected(name) => {
                    tracing::debug!(packet = name, "ignoring packet a client should not send");
                    continue;
                }
            };
            // Waits when max_inflight publishes are being stored: back-pressure.
            if replies.send(pending).await.is_err() {
                return Err("writer stopped".into());
            }
        }
        let read = rd.read_buf(buf);
        let n = tokio::select! {
            n = async {
                match conn.idle_limit {
                    Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| "keep-alive expired".to_string())?,
                    None => read.await,
                }
                .map_err(|e| e.to_string())
            } => n?,
            // The writer gave up (storage failure): stop reading too.
            _ = replies.closed() => return Ok(End::StorageFailed),
            _ = session.kick.notified() => {
                if session.taken_over.load(std::sync::atomic::Ordering::Acquire) {
                    return Ok(End::TakenOver);
                }
                return Err("session closed by the broker: taken over by another client, the device's credentials changed, or the account's token was revoked or its user disabled".into());
            }
        };
        if n == 0 {
            return Ok(End::Closed);
        }
    }
}

/// Checks one SUBSCRIBE filter against what the client may reach; a
/// refused filter gets a failure code in the SUBACK, the others go on.
fn subscribe(conn: &Conn<'_>, filter: &str, qos: u8) -> Granted {
    let allowed = match conn.account {
        // Every subscription of an account is audited: who, which filter.
        Some(account) => {
            let allowed = may_subscribe_alarm_feed(filter);
            let detail = match &allowed {
                Ok(()) => format!("client {:?}: {filter:?}", conn.client_id),
                Err(why) => format!("client {:?}: {why}", conn.client_id),
            };
            account.audit("MQTT alarm feed subscribe", allowed.is_ok(), &detail);
            allowed
        }
        None => may_subscribe(conn.identity.is_some(), conn.own, filter),
    };
    if let Err(why) = allowed {
        conn.pipeline.metrics.refused_message(SourceKind::Mqtt);
        tracing::warn!(
            client_id = conn.client_id,
            filter,
            reason = why,
            "MQTT subscription refused"
        );
        return Granted::NotAuthorized;
    }
    match conn
        .broker
        .subscribe(conn.key, &[(filter.to_string(), qos)])[0]
    {
        Some(q) => Granted::Qos(q),
        None => Granted::InvalidFilter,
    }
}

/// Decides who a CONNECT is, through the pipeline's device-identity
/// decision: a user name is a device ID and the password its token; a
/// verified client certificate names its device. A client that presents
/// neither is anonymous: refused where anonymous clients are not allowed,
/// and always refused the client ID (and so the session and commands) of a
/// device that has credentials.
async fn authenticate(
    pipeline: &Pipeline,
    settings: &MqttSettings,
    client_id: &str,
    login: Option<(String, String)>,
    certified: Option<DeviceId>,
) -> Result<DeviceIdentity, (Outbound, String)> {
    let refused = |r: Refusal| match r {
        Refusal::BadCredentials(why) => (Outbound::ConnAckBadCredentials, why),
        Refusal::NotAuthorized(why) => (Outbound::ConnAckNotAuthorized, why),
    };
    // A client certificate issued by the configured device CA names the
    // device (its Common Name); no password is needed on top.
    let proof = match (certified, login) {
        (Some(device), _) => Proof::Certificate(device),
        (None, Some((user, token))) => Proof::Token {
            device: DeviceId::new(user.clone()).map_err(|_| {
                (
                    Outbound::ConnAckBadCredentials,
                    format!("user name {user:?} is not a device id"),
                )
            })?,
            token,
        },
        (None, None) => Proof::Nothing,
    };
    let claimed = DeviceId::new(client_id).ok();
    if let (Proof::Nothing, Some(d)) = (&proof, &claimed) {
        pipeline
            .authorize_device(&DeviceIdentity::Anonymous, d)
            .map_err(refused)?;
    }
    let who = pipeline
        .authenticate_device(proof, settings.allow_anonymous)
        .await
        .map_err(refused)?;
    // The session is the device's own: another client ID would let one
    // device take over another's session and commands.
    if let Some(me) = who.device()
        && !client_id.is_empty()
        && client_id != me.as_str()
    {
        return Err((
            Outbound::ConnAckNotAuthorized,
            format!("device {me} must connect with client ID {me}, not {client_id:?}"),
        ));
    }
    Ok(who)
}

/// Whether the client (`identity`, `None` when anonymous) may publish for
/// `device`: a device only for itself, an anonymous client never for a
/// device that has credentials. `Some` is the refusal to acknowledge with.
fn authorize_publish(
    pipeline: &Pipeline,
    identity: Option<&DeviceId>,
    device: &DeviceId,
) -> Option<AckReason> {
    let who = identity.map_or(DeviceIdentity::Anonymous, |d| {
        DeviceIdentity::Device(d.clone())
    });
    let refusal = pipeline.authorize_device(&who, device).err()?;
    pipeline.device_refused(SourceKind::Mqtt, device, &refusal);
    Some(AckReason::NotAuthorized(refusal.reason().to_string()))
}

/// An account publishes nothing (it is no device, and alarms are medmesh's
/// to publish): the publish is refused (MQTT 5: "not authorized"; 3.1.1 can
/// only acknowledge), counted and audited.
fn refuse_account_publish(
    pipeline: &Pipeline,
    account: &Arc<dyn Account>,
    topic: Result<String, String>,
) -> StoreTask {
    let topic = topic.unwrap_or_else(|bad| bad);
    let why = format!("an alarm-feed account may not publish (topic {topic:?})");
    pipeline.metrics.refused_message(SourceKind::Mqtt);
    tracing::warn!(
        account = account.username(),
        topic,
        "MQTT publish by an account refused"
    );
    account.audit("MQTT publish", false, &why);
    tokio::spawn(async move { Ok(AckReason::NotAuthorized(why)) })
}

/// Spawns the storing of one publish; the writer awaits it in order.
/// The device's turn is taken here, as the publish arrives, so the rules see
/// this connection's publishes in the order it sent them however the
/// concurrent appends finish.
fn start_storing(
    pipeline: &Arc<Pipeline>,
    identity: Option<DeviceId>,
    topic: Result<String, String>,
    payload: Bytes,
) -> StoreTask {
    // The turn is taken with the topic read, before the task is spawned.
    let target = topic.and_then(|t| parse_topic(&t)).map(|t| {
        let turn = pipeline.turn(t.device());
        (t, turn)
    });
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        if let Ok((topic, _)) = &target
            && let Some(refused) = authorize_publish(&pipeline, identity.as_ref(), topic.device())
        {
            return Ok(refused);
        }
        let stored = match target {
            Ok((topic, turn)) => {
                let message = topic.payload(&payload);
                pipeline
                    .ingest(turn, SourceKind::Mqtt, topic.device(), message)
                    .await
            }
            Err(reason) => {
                pipeline.metrics.malformed_message(SourceKind::Mqtt);
                tracing::warn!(reason, "MQTT publish to an unknown topic rejected");
                return Ok(AckReason::TopicNameInvalid(reason));
            }
        };
        match stored {
            Ok(report) if report.rejected.is_empty() => Ok(AckReason::Success),
            Ok(report) => {
                let first = &report.rejected[0];
                Ok(AckReason::PartlyAccepted(format!(
                    "{} records stored, {} rejected; record {}: {}",
                    report.accepted,
                    report.rejected.len(),
                    first.index,
                    first.reason
                )))
            }
            Err(IngestError::Malformed(e)) => Ok(AckReason::PayloadFormatInvalid(e.to_string())),
            Err(IngestError::Storage(e)) => Err(e.to_string()),
        }
    })
}

async fn write_loop(
    mut wr: impl tokio::io::AsyncWrite + Unpin,
    version: Version,
    mut queue: mpsc::Receiver<Pending>,
    mut deliveries: mpsc::Receiver<Outbound>,
) -> Result<(), String> {
    let mut out = BytesMut::with_capacity(4 * 1024);
    loop {
        let reply = tokio::select! {
            pending = queue.recv() => match pending {
                None => break,
                Some(Pending::Reply(r)) => Some(r),
                Some(Pending::Publish { pkid, qos, stored }) => {
                    let reason = stored.await.map_err(|e| e.to_string())?.map_err(|e| {
                        // Not acknowledging makes the device keep the message and
                        // send it again on its next connection.
                        format!("storage failed, publish {pkid} not acknowledged: {e}")
                    })?;
                    match qos {
                        0 => None,
                        1 => Some(Outbound::PubAck { pkid, reason }),
                        _ => Some(Outbound::PubRec { pkid, reason }),
                    }
                }
            },
            Some(delivery) = deliveries.recv() => Some(delivery),
        };
        if let Some(reply) = reply {
            codec::write(version, &reply, &mut out);
        }
        // Coalesce replies into one write while more are already waiting.
        if queue.is_empty() && deliveries.is_empty() && !out.is_empty() {
            wr.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
    }
    if !out.is_empty() {
        wr.write_all(&out).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
