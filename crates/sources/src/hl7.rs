//! HL7 v2 over MLLP (TCP), from bedside-monitor gateways.
//!
//! MLLP frames each message as `0x0B message 0x1C 0x0D`. Every ORU^R01 gets
//! an ACK in the same framing, sent only after its observations are durable:
//! AA (all stored), AE (data errors: the rejected OBX are named, the others
//! stored) or AR (not processed: malformed header, unsupported message
//! type, or storage unavailable, in which case the gateway should resend).
//! Messages on one connection are handled in order, as senders expect.
//!
//! The message names its patient (PID-3); a patient medmesh does not know yet
//! is admitted with the PID-5 name, so data is never dropped for want of an
//! admission. The sending application (MSH-3) is recorded as the device.
//!
//! Senders are principals: a sending application and facility (MSH-3,
//! MSH-4) listed in `hl7.senders` is accepted only from its listed source
//! addresses (plain MLLP belongs on a trusted segment). An unlisted sender
//! is accepted only where anonymous devices are allowed (the demo), and
//! never as a device that has credentials; otherwise its message gets AR
//! naming the reason, and is counted and logged.
//!
//! Connections are bounded ([`Hl7Limits`]): at most so many per listener and
//! per address, closed when they send nothing for `idle_timeout` or take
//! longer than `message_timeout` over one message (a sender that stops or
//! trickles mid-message), and a message longer than `max_message_bytes`
//! closes its connection before more of it is buffered.

use bytes::{Buf, BytesMut};
use medmesh_codecs::hl7v2::{self, AckCode};
use medmesh_model::{DeviceId, Patient, PatientId, now_ms};
use medmesh_pipeline::{DeviceIdentity, IngestError, Pipeline, SourceKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::limits::{self, Backoff, ConnectionGate, ConnectionLimits};
use medmesh_pipeline::PayloadRefusal;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

/// What one MLLP connection may hold and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Hl7Limits {
    pub connections: ConnectionLimits,
    /// A connection that sends nothing for this long is closed, whether
    /// between messages or inside one; so is one whose ACK cannot be
    /// written for this long (a sender that never reads).
    pub idle_timeout: Duration,
    /// One message must arrive whole within this time of its start block:
    /// a sender trickling a byte now and then is closed.
    pub message_timeout: Duration,
    /// Largest message accepted; a longer one closes the connection.
    pub max_message_bytes: usize,
}

impl Default for Hl7Limits {
    /// Interface engines keep one connection per interface and send every
    /// few seconds; one silent for 5 minutes is gone or stuck, and opens a
    /// new connection with its next message. An ORU^R01 of vital signs is a
    /// few KiB: 1 MiB leaves room for waveforms-as-text and long batches.
    fn default() -> Self {
        Hl7Limits {
            connections: ConnectionLimits {
                max_connections: 1_000,
                max_per_address: 256,
            },
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(60),
            max_message_bytes: 1 << 20,
        }
    }
}

/// A sending application at a facility allowed to send, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Sender {
    /// MSH-3 (its first component).
    pub application: String,
    /// MSH-4 (its first component).
    pub facility: String,
    /// Source addresses its connections may come from.
    pub addresses: Vec<IpAddr>,
}

/// Who may send over MLLP.
#[derive(Debug, Clone, Default)]
pub struct Hl7Senders {
    pub senders: Vec<Hl7Sender>,
    /// Accept senders that are not listed (demo only).
    pub allow_anonymous: bool,
}

