//! CoAP over DTLS 1.2 with pre-shared keys (coaps, RFC 7252 section 9.1):
//! the RFC 7925 profile of constrained devices, whose mandatory cipher
//! suite is TLS_PSK_WITH_AES_128_CCM_8.
//!
//! The PSK identity is the device id and the key is the one issued to that
//! device (`POST /api/v1/devices/{id}/psk`, kept in the registry). An
//! identity that is no device with a key is refused in the handshake
//! (`unknown_psk_identity`); a wrong key fails it (the Finished messages
//! disagree). Once the handshake is done, every request on the session is
//! that device's: it goes through the same [`Pipeline::admit_device`]
//! decision as every listener, with [`Proof::PreSharedKey`], so a device may
//! post to its own resource only; and a key replaced or revoked since ends
//! the session at its next message.
//!
//! OpenSSL (the `openssl` crate, the system's libssl) runs the DTLS state
//! machine; this module carries its records over one UDP socket, one
//! session per peer address and port, each on its own task that owns its
//! `SslStream`. Bounded: sessions per source address and in all (a new
//! peer over a cap is dropped, counted in `connections_refused`), a
//! handshake deadline, an idle timeout (counted in `connections_timed_out`),
//! a cookie exchange (HelloVerifyRequest) before the server sends its
//! handshake flight, and a queue of at most [`QUEUE`] datagrams each way per
//! session (more are dropped, as a network would; CoAP retransmits).

use super::{Budget, CoapLimits, Ctx, MAX_DATAGRAM, Transport, expiry_interval};
use medmesh_model::DeviceId;
use medmesh_pipeline::{ConnectionRefusal, HandshakeOutcome, Metrics, Pipeline, Proof, SourceKind};
use medmesh_storage::Registry;
use openssl::ex_data::Index;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVersion,
};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

const SOURCE: SourceKind = SourceKind::Coaps;
/// Datagrams queued per session each way.
const QUEUE: usize = 32;
/// RFC 7925 section 4.3.1: TLS_PSK_WITH_AES_128_CCM_8 is mandatory to
/// implement; TLS_PSK_WITH_AES_128_CCM (a 16-byte tag) is the same
/// construction, for clients that prefer it. Nothing weaker is offered.
const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-CCM";
/// Largest DTLS datagram sent: the IPv6 minimum MTU (1280) less the IPv6
/// and UDP headers, so a 6LoWPAN network never has to fragment IP.
const MTU: u32 = 1280 - 40 - 8;
/// How often a handshake's retransmission timer is given a chance to fire
/// (OpenSSL keeps the timer; it retransmits when a read finds it expired).
const HANDSHAKE_TICK: Duration = Duration::from_millis(250);

