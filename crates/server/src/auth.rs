//! Who is calling, and whether they may.
//!
//! A request proves who it is with an API token (`Authorization: Bearer
//! mm_...`, for programs) or a session cookie (`medmesh_session`, set by
//! `POST /api/v1/login`, for the browser). [`Caller`] extracts that identity
//! and refuses the request with 401 when there is none. Handlers then ask
//! [`Caller::require`] or [`Caller::require_global`], which consult the one
//! policy table in `medmesh_access` and write the audit log either way.
//!
//! Routes here:
//!
//! | method | path | who |
//! |---|---|---|
//! | POST | /api/v1/login | anyone (throttled) |
//! | POST | /api/v1/logout | signed in |
//! | GET | /api/v1/me | signed in |
//! | GET / POST | /api/v1/tokens | signed in: own API tokens (new token shown once; `scopes`: `api`, the default, and/or `alarm-feed`) |
//! | DELETE | /api/v1/tokens/{id} | the token's owner or an admin |

use crate::app::App;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use medmesh_access::{
    Access, ApiToken, Event, GlobalRight, LoginError, Outcome, PatientRight, Principal, TokenScope,
};
use medmesh_model::{Patient, PatientId};
use serde::Deserialize;
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "medmesh_session";

pub fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

/// The authenticated caller of a request.
#[derive(Clone)]
pub struct Caller {
    pub who: Principal,
    access: Arc<Access>,
    /// Method and path, for the audit log.
    request: String,
    /// What the caller proved themselves with, to check again later (an
    /// open stream outlives the request that opened it).
    credential: Credential,
}

#[derive(Clone)]
enum Credential {
    Token(String),
    Session(String),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        let request = format!("{} {}", parts.method, parts.uri.path());
        let (who, credential) = if let Some(token) = bearer(&parts.headers) {
            (
                app.access.directory.principal_for_token(token),
                Credential::Token(token.to_string()),
            )
        } else {
            let session = session_cookie(&parts.headers).unwrap_or_default();
            (
                app.access.principal_for_session(session),
                Credential::Session(session.to_string()),
            )
        };
        match who {
            Some(who) => Ok(Caller {
                who,
                access: app.access.clone(),
                request,
                credential,
            }),
            None => {
                let presented =
                    bearer(&parts.headers).is_some() || session_cookie(&parts.headers).is_some();
                app.access.audit.record(Event {
                    actor: "anonymous",
                    role: None,
                    action: "authenticate",
                    patient: None,
                    outcome: Outcome::Denied,
                    detail: format!(
                        "{request}: {}",
                        if presented {
                            "unknown, expired or revoked credentials"
                        } else {
                            "no credentials"
                        }
                    ),
                });
                Err(ApiError::unauthorized(if presented {
                    "the token or session is unknown, expired or revoked; sign in again"
                } else {
                    "sign in (POST /api/v1/login) or send an API token (Authorization: Bearer)"
                }))
            }
        }
    }
}

impl Caller {
    /// Whether the credential this caller proved themselves with still
    /// stands for the same principal: false once the session ended (signed
    /// out, idle, too old), the token was revoked, or the user disabled.
    /// Checking does not count as use of the session.
    pub fn still_valid(&self) -> bool {
        let now = match &self.credential {
            Credential::Token(t) => self.access.directory.principal_for_token(t),
            // An open live stream counts as using its session: a central
            // station nobody touches must keep showing its ward's alarms,
            // not fall back to the sign-in page after the idle timeout.
            // Logout, revocation and a disabled user still end it.
            Credential::Session(s) => self
                .access
                .sessions
                .user(s)
                .and_then(|u| self.access.directory.principal(&u)),
        };
        now.as_ref() == Some(&self.who)
    }

    /// Records an action in the audit log.
    pub fn audit(&self, action: &str, patient: Option<&PatientId>, outcome: Outcome) {
        self.access.audit.record(Event {
            actor: &self.who.username,
            role: Some(self.who.role),
            action,
            patient,
            outcome,
            detail: self.request.clone(),
        });
    }

