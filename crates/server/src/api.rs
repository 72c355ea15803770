//! The REST API under `/api/v1`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | /api/v1/patients | every patient with latest vitals, NEWS2, active alarms |
//! | POST | /api/v1/patients | admit or update a patient |
//! | GET | /api/v1/patients/{id} | one patient, same shape |
//! | GET | /api/v1/patients/{id}/observations?code=&from=&to=&bucket= | series over a time range, raw or per bucket |
//! | GET | /api/v1/devices | devices, their patient and last contact |
//! | PUT | /api/v1/devices/{id} | register a device / assign it to a patient |
//! | POST / DELETE | /api/v1/devices/{id}/credentials | issue (shown once) / revoke a device's MQTT token |
//! | POST | /api/v1/devices/{id}/senml | HTTP ingest of a SenML JSON pack |
//! | POST | /api/v1/devices/{id}/gatt | HTTP ingest of a raw Bluetooth GATT measurement (hex or base64) |
//! | POST | /api/v1/fhir/Observation | FHIR R4 Observation or Bundle of Observations in |
//! | GET | /api/v1/alarms?state=active\|resolved | active (and acknowledged) alarms, or recent history |
//! | POST | /api/v1/alarms/{id}/acknowledge, /snooze, /resolve | a clinician acts on an alarm |

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use medmesh_model::{Alarm, DeviceId, Patient, PatientId, TimestampMs, VitalSign, now_ms};
use medmesh_pipeline::{
    AlarmAction, GattCharacteristic, IngestError, IngestReport, LiveObservation, Pipeline,
    SourceKind, unassigned_subject,
};
use medmesh_rules::news2::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState = Arc<Pipeline>;

/// Largest SenML body accepted over HTTP.
const MAX_INGEST_BODY: usize = 1 << 20;

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/api/v1/patients", get(list_patients).post(upsert_patient))
        .route("/api/v1/patients/{id}", get(get_patient))
        .route("/api/v1/patients/{id}/observations", get(observations))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", axum::routing::put(assign_device))
        .route(
            "/api/v1/devices/{id}/senml",
            post(ingest_senml).layer(axum::extract::DefaultBodyLimit::max(MAX_INGEST_BODY)),
        )
        .route("/api/v1/devices/{id}/gatt", post(ingest_gatt))
        .route(
            "/api/v1/devices/{id}/credentials",
            post(issue_credentials).delete(revoke_credentials),
        )
        .route(
            "/api/v1/fhir/Observation",
            post(ingest_fhir).layer(axum::extract::DefaultBodyLimit::max(MAX_INGEST_BODY * 8)),
        )
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/{id}/{action}", post(act_on_alarm))
        .with_state(pipeline)
}

#[derive(Serialize)]
struct PatientSummary {
    #[serde(flatten)]
    patient: Patient,
    devices: Vec<DeviceId>,
    /// Latest reading per vital sign, keyed by vital-sign key.
    latest: BTreeMap<&'static str, LiveObservation>,
    news2: Option<Aggregate>,
    alarms: Vec<Alarm>,
}

fn summarise(p: &Pipeline, patient: Patient) -> PatientSummary {
    let latest = p
        .store
        .latest(patient.id.as_str())
        .into_iter()
        .map(|(vital, point)| (vital.key(), observation(vital, point.time_ms, point.value)))
        .collect();
    PatientSummary {
        devices: p.registry.devices_of(&patient.id),
        news2: p.news2(&patient.id),
        alarms: p.active_alarms_for(&patient.id),
        latest,
        patient,
    }
}

fn observation(vital: VitalSign, time_ms: TimestampMs, value: f64) -> LiveObservation {
    LiveObservation {
        key: vital.key(),
        code: vital.loinc(),
        value,
        unit: vital.ucum(),
        time_ms,
    }
}

fn patient_id(raw: &str) -> Result<PatientId, ApiError> {
    PatientId::new(raw).map_err(|e| ApiError::bad_request(format!("patient id {raw:?}: {e}")))
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(raw).map_err(|e| ApiError::bad_request(format!("device id {raw:?}: {e}")))
}

async fn list_patients(State(p): State<AppState>) -> Json<Vec<PatientSummary>> {
    Json(
        p.registry
            .patients()
            .into_iter()
            .map(|pt| summarise(&p, pt))
            .collect(),
    )
}

