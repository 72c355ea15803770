//! Administration: users, care teams and the audit log (admin only).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET / POST | /api/v1/users | list users / add one (password generated and shown once if not given) |
//! | DELETE | /api/v1/users/{username} | disable a user: sessions end, API tokens revoked |
//! | PATCH | /api/v1/users/{username} | `{"email": "..."}` (or `null`): where alarm notifications go |
//! | GET | /api/v1/teams | care teams |
//! | PUT | /api/v1/teams/{id} | create or replace a care team (members, wards, patients) |
//! | GET | /api/v1/audit?actor=&patient=&action=&outcome=&since_ms=&until_ms=&limit= | audit entries, newest first: `patient` finds list reads that returned them too ("who looked at this patient"), `actor` with a time range "what did this user do", `outcome=denied` every refusal |

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use medmesh_access::{AuditEntry, Filter, GlobalRight, Outcome, Role, Team, User};
use medmesh_model::PatientId;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<App> {
    Router::new()
        .route("/api/v1/users", get(list_users).post(add_user))
        .route(
            "/api/v1/users/{username}",
            axum::routing::delete(disable_user).patch(patch_user),
        )
        .route("/api/v1/teams", get(list_teams))
        .route("/api/v1/teams/{id}", put(put_team))
        .route("/api/v1/audit", get(audit))
}

async fn list_users(State(app): State<App>, caller: Caller) -> Result<Json<Vec<User>>, ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "list users")?;
    Ok(Json(app.access.directory.users()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: Role,
    /// For the patient role: the patient the account belongs to.
    patient: Option<PatientId>,
    /// At least 12 characters; generated when absent.
    password: Option<String>,
    /// Where alarm notifications for the user are e-mailed.
    email: Option<String>,
}

#[derive(Serialize)]
struct CreatedUser {
    #[serde(flatten)]
    user: User,
    /// Present only when medmesh generated it: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

async fn add_user(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "add user")?;
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(p) = &b.patient
        && app.pipeline.registry.patient(p).is_none()
    {
        return Err(ApiError::bad_request(format!("no patient with id {p:?}")));
    }
    let generated = b
        .password
        .is_none()
        .then(medmesh_access::secret::random_password);
    if let Some(e) = &b.email {
        medmesh_access::validate_email(e)?;
    }
    let password = b.password.or(generated.clone()).expect("one of them");
    let access = app.access.clone();
    let user = tokio::task::spawn_blocking(move || {
        let user = access
            .directory
            .add_user(&b.username, b.role, b.patient, &password)?;
        match &b.email {
            Some(e) => access.directory.set_email(&user.username, Some(e)),
            None => Ok(user),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    caller.audit(
        &format!("add user {}", user.username),
        None,
        Outcome::Allowed,
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            password: generated,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    /// A new address, or `null` to stop e-mailing the user.
    email: Option<String>,
}

async fn patch_user(
    State(app): State<App>,
    caller: Caller,
    Path(username): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> Result<Json<User>, ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "change user")?;
    let Json(change) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = app
        .access
        .directory
        .set_email(&username, change.email.as_deref())?;
    caller.audit(
        &format!("change e-mail of user {username}"),
        None,
        Outcome::Allowed,
    );
    Ok(Json(user))
}

async fn disable_user(
    State(app): State<App>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "disable user")?;
    if username == caller.who.username {
        return Err(ApiError::bad_request("you cannot disable your own account"));
    }
    app.access.directory.disable_user(&username)?;
    app.access.sessions.end_all_of(&username);
    // Their MQTT alarm feeds end too (their tokens were just revoked).
    let closed = app.broker.close_account(&username, None);
    if closed > 0 {
        tracing::info!(user = %username, closed, "user disabled; their MQTT alarm feeds closed");
    }
    if app.access.named_in_escalation(&username) {
        tracing::warn!(
            user = %username,
            "a disabled user is named in an escalation step ([alarms.escalation]) and will no longer be told; name someone else"
        );
    }
    caller.audit(&format!("disable user {username}"), None, Outcome::Allowed);
    Ok(StatusCode::NO_CONTENT)
}

async fn list_teams(State(app): State<App>, caller: Caller) -> Result<Json<Vec<Team>>, ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "list care teams")?;
    Ok(Json(app.access.directory.teams()))
}

async fn put_team(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Team>, JsonRejection>,
) -> Result<Json<Team>, ApiError> {
    caller.require_global(GlobalRight::ManageUsers, "change care team")?;
    let Json(mut team) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !team.id.is_empty() && team.id != id {
        return Err(ApiError::bad_request(format!(
            "the body's id {:?} differs from the path's {id:?}",
            team.id
        )));
    }
    team.id = id;
    let team = app.access.directory.put_team(team)?;
    caller.audit(
        &format!("change care team {}", team.id),
        None,
        Outcome::Allowed,
    );
    Ok(Json(team))
}

async fn audit(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require_global(GlobalRight::ReadAudit, "read audit log")?;
    let Query(filter) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    caller.audit("read audit log", None, Outcome::Allowed);
    let access = app.access.clone();
    let entries = tokio::task::spawn_blocking(move || access.audit.query(&filter))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("reading the audit log: {e}")))?;
    Ok(Json(entries))
}