    /// Records one list read: a single entry naming every patient it
    /// returned (none recorded when it returned nobody: nothing was read).
    pub fn audit_list(&self, action: &str, patients: Vec<PatientId>) {
        if patients.is_empty() {
            return;
        }
        self.access.audit.record_list(
            Event {
                actor: &self.who.username,
                role: Some(self.who.role),
                action,
                patient: None,
                outcome: Outcome::Allowed,
                detail: format!("{}: {} patients", self.request, patients.len()),
            },
            patients,
        );
    }

    /// Records an action in the audit log with what it did (`what`, after
    /// the request line): a charted set's values, why it was refused.
    pub fn audit_detail(
        &self,
        action: &str,
        patient: Option<&PatientId>,
        outcome: Outcome,
        what: &str,
    ) {
        self.access.audit.record(Event {
            actor: &self.who.username,
            role: Some(self.who.role),
            action,
            patient,
            outcome,
            detail: format!("{}: {what}", self.request),
        });
    }

    /// Whether the caller may exercise `right` on `patient`; not audited
    /// (for filtering lists, whose answer is audited as one entry).
    pub fn may(&self, right: PatientRight, patient: &Patient) -> bool {
        self.access
            .may(&self.who, right, &patient.id, &patient.ward)
    }

    /// Whether the caller may exercise `right` on patient `id` (known to the
    /// registry or not); not audited.
    pub fn may_id(
        &self,
        pipeline: &medmesh_pipeline::Pipeline,
        right: PatientRight,
        id: &PatientId,
    ) -> bool {
        let ward = pipeline.registry.patient(id).map(|p| p.ward);
        self.access
            .may(&self.who, right, id, ward.as_deref().unwrap_or(""))
    }

    /// Checks `right` on patient `id`, audits the decision, and returns the
    /// patient. Refused and unknown patients look alike (403) to a caller who
    /// could not see the patient anyway; one who could gets 404.
    pub fn require(
        &self,
        pipeline: &medmesh_pipeline::Pipeline,
        right: PatientRight,
        id: &PatientId,
        action: &str,
    ) -> Result<Patient, ApiError> {
        let patient = pipeline.registry.patient(id);
        let ward = patient.as_ref().map(|p| p.ward.as_str()).unwrap_or("");
        if !self.access.may(&self.who, right, id, ward) {
            self.audit(action, Some(id), Outcome::Denied);
            return Err(self.forbidden(right.as_str()));
        }
        match patient {
            Some(p) => {
                if self
                    .access
                    .only_by_escalation(&self.who, right, id, &p.ward)
                {
                    // Outside the care team: the audit says why it was allowed.
                    let action = format!("{action} (named by its escalation step)");
                    self.audit(&action, Some(id), Outcome::Allowed);
                } else {
                    self.audit(action, Some(id), Outcome::Allowed);
                }
                Ok(p)
            }
            None => Err(ApiError::not_found(format!("no patient with id {id:?}"))),
        }
    }

    /// The answer for an id (of an alarm, a consent) that names nothing the
    /// caller may see under `right`: 404 with `missing` only for a caller
    /// who reaches every patient (for whom absence reveals nothing), 403
    /// otherwise, whether or not the id exists. Audited as a refusal, with
    /// the patient when the id exists (who tried to look is on their record).
    pub fn unseen(
        &self,
        right: PatientRight,
        action: &str,
        patient: Option<&PatientId>,
        missing: String,
    ) -> ApiError {
        if self.access.reaches_every_patient(&self.who, right) {
            ApiError::not_found(missing)
        } else {
            self.audit(action, patient, Outcome::Denied);
            self.forbidden(action)
        }
    }

    /// Which wards' alarm load report the caller may read (the policy:
    /// [`Access::alarm_load_wards`]).
    pub fn alarm_load_wards(&self) -> medmesh_access::Wards {
        self.access.alarm_load_wards(&self.who)
    }

    pub fn may_global(&self, right: GlobalRight) -> bool {
        self.access.may_global(&self.who, right)
    }

