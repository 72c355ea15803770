//! Bounds every TCP listener keeps (MQTT, HTTP, HL7 MLLP): how many
//! connections it holds, in all and per client address, and how it accepts.
//!
//! A connection over a cap is closed at once, before any byte is read or a
//! TLS handshake started, so it costs the server one accept. Refusals are
//! counted (`medmesh_connections_refused_total`) and logged once per burst:
//! an attacker opening thousands of sockets must not also fill the log.
//! A failed accept (typically EMFILE, out of file descriptors) backs off,
//! doubling up to a second, instead of retrying in a tight loop.

use medmesh_pipeline::{ConnectionRefusal, Metrics, SourceKind};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How many connections a listener holds. `0` means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once on the listener.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    /// 10,000 per listener: every monitor, pump and wearable of a large
    /// hospital on one connection each fits, and the file descriptors stay
    /// far under what a service is given. 256 per address: a gateway or NAT
    /// in front of one ward's devices fits; one attacker's machine cannot
    /// take more than a fortieth of the listener.
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_per_address: 256,
        }
    }
}

/// How long a burst of refusals is summed up before it is logged again.
const BURST: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

#[derive(Default)]
struct Burst {
    /// Refusals since the burst's first one was logged, with an address
    /// that was refused (the most frequent one is not worth a map).
    open: Option<(u64, IpAddr)>,
}

/// Admits connections of one listener within its [`ConnectionLimits`].
pub struct ConnectionGate {
    listener: SourceKind,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
    burst: Arc<Mutex<Burst>>,
}

impl ConnectionGate {
    pub fn new(
        listener: SourceKind,
        limits: ConnectionLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            listener,
            limits,
            metrics,
            open: Mutex::default(),
            burst: Arc::default(),
        })
    }

    /// A permit for a connection from `peer`, held as long as the connection
    /// lives; `None` (counted and logged) if a cap is reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionPermit> {
        // An IPv4 client on a dual-stack socket is the same client either way.
        let peer = peer.to_canonical();
        let refused = {
            let mut open = self.open.lock().expect("connection gate lock");
            let from_peer = open.per_address.get(&peer).copied().unwrap_or(0);
            if self.limits.max_connections > 0 && open.total >= self.limits.max_connections {
                Some(ConnectionRefusal::ListenerFull)
            } else if self.limits.max_per_address > 0 && from_peer >= self.limits.max_per_address {
                Some(ConnectionRefusal::AddressFull)
            } else {
                open.total += 1;
                *open.per_address.entry(peer).or_insert(0) += 1;
                None
            }
        };
        match refused {
            None => {
                self.metrics.connection_open(self.listener, 1);
                Some(ConnectionPermit {
                    gate: self.clone(),
                    peer,
                })
            }
            Some(reason) => {
                self.metrics.connection_refused(self.listener, reason);
                self.log_refusal(peer, reason);
                None
            }
        }
    }

    /// Logs the first refusal of a burst at once and the rest as one sum at
    /// its end, so a flood of connections is a few lines, not one per socket.
    fn log_refusal(&self, peer: IpAddr, reason: ConnectionRefusal) {
        let mut burst = self.burst.lock().expect("burst lock");
        if let Some((n, _)) = burst.open.as_mut() {
            *n += 1;
            return;
        }
        burst.open = Some((0, peer));
        drop(burst);
        let (cap, what) = match reason {
            ConnectionRefusal::ListenerFull => (self.limits.max_connections, "max_connections"),
            ConnectionRefusal::AddressFull => {
                (self.limits.max_per_address, "max_connections_per_address")
            }
        };
        let listener = self.listener.as_str();
        tracing::warn!(
            listener,
            %peer,
            cap,
            "connection refused: {listener}.{what} ({cap}) reached; further refusals in the next {} s are summed up",
            BURST.as_secs()
        );
        let burst = self.burst.clone();
        // Outside a runtime (unit tests of the gate alone) the sum is skipped.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(BURST).await;
                let ended = burst.lock().expect("burst lock").open.take();
                if let Some((more, peer)) = ended.filter(|(n, _)| *n > 0) {
                    tracing::warn!(
                        listener,
                        refused = more,
                        %peer,
                        "{more} more connections refused on the {listener} listener in {} s (medmesh_connections_refused_total)",
                        BURST.as_secs()
                    );
                }
            });
        }
    }

    /// Connections open now (all, and from `peer`).
    pub fn open_now(&self, peer: IpAddr) -> (usize, usize) {
        let open = self.open.lock().expect("connection gate lock");
        let from = open
            .per_address
            .get(&peer.to_canonical())
            .copied()
            .unwrap_or(0);
        (open.total, from)
    }
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    peer: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().expect("connection gate lock");
        open.total -= 1;
        if let Some(n) = open.per_address.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.peer);
            }
        }
        drop(open);
        self.gate.metrics.connection_open(self.gate.listener, -1);
    }
}

