//! Operations endpoints: Prometheus metrics (operations and admin callers,
//! e.g. a Prometheus job with an API token) and health (open, for load
//! balancers: it carries no health data).

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use medmesh_pipeline::Pipeline;
use std::fmt::Write;
use std::sync::Arc;

pub fn router() -> Router<App> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .route("/api/v1/system/alarms", get(system_alarms))
}

/// `GET /api/v1/system/alarms`: medmesh's own failures (a full disk),
/// active first, then recently resolved; for operations and admin.
async fn system_alarms(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
) -> Result<axum::Json<Vec<medmesh_pipeline::SystemAlarm>>, ApiError> {
    caller.require_global(
        medmesh_access::GlobalRight::ReadMetrics,
        "read system alarms",
    )?;
    Ok(axum::Json(p.system_alarms()))
}

/// 200 while the server can store and acknowledge samples, 503 (with the
/// reason) while it cannot: a load balancer or monitor should alert on it.
async fn health(State(p): State<Arc<Pipeline>>) -> impl IntoResponse {
    let storage = p.store.health();
    let status = if storage.healthy {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if storage.healthy { "ok" } else { "failing" },
        "storage": storage,
    });
    (status, axum::Json(body))
}

async fn metrics(
    State(p): State<Arc<Pipeline>>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_global(medmesh_access::GlobalRight::ReadMetrics, "read metrics")?;
    let mut text = p.metrics.render();
    // Store gauges are read at scrape time; they go before the closing "# EOF".
    let stats = p.store.stats();
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    let mut gauges = String::new();
    for (name, help, value) in [
        (
            "medmesh_storage_series",
            "Series held by the store",
            stats.series,
        ),
        (
            "medmesh_storage_samples",
            "Samples held by the store",
            stats.samples,
        ),
        (
            "medmesh_storage_wal_bytes",
            "Size of the write-ahead log not yet checkpointed",
            stats.wal_bytes,
        ),
        (
            "medmesh_storage_healthy",
            "1 while samples can be made durable, 0 while writes fail (disk full, I/O error)",
            u64::from(p.store.health().healthy),
        ),
        (
            "medmesh_storage_chunk_bytes",
            "Size of the compressed checkpoint files",
            stats.chunk_bytes,
        ),
    ] {
        let _ = write!(
            gauges,
            "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}\n"
        );
    }
    text.insert_str(eof, &gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