impl Hl7Senders {
    /// Who a message from `peer` naming `header`'s sender is, or why it is refused.
    fn identify(&self, header: &hl7v2::Header, peer: IpAddr) -> Result<DeviceIdentity, String> {
        let (app, facility) = (&header.sending_application, &header.sending_facility);
        let listed: Vec<&Hl7Sender> = self
            .senders
            .iter()
            .filter(|s| &s.application == app && &s.facility == facility)
            .collect();
        if listed.iter().any(|s| s.addresses.contains(&peer)) {
            Ok(DeviceIdentity::Device(device_for(app)))
        } else if !listed.is_empty() {
            Err(format!(
                "sender {app:?} at {facility:?} may not send from address {peer}"
            ))
        } else if self.allow_anonymous {
            Ok(DeviceIdentity::Anonymous)
        } else {
            Err(format!(
                "unknown sender {app:?} at {facility:?} (MSH-3/MSH-4): not in hl7.senders"
            ))
        }
    }
}

/// Something an HL7 sender did that the audit log must show: a refused
/// message, or a patient admitted because a message named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7AuditEvent {
    /// `APPLICATION@FACILITY` (MSH-3, MSH-4).
    pub sender: String,
    pub action: &'static str,
    pub patient: Option<PatientId>,
    pub allowed: bool,
    /// The source address, and the reason for a refusal.
    pub detail: String,
}

/// Where the listener reports [`Hl7AuditEvent`]s (the server's audit log).
pub type Hl7Audit = Arc<dyn Fn(Hl7AuditEvent) + Send + Sync>;

pub struct Hl7Listener {
    listener: TcpListener,
    tls: Option<crate::tls::TlsAcceptor>,
    senders: Arc<Hl7Senders>,
    audit: Option<Hl7Audit>,
    limits: Hl7Limits,
}

impl Hl7Listener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Hl7Listener> {
        Ok(Hl7Listener {
            listener: TcpListener::bind(addr).await?,
            tls: None,
            senders: Arc::default(),
            audit: None,
            limits: Hl7Limits::default(),
        })
    }

    /// Caps, timeouts and the largest message (by default [`Hl7Limits::default`]).
    pub fn with_limits(mut self, limits: Hl7Limits) -> Hl7Listener {
        self.limits = limits;
        self
    }

    /// Reports refusals and admissions to `audit`.
    pub fn with_audit(mut self, audit: Hl7Audit) -> Hl7Listener {
        self.audit = Some(audit);
        self
    }

    /// Who may send (by default: nobody).
    pub fn with_senders(mut self, senders: Hl7Senders) -> Hl7Listener {
        self.senders = Arc::new(senders);
        self
    }

    /// Serves MLLP inside TLS instead of plain TCP.
    pub fn with_tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Hl7Listener {
        self.tls = Some(acceptor);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let acks = Arc::new(AtomicU64::new(0));
        let gate = ConnectionGate::new(
            SourceKind::Hl7,
            self.limits.connections,
            pipeline.metrics.clone(),
        );
        let mut backoff = Backoff::default();
        loop {
            let (stream, peer) = limits::accept(
                &self.listener,
                SourceKind::Hl7,
                &mut backoff,
                &pipeline.metrics,
            )
            .await;
            let Some(permit) = gate.admit(peer.ip()) else {
                continue;
            };
            let pipeline = pipeline.clone();
            let acks = acks.clone();
            let tls = self.tls.clone();
            let limits = self.limits;
            let from = Sender {
                peer: peer.ip(),
                senders: self.senders.clone(),
                audit: self.audit.clone(),
            };
            tokio::spawn(async move {
                let _permit = permit;
                let served = match tls {
                    None => serve(stream, &pipeline, &acks, &from, &limits).await,
                    Some(acceptor) => match crate::tls::handshake(&acceptor, stream).await {
                        Ok(tls) => serve(tls, &pipeline, &acks, &from, &limits).await,
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::info!(%peer, reason = %e, "MLLP connection closed");
                }
            });
        }
    }
}

/// Cuts MLLP frames out of the bytes a connection receives.
struct Framer {
    buf: BytesMut,
    /// How far the buffer was already searched for the end block: a message
    /// arriving a byte at a time is scanned once, not once per byte.
    scanned: usize,
    max: usize,
}