/// The wait after a failed accept: from 10 ms, doubled after each failure
/// in a row up to 1 s, back to the start after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Notes a failure; returns how long to wait before accepting again.
    pub fn failed(&mut self) -> Duration {
        let delay = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Accepts the next connection on `listener`, backing off after failures
/// (logged on the 1st, 2nd, 4th, 8th... failure of a run).
pub async fn accept(
    listener: &TcpListener,
    kind: SourceKind,
    backoff: &mut Backoff,
    metrics: &Metrics,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => {
                backoff.succeeded();
                return c;
            }
            Err(e) => {
                metrics.accept_error(kind);
                let run = backoff.failures;
                let delay = backoff.failed();
                if (run + 1).is_power_of_two() {
                    tracing::warn!(
                        listener = kind.as_str(),
                        error = %e,
                        failures_in_a_row = run + 1,
                        "accept failed (out of file descriptors?); retrying in {delay:?}"
                    );
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_connections: usize, max_per_address: usize) -> Arc<ConnectionGate> {
        ConnectionGate::new(
            SourceKind::Mqtt,
            ConnectionLimits {
                max_connections,
                max_per_address,
            },
            Arc::new(Metrics::default()),
        )
    }

    #[test]
    fn caps_per_address_and_per_listener_and_permits_free_their_place() {
        let g = gate(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = g.admit(a).unwrap();
        let _a2 = g.admit(a).unwrap();
        assert!(g.admit(a).is_none(), "a third from one address");
        // The same client seen through a dual-stack socket counts as itself.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(g.admit(mapped).is_none());
        let _b1 = g.admit(b).unwrap();
        assert!(g.admit(b).is_none(), "the listener is full");
        assert_eq!(
            g.metrics
                .connections_refused_count(SourceKind::Mqtt, ConnectionRefusal::AddressFull),
            2
        );
        assert_eq!(
            g.metrics
                .connections_refused_count(SourceKind::Mqtt, ConnectionRefusal::ListenerFull),
            1
        );
        drop(a1);
        assert_eq!(g.open_now(a), (2, 1));
        assert!(g.admit(a).is_some(), "a closed connection frees its place");
        assert_eq!(g.metrics.connections_open_count(SourceKind::Mqtt), 2);
    }

    #[test]
    fn zero_means_no_cap() {
        let g = gate(0, 0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..1000).map(|_| g.admit(a).unwrap()).collect();
        assert_eq!(g.open_now(a), (1000, 1000));
        drop(permits);
        assert_eq!(g.open_now(a), (0, 0));
    }

    #[test]
    fn accept_failures_back_off_up_to_a_second_and_reset_on_success() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[9], Duration::from_secs(1));
        for _ in 0..100 {
            assert_eq!(
                b.failed(),
                Duration::from_secs(1),
                "never more, no overflow"
            );
        }
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }
}