/// How many DTLS sessions the listener holds, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct DtlsLimits {
    /// Sessions (including handshakes under way) held at once.
    pub max_sessions: usize,
    /// Sessions from one source address at once.
    pub max_sessions_per_address: usize,
    /// A handshake not finished within this is dropped.
    pub handshake_timeout: Duration,
    /// A session that receives nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for DtlsLimits {
    /// Each session costs an OpenSSL `SSL` (tens of KiB) and a task: 10,000
    /// is a large ward's devices many times over. A device's handshake takes
    /// three round trips; 10 s covers its retransmissions (1 s, 2 s, 4 s).
    /// Devices that report every minute or so keep their session; one idle
    /// for 10 minutes shakes hands again (four messages of a few hundred
    /// bytes, no public-key operation with PSK).
    fn default() -> Self {
        DtlsLimits {
            max_sessions: 10_000,
            max_sessions_per_address: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The coaps socket and its DTLS settings, bound before the server starts.
pub struct DtlsListener {
    socket: Arc<UdpSocket>,
    limits: DtlsLimits,
    sessions: Arc<Sessions>,
}

/// A handle on the listener's sessions, for whoever changes device
/// credentials (the REST API): [`DtlsSessions::close_device`].
#[derive(Clone)]
pub struct DtlsSessions(Arc<Sessions>);

impl DtlsSessions {
    /// Closes `device`'s sessions at once (its key was replaced or
    /// revoked); returns how many. Each sends the device a close_notify.
    pub fn close_device(&self, device: &DeviceId) -> usize {
        let held = self.0.held.lock().expect("sessions lock");
        let mut closed = 0;
        for e in held.by_peer.values() {
            if matches!(&e.proof, Some(Proof::PreSharedKey { device: d, .. }) if d == device) {
                e.close.notify_one();
                closed += 1;
            }
        }
        closed
    }
}

impl DtlsListener {
    pub async fn bind(addr: SocketAddr, limits: DtlsLimits) -> std::io::Result<DtlsListener> {
        Ok(DtlsListener {
            socket: Arc::new(UdpSocket::bind(addr).await?),
            limits,
            sessions: Arc::default(),
        })
    }

    pub fn sessions(&self) -> DtlsSessions {
        DtlsSessions(self.sessions.clone())
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub(super) async fn run(self, pipeline: Arc<Pipeline>, budget: Arc<Budget>, coap: CoapLimits) {
        let indices = match Indices::new() {
            Ok(i) => i,
            Err(e) => return tracing::error!(error = %e, "cannot set up DTLS; coaps is not served"),
        };
        let context = match context(pipeline.registry.clone(), indices) {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "cannot set up DTLS; coaps is not served"),
        };
        let sessions = self.sessions.clone();
        let ctx = Arc::new(Ctx::new(
            Transport::Dtls(sessions.clone()),
            SOURCE,
            pipeline.clone(),
            budget,
            // The handshake proved who the device is: never anonymous.
            false,
        ));
        let shared = Arc::new(Shared {
            socket: self.socket.clone(),
            sessions,
            ctx,
            metrics: pipeline.metrics.clone(),
            registry: pipeline.registry.clone(),
            limits: self.limits,
            coap,
            indices,
        });
        // Dropped with this future, which aborts every session task: a
        // stopped listener leaves no session behind.
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut expire = expiry_interval(&coap);
        let mut next_id = 0u64;
        loop {
            let (n, peer) = tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "coaps receive failed");
                        continue;
                    }
                },
                _ = expire.tick() => {
                    shared.ctx.expire_uploads(&coap);
                    continue;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let Some(datagram) = shared.sessions.deliver(peer, buf[..n].to_vec()) else {
                continue;
            };
            if !is_client_hello(&datagram) {
                // Not for any session and no session's start: a stale
                // record of a session that ended, or noise.
                tracing::debug!(%peer, "coaps datagram outside any session dropped");
                continue;
            }
            let admitted = shared.sessions.admit(peer, next_id, &self.limits);
            let (inbound, outbound, close) = match admitted {
                Ok(channels) => channels,
                Err(reason) => {
                    shared.metrics.connection_refused(SOURCE, reason);
                    tracing::debug!(%peer, ?reason, "coaps session refused: cap reached");
                    continue;
                }
            };
            let id = next_id;
            next_id += 1;
            shared.metrics.connection_open(SOURCE, 1);
            let ssl = match new_ssl(&context, &indices, peer) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a DTLS session");
                    shared.end(peer, id);
                    continue;
                }
            };
            tasks.spawn(session(
                shared.clone(),
                peer,
                id,
                ssl,
                datagram,
                (inbound, outbound, close),
            ));
        }
    }
}

/// Per-connection data OpenSSL's callbacks read and write.
#[derive(Clone, Copy)]
struct Indices {
    /// The peer's address, for its cookie.
    peer: Index<Ssl, SocketAddr>,
    /// What the PSK callback found: the device and its key's digest, or the
    /// unknown identity it was offered.
    psk: Index<Ssl, PskLookup>,
}

impl Indices {
    fn new() -> Result<Indices, openssl::error::ErrorStack> {
        Ok(Indices {
            peer: Ssl::new_ex_index()?,
            psk: Ssl::new_ex_index()?,
        })
    }
}

enum PskLookup {
    Known {
        device: DeviceId,
        key_digest: [u8; 32],
    },
    Unknown(String),
}

