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
//! (RFC 7959 Block1), reassembled here (`coap-lite` parses the messages).
//!
//! Memory is bounded ([`CoapLimits`]) before anything is buffered: the
//! device is authenticated on the first block of an upload (4.01 there, so
//! nothing of an unauthenticated upload is ever kept); a later block belongs
//! to an upload only if its first was accepted, from the same address, port
//! and URI (4.08 otherwise); an upload or request larger than
//! `max_payload_bytes` gets 4.13 with Size1 naming the limit (RFC 7959
//! section 2.9.3); the payload bytes held for one source address (uploads
//! being reassembled and requests being stored) and for all of them together
//! are capped, and a request over either gets 5.03 with Max-Age (RFC 7252
//! section 5.9.3.4), so the device retries later. An upload whose next block
//! does not come within `upload_timeout` is dropped with what it held.

use coap_lite::{
    CoapOption, CoapRequest, ContentFormat, MessageClass, MessageType, Packet, RequestType,
    ResponseType,
};
use medmesh_model::DeviceId;
use medmesh_pipeline::{
    DeviceIdentity, GattCharacteristic, IngestError, IngestReport, PayloadRefusal, Pipeline, Proof,
    SourceKind,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

pub mod dtls;

/// RFC 7252 section 4.8.2: how long a message ID may be reused by a peer.
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Largest datagram read; block-wise transfer keeps real ones far smaller.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Max-Age of a 5.03 for a full memory budget: uploads in progress finish
/// or expire within seconds.
const RETRY_AFTER_S: u32 = 5;

/// Memory the CoAP listener may hold for payloads.
#[derive(Debug, Clone, Copy)]
pub struct CoapLimits {
    /// Largest payload of one request, whole or reassembled from blocks (4.13 beyond).
    pub max_payload_bytes: usize,
    /// Payload bytes held for one source address at once (5.03 beyond).
    pub peer_buffer_bytes: usize,
    /// Payload bytes held for all peers at once (5.03 beyond).
    pub buffer_budget_bytes: usize,
    /// An upload whose next block does not arrive within this is dropped.
    pub upload_timeout: Duration,
    /// Exchanges remembered to answer retransmissions (RFC 7252 section
    /// 4.5); beyond this the oldest are forgotten.
    pub max_exchanges: usize,
}

impl Default for CoapLimits {
    /// A SenML pack of a day of a wearable's summaries is tens of KiB; 1 MiB
    /// matches the HTTP limit. Two of them per address (a device retrying
    /// while its first upload expires), 64 MiB for the whole listener:
    /// thousands of constrained devices' typical packs at once.
    fn default() -> Self {
        CoapLimits {
            max_payload_bytes: 1 << 20,
            peer_buffer_bytes: 2 << 20,
            buffer_budget_bytes: 64 << 20,
            upload_timeout: Duration::from_secs(60),
            // About 300 bytes each (measured, with the answer and the map):
            // 30 MiB, 400 requests a second for all of EXCHANGE_LIFETIME
            // (247 s). At a higher rate the oldest are forgotten first; a
            // device's last retransmission comes within 45 s (RFC 7252
            // MAX_TRANSMIT_SPAN), which 100,000 covers up to 2,000 a second.
            max_exchanges: 100_000,
        }
    }
}

/// What we know of a (peer, message ID) exchange.
enum Exchange {
    InProgress,
    Answered(Vec<u8>),
}

type ExchangeKey = (SocketAddr, u16);

/// Exchanges remembered for de-duplication, oldest first, for
/// [`EXCHANGE_LIFETIME`] but never more than `max` of them: a flood of
/// fresh message IDs pushes the oldest out (their retransmissions would be
/// handled again) instead of growing memory without end.
struct Exchanges {
    /// Each exchange and when it was first seen.
    map: HashMap<ExchangeKey, (Instant, Exchange)>,
    order: std::collections::VecDeque<(ExchangeKey, Instant)>,
    max: usize,
}

impl Exchanges {
    fn new(max: usize) -> Exchanges {
        Exchanges {
            map: HashMap::new(),
            order: std::collections::VecDeque::new(),
            max: max.max(1),
        }
    }

    fn insert(&mut self, key: ExchangeKey) {
        let now = Instant::now();
        while let Some(&(old, since)) = self.order.front() {
            if self.map.len() < self.max && now.duration_since(since) < EXCHANGE_LIFETIME {
                break;
            }
            self.order.pop_front();
            // Only if it is still that exchange (not one forgotten and seen again since).
            if self.map.get(&old).is_some_and(|(t, _)| *t == since) {
                self.map.remove(&old);
            }
        }
        self.map.insert(key, (now, Exchange::InProgress));
        self.order.push_back((key, now));
    }

    /// Records the answer, if the exchange is still remembered.
    fn answered(&mut self, key: ExchangeKey, bytes: Vec<u8>) {
        if let Some((_, e)) = self.map.get_mut(&key) {
            *e = Exchange::Answered(bytes);
        }
    }
}

/// Payload bytes held, per source address and in all.
struct Budget {
    limits: CoapLimits,
    metrics: Arc<medmesh_pipeline::Metrics>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Budget {
    fn reserve(
        self: &Arc<Self>,
        peer: IpAddr,
        bytes: usize,
    ) -> Result<Reservation, PayloadRefusal> {
        let mut r = Reservation {
            budget: self.clone(),
            peer: peer.to_canonical(),
            bytes: 0,
        };
        r.grow(bytes)?;
        Ok(r)
    }
}

/// Bytes counted against the [`Budget`] until dropped.
struct Reservation {
    budget: Arc<Budget>,
    peer: IpAddr,
    bytes: usize,
}

impl Reservation {
    fn grow(&mut self, bytes: usize) -> Result<(), PayloadRefusal> {
        let limits = self.budget.limits;
        let mut held = self.budget.held.lock().expect("budget lock");
        let of_peer = held.per_peer.get(&self.peer).copied().unwrap_or(0);
        if of_peer + bytes > limits.peer_buffer_bytes {
            return Err(PayloadRefusal::PeerBudget);
        }
        if held.total + bytes > limits.buffer_budget_bytes {
            return Err(PayloadRefusal::MemoryBudget);
        }
        held.total += bytes;
        *held.per_peer.entry(self.peer).or_insert(0) += bytes;
        self.bytes += bytes;
        self.budget.metrics.set_coap_buffered_bytes(held.total);
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().expect("budget lock");
        held.total -= self.bytes;
        if let Some(n) = held.per_peer.get_mut(&self.peer) {
            *n -= self.bytes;
            if *n == 0 {
                held.per_peer.remove(&self.peer);
            }
        }
        self.budget.metrics.set_coap_buffered_bytes(held.total);
    }
}

/// A Block1 option (RFC 7959 section 2.2): block number, more to come,
/// size exponent. NUM is up to 20 bits, more than `coap-lite`'s type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    num: u32,
    more: bool,
    szx: u8,
}

impl Block {
    fn parse(value: &[u8]) -> Result<Block, String> {
        if value.len() > 3 {
            return Err("Block1 option longer than 3 bytes".into());
        }
        let v = value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = (v & 0x7) as u8;
        if szx == 7 {
            // Reserved (BERT, over TCP only).
            return Err("Block1 size exponent 7 is reserved".into());
        }
        Ok(Block {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    fn size(self) -> usize {
        16 << self.szx
    }

    fn encode(self) -> Vec<u8> {
        uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }
}

/// A CoAP uint option value: big-endian, without leading zero bytes.
fn uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// An upload is one client socket's requests to one URI (with its query:
/// a block that carries another token is not part of it) by one method.
type UploadKey = (SocketAddr, u8, String);

/// A block-wise upload whose first block was accepted from an
/// authenticated (or allowed anonymous) device.
struct Upload {
    who: DeviceIdentity,
    payload: Vec<u8>,
    reservation: Reservation,
    touched: Instant,
}

/// Where answers go and who a peer proved it is: plain UDP, whose devices
/// name themselves with `?token=`, or DTLS sessions, whose handshake proved
/// the device's pre-shared key.
enum Transport {
    Udp(Arc<UdpSocket>),
    Dtls(Arc<dtls::Sessions>),
}

impl Transport {
    async fn send(&self, bytes: &[u8], peer: SocketAddr) {
        match self {
            Transport::Udp(socket) => {
                let _ = socket.send_to(bytes, peer).await;
            }
            Transport::Dtls(sessions) => sessions.send(peer, bytes),
        }
    }
}

/// What every request task needs.
struct Ctx {
    transport: Transport,
    /// `coap` or `coaps`, for metrics and logs.
    source: SourceKind,
    pipeline: Arc<Pipeline>,
    exchanges: Mutex<Exchanges>,
    uploads: Mutex<HashMap<UploadKey, Upload>>,
    budget: Arc<Budget>,
    allow_anonymous: bool,
}

pub struct CoapListener {
    socket: Arc<UdpSocket>,
    allow_anonymous: bool,
    limits: CoapLimits,
    dtls: Option<dtls::DtlsListener>,
}

impl CoapListener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<CoapListener> {
        Ok(CoapListener {
            socket: Arc::new(UdpSocket::bind(addr).await?),
            allow_anonymous: false,
            limits: CoapLimits::default(),
            dtls: None,
        })
    }

    /// Also serves CoAP over DTLS 1.2 with pre-shared keys (coaps) on
    /// `listener`'s socket, sharing this listener's payload budget.
    pub fn with_dtls(mut self, listener: dtls::DtlsListener) -> CoapListener {
        self.dtls = Some(listener);
        self
    }

    /// The coaps listener's sessions, if it serves coaps.
    pub fn dtls_sessions(&self) -> Option<dtls::DtlsSessions> {
        self.dtls.as_ref().map(|d| d.sessions())
    }

    /// The coaps (DTLS) address, if it serves one.
    pub fn dtls_addr(&self) -> Option<SocketAddr> {
        self.dtls.as_ref().and_then(|d| d.local_addr().ok())
    }

    /// Whether devices that send no token are accepted (devices that were
    /// issued one must always send it).
    pub fn allow_anonymous(mut self, allow: bool) -> CoapListener {
        self.allow_anonymous = allow;
        self
    }

    /// Payload size and memory limits (by default [`CoapLimits::default`]).
    pub fn with_limits(mut self, limits: CoapLimits) -> CoapListener {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves requests until the task is dropped (the DTLS sessions with it).
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let limits = self.limits;
        // One budget for both ports: a peer's share counts its plain and
        // DTLS payloads together.
        let budget = Arc::new(Budget {
            limits,
            metrics: pipeline.metrics.clone(),
            held: Mutex::default(),
        });
        let plain = Arc::new(Ctx::new(
            Transport::Udp(self.socket.clone()),
            SourceKind::Coap,
            pipeline.clone(),
            budget.clone(),
            self.allow_anonymous,
        ));
        let plain = serve_datagrams(self.socket, plain, limits);
        match self.dtls {
            None => plain.await,
            Some(dtls) => {
                tokio::join!(plain, dtls.run(pipeline, budget, limits));
            }
        }
    }
}

/// The plain CoAP receive loop.
async fn serve_datagrams(socket: Arc<UdpSocket>, ctx: Arc<Ctx>, limits: CoapLimits) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut expire = expiry_interval(&limits);
    loop {
        let (n, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "CoAP receive failed");
                    continue;
                }
            },
            _ = expire.tick() => {
                ctx.expire_uploads(&limits);
                continue;
            }
        };
        ctx.receive(&buf[..n], peer, &limits).await;
    }
}

