//! The web dashboard: static files compiled into the binary.
//!
//! `index.html` at `/`, everything else under `/assets/`: the app's plain
//! JavaScript modules (no build step), its stylesheet, and the vendored
//! uPlot chart library (`assets/vendor/uplot/`, MIT, version in `VERSION`).
//! The files are open to everyone, like the sign-in page they make up; every
//! piece of data they show comes from the API, which checks the caller.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("assets/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file under `/assets/`: path, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("assets/app.css")),
    ("app.js", JS, include_str!("assets/app.js")),
    ("js/api.js", JS, include_str!("assets/js/api.js")),
    ("js/live.js", JS, include_str!("assets/js/live.js")),
    ("js/ui.js", JS, include_str!("assets/js/ui.js")),
    ("js/sound.js", JS, include_str!("assets/js/sound.js")),
    ("js/system.js", JS, include_str!("assets/js/system.js")),
    ("js/station.js", JS, include_str!("assets/js/station.js")),
    ("js/alarms.js", JS, include_str!("assets/js/alarms.js")),
    ("js/patient.js", JS, include_str!("assets/js/patient.js")),
    ("js/chart.js", JS, include_str!("assets/js/chart.js")),
    ("js/home.js", JS, include_str!("assets/js/home.js")),
    ("js/portal.js", JS, include_str!("assets/js/portal.js")),
    ("js/admin.js", JS, include_str!("assets/js/admin.js")),
    ("js/report.js", JS, include_str!("assets/js/report.js")),
    (
        "vendor/uplot/uPlot.iife.min.js",
        JS,
        include_str!("assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        CSS,
        include_str!("assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        TEXT,
        include_str!("assets/vendor/uplot/LICENSE"),
    ),
    (
        "vendor/uplot/VERSION",
        TEXT,
        include_str!("assets/vendor/uplot/VERSION"),
    ),
];

pub fn router() -> Router<crate::app::App> {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route("/assets/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Compiled into this binary: a new release serves new files
                // under the same names, so the browser must revalidate.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => {
            crate::error::ApiError::not_found(format!("no dashboard file {path:?}")).into_response()
        }
    }
}