    /// Checks a right that is not about one patient; audits a refusal.
    pub fn require_global(&self, right: GlobalRight, action: &str) -> Result<(), ApiError> {
        if self.access.may_global(&self.who, right) {
            Ok(())
        } else {
            self.audit(action, None, Outcome::Denied);
            Err(self.forbidden(action))
        }
    }

    pub fn forbidden(&self, what: &str) -> ApiError {
        ApiError::forbidden(format!(
            "{} ({}) may not {what} here",
            self.who.username, self.who.role
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(app): State<App>,
    ConnectInfo(crate::http_listener::ClientAddr(client)): ConnectInfo<
        crate::http_listener::ClientAddr,
    >,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let access = app.access.clone();
    let client = client.ip().to_string();
    // argon2 is slow on purpose: off the async workers.
    let result =
        tokio::task::spawn_blocking(move || access.login(&b.username, &b.password, &client))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    match result {
        Ok((session, who)) => {
            let cookie = format!(
                "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                medmesh_access::SESSION_MAX_AGE.as_secs(),
                if app.https { "; Secure" } else { "" }
            );
            let mut response = Json(who).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
            );
            Ok(response)
        }
        Err(LoginError::Throttled(wait)) => {
            let secs = wait.as_secs().max(1);
            let mut response = ApiError::too_many_requests(format!(
                "too many failed sign-ins; try again in {secs} s"
            ))
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(response)
        }
        Err(LoginError::Invalid) => Err(ApiError::unauthorized("wrong username or password")),
    }
}

async fn logout(State(app): State<App>, caller: Caller, headers: HeaderMap) -> Response {
    if let Some(s) = session_cookie(&headers) {
        app.access.sessions.end(s);
    }
    caller.audit("logout", None, Outcome::Allowed);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("medmesh_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

async fn me(caller: Caller) -> Json<Principal> {
    Json(caller.who)
}

async fn list_tokens(State(app): State<App>, caller: Caller) -> Json<Vec<ApiToken>> {
    Json(app.access.directory.tokens_of(&caller.who.username))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// What the token is for ("EHR interface").
    name: String,
    /// What it may be used for: `api` (the default) and/or `alarm-feed`
    /// (the MQTT alarm feed; a feed-only token cannot read the REST API).
    #[serde(default)]
    scopes: Option<Vec<TokenScope>>,
}

#[derive(serde::Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    record: ApiToken,
    /// The token itself: shown this once, stored only as a digest.
    token: String,
}

async fn create_token(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if b.name.trim().is_empty() {
        return Err(ApiError::bad_request("name the token (what it is for)"));
    }
    let scopes = b.scopes.unwrap_or_else(|| vec![TokenScope::Api]);
    let (token, record) =
        app.access
            .directory
            .create_token_with(&caller.who.username, b.name.trim(), &scopes)?;
    let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
    caller.audit_detail(
        "create API token",
        None,
        Outcome::Allowed,
        &format!("{}, scopes {}", record.id, scopes.join(", ")),
    );
    Ok((StatusCode::CREATED, Json(CreatedToken { record, token })))
}

async fn revoke_token(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Someone else's token and no token at all look alike (403) to a caller
    // who may not manage users.
    let token = app.access.directory.token(&id);
    if token
        .as_ref()
        .is_none_or(|t| t.username != caller.who.username)
    {
        caller.require_global(GlobalRight::ManageUsers, "revoke another user's token")?;
    }
    if token.is_none() {
        return Err(ApiError::not_found(format!("no token {id:?}")));
    }
    app.access.directory.revoke_token(&id)?;
    // An alarm feed signed in with it ends now, as a revoked device's
    // session does.
    if let Some(t) = &token {
        let closed = app.broker.close_account(&t.username, Some(&id));
        if closed > 0 {
            tracing::info!(token = %id, closed, "API token revoked; its MQTT alarm feeds closed");
        }
    }
    caller.audit("revoke API token", None, Outcome::Allowed);
    Ok(StatusCode::NO_CONTENT)
}
