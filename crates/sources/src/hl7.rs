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

use bytes::{Buf, BytesMut};
use medmesh_codecs::hl7v2::{self, AckCode};
use medmesh_model::{DeviceId, Patient, PatientId, now_ms};
use medmesh_pipeline::{IngestError, Pipeline, SourceKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// Largest message accepted; a bigger one closes the connection.
const MAX_MESSAGE: usize = 1 << 20;

pub struct Hl7Listener {
    listener: TcpListener,
    tls: Option<crate::tls::TlsAcceptor>,
}

impl Hl7Listener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Hl7Listener> {
        Ok(Hl7Listener {
            listener: TcpListener::bind(addr).await?,
            tls: None,
        })
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
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let pipeline = pipeline.clone();
                    let acks = acks.clone();
                    let tls = self.tls.clone();
                    tokio::spawn(async move {
                        let served = match tls {
                            None => serve(stream, &pipeline, &acks).await,
                            Some(acceptor) => {
                                match crate::tls::handshake(&acceptor, stream).await {
                                    Ok(tls) => serve(tls, &pipeline, &acks).await,
                                    Err(e) => Err(e),
                                }
                            }
                        };
                        if let Err(e) = served {
                            tracing::info!(%peer, reason = %e, "MLLP connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MLLP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Takes the next whole message off `buf`; bytes outside frames are skipped.
fn next_frame(buf: &mut BytesMut) -> Result<Option<Vec<u8>>, String> {
    match buf.iter().position(|b| *b == START) {
        Some(start) => buf.advance(start),
        None => {
            buf.clear();
            return Ok(None);
        }
    }
    if let Some(end) = buf.windows(2).position(|w| w == END) {
        let frame = buf[1..end].to_vec();
        buf.advance(end + 2);
        return Ok(Some(frame));
    }
    if buf.len() > MAX_MESSAGE {
        return Err(format!("message longer than {MAX_MESSAGE} bytes"));
    }
    Ok(None)
}

async fn serve(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    pipeline: &Pipeline,
    acks: &AtomicU64,
) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(frame) = next_frame(&mut buf)? {
            let ack = handle(pipeline, &frame, acks).await;
            let mut out = Vec::with_capacity(ack.len() + 3);
            out.push(START);
            out.extend_from_slice(ack.as_bytes());
            out.extend_from_slice(&END);
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Ok(());
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
async fn handle(pipeline: &Pipeline, frame: &[u8], acks: &AtomicU64) -> String {
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
    }
    let device = device_for(&header.sending_application);
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
        let mut buf = BytesMut::from(&b"junk\x0bMSH|1\x1c\x0d\x0bMSH|2\x1c\x0d\x0bMSH|3"[..]);
        assert_eq!(next_frame(&mut buf).unwrap(), Some(b"MSH|1".to_vec()));
        assert_eq!(next_frame(&mut buf).unwrap(), Some(b"MSH|2".to_vec()));
        assert_eq!(next_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\x1c\x0d");
        assert_eq!(next_frame(&mut buf).unwrap(), Some(b"MSH|3".to_vec()));
        let mut huge = BytesMut::from(&b"\x0b"[..]);
        huge.extend_from_slice(&vec![b'x'; MAX_MESSAGE + 1]);
        assert!(next_frame(&mut huge).is_err());
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