impl Framer {
    fn new(max: usize) -> Framer {
        Framer {
            buf: BytesMut::with_capacity(64 * 1024),
            scanned: 0,
            max,
        }
    }

    /// Whether part of a message (its start block, at least) is waiting.
    fn inside_message(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Takes the next whole message off the buffer; bytes outside frames
    /// are skipped. An error if the message under way is longer than `max`.
    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.scanned == 0 {
            match self.buf.iter().position(|b| *b == START) {
                Some(start) => self.buf.advance(start),
                None => {
                    self.buf.clear();
                    return Ok(None);
                }
            }
        }
        // The end block may straddle the previous scan's end.
        let from = self.scanned.saturating_sub(1);
        if let Some(end) = self.buf[from..].windows(2).position(|w| w == END) {
            let end = from + end;
            let frame = self.buf[1..end].to_vec();
            self.buf.advance(end + 2);
            self.scanned = 0;
            return Ok(Some(frame));
        }
        // The frame's content is all but the start block.
        if self.buf.len() - 1 > self.max {
            return Err(format!(
                "message longer than {} bytes (hl7.max_message_bytes)",
                self.max
            ));
        }
        self.scanned = self.buf.len();
        Ok(None)
    }
}

/// Where a connection comes from, and who may send.
struct Sender {
    peer: IpAddr,
    senders: Arc<Hl7Senders>,
    audit: Option<Hl7Audit>,
}

impl Sender {
    fn audit(
        &self,
        header: &hl7v2::Header,
        action: &'static str,
        patient: Option<PatientId>,
        refusal: Option<&str>,
    ) {
        if let Some(audit) = &self.audit {
            audit(Hl7AuditEvent {
                sender: format!("{}@{}", header.sending_application, header.sending_facility),
                action,
                patient,
                allowed: refusal.is_none(),
                detail: match refusal {
                    Some(why) => format!("from {}: {why}", self.peer),
                    None => format!("from {}", self.peer),
                },
            });
        }
    }
}

async fn serve(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    pipeline: &Pipeline,
    acks: &AtomicU64,
    from: &Sender,
    limits: &Hl7Limits,
) -> Result<(), String> {
    let mut framer = Framer::new(limits.max_message_bytes);
    // When the message under way began (its first bytes arrived).
    let mut message_began: Option<Instant> = None;
    loop {
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    pipeline
                        .metrics
                        .payload_refused(SourceKind::Hl7, PayloadRefusal::TooLarge);
                    return Err(e);
                }
            };
            message_began = None;
            let ack = handle(pipeline, &frame, acks, from).await;
            let mut out = Vec::with_capacity(ack.len() + 3);
            out.push(START);
            out.extend_from_slice(ack.as_bytes());
            out.extend_from_slice(&END);
            match tokio::time::timeout(limits.idle_timeout, stream.write_all(&out)).await {
                Ok(written) => written.map_err(|e| e.to_string())?,
                Err(_) => {
                    pipeline.metrics.connection_timed_out(SourceKind::Hl7);
                    return Err(format!(
                        "the sender read no ACK for {:?} (hl7.idle_timeout)",
                        limits.idle_timeout
                    ));
                }
            }
        }
        if framer.inside_message() {
            message_began.get_or_insert_with(Instant::now);
        }
        let idle_deadline = Instant::now() + limits.idle_timeout;
        let deadline = match message_began {
            Some(began) => idle_deadline.min(began + limits.message_timeout),
            None => idle_deadline,
        };
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut framer.buf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                pipeline.metrics.connection_timed_out(SourceKind::Hl7);
                return Err(if deadline < idle_deadline {
                    format!(
                        "a message took longer than {:?} (hl7.message_timeout)",
                        limits.message_timeout
                    )
                } else {
                    format!(
                        "nothing received for {:?} (hl7.idle_timeout)",
                        limits.idle_timeout
                    )
                });
            }
        }
    }
}

