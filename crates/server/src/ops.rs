//! Operations endpoints: Prometheus metrics and health.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use medmesh_pipeline::Pipeline;
use std::fmt::Write;
use std::sync::Arc;

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(pipeline)
}

async fn metrics(State(p): State<Arc<Pipeline>>) -> impl IntoResponse {
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