async fn get_patient(
    State(p): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PatientSummary>, ApiError> {
    let id = patient_id(&id)?;
    let patient = p
        .registry
        .patient(&id)
        .ok_or_else(|| ApiError::not_found(format!("no patient with id {id:?}")))?;
    Ok(Json(summarise(&p, patient)))
}

async fn upsert_patient(
    State(p): State<AppState>,
    body: Result<Json<Patient>, JsonRejection>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    let Json(patient) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if patient.name.trim().is_empty() {
        return Err(ApiError::bad_request("patient name is empty"));
    }
    let added = p
        .registry
        .upsert_patient(patient.clone())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(patient),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    /// LOINC code or key of one vital sign; all vital signs when absent.
    code: Option<String>,
    /// RFC 3339 time or epoch milliseconds; default one hour before `to`.
    from: Option<String>,
    /// RFC 3339 time or epoch milliseconds; default now.
    to: Option<String>,
    /// Bucket width ("1m", "1h", "1day"): return min/max/mean/count per
    /// bucket instead of every point.
    bucket: Option<String>,
}

/// Most buckets one request may ask for.
const MAX_BUCKETS: i64 = 100_000;

#[derive(Serialize)]
struct Series {
    key: &'static str,
    code: &'static str,
    display: &'static str,
    unit: &'static str,
    /// `[time_ms, value]` pairs, oldest first (without `bucket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<Vec<(TimestampMs, f64)>>,
    /// Aggregates per bucket, oldest first (with `bucket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    buckets: Option<Vec<medmesh_storage::Bucket>>,
}

impl Series {
    fn is_empty(&self) -> bool {
        self.points.as_ref().is_none_or(Vec::is_empty)
            && self.buckets.as_ref().is_none_or(Vec::is_empty)
    }
}

#[derive(Serialize)]
struct SeriesResponse {
    patient_id: PatientId,
    from_ms: TimestampMs,
    to_ms: TimestampMs,
    series: Vec<Series>,
}

fn parse_time(name: &str, raw: &str) -> Result<TimestampMs, ApiError> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(raw)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={raw:?} is not a time; use RFC 3339 (2026-01-31T08:00:00Z) or epoch milliseconds"
            ))
        })
}

fn parse_bucket(raw: &str) -> Result<i64, ApiError> {
    let width = humantime::parse_duration(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "bucket={raw:?}: {e}; use e.g. \"5m\", \"1h\", \"1day\""
        ))
    })?;
    let ms = width.as_millis() as i64;
    if ms < 1000 {
        return Err(ApiError::bad_request(format!(
            "bucket={raw:?} is shorter than one second"
        )));
    }
    Ok(ms)
}

async fn observations(
    State(p): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = patient_id(&id)?;
    if p.registry.patient(&id).is_none() {
        return Err(ApiError::not_found(format!("no patient with id {id:?}")));
    }
    let to =
        q.to.as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?
            .unwrap_or_else(now_ms);
    let from = q
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?
        .unwrap_or(to - 3_600_000);
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    let vitals: Vec<VitalSign> = match &q.code {
        Some(code) => vec![VitalSign::lookup(code).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown code {code:?}; use a LOINC code such as \"8867-4\" or a key such as \"heart_rate\""
            ))
        })?],
        None => VitalSign::ALL.to_vec(),
    };
    let bucket_ms = q.bucket.as_deref().map(parse_bucket).transpose()?;
    if let Some(width) = bucket_ms.filter(|w| (to - from) / w > MAX_BUCKETS) {
        return Err(ApiError::bad_request(format!(
            "{} buckets of {width} ms over this range; at most {MAX_BUCKETS}: choose a wider bucket",
            (to - from) / width
        )));
    }
    let series = vitals
        .into_iter()
        .map(|vital| {
            let (points, buckets) = match bucket_ms {
                Some(width) => (
                    None,
                    Some(p.store.aggregate(id.as_str(), vital, from, to, width)),
                ),
                None => {
                    let points = p.store.range(id.as_str(), vital, from, to);
                    (
                        Some(
                            points
                                .into_iter()
                                .map(|pt| (pt.time_ms, pt.value))
                                .collect(),
                        ),
                        None,
                    )
                }
            };
            Series {
                key: vital.key(),
                code: vital.loinc(),
                display: vital.display(),
                unit: vital.ucum(),
                points,
                buckets,
            }
        })
        .filter(|s| q.code.is_some() || !s.is_empty())
        .collect();
    Ok(Json(SeriesResponse {
        patient_id: id,
        from_ms: from,
        to_ms: to,
        series,
    }))
}

