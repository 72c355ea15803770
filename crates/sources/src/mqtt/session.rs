//! One client connection: CONNECT, then publishes until the client leaves.
//!
//! The connection is split in two tasks. The reader decodes packets and
//! starts storing each publish at once (so publishes of one connection share
//! group commits); the writer answers in the order packets arrived, waiting
//! for each publish to be durable before acknowledging it, as MQTT requires
//! (3.1.1 section 4.6, 5.0 section 4.6).

use super::MqttSettings;
use super::broker::{Broker, Message};
use super::codec::{self, AckReason, CodecError, Inbound, Outbound, Version};
use super::topic::{DEVICE_TOPIC_PREFIX, parse_topic};
use bytes::{Bytes, BytesMut};
use medmesh_model::DeviceId;
use medmesh_pipeline::{IngestError, Pipeline, SourceKind};
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

/// Serves one MQTT connection, over TCP or TLS. `certified` is the device a
/// verified TLS client certificate names, if any.
pub(crate) async fn serve<S>(
    stream: S,
    certified: Option<DeviceId>,
    pipeline: Arc<Pipeline>,
    broker: Arc<Broker>,
    settings: Arc<MqttSettings>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
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
    let identity = match authenticate(&pipeline, &settings, &client_id, login, certified).await {
        Ok(identity) => identity,
        Err((refusal, why)) => {
            let mut out = BytesMut::new();
            codec::write(version, &refusal, &mut out);
            let _ = wr.write_all(&out).await;
            tracing::warn!(client_id, reason = why, "MQTT connection refused");
            return Err(format!("refused: {why}"));
        }
    };
    // MQTT 3.1.1 lets a clean-session client leave its ID empty: assign one.
    let named = !client_id.is_empty();
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

    let (replies, queue) = mpsc::channel(settings.max_inflight);
    let (deliveries_tx, deliveries) = mpsc::channel(DELIVERY_QUEUE);
    let attached = broker.attach(&client_id, persistent, deliveries_tx);
    let writer = tokio::spawn(write_loop(wr, version, queue, deliveries));
    let _ = replies
        .send(Pending::Reply(Outbound::ConnAckAccepted {
            session_present: attached.session_present,
        }))
        .await;
    // The authenticated device, or else a client ID that is a device ID,
    // says which device is on line.
    let device = identity
        .clone()
        .or_else(|| DeviceId::new(client_id.clone()).ok().filter(|_| named));
    if let Some(d) = &device {
        pipeline.device_status(d, true, true, "connected");
    }

    // The server may close a connection idle for 1.5 x keep-alive (MQTT 3.1.1 section 3.1.2.10).
    let idle_limit =
        (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
    let conn = Conn {
        identity: identity.as_ref(),
        client_id: &client_id,
        broker: &broker,
        kick: &attached.kick,
        pipeline: &pipeline,
        version,
        max,
        idle_limit,
    };
    let end = read_loop(&mut rd, &mut buf, &replies, &conn).await;
    drop(replies);
    broker.detach(&client_id, attached.link_id);
    let reason = match &end {
        Ok(End::Disconnect) => "disconnected".to_string(),
        Ok(End::Closed) => "connection closed without DISCONNECT".to_string(),
        Ok(End::StorageFailed) => "closed by medmesh: storage failed".to_string(),
        Err(e) => e.clone(),
    };
    if !matches!(end, Ok(End::Disconnect)) {
        // MQTT 3.1.1 section 3.1.2.5: the will is published unless the client
        // said goodbye with DISCONNECT.
        if let Some(w) = will {
            let delivery = broker.publish(Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
            });
            tracing::info!(client_id, ?delivery, "last will published");
        }
    }
    if let Some(d) = &device {
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

/// How a connection ended without error.
enum End {
    Disconnect,
    Closed,
    /// The writer stopped because storage failed (the publish was not
    /// acknowledged; the device resends it).
    StorageFailed,
}

/// What the read loop needs of the connection and its session.
struct Conn<'a> {
    /// The device the client authenticated as; `None` for anonymous clients.
    identity: Option<&'a DeviceId>,
    client_id: &'a str,
    broker: &'a Broker,
    kick: &'a tokio::sync::Notify,
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
                    stored: start_storing(pipeline, conn.identity.cloned(), topic, payload),
                },
                Inbound::PubRel { pkid } => Pending::Reply(Outbound::PubComp { pkid }),
                Inbound::Subscribe { pkid, filters } => {
                    // An authenticated device may only listen under its own topics.
                    let own = conn.identity.map(|d| format!("{DEVICE_TOPIC_PREFIX}{d}/"));
                    let granted = filters
                        .iter()
                        .map(|(filter, qos)| match &own {
                            Some(prefix) if !filter.starts_with(prefix.as_str()) => None,
                            _ => session
                                .broker
                                .subscribe(session.client_id, &[(filter.clone(), *qos)])[0],
                        })
                        .collect();
                    Pending::Reply(Outbound::SubAck { pkid, granted })
                }
                Inbound::Unsubscribe { pkid, filters } => {
                    session.broker.unsubscribe(session.client_id, &filters);
                    Pending::Reply(Outbound::UnsubAck {
                        pkid,
                        filters: filters.len(),
                    })
                }
                Inbound::PubAck { pkid } => {
                    session.broker.acked(session.client_id, pkid);
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
            _ = session.kick.notified() => return Err("session taken over by a new connection".into()),
        };
        if n == 0 {
            return Ok(End::Closed);
        }
    }
}