/// How often uploads are checked for their timeout.
fn expiry_interval(limits: &CoapLimits) -> tokio::time::Interval {
    let mut expire =
        tokio::time::interval((limits.upload_timeout / 4).max(Duration::from_millis(100)));
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    expire
}

impl Ctx {
    fn new(
        transport: Transport,
        source: SourceKind,
        pipeline: Arc<Pipeline>,
        budget: Arc<Budget>,
        allow_anonymous: bool,
    ) -> Ctx {
        Ctx {
            transport,
            source,
            exchanges: Mutex::new(Exchanges::new(budget.limits.max_exchanges)),
            uploads: Mutex::default(),
            budget,
            pipeline,
            allow_anonymous,
        }
    }

    /// Drops uploads whose next block is overdue (and what they held).
    fn expire_uploads(&self, limits: &CoapLimits) {
        let now = Instant::now();
        self.uploads
            .lock()
            .expect("uploads lock")
            .retain(|_, u| now.duration_since(u.touched) < limits.upload_timeout);
    }

    /// Forgets a peer's exchanges and uploads: its DTLS session ended, and a
    /// new session from the same address and port may be another device,
    /// which must never be answered from this one's cache.
    fn forget_peer(&self, peer: SocketAddr) {
        self.uploads
            .lock()
            .expect("uploads lock")
            .retain(|(p, ..), _| *p != peer);
        self.exchanges
            .lock()
            .expect("exchanges lock")
            .map
            .retain(|(p, _), _| *p != peer);
    }

