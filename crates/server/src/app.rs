//! The state every HTTP handler shares. Handlers take the parts they need
//! (`State<Arc<Pipeline>>`, ...) through `FromRef`, and the caller's identity
//! through [`crate::auth::Caller`].

use axum::extract::FromRef;
use medmesh_access::Access;
use medmesh_pipeline::Pipeline;
use medmesh_sources::coap::dtls::DtlsSessions;
use medmesh_sources::mqtt::Broker;
use std::sync::Arc;

#[derive(Clone)]
pub struct App {
    pub pipeline: Arc<Pipeline>,
    pub access: Arc<Access>,
    pub broker: Arc<Broker>,
    /// The CoAP-over-DTLS sessions, when coaps is served: closed when a
    /// device's credentials change.
    pub coaps: Option<DtlsSessions>,
    /// Devices without credentials may send readings (over HTTP as over MQTT).
    pub allow_anonymous_devices: bool,
    /// The HTTP listener is TLS: session cookies are marked `Secure`.
    pub https: bool,
}

impl FromRef<App> for Arc<Pipeline> {
    fn from_ref(app: &App) -> Arc<Pipeline> {
        app.pipeline.clone()
    }
}

impl FromRef<App> for Arc<Access> {
    fn from_ref(app: &App) -> Arc<Access> {
        app.access.clone()
    }
}

impl FromRef<App> for Arc<Broker> {
    fn from_ref(app: &App) -> Arc<Broker> {
        app.broker.clone()
    }
}