#[derive(Serialize)]
struct DeviceSummary {
    id: DeviceId,
    patient_id: Option<PatientId>,
    /// Whether the device is in the registry (as opposed to merely seen).
    registered: bool,
    last_seen_ms: Option<TimestampMs>,
    messages: u64,
    /// Connected over MQTT now (`null` if it never kept a connection).
    online: Option<bool>,
    /// Latest readings of an unassigned device (kept under the device).
    unassigned_latest: BTreeMap<&'static str, LiveObservation>,
}

async fn list_devices(State(p): State<AppState>) -> Json<Vec<DeviceSummary>> {
    let activity = p.device_activity();
    let mut out: BTreeMap<DeviceId, DeviceSummary> = BTreeMap::new();
    for d in p.registry.devices() {
        out.insert(
            d.id.clone(),
            DeviceSummary {
                id: d.id,
                patient_id: d.patient_id,
                registered: true,
                last_seen_ms: None,
                messages: 0,
                online: None,
                unassigned_latest: BTreeMap::new(),
            },
        );
    }
    for (id, a) in activity {
        let entry = out.entry(id.clone()).or_insert_with(|| DeviceSummary {
            id,
            patient_id: None,
            registered: false,
            last_seen_ms: None,
            messages: 0,
            online: None,
            unassigned_latest: BTreeMap::new(),
        });
        entry.last_seen_ms = Some(a.last_seen_ms);
        entry.messages = a.messages;
        entry.online = a.online;
    }
    for d in out.values_mut().filter(|d| d.patient_id.is_none()) {
        d.unassigned_latest = p
            .store
            .latest(&unassigned_subject(&d.id))
            .into_iter()
            .map(|(v, pt)| (v.key(), observation(v, pt.time_ms, pt.value)))
            .collect();
    }
    Json(out.into_values().collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    /// The patient the device measures from now on; `null` to unassign.
    patient_id: Option<PatientId>,
}

async fn assign_device(
    State(p): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<medmesh_model::Device>, ApiError> {
    let id = device_id(&id)?;
    let Json(a) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    p.registry
        .assign_device(id, a.patient_id)
        .map(Json)
        .map_err(|e| match e {
            medmesh_storage::RegistryError::UnknownPatient(_) => {
                ApiError::bad_request(e.to_string())
            }
            e => ApiError::internal(e.to_string()),
        })
}

/// Storage refusing is the server's problem (503, retry); a malformed
/// payload is the sender's (400).
impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        match e {
            IngestError::Malformed(e) => ApiError::bad_request(e.to_string()),
            IngestError::Storage(e) => {
                ApiError::unavailable(format!("not stored, retry later: {e}"))
            }
        }
    }
}

/// SenML JSON, or SenML CBOR when the Content-Type says so
/// (`application/senml+cbor` or `application/cbor`).
async fn ingest_senml(
    State(p): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<IngestReport>, ApiError> {
    let id = device_id(&id)?;
    let cbor = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("application/senml+cbor") || t.starts_with("application/cbor")
        });
    let report = if cbor {
        p.ingest_senml_cbor(SourceKind::Http, &id, &body).await?
    } else {
        p.ingest_senml_json(SourceKind::Http, &id, &body).await?
    };
    Ok(Json(report))
}

/// A characteristic value as a phone or hub forwards it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GattValue {
    /// 16-bit UUID ("2a35") or name ("blood_pressure_measurement").
    characteristic: String,
    /// The value's bytes in hexadecimal...
    hex: Option<String>,
    /// ...or in base64 (standard alphabet).
    base64: Option<String>,
}