/// Decides who a CONNECT is. A client that sends a user name must be a
/// device with a valid token (user name = device ID, password = token). One
/// that sends none is anonymous: refused if its client ID is a device that
/// has credentials, or if anonymous clients are not allowed.
async fn authenticate(
    pipeline: &Pipeline,
    settings: &MqttSettings,
    client_id: &str,
    login: Option<(String, String)>,
    certified: Option<DeviceId>,
) -> Result<Option<DeviceId>, (Outbound, String)> {
    let bad = |why: String| (Outbound::ConnAckBadCredentials, why);
    // A client certificate issued by the configured device CA names the
    // device (its Common Name); no password is needed on top.
    if let Some(device) = certified {
        if !client_id.is_empty() && client_id != device.as_str() {
            return Err((
                Outbound::ConnAckNotAuthorized,
                format!("certificate of device {device} used under client ID {client_id:?}"),
            ));
        }
        return Ok(Some(device));
    }
    match login {
        Some((user, password)) => {
            let device = DeviceId::new(user.clone())
                .map_err(|_| bad(format!("user name {user:?} is not a device id")))?;
            if pipeline.registry.credential_hash(&device).is_none() {
                return Err(bad(format!("device {device} has no credentials")));
            }
            if !pipeline.verify_device_token(&device, password).await {
                return Err(bad(format!("wrong password for device {device}")));
            }
            // The session is the device's own: another client ID would let one
            // device take over another's session and commands.
            if !client_id.is_empty() && client_id != device.as_str() {
                return Err((
                    Outbound::ConnAckNotAuthorized,
                    format!(
                        "device {device} must connect with client ID {device}, not {client_id:?}"
                    ),
                ));
            }
            Ok(Some(device))
        }
        None => {
            let has_credentials = DeviceId::new(client_id)
                .ok()
                .is_some_and(|d| pipeline.registry.credential_hash(&d).is_some());
            if has_credentials {
                Err((
                    Outbound::ConnAckNotAuthorized,
                    format!("device {client_id} has credentials but sent none"),
                ))
            } else if !settings.allow_anonymous {
                Err((
                    Outbound::ConnAckNotAuthorized,
                    "anonymous clients are not allowed".into(),
                ))
            } else {
                Ok(None)
            }
        }
    }
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
        // An authenticated device publishes only for itself.
        if let (Some(me), Ok((topic, _))) = (&identity, &target)
            && me != topic.device()
        {
            pipeline.metrics.malformed_message(SourceKind::Mqtt);
            let reason = format!("device {me} may not publish for device {}", topic.device());
            tracing::warn!(reason, "MQTT publish refused");
            return Ok(AckReason::NotAuthorized(reason));
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
