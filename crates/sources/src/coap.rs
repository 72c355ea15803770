//! CoAP (RFC 7252) over UDP, for constrained 6LoWPAN-class devices.
//!
//! Devices POST (or PUT) to
//! - `/medmesh/v1/devices/{device_id}/senml`: SenML JSON (Content-Format 110,
//!   or 50 application/json, or none) or SenML CBOR (112, or 60 application/cbor);
//! - `/medmesh/v1/devices/{device_id}/gatt/{uuid}`: a raw Bluetooth GATT value.
//!
//! A confirmable request is answered with a piggybacked ACK only once its
//! samples are durable: 2.04 Changed (with a diagnostic payload naming any
//! rejected record), 4.00 for a malformed payload, 5.03 if storage failed
//! (the device should retry). A retransmitted request (same peer and message
//! ID) is not stored twice: it gets the cached response, or nothing while the
//! first copy is still being stored. Larger payloads arrive block-wise
//! (RFC 7959 Block1), reassembled by `coap-lite`'s block handler.

use coap_lite::block_handler::{BlockHandler, BlockHandlerConfig};
use coap_lite::{
    CoapOption, CoapRequest, ContentFormat, MessageClass, MessageType, Packet, RequestType,
    ResponseType,
};
use medmesh_model::DeviceId;
use medmesh_pipeline::{
    GattCharacteristic, IngestError, IngestReport, Pipeline, Proof, SourceKind,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// RFC 7252 section 4.8.2: how long a message ID may be reused by a peer.
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Largest datagram read; block-wise transfer keeps real ones far smaller.
const MAX_DATAGRAM: usize = 64 * 1024;

/// What we know of a (peer, message ID) exchange.
enum Exchange {
    InProgress(Instant),
    Answered(Instant, Vec<u8>),
}

#[derive(Default)]
struct Exchanges {
    map: HashMap<(SocketAddr, u16), Exchange>,
    inserts: u64,
}

impl Exchanges {
    fn prune(&mut self) {
        let now = Instant::now();
        self.map.retain(|_, e| match e {
            Exchange::InProgress(t) | Exchange::Answered(t, _) => {
                now.duration_since(*t) < EXCHANGE_LIFETIME
            }
        });
    }
}

pub struct CoapListener {
    socket: Arc<UdpSocket>,
    allow_anonymous: bool,
}

impl CoapListener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<CoapListener> {
        Ok(CoapListener {
            socket: Arc::new(UdpSocket::bind(addr).await?),
            allow_anonymous: false,
        })
    }

    /// Whether devices that send no token are accepted (devices that were
    /// issued one must always send it).
    pub fn allow_anonymous(mut self, allow: bool) -> CoapListener {
        self.allow_anonymous = allow;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves requests until the task is dropped.
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let exchanges = Arc::new(Mutex::new(Exchanges::default()));
        let mut blocks: BlockHandler<SocketAddr> = BlockHandler::new(BlockHandlerConfig::default());
        loop {
            let (n, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "CoAP receive failed");
                    continue;
                }
            };
            let packet = match Packet::from_bytes(&buf[..n]) {
                Ok(p) => p,
                Err(e) => {
                    pipeline.metrics.malformed_message(SourceKind::Coap);
                    tracing::warn!(%peer, error = ?e, "malformed CoAP message");
                    // A confirmable message we cannot parse is answered with a
                    // Reset (RFC 7252 section 4.2), if its ID can be read.
                    if n >= 4 && buf[0] >> 6 == 1 && (buf[0] >> 4) & 0b11 == 0 {
                        let reset = [0x70, 0x00, buf[2], buf[3]];
                        let _ = self.socket.send_to(&reset, peer).await;
                    }
                    continue;
                }
            };
            match packet.header.get_type() {
                // We never send confirmable messages, so nothing to match.
                MessageType::Acknowledgement | MessageType::Reset => continue,
                _ => {}
            }
            if packet.header.code == MessageClass::Empty {
                // "CoAP ping": an empty confirmable message is answered with a Reset.
                let reset = [
                    0x70,
                    0x00,
                    (packet.header.message_id >> 8) as u8,
                    packet.header.message_id as u8,
                ];
                let _ = self.socket.send_to(&reset, peer).await;
                continue;
            }
            let key = (peer, packet.header.message_id);
            // A retransmission: the cached answer, or nothing yet.
            let seen: Option<Option<Vec<u8>>> = {
                let mut ex = exchanges.lock().expect("exchanges lock");
                match ex.map.get(&key) {
                    Some(Exchange::Answered(_, response)) => Some(Some(response.clone())),
                    Some(Exchange::InProgress(_)) => Some(None),
                    None => {
                        ex.map.insert(key, Exchange::InProgress(Instant::now()));
                        ex.inserts += 1;
                        if ex.inserts % 1024 == 0 {
                            ex.prune();
                        }
                        None
                    }
                }
            };
            match seen {
                Some(Some(response)) => {
                    let _ = self.socket.send_to(&response, peer).await;
                    continue;
                }
                // The first copy is still being stored; its answer will come.
                Some(None) => continue,
                None => {}
            }
            let mut request = CoapRequest::from_packet(packet, peer);
            let handled = match blocks.intercept_request(&mut request) {
                Ok(handled) => handled,
                Err(e) => request.apply_from_error(e),
            };
            if handled {
                // An intermediate Block1 (2.31 Continue) or a block error.
                respond(&self.socket, &exchanges, key, &request).await;
                continue;
            }
            let socket = self.socket.clone();
            let pipeline = pipeline.clone();
            let exchanges = exchanges.clone();
            let allow_anonymous = self.allow_anonymous;
            tokio::spawn(async move {
                handle(&pipeline, allow_anonymous, &mut request).await;
                respond(&socket, &exchanges, key, &request).await;
            });
        }
    }
}