/// The DTLS server context: DTLS 1.2 only, PSK cipher suites only, the
/// keys from the registry, cookies bound to the peer's address.
fn context(
    registry: Arc<Registry>,
    indices: Indices,
) -> Result<SslContext, openssl::error::ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::dtls_server())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    // We set the MTU ourselves: the custom BIO has no socket to ask.
    b.set_options(SslOptions::COOKIE_EXCHANGE | SslOptions::NO_QUERY_MTU);
    b.set_psk_server_callback(move |ssl, identity, out| {
        let named = identity
            .and_then(|i| std::str::from_utf8(i).ok())
            .and_then(|i| DeviceId::new(i).ok());
        let found = named
            .as_ref()
            .and_then(|d| registry.psk(d).map(|k| (d.clone(), k)));
        match found {
            Some((device, key)) if key.len() <= out.len() => {
                out[..key.len()].copy_from_slice(key.as_bytes());
                let key_digest = medmesh_storage::credentials::key_digest(key.as_bytes());
                ssl.set_ex_data(indices.psk, PskLookup::Known { device, key_digest });
                Ok(key.len())
            }
            _ => {
                let shown = String::from_utf8_lossy(identity.unwrap_or_default());
                ssl.set_ex_data(
                    indices.psk,
                    PskLookup::Unknown(shown.chars().take(64).collect()),
                );
                // No key: OpenSSL answers with an unknown_psk_identity alert.
                Ok(0)
            }
        }
    });
    let secret: [u8; 32] = rand_bytes()?;
    b.set_cookie_generate_cb(move |ssl, out| {
        let peer = ssl.ex_data(indices.peer).copied();
        let cookie = cookie(&secret, peer);
        out[..cookie.len()].copy_from_slice(&cookie);
        Ok(cookie.len())
    });
    b.set_cookie_verify_cb(move |ssl, offered| {
        let peer = ssl.ex_data(indices.peer).copied();
        openssl::memcmp::eq(offered, &cookie(&secret, peer)[..]) && offered.len() == 32
    });
    Ok(b.build())
}

fn rand_bytes() -> Result<[u8; 32], openssl::error::ErrorStack> {
    let mut secret = [0u8; 32];
    openssl::rand::rand_bytes(&mut secret)?;
    Ok(secret)
}

/// A cookie (RFC 6347 section 4.2.1): a keyed hash of the client's address
/// and port, so only a client that receives at its address gets a session.
fn cookie(secret: &[u8; 32], peer: Option<SocketAddr>) -> [u8; 32] {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let mut input = secret.to_vec();
    input.extend_from_slice(peer.as_bytes());
    medmesh_storage::credentials::key_digest(&input)
}

fn new_ssl(
    context: &SslContext,
    indices: &Indices,
    peer: SocketAddr,
) -> Result<Ssl, openssl::error::ErrorStack> {
    let mut ssl = Ssl::new(context)?;
    ssl.set_ex_data(indices.peer, peer);
    ssl.set_mtu(MTU)?;
    ssl.set_accept_state();
    Ok(ssl)
}

/// Whether a datagram starts with a DTLS handshake record of epoch 0 that
/// carries a ClientHello: the only thing that may open a session.
fn is_client_hello(d: &[u8]) -> bool {
    // Record: type 22 (handshake), version 254.x, epoch 0; 13-byte header,
    // then the handshake header, whose type 1 is ClientHello.
    d.len() > 13 && d[0] == 22 && d[1] == 254 && d[3] == 0 && d[4] == 0 && d[13] == 1
}

/// A DTLS server drops a record that does not decrypt without a word
/// (RFC 6347 section 4.1.2.7), and OpenSSL does so with the client's
/// Finished message when the client used another key: the handshake would
/// only time out while the client retransmits. A client's encrypted flight
/// that arrived this often without finishing the handshake is taken for a
/// wrong key (one loss or reordering of its first copy is forgiven), and
/// the client is told with a fatal alert.
const WRONG_KEY_AFTER: u32 = 2;
/// TLS alert `bad_record_mac` (RFC 5246 section 7.2.2): what a record that
/// fails to decrypt calls for.
const BAD_RECORD_MAC: u8 = 20;