async fn ingest_gatt(
    State(p): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<GattValue>, JsonRejection>,
) -> Result<Json<IngestReport>, ApiError> {
    use base64::Engine;
    let id = device_id(&id)?;
    let Json(v) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let characteristic = GattCharacteristic::parse(&v.characteristic).ok_or_else(|| {
        ApiError::bad_request(format!(
            "characteristic {:?} is not supported; use 2a37 (heart rate), 2a35 (blood pressure), \
             2a1c (temperature), 2a5e or 2a5f (pulse oximetry), 2a18 (glucose) or 2a9d (weight)",
            v.characteristic
        ))
    })?;
    let bytes = match (&v.hex, &v.base64) {
        (Some(h), None) => {
            hex::decode(h.trim()).map_err(|e| ApiError::bad_request(format!("hex: {e}")))?
        }
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| ApiError::bad_request(format!("base64: {e}")))?,
        _ => {
            return Err(ApiError::bad_request(
                "give the value as exactly one of \"hex\" or \"base64\"",
            ));
        }
    };
    let report = p
        .ingest_gatt(SourceKind::Http, &id, characteristic, &bytes)
        .await?;
    Ok(Json(report))
}

async fn ingest_fhir(
    State(p): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<IngestReport>, ApiError> {
    Ok(Json(p.ingest_fhir(SourceKind::Http, &body).await?))
}

#[derive(Serialize)]
struct IssuedCredentials {
    device_id: DeviceId,
    /// MQTT user name.
    username: DeviceId,
    /// MQTT password: shown this once, stored only as a hash.
    password: String,
}

/// Issues a device its MQTT credentials, replacing earlier ones.
async fn issue_credentials(
    State(p): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IssuedCredentials>), ApiError> {
    let id = device_id(&id)?;
    let registry = p.registry.clone();
    let device = id.clone();
    // argon2 hashing is slow on purpose: off the async workers.
    let token = tokio::task::spawn_blocking(move || registry.issue_credential(&device))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(device = %id, "device credentials issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredentials {
            device_id: id.clone(),
            username: id,
            password: token,
        }),
    ))
}

async fn revoke_credentials(
    State(p): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = device_id(&id)?;
    match p.registry.revoke_credential(&id) {
        Ok(true) => {
            tracing::info!(device = %id, "device credentials revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(false) => Err(ApiError::not_found(format!(
            "device {id} has no credentials"
        ))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmQuery {
    /// "active" (default: active and acknowledged) or "resolved" (recent history).
    state: Option<String>,
}

async fn list_alarms(
    State(p): State<AppState>,
    query: Result<Query<AlarmQuery>, QueryRejection>,
) -> Result<Json<Vec<Alarm>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match q.state.as_deref() {
        None | Some("active") => Ok(Json(p.active_alarms())),
        Some("resolved") => Ok(Json(p.alarm_history(1000))),
        Some(other) => Err(ApiError::bad_request(format!(
            "state={other:?}: use \"active\" or \"resolved\""
        ))),
    }
}

/// A clinician's action on an alarm.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmActionBody {
    /// Who acts (a user name, until users and sign-in exist).
    by: String,
    /// For snooze: how long, 1 to 1440 minutes.
    minutes: Option<u32>,
}

async fn act_on_alarm(
    State(p): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Json<AlarmActionBody>, JsonRejection>,
) -> Result<Json<Alarm>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("alarm id {id:?} is not a number")))?;
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if b.by.trim().is_empty() {
        return Err(ApiError::bad_request("\"by\" (who acts) is empty"));
    }
    let action = match (action.as_str(), b.minutes) {
        ("acknowledge", None) => AlarmAction::Acknowledge,
        ("resolve", None) => AlarmAction::Resolve,
        ("snooze", Some(m @ 1..=1440)) => AlarmAction::Snooze { minutes: m },
        ("snooze", _) => {
            return Err(ApiError::bad_request(
                "snooze needs \"minutes\" from 1 to 1440",
            ));
        }
        ("acknowledge" | "resolve", Some(_)) => {
            return Err(ApiError::bad_request("\"minutes\" only applies to snooze"));
        }
        (other, _) => {
            return Err(ApiError::not_found(format!(
                "no alarm action {other:?}; use acknowledge, snooze or resolve"
            )));
        }
    };
    p.act_on_alarm(action, id, b.by.trim())
        .map(Json)
        .map_err(|e| ApiError::not_found(e.to_string()))
}