async fn respond(
    socket: &UdpSocket,
    exchanges: &Mutex<Exchanges>,
    key: (SocketAddr, u16),
    request: &CoapRequest<SocketAddr>,
) {
    let Some(response) = &request.response else {
        exchanges.lock().expect("exchanges lock").map.remove(&key);
        return;
    };
    match response.message.to_bytes() {
        Ok(bytes) => {
            // Recorded before it is sent: a retransmission that crosses the
            // answer must find it, not an exchange still "in progress".
            exchanges
                .lock()
                .expect("exchanges lock")
                .map
                .insert(key, Exchange::Answered(Instant::now(), bytes.clone()));
            let _ = socket.send_to(&bytes, key.0).await;
        }
        Err(e) => tracing::error!(error = ?e, "cannot encode CoAP response"),
    }
}

fn set(request: &mut CoapRequest<SocketAddr>, status: ResponseType, diagnostic: &str) {
    if let Some(response) = request.response.as_mut() {
        response.set_status(status);
        // Diagnostic payloads are UTF-8 text for people (RFC 7252 section 5.5.2).
        response.message.payload = diagnostic.as_bytes().to_vec();
    }
}

/// A device proves who it is with the token issued to it, as the URI query
/// `?token=...` (there is no DTLS yet, so only on networks the operator
/// trusts); the pipeline's device-identity decision does the rest.
fn proof(device: &DeviceId, request: &CoapRequest<SocketAddr>) -> Proof {
    request
        .message
        .get_option(coap_lite::CoapOption::UriQuery)
        .into_iter()
        .flatten()
        .filter_map(|q| std::str::from_utf8(q).ok())
        .find_map(|q| q.strip_prefix("token="))
        .map_or(Proof::Nothing, |token| Proof::Token {
            device: device.clone(),
            token: token.to_string(),
        })
}

/// Routes, decodes and stores one complete request, setting its response.
async fn handle(pipeline: &Pipeline, allow_anonymous: bool, request: &mut CoapRequest<SocketAddr>) {
    let path = request.get_path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (device, target) = match segments.as_slice() {
        ["medmesh", "v1", "devices", id, rest @ ..] => (DeviceId::new(*id), rest.to_vec()),
        _ => {
            set(
                request,
                ResponseType::NotFound,
                &format!("no resource /{path}; POST to /medmesh/v1/devices/{{device_id}}/senml"),
            );
            return;
        }
    };
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            return set(
                request,
                ResponseType::BadRequest,
                &format!("device id: {e}"),
            );
        }
    };
    if !matches!(
        request.message.header.code,
        MessageClass::Request(RequestType::Post | RequestType::Put)
    ) {
        return set(request, ResponseType::MethodNotAllowed, "use POST or PUT");
    }
    let proof = proof(&device, request);
    if let Err(why) = pipeline
        .admit_device(SourceKind::Coap, proof, &device, allow_anonymous)
        .await
    {
        return set(request, ResponseType::Unauthorized, why.reason());
    }
    let payload = std::mem::take(&mut request.message.payload);
    let result = match target.as_slice() {
        ["senml"] => match request.message.get_content_format() {
            None
            | Some(ContentFormat::ApplicationSenmlJSON)
            | Some(ContentFormat::ApplicationJSON) => {
                pipeline
                    .ingest_senml_json(SourceKind::Coap, &device, &payload)
                    .await
            }
            Some(ContentFormat::ApplicationSenmlCBOR) | Some(ContentFormat::ApplicationCBOR) => {
                pipeline
                    .ingest_senml_cbor(SourceKind::Coap, &device, &payload)
                    .await
            }
            Some(other) => {
                return set(
                    request,
                    ResponseType::UnsupportedContentFormat,
                    &format!(
                        "content format {other:?} is not SenML; use 110 (senml+json) or 112 (senml+cbor)"
                    ),
                );
            }
        },
        ["gatt", uuid] => match GattCharacteristic::parse(uuid) {
            Some(c) => {
                pipeline
                    .ingest_gatt(SourceKind::Coap, &device, c, &payload)
                    .await
            }
            None => {
                return set(
                    request,
                    ResponseType::NotFound,
                    &format!("{uuid:?} is not a supported GATT characteristic"),
                );
            }
        },
        _ => {
            return set(
                request,
                ResponseType::NotFound,
                &format!("no resource /{path}"),
            );
        }
    };
    match result {
        Ok(IngestReport { accepted, rejected }) if rejected.is_empty() => {
            set(
                request,
                ResponseType::Changed,
                &format!("{accepted} stored"),
            );
        }
        Ok(IngestReport { accepted, rejected }) => {
            let first = &rejected[0];
            // Nothing stored: 4.22 (RFC 8132), so a device that only reads
            // the code still learns that its readings were refused.
            let code = if accepted == 0 {
                ResponseType::UnprocessableEntity
            } else {
                ResponseType::Changed
            };
            set(
                request,
                code,
                &format!(
                    "{accepted} stored, {} rejected; record {}: {}",
                    rejected.len(),
                    first.index,
                    first.reason
                ),
            );
        }
        Err(IngestError::Malformed(e)) => set(request, ResponseType::BadRequest, &e.to_string()),
        Err(IngestError::Storage(e)) => {
            set(
                request,
                ResponseType::ServiceUnavailable,
                &format!("not stored, retry later: {e}"),
            );
            if let Some(r) = request.response.as_mut() {
                // Max-Age: retry in 5 seconds.
                r.message.add_option(CoapOption::MaxAge, vec![5]);
            }
        }
    }
}