/// A device id from the sending application's name.
fn device_for(sending_application: &str) -> DeviceId {
    let cleaned: String = sending_application
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(medmesh_model::MAX_ID_LEN - 4)
        .collect();
    let name = if cleaned.is_empty() {
        "gateway"
    } else {
        &cleaned
    };
    DeviceId::new(format!("hl7-{name}")).expect("only id-safe characters")
}

/// Processes one message and returns its ACK.
async fn handle(pipeline: &Pipeline, frame: &[u8], acks: &AtomicU64, from: &Sender) -> String {
    let now = now_ms();
    let ack_id = format!("MM{now}-{}", acks.fetch_add(1, Ordering::Relaxed));
    let stamp = hl7v2::format_time(now);
    let text = String::from_utf8_lossy(frame);
    let oru = match hl7v2::parse_oru(&text, now) {
        Ok(oru) => oru,
        Err(rejection) => {
            pipeline.metrics.malformed_message(SourceKind::Hl7);
            tracing::warn!(control_id = %rejection.header.control_id, reason = %rejection.reason, "HL7 message rejected");
            return hl7v2::ack(
                &rejection.header,
                AckCode::Reject,
                &rejection.reason,
                &ack_id,
                &stamp,
            );
        }
    };
    let header = &oru.header;
    // Before anything is admitted or stored: is the sender who may send,
    // and may it send as its device?
    let device = device_for(&header.sending_application);
    let allowed = from.senders.identify(header, from.peer).and_then(|who| {
        pipeline
            .authorize_device(&who, &device)
            .map_err(|r| r.reason().to_string())
    });
    if let Err(reason) = allowed {
        pipeline.device_refused(
            SourceKind::Hl7,
            &device,
            &medmesh_pipeline::Refusal::NotAuthorized(reason.clone()),
        );
        let patient = PatientId::new(oru.patient_id.clone()).ok();
        from.audit(header, "send HL7 message", patient, Some(&reason));
        return hl7v2::ack(header, AckCode::Reject, &reason, &ack_id, &stamp);
    }
    let patient = match PatientId::new(oru.patient_id.clone()) {
        Ok(p) => p,
        Err(e) => {
            pipeline.metrics.malformed_message(SourceKind::Hl7);
            let reason = format!("PID-3 {:?} cannot be a patient id: {e}", oru.patient_id);
            return hl7v2::ack(header, AckCode::Error, &reason, &ack_id, &stamp);
        }
    };
    if pipeline.registry.patient(&patient).is_none() {
        let admitted = Patient {
            id: patient.clone(),
            name: if oru.patient_name.is_empty() {
                patient.to_string()
            } else {
                oru.patient_name.clone()
            },
            ward: header.sending_facility.clone(),
            bed: String::new(),
        };
        if let Err(e) = pipeline.registry.upsert_patient(admitted) {
            return hl7v2::ack(
                header,
                AckCode::Reject,
                &format!("cannot admit the patient now: {e}"),
                &ack_id,
                &stamp,
            );
        }
        tracing::info!(%patient, "patient admitted from an HL7 message");
        from.audit(
            header,
            "admit patient from HL7",
            Some(patient.clone()),
            None,
        );
    }
    match pipeline
        .ingest_for_patient(SourceKind::Hl7, &device, &patient, oru.decoded)
        .await
    {
        Ok(report) if report.rejected.is_empty() && report.accepted > 0 => {
            hl7v2::ack(header, AckCode::Accept, "", &ack_id, &stamp)
        }
        Ok(report) if report.rejected.is_empty() => hl7v2::ack(
            header,
            AckCode::Error,
            "the message holds no OBX observation",
            &ack_id,
            &stamp,
        ),
        Ok(report) => {
            let first = &report.rejected[0];
            let text = format!(
                "{} stored, {} rejected; {}",
                report.accepted,
                report.rejected.len(),
                first.reason
            );
            hl7v2::ack(header, AckCode::Error, &text, &ack_id, &stamp)
        }
        Err(IngestError::Malformed(e)) => {
            hl7v2::ack(header, AckCode::Error, &e.to_string(), &ack_id, &stamp)
        }
        Err(IngestError::Storage(e)) => hl7v2::ack(
            header,
            AckCode::Reject,
            &format!("not stored, resend later: {e}"),
            &ack_id,
            &stamp,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_the_stream() {
        let mut f = Framer::new(1 << 20);
        f.buf
            .extend_from_slice(b"junk\x0bMSH|1\x1c\x0d\x0bMSH|2\x1c\x0d\x0bMSH|3");
        assert_eq!(f.next_frame().unwrap(), Some(b"MSH|1".to_vec()));
        assert_eq!(f.next_frame().unwrap(), Some(b"MSH|2".to_vec()));
        assert_eq!(f.next_frame().unwrap(), None);
        assert!(f.inside_message());
        // The end block split across two reads.
        f.buf.extend_from_slice(b"\x1c");
        assert_eq!(f.next_frame().unwrap(), None);
        f.buf.extend_from_slice(b"\x0d");
        assert_eq!(f.next_frame().unwrap(), Some(b"MSH|3".to_vec()));
        assert!(!f.inside_message());
    }

    #[test]
    fn a_message_longer_than_the_cap_is_refused_as_it_arrives() {
        let mut f = Framer::new(100);
        f.buf.extend_from_slice(b"\x0b");
        f.buf.extend_from_slice(&[b'x'; 100]);
        assert_eq!(f.next_frame().unwrap(), None, "exactly the cap is fine");
        f.buf.extend_from_slice(b"\x1c\x0d");
        assert_eq!(f.next_frame().unwrap().unwrap().len(), 100);
        f.buf.extend_from_slice(b"\x0b");
        for _ in 0..100 {
            f.buf.extend_from_slice(b"y");
            assert_eq!(f.next_frame().unwrap(), None);
        }
        f.buf.extend_from_slice(b"y");
        assert!(f.next_frame().unwrap_err().contains("100 bytes"));
    }

    #[test]
    fn senders_are_known_by_application_facility_and_address() {
        let header = |app: &str, facility: &str| hl7v2::Header {
            sending_application: app.into(),
            sending_facility: facility.into(),
            control_id: "1".into(),
            version: "2.5".into(),
        };
        let gw: IpAddr = "10.0.0.5".parse().unwrap();
        let other: IpAddr = "10.0.0.6".parse().unwrap();
        let mut senders = Hl7Senders {
            senders: vec![Hl7Sender {
                application: "GW".into(),
                facility: "ICU".into(),
                addresses: vec![gw],
            }],
            allow_anonymous: false,
        };
        assert_eq!(
            senders.identify(&header("GW", "ICU"), gw),
            Ok(DeviceIdentity::Device(device_for("GW")))
        );
        assert!(
            senders
                .identify(&header("GW", "ICU"), other)
                .unwrap_err()
                .contains("10.0.0.6")
        );
        assert!(
            senders
                .identify(&header("GW", "ER"), gw)
                .unwrap_err()
                .contains("unknown")
        );
        senders.allow_anonymous = true;
        assert_eq!(
            senders.identify(&header("X", "Y"), other),
            Ok(DeviceIdentity::Anonymous)
        );
        assert!(
            senders.identify(&header("GW", "ICU"), other).is_err(),
            "listed: address still checked"
        );
    }

    #[test]
    fn device_ids_from_sending_applications() {
        assert_eq!(device_for("MONITOR GW#1").as_str(), "hl7-MONITOR-GW-1");
        assert_eq!(device_for("").as_str(), "hl7-gateway");
        assert_eq!(
            device_for(&"x".repeat(100)).as_str().len(),
            medmesh_model::MAX_ID_LEN
        );
    }
}