    /// What the peer proved: its DTLS session's key, or its `?token=`.
    fn proof(&self, device: &DeviceId, request: &CoapRequest<SocketAddr>) -> Proof {
        match &self.transport {
            Transport::Udp(_) => proof(device, request),
            Transport::Dtls(sessions) => request
                .source
                .and_then(|peer| sessions.proof(peer))
                .unwrap_or(Proof::Nothing),
        }
    }

    /// Handles one datagram from `peer`.
    async fn receive(self: &Arc<Self>, datagram: &[u8], peer: SocketAddr, limits: &CoapLimits) {
        let metrics = &self.pipeline.metrics;
        let packet = match Packet::from_bytes(datagram) {
            Ok(p) => p,
            Err(e) => {
                metrics.malformed_message(self.source);
                tracing::warn!(%peer, error = ?e, "malformed CoAP message");
                // A confirmable message we cannot parse is answered with a
                // Reset (RFC 7252 section 4.2), if its ID can be read.
                let b = datagram;
                if b.len() >= 4 && b[0] >> 6 == 1 && (b[0] >> 4) & 0b11 == 0 {
                    let reset = [0x70, 0x00, b[2], b[3]];
                    self.transport.send(&reset, peer).await;
                }
                return;
            }
        };
        match packet.header.get_type() {
            // We never send confirmable messages, so nothing to match.
            MessageType::Acknowledgement | MessageType::Reset => return,
            _ => {}
        }
        if packet.header.code == MessageClass::Empty {
            // "CoAP ping": an empty confirmable message is answered with a Reset.
            let id = packet.header.message_id.to_be_bytes();
            self.transport.send(&[0x70, 0x00, id[0], id[1]], peer).await;
            return;
        }
        let key = (peer, packet.header.message_id);
        // A retransmission: the cached answer, or nothing yet.
        let seen: Option<Option<Vec<u8>>> = {
            let mut ex = self.exchanges.lock().expect("exchanges lock");
            match ex.map.get(&key) {
                Some((_, Exchange::Answered(response))) => Some(Some(response.clone())),
                Some((_, Exchange::InProgress)) => Some(None),
                None => {
                    ex.insert(key);
                    None
                }
            }
        };
        match seen {
            Some(Some(response)) => {
                self.transport.send(&response, peer).await;
                return;
            }
            // The first copy is still being stored; its answer will come.
            Some(None) => return,
            None => {}
        }
        let mut request = CoapRequest::from_packet(packet, peer);
        let block = match request.message.get_first_option(CoapOption::Block1) {
            None => None,
            Some(value) => match Block::parse(value) {
                Ok(b) => Some(b),
                Err(why) => {
                    metrics.malformed_message(self.source);
                    set(&mut request, ResponseType::BadRequest, &why);
                    return self.respond(key, &request).await;
                }
            },
        };
        match block {
            Some(b) if b.num > 0 => self.next_block(key, request, b, limits).await,
            Some(b) if b.more => self.first_block(key, request, b, limits).await,
            // A whole request (a single Block1 block with nothing more is one).
            _ => self.whole(key, request, block, limits).await,
        }
    }