/// Whether a datagram holds a record of epoch 1 or later (encrypted).
fn has_protected_record(mut d: &[u8]) -> bool {
    while d.len() >= 13 {
        let epoch = u16::from_be_bytes([d[3], d[4]]);
        if epoch != 0 {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([d[11], d[12]]));
        d = &d[(13 + len).min(d.len())..];
    }
    false
}

/// A fatal alert record in epoch 0, which a client that has not yet seen
/// the server's ChangeCipherSpec reads. Its sequence number is far above
/// the few the server's epoch-0 flight used, so no replay check drops it.
fn fatal_alert(description: u8) -> Vec<u8> {
    let mut record = vec![21, 254, 253, 0, 0];
    record.extend_from_slice(&(1u64 << 40).to_be_bytes()[2..]);
    record.extend_from_slice(&[0, 2, 2, description]);
    record
}

/// The live sessions, by peer address and port.
#[derive(Default)]
pub(crate) struct Sessions {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    by_peer: HashMap<SocketAddr, Entry>,
    per_address: HashMap<IpAddr, usize>,
}

struct Entry {
    id: u64,
    inbound: mpsc::Sender<Vec<u8>>,
    outbound: mpsc::Sender<Vec<u8>>,
    /// Set once the handshake proved a key.
    proof: Option<Proof>,
    /// Notified to close the session (its key was replaced or revoked).
    close: Arc<Notify>,
}

/// A session task's ends: datagrams in, CoAP messages out, and its close.
type Channels = (
    mpsc::Receiver<Vec<u8>>,
    mpsc::Receiver<Vec<u8>>,
    Arc<Notify>,
);

impl Sessions {
    /// Hands a datagram to `peer`'s session, if it has one (dropped if its
    /// queue is full); gives it back if `peer` has no session.
    fn deliver(&self, peer: SocketAddr, datagram: Vec<u8>) -> Option<Vec<u8>> {
        let held = self.held.lock().expect("sessions lock");
        match held.by_peer.get(&peer) {
            Some(e) => {
                let _ = e.inbound.try_send(datagram);
                None
            }
            None => Some(datagram),
        }
    }

    /// A new session for `peer`, within the caps.
    fn admit(
        &self,
        peer: SocketAddr,
        id: u64,
        limits: &DtlsLimits,
    ) -> Result<Channels, ConnectionRefusal> {
        let mut held = self.held.lock().expect("sessions lock");
        if held.by_peer.len() >= limits.max_sessions {
            return Err(ConnectionRefusal::ListenerFull);
        }
        let address = peer.ip().to_canonical();
        let of_address = held.per_address.get(&address).copied().unwrap_or(0);
        if of_address >= limits.max_sessions_per_address {
            return Err(ConnectionRefusal::AddressFull);
        }
        let (inbound, inbound_rx) = mpsc::channel(QUEUE);
        let (outbound, outbound_rx) = mpsc::channel(QUEUE);
        let close = Arc::new(Notify::new());
        held.by_peer.insert(
            peer,
            Entry {
                id,
                inbound,
                outbound,
                proof: None,
                close: close.clone(),
            },
        );
        *held.per_address.entry(address).or_insert(0) += 1;
        Ok((inbound_rx, outbound_rx, close))
    }

