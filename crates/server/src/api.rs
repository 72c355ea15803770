//! The REST API under `/api/v1`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | /api/v1/patients | every patient with latest vitals, NEWS2, active alarms |
//! | POST | /api/v1/patients | admit or update a patient |
//! | GET | /api/v1/patients/{id} | one patient, same shape |
//! | GET | /api/v1/patients/{id}/observations?code=&from=&to=&bucket= | series over a time range, raw or per bucket |
//! | GET | /api/v1/devices | devices, their patient, last contact and battery (no readings, except an unassigned device's to an administrator) |
//! | PUT | /api/v1/devices/{id} | register a device / assign it to a patient (taking it off one raises "monitoring stopped" there) |
//! | POST / DELETE | /api/v1/devices/{id}/credentials | issue (shown once) a device's token (MQTT password, HTTP bearer, CoAP `?token=`) / revoke all its credentials (token, pre-shared key, certificate) |
//! | POST | /api/v1/devices/{id}/psk | issue (shown once) a device's pre-shared key for CoAP over DTLS (coaps) |
//! | POST | /api/v1/devices/{id}/senml | HTTP ingest of a SenML JSON pack (device credentials only) |
//! | POST | /api/v1/devices/{id}/gatt | HTTP ingest of a raw Bluetooth GATT measurement (hex or base64; device credentials only) |
//! | POST | /api/v1/fhir/Observation | FHIR R4 Observation or Bundle of Observations in (callers who care for each subject) |
//! | GET | /api/v1/alarms?state=active\|resolved&patient=&since_ms=&until_ms=&limit= | active (and acknowledged) alarms, or the resolved ones from the alarm log |
//! | GET | /api/v1/alarms/{id} | one alarm and every recorded change of it |
//! | POST | /api/v1/alarms/{id}/acknowledge, /snooze, /resolve | a clinician acts on an alarm |
//!
//! Every route needs a signed-in caller ([`Caller`]) and answers only with
//! the patients the caller may reach (see `medmesh_access` for the policy);
//! device ingest routes instead need the device's own credentials (or none,
//! where anonymous devices are allowed), and refuse users (see
//! `device_auth.rs`). A list read is audited as one entry naming every
//! patient it returned.
//!
//! FHIR Observation stays open to users: it is how an EHR interface or a
//! clinician records readings that name their patient, and each subject is
//! checked against `Care` (the care team, an administrator) and audited;
//! operations and consent holders are refused. A device sends as itself.

use crate::app::App;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use medmesh_access::{AlarmReach, GlobalRight, Outcome, PatientRight};
use medmesh_model::{Alarm, DeviceId, Patient, PatientId, TimestampMs, VitalSign, now_ms};
use medmesh_pipeline::{
    AlarmAction, GattCharacteristic, IngestError, IngestReport, LiveObservation, Pipeline,
    ResolvedQuery, SourceKind, unassigned_subject,
};
use medmesh_rules::news2::Aggregate;
use medmesh_sources::mqtt::Broker;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState = Arc<Pipeline>;

/// Largest SenML body accepted over HTTP.
const MAX_INGEST_BODY: usize = 1 << 20;