    /// A request that carries its whole payload.
    async fn whole(
        self: &Arc<Self>,
        key: (SocketAddr, u16),
        mut request: CoapRequest<SocketAddr>,
        block: Option<Block>,
        limits: &CoapLimits,
    ) {
        let size = request.message.payload.len();
        if size > limits.max_payload_bytes {
            self.too_large(&mut request, limits);
            return self.respond(key, &request).await;
        }
        let reservation = match self.budget.reserve(key.0.ip(), size) {
            Ok(r) => r,
            Err(why) => {
                self.over_budget(&mut request, why);
                return self.respond(key, &request).await;
            }
        };
        let ctx = self.clone();
        tokio::spawn(async move {
            ctx.handle(None, &mut request).await;
            if let (Some(b), Some(response)) = (block, request.response.as_mut()) {
                response.message.add_option(CoapOption::Block1, b.encode());
            }
            drop(reservation);
            ctx.respond(key, &request).await;
        });
    }

    /// Block 0 of an upload with more to come: nothing is kept unless the
    /// device may send this, decided before the block is buffered.
    async fn first_block(
        self: &Arc<Self>,
        key: (SocketAddr, u16),
        mut request: CoapRequest<SocketAddr>,
        block: Block,
        limits: &CoapLimits,
    ) {
        let declared = request
            .message
            .get_first_option(CoapOption::Size1)
            .map(|v| v.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)));
        if declared.is_some_and(|n| n > limits.max_payload_bytes) {
            self.too_large(&mut request, limits);
            return self.respond(key, &request).await;
        }
        if request.message.payload.len() != block.size() {
            self.pipeline.metrics.malformed_message(self.source);
            set(
                &mut request,
                ResponseType::BadRequest,
                "a block with more to come must be exactly its block size (RFC 7959 section 2.2)",
            );
            return self.respond(key, &request).await;
        }
        let (device, _) = match route(&request) {
            Ok(r) => r,
            Err((code, why)) => {
                set(&mut request, code, &why);
                return self.respond(key, &request).await;
            }
        };
        let reservation = match self.budget.reserve(key.0.ip(), block.size()) {
            Ok(r) => r,
            Err(why) => {
                self.over_budget(&mut request, why);
                return self.respond(key, &request).await;
            }
        };
        let ctx = self.clone();
        tokio::spawn(async move {
            let admitted = ctx
                .pipeline
                .admit_device(
                    ctx.source,
                    ctx.proof(&device, &request),
                    &device,
                    ctx.allow_anonymous,
                )
                .await;
            match admitted {
                Err(why) => {
                    drop(reservation);
                    set(&mut request, ResponseType::Unauthorized, why.reason());
                }
                Ok(who) => {
                    let upload = Upload {
                        who,
                        payload: std::mem::take(&mut request.message.payload),
                        reservation,
                        touched: Instant::now(),
                    };
                    // A new block 0 restarts an upload under way on the same key.
                    ctx.uploads
                        .lock()
                        .expect("uploads lock")
                        .insert(upload_key(&request), upload);
                    continue_with(&mut request, block);
                }
            }
            ctx.respond(key, &request).await;
        });
    }

    /// Block 1 or later: appended to its upload, or the upload completes.
    async fn next_block(
        self: &Arc<Self>,
        key: (SocketAddr, u16),
        mut request: CoapRequest<SocketAddr>,
        block: Block,
        limits: &CoapLimits,
    ) {
        let metrics = &self.pipeline.metrics;
        let ukey = upload_key(&request);
        let outcome = {
            let mut uploads = self.uploads.lock().expect("uploads lock");
            match uploads.get_mut(&ukey) {
                None => Next::Refuse(
                    ResponseType::RequestEntityIncomplete,
                    "no upload under way here: send block 0 first".into(),
                ),
                Some(upload) => {
                    let offset = block.num as usize * block.size();
                    let payload = &request.message.payload;
                    let next = if offset != upload.payload.len() {
                        Next::Refuse(
                            ResponseType::RequestEntityIncomplete,
                            format!(
                                "block {} starts at byte {offset}, but {} bytes were received",
                                block.num,
                                upload.payload.len()
                            ),
                        )
                    } else if block.more && payload.len() != block.size() {
                        metrics.malformed_message(self.source);
                        Next::Refuse(
                            ResponseType::BadRequest,
                            "a block with more to come must be exactly its block size (RFC 7959 section 2.2)"
                                .into(),
                        )
                    } else if offset + payload.len() > limits.max_payload_bytes {
                        Next::TooLarge
                    } else {
                        match upload.reservation.grow(payload.len()) {
                            Err(why) => Next::OverBudget(why),
                            Ok(()) => {
                                upload.payload.extend_from_slice(payload);
                                upload.touched = Instant::now();
                                Next::Continue
                            }
                        }
                    };
                    match next {
                        Next::Continue if !block.more => {
                            Next::Complete(uploads.remove(&ukey).expect("found above"))
                        }
                        Next::Continue => Next::Continue,
                        // Any refusal ends the upload and frees what it held.
                        refused => {
                            uploads.remove(&ukey);
                            refused
                        }
                    }
                }
            }
        };
        match outcome {
            Next::Refuse(code, why) => {
                if code == ResponseType::RequestEntityIncomplete {
                    metrics.payload_refused(self.source, PayloadRefusal::Incomplete);
                }
                set(&mut request, code, &why);
            }
            Next::TooLarge => self.too_large(&mut request, limits),
            Next::OverBudget(why) => self.over_budget(&mut request, why),
            Next::Continue => continue_with(&mut request, block),
            Next::Complete(upload) => {
                let Upload {
                    who,
                    payload,
                    reservation,
                    ..
                } = upload;
                request.message.payload = payload;
                let ctx = self.clone();
                tokio::spawn(async move {
                    ctx.handle(Some(who), &mut request).await;
                    if let Some(response) = request.response.as_mut() {
                        response
                            .message
                            .add_option(CoapOption::Block1, block.encode());
                    }
                    drop(reservation);
                    ctx.respond(key, &request).await;
                });
                return;
            }
        }
        self.respond(key, &request).await;
    }

    /// 4.13, with Size1 naming the largest payload accepted (RFC 7959 section 4).
    fn too_large(&self, request: &mut CoapRequest<SocketAddr>, limits: &CoapLimits) {
        self.pipeline
            .metrics
            .payload_refused(self.source, PayloadRefusal::TooLarge);
        set(
            request,
            ResponseType::RequestEntityTooLarge,
            &format!(
                "payloads are accepted up to {} bytes (coap.max_payload_bytes)",
                limits.max_payload_bytes
            ),
        );
        if let Some(r) = request.response.as_mut() {
            let max = u32::try_from(limits.max_payload_bytes).unwrap_or(u32::MAX);
            r.message.add_option(CoapOption::Size1, uint(max));
        }
    }

    /// 5.03 with Max-Age: the memory for payloads is taken for now.
    fn over_budget(&self, request: &mut CoapRequest<SocketAddr>, why: PayloadRefusal) {
        self.pipeline.metrics.payload_refused(self.source, why);
        let (peer, whose) = match why {
            PayloadRefusal::PeerBudget => (
                request
                    .source
                    .map(|p| p.ip().to_string())
                    .unwrap_or_default(),
                "this address's (coap.peer_buffer_bytes)",
            ),
            _ => (String::new(), "the listener's (coap.buffer_budget_bytes)"),
        };
        tracing::debug!(peer, "CoAP payload refused: {whose} buffer budget is full");
        set(
            request,
            ResponseType::ServiceUnavailable,
            &format!("{whose} payload memory is in use; retry later"),
        );
        if let Some(r) = request.response.as_mut() {
            r.message
                .add_option(CoapOption::MaxAge, uint(RETRY_AFTER_S));
        }
    }

    async fn respond(&self, key: (SocketAddr, u16), request: &CoapRequest<SocketAddr>) {
        let Some(response) = &request.response else {
            self.exchanges
                .lock()
                .expect("exchanges lock")
                .map
                .remove(&key);
            return;
        };
        match response.message.to_bytes() {
            Ok(bytes) => {
                // Recorded before it is sent: a retransmission that crosses the
                // answer must find it, not an exchange still "in progress".
                self.exchanges
                    .lock()
                    .expect("exchanges lock")
                    .answered(key, bytes.clone());
                self.transport.send(&bytes, key.0).await;
            }
            Err(e) => tracing::error!(error = ?e, "cannot encode CoAP response"),
        }
    }

    /// Decodes and stores one complete request, setting its response. `who`
    /// is the device an upload's first block proved, if it was block-wise.
    async fn handle(&self, who: Option<DeviceIdentity>, request: &mut CoapRequest<SocketAddr>) {
        let pipeline = &self.pipeline;
        let (device, target) = match route(request) {
            Ok(r) => r,
            Err((code, why)) => return set(request, code, &why),
        };
        let admitted = match who {
            // Authenticated on block 0 (the token was checked then); still
            // the device it may send as.
            Some(who) => pipeline.authorize_device(&who, &device).map(|()| who),
            None => {
                pipeline
                    .admit_device(
                        self.source,
                        self.proof(&device, request),
                        &device,
                        self.allow_anonymous,
                    )
                    .await
            }
        };
        if let Err(why) = admitted {
            return set(request, ResponseType::Unauthorized, why.reason());
        }
        let payload = std::mem::take(&mut request.message.payload);
        let result = match target {
            Target::Senml => match request.message.get_content_format() {
                None
                | Some(ContentFormat::ApplicationSenmlJSON)
                | Some(ContentFormat::ApplicationJSON) => {
                    pipeline
                        .ingest_senml_json(self.source, &device, &payload)
                        .await
                }
                Some(ContentFormat::ApplicationSenmlCBOR)
                | Some(ContentFormat::ApplicationCBOR) => {
                    pipeline
                        .ingest_senml_cbor(self.source, &device, &payload)
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
            Target::Gatt(c) => {
                pipeline
                    .ingest_gatt(self.source, &device, c, &payload)
                    .await
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
            Err(IngestError::Malformed(e)) => {
                set(request, ResponseType::BadRequest, &e.to_string())
            }
            Err(IngestError::Storage(e)) => {
                set(
                    request,
                    ResponseType::ServiceUnavailable,
                    &format!("not stored, retry later: {e}"),
                );
                if let Some(r) = request.response.as_mut() {
                    // Max-Age: retry in 5 seconds.
                    r.message
                        .add_option(CoapOption::MaxAge, uint(RETRY_AFTER_S));
                }
            }
        }
    }
}

/// What became of a later block of an upload.
enum Next {
    Refuse(ResponseType, String),
    TooLarge,
    OverBudget(PayloadRefusal),
    Continue,
    Complete(Upload),
}

/// Which resource a request is for.
enum Target {
    Senml,
    Gatt(GattCharacteristic),
}

/// The device and resource a request names, with the method checked; or
/// the response code and reason. Cheap: decided before any payload is kept.
fn route(request: &CoapRequest<SocketAddr>) -> Result<(DeviceId, Target), (ResponseType, String)> {
    let path = request.get_path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (device, rest) = match segments.as_slice() {
        ["medmesh", "v1", "devices", id, rest @ ..] => (DeviceId::new(*id), rest.to_vec()),
        _ => {
            return Err((
                ResponseType::NotFound,
                format!("no resource /{path}; POST to /medmesh/v1/devices/{{device_id}}/senml"),
            ));
        }
    };
    let device = device.map_err(|e| (ResponseType::BadRequest, format!("device id: {e}")))?;
    if !matches!(
        request.message.header.code,
        MessageClass::Request(RequestType::Post | RequestType::Put)
    ) {
        return Err((ResponseType::MethodNotAllowed, "use POST or PUT".into()));
    }
    let target = match rest.as_slice() {
        ["senml"] => Target::Senml,
        ["gatt", uuid] => match GattCharacteristic::parse(uuid) {
            Some(c) => Target::Gatt(c),
            None => {
                return Err((
                    ResponseType::NotFound,
                    format!("{uuid:?} is not a supported GATT characteristic"),
                ));
            }
        },
        _ => return Err((ResponseType::NotFound, format!("no resource /{path}"))),
    };
    Ok((device, target))
}

/// The key of the upload a block belongs to.
fn upload_key(request: &CoapRequest<SocketAddr>) -> UploadKey {
    let mut uri = request.get_path();
    for q in request
        .message
        .get_option(CoapOption::UriQuery)
        .into_iter()
        .flatten()
    {
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(q));
    }
    let peer = request.source.expect("requests come from a peer");
    (peer, u8::from(request.message.header.code), uri)
}

/// 2.31 Continue for a block with more to come (RFC 7959 section 2.3).
fn continue_with(request: &mut CoapRequest<SocketAddr>, block: Block) {
    if let Some(r) = request.response.as_mut() {
        r.set_status(ResponseType::Continue);
        r.message.add_option(CoapOption::Block1, block.encode());
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
        .get_option(CoapOption::UriQuery)
        .into_iter()
        .flatten()
        .filter_map(|q| std::str::from_utf8(q).ok())
        .find_map(|q| q.strip_prefix("token="))
        .map_or(Proof::Nothing, |token| Proof::Token {
            device: device.clone(),
            token: token.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block1_options_round_trip_with_20_bit_numbers() {
        for b in [
            Block {
                num: 0,
                more: true,
                szx: 0,
            },
            Block {
                num: 15,
                more: false,
                szx: 6,
            },
            Block {
                num: 4095,
                more: true,
                szx: 2,
            },
            Block {
                num: (1 << 20) - 1,
                more: true,
                szx: 6,
            },
        ] {
            assert_eq!(Block::parse(&b.encode()), Ok(b));
        }
        assert_eq!(
            Block::parse(&[]).unwrap().size(),
            16,
            "empty is NUM 0, 16 bytes"
        );
        assert!(Block::parse(&[0x0F]).is_err(), "SZX 7 is reserved");
        assert!(Block::parse(&[1, 2, 3, 4]).is_err());
        assert_eq!(uint(0), Vec::<u8>::new());
        assert_eq!(uint(1024), vec![4, 0]);
    }

    #[test]
    fn remembered_exchanges_are_capped_oldest_forgotten_first() {
        let mut ex = Exchanges::new(3);
        let peer: SocketAddr = "10.0.0.1:5683".parse().unwrap();
        for id in 0..3 {
            ex.insert((peer, id));
        }
        ex.answered((peer, 0), b"first".to_vec());
        ex.insert((peer, 3));
        assert_eq!(ex.map.len(), 3);
        assert!(!ex.map.contains_key(&(peer, 0)), "the oldest goes first");
        // An answer for a forgotten exchange is sent, not remembered.
        ex.answered((peer, 0), b"late".to_vec());
        assert!(!ex.map.contains_key(&(peer, 0)));
        for id in 4..1000 {
            ex.insert((peer, id));
        }
        assert_eq!(ex.map.len(), 3);
        assert_eq!(ex.order.len(), 3);
    }

    #[test]
    fn the_budget_caps_each_address_and_the_whole_listener() {
        let budget = Arc::new(Budget {
            limits: CoapLimits {
                max_payload_bytes: 100,
                peer_buffer_bytes: 100,
                buffer_budget_bytes: 150,
                upload_timeout: Duration::from_secs(1),
                max_exchanges: 10,
            },
            metrics: Arc::new(medmesh_pipeline::Metrics::default()),
            held: Mutex::default(),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = budget.reserve(a, 60).unwrap();
        assert!(matches!(first.grow(41), Err(PayloadRefusal::PeerBudget)));
        first.grow(40).unwrap();
        assert!(matches!(
            budget.reserve(a, 1),
            Err(PayloadRefusal::PeerBudget)
        ));
        let _other = budget.reserve(b, 50).unwrap();
        assert!(matches!(
            budget.reserve(b, 1),
            Err(PayloadRefusal::MemoryBudget)
        ));
        drop(first);
        assert!(budget.reserve(a, 100).is_ok(), "freed when the upload ends");
        assert_eq!(budget.held.lock().unwrap().total, 50);
    }
}