    /// Removes session `id` of `peer` (not a newer one on the same port).
    fn remove(&self, peer: SocketAddr, id: u64) -> bool {
        let mut held = self.held.lock().expect("sessions lock");
        if held.by_peer.get(&peer).is_none_or(|e| e.id != id) {
            return false;
        }
        held.by_peer.remove(&peer);
        let address = peer.ip().to_canonical();
        if let Some(n) = held.per_address.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                held.per_address.remove(&address);
            }
        }
        true
    }

    fn established(&self, peer: SocketAddr, id: u64, proof: Proof) {
        let mut held = self.held.lock().expect("sessions lock");
        if let Some(e) = held.by_peer.get_mut(&peer).filter(|e| e.id == id) {
            e.proof = Some(proof);
        }
    }

    /// What `peer`'s session proved, once its handshake is done.
    pub(super) fn proof(&self, peer: SocketAddr) -> Option<Proof> {
        let held = self.held.lock().expect("sessions lock");
        held.by_peer.get(&peer).and_then(|e| e.proof.clone())
    }

    /// Queues a CoAP message for `peer`'s session to encrypt and send.
    pub(super) fn send(&self, peer: SocketAddr, message: &[u8]) {
        let held = self.held.lock().expect("sessions lock");
        if let Some(e) = held.by_peer.get(&peer) {
            let _ = e.outbound.try_send(message.to_vec());
        }
    }
}

/// What every session task shares.
struct Shared {
    socket: Arc<UdpSocket>,
    sessions: Arc<Sessions>,
    ctx: Arc<Ctx>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    limits: DtlsLimits,
    coap: CoapLimits,
    indices: Indices,
}

impl Shared {
    fn end(&self, peer: SocketAddr, id: u64) {
        if self.sessions.remove(peer, id) {
            self.metrics.connection_open(SOURCE, -1);
            self.ctx.forget_peer(peer);
        }
    }
}