pub fn router() -> Router<App> {
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
        .route("/api/v1/devices/{id}/psk", post(issue_psk))
        .route(
            "/api/v1/fhir/Observation",
            post(ingest_fhir).layer(axum::extract::DefaultBodyLimit::max(MAX_INGEST_BODY * 8)),
        )
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/{id}", get(get_alarm))
        .route("/api/v1/alarms/{id}/{action}", post(act_on_alarm))
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

/// A patient's summary with what the caller may see: readings (and NEWS2)
/// only with the right to read observations, alarms only with the right to
/// read alarms.
fn summarise(p: &Pipeline, caller: &Caller, patient: Patient) -> PatientSummary {
    let readings = caller.may(PatientRight::ReadObservations, &patient);
    let alarms = caller.may(PatientRight::ReadAlarms, &patient);
    let latest = if readings {
        p.store
            .latest(patient.id.as_str())
            .into_iter()
            .map(|(vital, point)| (vital.key(), observation(vital, point.time_ms, point.value)))
            .collect()
    } else {
        BTreeMap::new()
    };
    PatientSummary {
        devices: if readings {
            p.registry.devices_of(&patient.id)
        } else {
            Vec::new()
        },
        news2: readings.then(|| p.news2(&patient.id)).flatten(),
        alarms: if alarms {
            p.active_alarms_for(&patient.id)
        } else {
            Vec::new()
        },
        latest,
        patient,
    }
}

/// Whether the caller may see anything of the patient.
fn may_see(caller: &Caller, patient: &Patient) -> bool {
    caller.may(PatientRight::ReadObservations, patient)
        || caller.may(PatientRight::ReadAlarms, patient)
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

async fn list_patients(State(p): State<AppState>, caller: Caller) -> Json<Vec<PatientSummary>> {
    let list: Vec<PatientSummary> = p
        .registry
        .patients()
        .into_iter()
        .filter(|pt| may_see(&caller, pt))
        .map(|pt| summarise(&p, &caller, pt))
        .collect();
    // One entry for the whole answer (a dashboard load), naming each patient.
    caller.audit_list(
        "list patients",
        list.iter().map(|s| s.patient.id.clone()).collect(),
    );
    Json(list)
}

async fn get_patient(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PatientSummary>, ApiError> {
    let id = patient_id(&id)?;
    let right = match p.registry.patient(&id) {
        Some(pt) if !caller.may(PatientRight::ReadObservations, &pt) => PatientRight::ReadAlarms,
        _ => PatientRight::ReadObservations,
    };
    let patient = caller.require(&p, right, &id, "read patient")?;
    Ok(Json(summarise(&p, &caller, patient)))
}

async fn upsert_patient(
    State(p): State<AppState>,
    caller: Caller,
    body: Result<Json<Patient>, JsonRejection>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    let Json(patient) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if patient.name.trim().is_empty() {
        return Err(ApiError::bad_request("patient name is empty"));
    }
    // The caller must care for the patient as recorded and as they will be
    // (no moving someone else's patient onto one's own ward).
    let existing = p.registry.patient(&patient.id);
    let permitted = caller.may(PatientRight::Care, &patient)
        && existing
            .as_ref()
            .is_none_or(|e| caller.may(PatientRight::Care, e));
    if !permitted {
        caller.audit(
            "admit or update patient",
            Some(&patient.id),
            Outcome::Denied,
        );
        return Err(caller.forbidden("admit or update this patient"));
    }
    caller.audit(
        "admit or update patient",
        Some(&patient.id),
        Outcome::Allowed,
    );
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
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = patient_id(&id)?;
    caller.require(&p, PatientRight::ReadObservations, &id, "read observations")?;
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
    /// Who the device was assigned to, and from when, oldest first.
    assignments: Vec<medmesh_model::Assignment>,
    /// Whether the device is in the registry (as opposed to merely seen).
    registered: bool,
    last_seen_ms: Option<TimestampMs>,
    messages: u64,
    /// Connected over MQTT now (`null` if it never kept a connection).
    online: Option<bool>,
    /// Battery level last reported (percent), kept across restarts.
    battery_percent: Option<f64>,
    /// The newest reading time of the device's last message minus when it
    /// arrived (ms): far ahead means a clock to set (such readings are
    /// refused); behind means readings sent late (buffered, or a slow clock).
    clock_offset_ms: Option<i64>,
    /// Latest readings of an unassigned device (kept under the device).
    unassigned_latest: BTreeMap<&'static str, LiveObservation>,
}

impl DeviceSummary {
    /// A device heard from but not in the registry.
    fn seen_only(id: DeviceId) -> DeviceSummary {
        DeviceSummary {
            id,
            patient_id: None,
            assignments: Vec::new(),
            registered: false,
            last_seen_ms: None,
            messages: 0,
            online: None,
            battery_percent: None,
            clock_offset_ms: None,
            unassigned_latest: BTreeMap::new(),
        }
    }
}

/// Devices: all of them for administrators and operations; for clinicians,
/// those assigned to patients they care for.
async fn list_devices(
    State(p): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    let all = caller.may_global(GlobalRight::ManageDevices);
    if !all && !caller.who.role.is_clinician() {
        return Err(caller.forbidden("list devices"));
    }
    let activity = p.device_activity();
    let mut out: BTreeMap<DeviceId, DeviceSummary> = BTreeMap::new();
    for d in p.registry.devices() {
        out.insert(
            d.id.clone(),
            DeviceSummary {
                id: d.id,
                patient_id: d.patient_id,
                assignments: d.assignments,
                registered: true,
                last_seen_ms: None,
                messages: 0,
                online: None,
                battery_percent: None,
                clock_offset_ms: None,
                unassigned_latest: BTreeMap::new(),
            },
        );
    }
    for (id, a) in activity {
        let entry = out
            .entry(id.clone())
            .or_insert_with(|| DeviceSummary::seen_only(id));
        entry.last_seen_ms = Some(a.last_seen_ms);
        entry.messages = a.messages;
        entry.online = a.online;
        entry.clock_offset_ms = a.clock_offset_ms;
    }
    for (id, level) in p.device_batteries() {
        let entry = out
            .entry(id.clone())
            .or_insert_with(|| DeviceSummary::seen_only(id));
        entry.battery_percent = Some(level.percent);
    }
    // An unassigned device's readings are still someone's health data:
    // only for a caller who may read them (not operations).
    let readings = caller.may_global(GlobalRight::ReadUnassignedReadings);
    for d in out
        .values_mut()
        .filter(|d| readings && d.patient_id.is_none())
    {
        d.unassigned_latest = p
            .store
            .latest(&unassigned_subject(&d.id))
            .into_iter()
            .map(|(v, pt)| (v.key(), observation(v, pt.time_ms, pt.value)))
            .collect();
    }
    let visible = |d: &DeviceSummary| {
        all || d.patient_id.as_ref().is_some_and(|id| {
            p.registry
                .patient(id)
                .is_some_and(|pt| caller.may(PatientRight::Care, &pt))
        })
    };
    Ok(Json(out.into_values().filter(visible).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    /// The patient the device measures from now on; `null` to unassign.
    patient_id: Option<PatientId>,
}

/// Administrators and operations assign any device; a clinician may move a
/// device between (or off) patients they care for. Taking a device off a
/// patient raises "monitoring stopped" on them (see the pipeline's
/// `assignment.rs`) and is audited on that patient's record; assigning is
/// audited on the new patient's.
async fn assign_device(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Assignment>, JsonRejection>,
) -> Result<Json<medmesh_model::Device>, ApiError> {
    let id = device_id(&id)?;
    let Json(a) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let cares_for = |pid: &PatientId| {
        p.registry
            .patient(pid)
            .is_some_and(|pt| caller.may(PatientRight::Care, &pt))
    };
    let current = p.registry.device(&id).and_then(|d| d.patient_id);
    let permitted = caller.may_global(GlobalRight::ManageDevices)
        || (caller.who.role.is_clinician()
            && (a.patient_id.is_some() || current.is_some())
            && a.patient_id.as_ref().is_none_or(cares_for)
            && current.as_ref().is_none_or(cares_for));
    if !permitted {
        caller.audit(
            &format!("assign device {id}"),
            a.patient_id.as_ref(),
            Outcome::Denied,
        );
        return Err(caller.forbidden("assign this device"));
    }
    let done = p
        .assign_device(id.clone(), a.patient_id.clone(), &caller.who.username)
        .map_err(|e| match e {
            medmesh_storage::RegistryError::UnknownPatient(_) => {
                ApiError::bad_request(e.to_string())
            }
            e => ApiError::internal(e.to_string()),
        })?;
    if let Some(from) = &done.taken_from {
        caller.audit(
            &format!("unassign device {id} (monitoring stopped)"),
            Some(from),
            Outcome::Allowed,
        );
    }
    if a.patient_id.is_some() || done.taken_from.is_none() {
        caller.audit(
            &format!("assign device {id}"),
            a.patient_id.as_ref(),
            Outcome::Allowed,
        );
    }
    Ok(Json(done.device))
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

/// The answer to an ingest request: 200 with the report when anything was
/// stored (rejected records listed), 422 with the report when every record
/// was rejected, so a sender that only looks at the status still sees that
/// nothing was kept.
fn ingest_answer(report: IngestReport) -> (StatusCode, Json<IngestReport>) {
    let status = if report.accepted == 0 && !report.rejected.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Json(report))
}

/// SenML JSON, or SenML CBOR when the Content-Type says so
/// (`application/senml+cbor` or `application/cbor`).
async fn ingest_senml(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
    let id = device_id(&id)?;
    crate::device_auth::authenticate(&app, &headers, &id).await?;
    let p = &app.pipeline;
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
    Ok(ingest_answer(report))
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
    State(app): State<App>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Json<GattValue>, JsonRejection>,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
    use base64::Engine;
    let id = device_id(&id)?;
    crate::device_auth::authenticate(&app, &headers, &id).await?;
    let p = &app.pipeline;
    let Json(v) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let characteristic = GattCharacteristic::parse(&v.characteristic).ok_or_else(|| {
        ApiError::bad_request(format!(
            "characteristic {:?} is not supported; use 2a37 (heart rate), 2a35 (blood pressure), \
             2a1c (temperature), 2a5e or 2a5f (pulse oximetry), 2a18 (glucose), 2a9d (weight) \
             or 2a19 (battery level)",
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
    Ok(ingest_answer(report))
}

/// Readings from an EHR or gateway, recorded for the patients the caller
/// cares for (others are rejected per record).
async fn ingest_fhir(
    State(p): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
    // One decision (and one audit entry) per patient, however many
    // observations the bundle holds for them.
    let decided = std::sync::Mutex::new(std::collections::HashMap::new());
    let may_record = |id: &PatientId| {
        *decided
            .lock()
            .expect("decisions lock")
            .entry(id.clone())
            .or_insert_with(|| {
                let ok = p
                    .registry
                    .patient(id)
                    .is_some_and(|pt| caller.may(PatientRight::Care, &pt));
                let outcome = if ok {
                    Outcome::Allowed
                } else {
                    Outcome::Denied
                };
                caller.audit("record observations", Some(id), outcome);
                ok
            })
    };
    let report = p.ingest_fhir(SourceKind::Http, &body, &may_record).await?;
    let decided = decided.into_inner().expect("decisions lock");
    // Nothing recorded and every known subject refused: the caller may not
    // do this at all.
    if report.accepted == 0 && !decided.is_empty() && decided.values().all(|ok| !ok) {
        return Err(caller.forbidden("record readings for these patients"));
    }
    Ok(ingest_answer(report))
}

#[derive(Serialize)]
struct IssuedCredentials {
    device_id: DeviceId,
    /// MQTT user name.
    username: DeviceId,
    /// MQTT password: shown this once, stored only as a hash.
    password: String,
}

/// Issues a device its MQTT credentials, replacing earlier ones; the
/// device's open MQTT connections are closed (they must prove the new ones).
async fn issue_credentials(
    State(p): State<AppState>,
    State(broker): State<Arc<Broker>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IssuedCredentials>), ApiError> {
    let id = device_id(&id)?;
    caller.require_global(GlobalRight::ManageDevices, "provision device credentials")?;
    caller.audit(&format!("provision device {id}"), None, Outcome::Allowed);
    let registry = p.registry.clone();
    let device = id.clone();
    // argon2 hashing is slow on purpose: off the async workers.
    let token = tokio::task::spawn_blocking(move || registry.issue_credential(&device))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let closed = broker.close_device(&id);
    tracing::info!(device = %id, closed, "device credentials issued; its MQTT connections closed");
    Ok((
        StatusCode::CREATED,
        Json(IssuedCredentials {
            device_id: id.clone(),
            username: id,
            password: token,
        }),
    ))
}

#[derive(Serialize)]
struct IssuedPsk {
    device_id: DeviceId,
    /// The DTLS PSK identity: the device id.
    identity: DeviceId,
    /// The pre-shared key as text; its bytes are the key (libcoap `-k`).
    /// Shown this once; the server keeps it, as DTLS-PSK requires.
    key: String,
    /// The same key bytes in hex, for firmware that takes hex.
    key_hex: String,
}

/// Issues a device a pre-shared key for CoAP over DTLS, replacing an
/// earlier one: the DTLS sessions that proved the earlier key are closed at
/// once. The device's token, if any, stays valid.
async fn issue_psk(
    State(p): State<AppState>,
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IssuedPsk>), ApiError> {
    let id = device_id(&id)?;
    caller.require_global(GlobalRight::ManageDevices, "provision device credentials")?;
    caller.audit(
        &format!("provision device {id} pre-shared key"),
        None,
        Outcome::Allowed,
    );
    let key = p
        .registry
        .issue_psk(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let closed = app.coaps.as_ref().map_or(0, |c| c.close_device(&id));
    tracing::info!(device = %id, closed, "device pre-shared key issued; its DTLS sessions closed");
    Ok((
        StatusCode::CREATED,
        Json(IssuedPsk {
            device_id: id.clone(),
            identity: id,
            key_hex: hex::encode(key.as_bytes()),
            key,
        }),
    ))
}

/// Revokes a device's credentials (token, pre-shared key, certificate
/// record) and closes its open MQTT connections and DTLS sessions at once.
async fn revoke_credentials(
    State(p): State<AppState>,
    State(app): State<App>,
    State(broker): State<Arc<Broker>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = device_id(&id)?;
    caller.require_global(GlobalRight::ManageDevices, "revoke device credentials")?;
    caller.audit(&format!("revoke device {id}"), None, Outcome::Allowed);
    match p.registry.revoke_credential(&id) {
        Ok(true) => {
            let closed =
                broker.close_device(&id) + app.coaps.as_ref().map_or(0, |c| c.close_device(&id));
            tracing::info!(device = %id, closed, "device credentials revoked; its MQTT connections and DTLS sessions closed");
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
    /// "active" (default: active and acknowledged) or "resolved" (history,
    /// from the alarm log).
    state: Option<String>,
    /// One patient's alarms only.
    patient: Option<String>,
    /// Resolved alarms: resolved at or after this time (epoch ms).
    since_ms: Option<i64>,
    /// Resolved alarms: resolved at or before this time (epoch ms).
    until_ms: Option<i64>,
    /// Resolved alarms: at most this many, newest first (default 1000).
    limit: Option<usize>,
}

/// Most resolved alarms one request returns.
const MAX_ALARM_HISTORY: usize = 10_000;

async fn list_alarms(
    State(p): State<AppState>,
    caller: Caller,
    query: Result<Query<AlarmQuery>, QueryRejection>,
) -> Result<Json<Vec<Alarm>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let patient = match &q.patient {
        Some(id) => {
            let id = PatientId::new(id.clone())
                .map_err(|e| ApiError::bad_request(format!("patient: {e}")))?;
            caller.require(&p, PatientRight::ReadAlarms, &id, "read alarms")?;
            Some(id)
        }
        None => None,
    };
    let alarms = match q.state.as_deref() {
        None | Some("active") => {
            if q.since_ms.is_some() || q.until_ms.is_some() || q.limit.is_some() {
                return Err(ApiError::bad_request(
                    "since_ms, until_ms and limit apply to state=resolved",
                ));
            }
            let mut alarms = p.active_alarms();
            alarms.retain(|a| patient.as_ref().is_none_or(|id| &a.patient_id == id));
            alarms
        }
        Some("resolved") => {
            let limit = q.limit.unwrap_or(1000);
            if !(1..=MAX_ALARM_HISTORY).contains(&limit) {
                return Err(ApiError::bad_request(format!(
                    "limit must be 1 to {MAX_ALARM_HISTORY}"
                )));
            }
            let (since, until) = (
                q.since_ms.unwrap_or(i64::MIN),
                q.until_ms.unwrap_or(i64::MAX),
            );
            // Only patients the caller may see count towards the limit.
            let visible: std::collections::HashSet<PatientId> = match &patient {
                Some(id) => [id.clone()].into(),
                None => p
                    .registry
                    .patients()
                    .into_iter()
                    .filter(|pt| caller.may(PatientRight::ReadAlarms, pt))
                    .map(|pt| pt.id)
                    .collect(),
            };
            let pipeline = p.clone();
            // Reads the alarm log from disk: off the async workers.
            tokio::task::spawn_blocking(move || {
                pipeline.resolved_alarms(&ResolvedQuery {
                    patient: &|id| visible.contains(id),
                    since_ms: since,
                    until_ms: until,
                    limit,
                })
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("alarm log unreadable: {e}")))?
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state={other:?}: use \"active\" or \"resolved\""
            )));
        }
    };
    if patient.is_some() {
        // Checked and audited above.
        return Ok(Json(alarms));
    }
    // Per alarm: an escalation step that named the caller shows them that
    // alarm, outside their care team too.
    let alarms: Vec<Alarm> = alarms
        .into_iter()
        .filter(|a| caller.may_id(&p, see_alarm(a), &a.patient_id))
        .collect();
    let mut patients: Vec<PatientId> = alarms.iter().map(|a| a.patient_id.clone()).collect();
    patients.sort();
    patients.dedup();
    caller.audit_list("read alarms", patients);
    Ok(Json(alarms))
}

fn reach(alarm: &Alarm) -> AlarmReach {
    AlarmReach {
        priority: alarm.priority,
        level: alarm.escalation_level,
    }
}

/// The right to see this one alarm.
fn see_alarm(alarm: &Alarm) -> PatientRight {
    PatientRight::SeeAlarm(reach(alarm))
}

/// One alarm's whole record.
#[derive(Serialize)]
struct AlarmRecord {
    /// Its state now.
    alarm: Alarm,
    /// Every recorded change, oldest first: its kind ("raised", "updated",
    /// "acknowledged", "snoozed", "escalated", "resolved"), its number in
    /// the alarm log, and the alarm as it stood, with who and when.
    history: Vec<HistoryEntry>,
    /// Whom it is about (name, ward, bed): what anyone told of the alarm
    /// needs to go and act, and nothing more of their record.
    patient: Option<Patient>,
}

#[derive(Serialize)]
struct HistoryEntry {
    change: String,
    seq: u64,
    #[serde(flatten)]
    alarm: Alarm,
}

/// `GET /api/v1/alarms/{id}`: an alarm's state and its whole lifecycle.
async fn get_alarm(
    State(p): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AlarmRecord>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("alarm id {id:?} is not a number")))?;
    let pipeline = p.clone();
    let history = tokio::task::spawn_blocking(move || pipeline.alarm_changes_of(id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("alarm log unreadable: {e}")))?;
    // An active alarm's latest value (a repeat changes nothing else) is
    // kept in memory only.
    let now = p
        .active_alarms()
        .into_iter()
        .find(|a| a.id == id)
        .or_else(|| history.last().map(|c| c.alarm.clone()));
    let action = format!("read alarm {id}");
    // Someone else's alarm and no alarm at all look alike (403).
    let Some(alarm) = now
        .as_ref()
        .filter(|a| caller.may_id(&p, see_alarm(a), &a.patient_id))
        .cloned()
    else {
        return Err(caller.unseen(
            PatientRight::ReadAlarms,
            &action,
            now.as_ref().map(|a| &a.patient_id),
            format!("no alarm with id {id}"),
        ));
    };
    let patient = caller.require(&p, see_alarm(&alarm), &alarm.patient_id, &action)?;
    let history = history
        .into_iter()
        .map(|c| HistoryEntry {
            change: c.change,
            seq: c.seq,
            alarm: c.alarm,
        })
        .collect();
    Ok(Json(AlarmRecord {
        alarm,
        history,
        patient: Some(patient),
    }))
}

/// A clinician's action on an alarm. Who acts is the signed-in caller.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlarmActionBody {
    /// For snooze: how long, 1 to 1440 minutes.
    minutes: Option<u32>,
}

async fn act_on_alarm(
    State(p): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Alarm>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("alarm id {id:?} is not a number")))?;
    let b: AlarmActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        AlarmActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("alarm action body: {e}")))?
    };
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
    let verb = match action {
        AlarmAction::Acknowledge => "acknowledge",
        AlarmAction::Snooze { .. } => "snooze",
        AlarmAction::Resolve => "resolve",
    };
    let what = format!("{verb} alarm {id}");
    let Some(alarm) = p.active_alarms().into_iter().find(|a| a.id == id) else {
        // Not active: one already resolved is "not active" to those who may
        // see it; anyone else cannot tell it from an alarm never raised.
        let pipeline = p.clone();
        let history = tokio::task::spawn_blocking(move || pipeline.alarm_record(id))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("alarm log unreadable: {e}")))?;
        if history
            .last()
            .is_some_and(|a| caller.may_id(&p, see_alarm(a), &a.patient_id))
        {
            return Err(ApiError::not_found(format!("alarm {id} is not active")));
        }
        return Err(caller.unseen(
            PatientRight::Care,
            &what,
            history.last().map(|a| &a.patient_id),
            format!("no active alarm with id {id}"),
        ));
    };
    // Acknowledging is open to whoever an escalation step the alarm reached
    // names (they were told of it); snoozing and resolving are the care
    // team's.
    let right = match action {
        AlarmAction::Acknowledge => PatientRight::AcknowledgeAlarm(reach(&alarm)),
        _ => PatientRight::Care,
    };
    caller.require(&p, right, &alarm.patient_id, &what)?;
    p.act_on_alarm(action, id, &caller.who.username)
        .map(Json)
        .map_err(|e| ApiError::not_found(e.to_string()))
}
