//! The HTTP listener: accepts connections within the listener's caps (per
//! listener and per client address, `sources::limits`), runs TLS handshakes
//! in their own tasks (a client that stalls mid-handshake holds up nobody),
//! and serves each connection with hyper's HTTP/1 server.
//!
//! hyper's header read timeout (on tokio's timer) closes a connection whose
//! request head has not arrived whole in `http.header_read_timeout`: a
//! slowloris client sending a header byte every few seconds is cut off. The
//! timer runs from the connection's opening and again from the end of each
//! response, so the same setting is the idle keep-alive timeout. Request
//! bodies are bounded by tower-http layers in `Server::start` (size and the
//! longest pause between chunks).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use medmesh_pipeline::{Metrics, SourceKind};
use medmesh_sources::limits::{self, Backoff, ConnectionGate};
use medmesh_sources::tls::{TlsAcceptor, handshake};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The client's address, as handlers see it (`ConnectInfo<ClientAddr>`),
/// over plain TCP and over TLS alike.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `router` on `listener` (inside TLS with `tls`) until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: crate::config::HttpLimits,
    metrics: Arc<Metrics>,
) {
    let gate = ConnectionGate::new(SourceKind::Http, limits.connections, metrics.clone());
    let mut backoff = Backoff::default();
    loop {
        let (stream, peer) =
            limits::accept(&listener, SourceKind::Http, &mut backoff, &metrics).await;
        // Over a cap: closed before a byte is read or a handshake begun.
        let Some(permit) = gate.admit(peer.ip()) else {
            continue;
        };
        // Nagle off: the live stream writes one small event at a time, and
        // with Nagle on each would wait for the client's (delayed)
        // acknowledgement of the one before, adding tens of milliseconds to
        // an alarm at moderate event rates.
        let _ = stream.set_nodelay(true);
        let (router, tls, metrics) = (router.clone(), tls.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, peer, router, &limits, &metrics).await,
                Some(acceptor) => match handshake(&acceptor, stream).await {
                    Ok(tls) => serve_connection(tls, peer, router, &limits, &metrics).await,
                    Err(e) => tracing::info!(%peer, reason = %e, "HTTPS connection dropped"),
                },
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: &crate::config::HttpLimits,
    metrics: &Metrics,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientAddr(peer)));
        router.clone().oneshot(request)
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        if e.is_timeout() {
            metrics.connection_timed_out(SourceKind::Http);
            tracing::debug!(%peer, "HTTP connection closed: no whole request head within http.header_read_timeout");
        } else {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}