/// The datagrams of one peer as OpenSSL's stream: a read takes the next
/// received datagram whole (DTLS needs record boundaries), or would block;
/// a write queues one datagram, sent by [`PeerIo::send`] once the session
/// has counted and logged what OpenSSL decided, so a peer never learns an
/// outcome (an alert, an answer) before the server's records show it.
struct PeerIo {
    received: VecDeque<Vec<u8>>,
    to_send: Vec<Vec<u8>>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl PeerIo {
    fn send(&mut self) {
        for datagram in self.to_send.drain(..) {
            // A full socket buffer loses the datagram, as the network may:
            // DTLS retransmits handshake flights and CoAP its requests.
            if let Err(e) = self.socket.try_send_to(&datagram, self.peer) {
                tracing::debug!(peer = %self.peer, error = %e, "coaps datagram not sent");
            }
        }
    }
}

impl Read for PeerIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.received.pop_front() {
            Some(d) => {
                // A datagram longer than OpenSSL's buffer is cut, fails its
                // record's integrity check and is discarded, as it should.
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for PeerIo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.to_send.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One peer's session: the handshake, then its CoAP messages both ways
/// until it closes, goes idle, fails or its key is revoked.
async fn session(
    shared: Arc<Shared>,
    peer: SocketAddr,
    id: u64,
    ssl: Ssl,
    first: Vec<u8>,
    channels: Channels,
) {
    let io = PeerIo {
        received: VecDeque::from([first]),
        to_send: Vec::new(),
        socket: shared.socket.clone(),
        peer,
    };
    match SslStream::new(ssl, io) {
        Ok(mut stream) => {
            run_session(&shared, peer, id, &mut stream, channels).await;
            // Sent last: a closing alert after the session's end is counted.
            shared.end(peer, id);
            stream.get_mut().send();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start a DTLS session");
            shared.end(peer, id);
        }
    }
}

async fn run_session(
    shared: &Shared,
    peer: SocketAddr,
    id: u64,
    stream: &mut SslStream<PeerIo>,
    (mut inbound, mut outbound, close): Channels,
) {
    let metrics = &shared.metrics;
    let Some(proof) = handshake(shared, peer, stream, &mut inbound).await else {
        return;
    };
    let Proof::PreSharedKey { device, key_digest } = &proof else {
        unreachable!("a DTLS handshake proves a pre-shared key")
    };
    let (device, key_digest) = (device.clone(), *key_digest);
    tracing::debug!(
        %peer,
        %device,
        cipher = stream.ssl().current_cipher().map(|c| c.name()),
        "coaps session established"
    );
    shared.sessions.established(peer, id, proof);
    // The handshake's last flight, once the session can take requests.
    stream.get_mut().send();
    let mut plain = vec![0u8; MAX_DATAGRAM];
    let mut idle_until = Instant::now() + shared.limits.idle_timeout;
    loop {
        tokio::select! {
            datagram = inbound.recv() => {
                let Some(datagram) = datagram else { return };
                idle_until = Instant::now() + shared.limits.idle_timeout;
                stream.get_mut().received.push_back(datagram);
                loop {
                    match stream.ssl_read(&mut plain) {
                        Ok(n) => {
                            let current = shared
                                .registry
                                .psk(&device)
                                .map(|k| medmesh_storage::credentials::key_digest(k.as_bytes()));
                            if current != Some(key_digest) {
                                // Revoked or replaced: this session proved a
                                // key that no longer counts.
                                metrics.refused_message(SOURCE);
                                tracing::warn!(%peer, %device, "coaps session closed: its pre-shared key was replaced or revoked");
                                let _ = stream.shutdown();
                                return;
                            }
                            shared.ctx.receive(&plain[..n], peer, &shared.coap).await;
                        }
                        Err(e) if e.code() == ErrorCode::WANT_READ => {
                            stream.get_mut().send();
                            break;
                        }
                        Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                            tracing::debug!(%peer, %device, "coaps session closed by the device");
                            let _ = stream.shutdown();
                            return;
                        }
                        Err(e) => {
                            tracing::info!(%peer, %device, error = %e, "coaps session failed");
                            return;
                        }
                    }
                }
            }
            Some(message) = outbound.recv() => {
                if let Err(e) = stream.ssl_write(&message) {
                    tracing::info!(%peer, %device, error = %e, "coaps session failed");
                    return;
                }
                stream.get_mut().send();
            }
            _ = close.notified() => {
                tracing::info!(%peer, %device, "coaps session closed: the device's credentials changed");
                let _ = stream.shutdown();
                return;
            }
            _ = tokio::time::sleep_until(idle_until) => {
                metrics.connection_timed_out(SOURCE);
                tracing::debug!(%peer, %device, "coaps session idle: closed");
                let _ = stream.shutdown();
                return;
            }
        }
    }
}

/// Runs the handshake to its end: the proof of the device's key, or `None`
/// (counted and logged).
async fn handshake(
    shared: &Shared,
    peer: SocketAddr,
    stream: &mut SslStream<PeerIo>,
    inbound: &mut mpsc::Receiver<Vec<u8>>,
) -> Option<Proof> {
    let metrics = &shared.metrics;
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let mut tick = tokio::time::interval(HANDSHAKE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Datagrams with encrypted records (the client's Finished) that did not
    // finish the handshake: see `WRONG_KEY_AFTER`.
    let mut protected_in_vain = 0;
    let mut protected_pending = false;
    loop {
        match stream.do_handshake() {
            Ok(()) => break,
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                if std::mem::take(&mut protected_pending) {
                    protected_in_vain += 1;
                }
                if protected_in_vain >= WRONG_KEY_AFTER
                    && let Some(PskLookup::Known { device, .. }) =
                        stream.ssl().ex_data(shared.indices.psk)
                {
                    metrics.refused_message(SOURCE);
                    metrics.handshake(SOURCE, HandshakeOutcome::Failed);
                    tracing::warn!(%peer, %device, "coaps handshake failed: the device's Finished message does not decrypt with its pre-shared key (a wrong key)");
                    let io = stream.get_mut();
                    io.to_send.clear();
                    io.to_send.push(fatal_alert(BAD_RECORD_MAC));
                    return None;
                }
                stream.get_mut().send();
            }
            Err(e) => {
                let outcome = match stream.ssl().ex_data(shared.indices.psk) {
                    Some(PskLookup::Unknown(identity)) => {
                        metrics.refused_message(SOURCE);
                        tracing::warn!(%peer, identity, "coaps handshake refused: no device with a pre-shared key has this identity");
                        HandshakeOutcome::UnknownIdentity
                    }
                    Some(PskLookup::Known { device, .. }) => {
                        metrics.refused_message(SOURCE);
                        tracing::warn!(%peer, %device, error = %e, "coaps handshake failed");
                        HandshakeOutcome::Failed
                    }
                    None => {
                        tracing::info!(%peer, error = %e, "coaps handshake failed");
                        HandshakeOutcome::Failed
                    }
                };
                metrics.handshake(SOURCE, outcome);
                return None;
            }
        }
        tokio::select! {
            datagram = inbound.recv() => match datagram {
                Some(d) => {
                    protected_pending |= has_protected_record(&d);
                    stream.get_mut().received.push_back(d);
                }
                None => return None,
            },
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => {
                metrics.handshake(SOURCE, HandshakeOutcome::TimedOut);
                tracing::debug!(%peer, "coaps handshake timed out");
                return None;
            }
        }
    }
    match stream.ssl().ex_data(shared.indices.psk) {
        Some(PskLookup::Known { device, key_digest }) => {
            metrics.handshake(SOURCE, HandshakeOutcome::Established);
            Some(Proof::PreSharedKey {
                device: device.clone(),
                key_digest: *key_digest,
            })
        }
        // A PSK suite always asks for the key; no key, no session.
        _ => {
            metrics.handshake(SOURCE, HandshakeOutcome::Failed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_hello_opens_a_session() {
        let mut hello = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1];
        hello.extend([0; 40]);
        assert!(is_client_hello(&hello));
        let mut later_epoch = hello.clone();
        later_epoch[4] = 1;
        assert!(!is_client_hello(&later_epoch));
        let mut application = hello.clone();
        application[0] = 23;
        assert!(!is_client_hello(&application));
        assert!(!is_client_hello(&hello[..13]));
    }

    #[test]
    fn encrypted_records_are_found_in_a_flight() {
        // ClientKeyExchange (epoch 0), ChangeCipherSpec (epoch 0), Finished (epoch 1).
        let mut flight = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 16, 0, 0];
        flight.extend([20, 254, 253, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 1]);
        assert!(!has_protected_record(&flight));
        flight.extend([22, 254, 253, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 9, 9]);
        assert!(has_protected_record(&flight));
        let alert = fatal_alert(BAD_RECORD_MAC);
        assert_eq!(alert.len(), 15);
        assert_eq!(&alert[..5], &[21, 254, 253, 0, 0]);
        assert_eq!(&alert[11..], &[0, 2, 2, 20]);
    }

    #[test]
    fn sessions_are_capped_per_address_and_in_all() {
        let s = Sessions::default();
        let limits = DtlsLimits {
            max_sessions: 3,
            max_sessions_per_address: 2,
            ..DtlsLimits::default()
        };
        let a = |port| SocketAddr::from(([10, 0, 0, 1], port));
        let b = |port| SocketAddr::from(([10, 0, 0, 2], port));
        let _a1 = s.admit(a(1), 1, &limits).unwrap();
        let _a2 = s.admit(a(2), 2, &limits).unwrap();
        assert_eq!(
            s.admit(a(3), 3, &limits).err(),
            Some(ConnectionRefusal::AddressFull)
        );
        let _b1 = s.admit(b(1), 4, &limits).unwrap();
        assert_eq!(
            s.admit(b(2), 5, &limits).err(),
            Some(ConnectionRefusal::ListenerFull)
        );
        assert!(!s.remove(a(1), 99), "not another session's entry");
        assert!(s.remove(a(1), 1));
        assert!(s.admit(a(3), 6, &limits).is_ok(), "freed when one ends");
    }

    #[test]
    fn cookies_are_bound_to_the_address_and_port() {
        let secret = [7u8; 32];
        let one = Some(SocketAddr::from(([10, 0, 0, 1], 5000)));
        let other = Some(SocketAddr::from(([10, 0, 0, 1], 5001)));
        assert_eq!(cookie(&secret, one), cookie(&secret, one));
        assert_ne!(cookie(&secret, one), cookie(&secret, other));
        assert_ne!(cookie(&secret, one), cookie(&[8u8; 32], one));
    }
}
