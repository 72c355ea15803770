//! Defences for the one client that sends credentials by itself, the browser.
//!
//! The session cookie is `SameSite=Strict`; beyond that, every request that
//! changes state (any method but GET, HEAD, OPTIONS) is refused with 403:
//!
//! - when `Sec-Fetch-Site` says another site (or a sibling one) sent it;
//! - when its `Origin` is not this server's own (the `Host` it was sent to,
//!   or the `X-Forwarded-Host` a reverse proxy set: a page elsewhere cannot
//!   add that header without a CORS preflight, which medmesh never grants);
//! - when it carries the session cookie and a body, or a `Content-Type`,
//!   that is not declared JSON (`application/json` or `application/...+json`;
//!   an empty request without a type is fine for the routes that take no
//!   body). An HTML form can only send form, multipart or text bodies, so a
//!   cross-site form post fails here even from a browser that sends neither
//!   header.
//!
//! Refusals are audited (actor `browser`) and logged.
//!
//! Programs (API tokens, devices) send neither header and are unaffected.
//!
//! Every response also carries security headers: a Content-Security-Policy
//! that allows only the dashboard's own files (it has no inline scripts or
//! styles), no framing, no content sniffing, no referrer.

use crate::app::App;
use crate::auth::SESSION_COOKIE;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use medmesh_access::{Event, Outcome};

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    // For browsers older than CSP's frame-ancestors.
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

/// The middleware: refuses cross-site state changes, adds the headers.
pub async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let mut response = match refusal(request.method(), request.headers()) {
        Some(reason) => {
            let origin = request
                .headers()
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .unwrap_or("none");
            tracing::warn!(method = %request.method(), path = %request.uri().path(), origin, reason, "cross-site request refused");
            app.access.audit.record(Event {
                actor: "browser",
                role: None,
                action: "cross-site request",
                patient: None,
                outcome: Outcome::Denied,
                detail: format!(
                    "{} {}: {reason} (Origin: {origin})",
                    request.method(),
                    request.uri().path()
                ),
            });
            ApiError::forbidden(format!("cross-site request refused: {reason}")).into_response()
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Why a request must be refused, if it must.
fn refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Some("sent by another site (Sec-Fetch-Site)");
    }
    if headers.contains_key(header::ORIGIN) {
        let origin = text(header::ORIGIN).unwrap_or("");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let own = |name| {
            text(name)
                .is_some_and(|h: &str| authority.is_some_and(|a| a.eq_ignore_ascii_case(h.trim())))
        };
        if !own(header::HOST) && !own(HeaderName::from_static("x-forwarded-host")) {
            return Some("its Origin is not this server");
        }
    }
    if has_session_cookie(headers) && !headers.contains_key(header::AUTHORIZATION) {
        // A body (or a type) that is not declared JSON: what a form, or a
        // script's untyped blob, sends.
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || text(header::CONTENT_LENGTH).is_some_and(|n| n.trim() != "0");
        let json = text(header::CONTENT_TYPE).map(is_json);
        if json == Some(false) || (has_body && json.is_none()) {
            return Some("a signed-in browser sends JSON (Content-Type: application/json)");
        }
    }
    None
}

fn has_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim().starts_with(&format!("{SESSION_COOKIE}=")))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_state_changes_are_refused() {
        let post = Method::POST;
        let host = ("host", "ward.example:8080");
        let cookie = ("cookie", "medmesh_session=ms_x");
        // Programs: no Origin, no Sec-Fetch-Site.
        assert_eq!(refusal(&post, &headers(&[host])), None);
        // The dashboard itself.
        let own = [
            host,
            cookie,
            ("origin", "http://ward.example:8080"),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ];
        assert_eq!(refusal(&post, &headers(&own)), None);
        // Behind a proxy that rewrote Host.
        let proxied = [
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "ward.example"),
            ("origin", "https://ward.example"),
        ];
        assert_eq!(refusal(&post, &headers(&proxied)), None);
        for bad in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://ward.example:8080.evil.example")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, cookie, ("content-type", "text/plain")],
            vec![host, cookie, ("content-length", "17")],
            vec![
                host,
                cookie,
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        ] {
            assert!(refusal(&post, &headers(&bad)).is_some(), "{bad:?}");
            assert!(
                refusal(&Method::DELETE, &headers(&bad)).is_some(),
                "{bad:?}"
            );
            assert_eq!(refusal(&Method::GET, &headers(&bad)), None, "{bad:?}");
        }
        // A signed-in browser's request without a body (sign out).
        assert_eq!(
            refusal(&post, &headers(&[host, cookie, ("content-length", "0")])),
            None
        );
        // A device posting SenML with its token is not a browser.
        assert_eq!(
            refusal(
                &post,
                &headers(&[host, ("content-type", "application/senml+json")])
            ),
            None
        );
        assert!(is_json("application/fhir+json; charset=utf-8"));
        assert!(!is_json("text/json+plain"));
    }
}
