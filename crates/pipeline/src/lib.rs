//! The ingest pipeline every source feeds: the one path from device bytes to
//! durable, alarmed, live data.
//!
//! ```text
//! payload -> decode (codecs) -> attribute to patient (registry)
//!         -> append, await fsync (storage) -> rules (alarm board)
//!         -> live event (dashboard stream) -> report to the source, which acks
//! ```
//!
//! A source must acknowledge a message to its device only after
//! [`Pipeline::ingest_senml_json`] returned `Ok`: by then its samples are durable.

mod alarm_load;
mod alarm_settings;
mod alarms;
mod assignment;
mod device_identity;
mod device_reports;
mod device_tokens;
mod escalation;
mod live;
mod metrics;
mod order;
mod system_alarms;
mod timers;

pub use alarm_load::{
    AlarmLoad, Escalations, Figures, LoadQuery, PATIENT_DAYS_BASIS, QUICK_CLEAR_MS, RuleLoad,
    TopCondition, TopPatient, WardLoad,
};
pub use alarm_settings::{SETTINGS_FILE, SettingsError};
pub use alarms::AlarmAction;
pub use assignment::Reassigned;
pub use device_identity::{DeviceIdentity, Proof, Refusal};
pub use live::{LiveEvent, LiveObservation};
pub use medmesh_codecs::gatt::Characteristic as GattCharacteristic;
pub use medmesh_codecs::{Decoded, RecordError};
pub use medmesh_storage::{LoggedChange, ResolvedQuery};
pub use metrics::{
    ConnectionRefusal, DeliveryOutcome, HandshakeOutcome, Metrics, PayloadRefusal, SourceKind,
};
pub use order::{Turn, Turns};
pub use system_alarms::{CONDITION_STORAGE, SystemAlarm};

use medmesh_codecs::{DecodeError, fhir, gatt, senml};
use medmesh_model::{
    Alarm, DeviceId, Observation, PatientId, Priority, TimestampMs, VitalSign, now_ms,
};
use medmesh_rules::news2::{self, Aggregate};
use medmesh_rules::{
    AlarmBoard, AlarmChange, DEFAULT_CLEAR_AFTER_S, Finding, RULE_DEVICE_CLOCK, RuleEngine,
    RulesConfig, Verdict, Worse,
};
use medmesh_storage::{AlarmLog, BatteryLevel, BatteryLog, Registry, Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Live events buffered per slow subscriber before it starts missing some.
const LIVE_BUFFER: usize = 4096;

/// How far ahead of the server clock a reading may be dated by default. A
/// device clock a little fast is common (NTP not yet synced after boot,
/// drift); a reading dated further ahead would become every view's "latest"
/// value and hide the present ones, so it is refused.
pub const DEFAULT_MAX_AHEAD_MS: i64 = 5 * 60_000;
/// Readings dated further ahead than this raise a clock alarm (default).
pub const DEFAULT_CLOCK_SKEW_ALARM_MS: i64 = 60_000;

/// A message's payload, in one of the device formats.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    SenmlJson(&'a [u8]),
    SenmlCbor(&'a [u8]),
    /// A raw Bluetooth GATT characteristic value forwarded by a gateway.
    Gatt(gatt::Characteristic, &'a [u8]),
}

/// The alarm stream from a point on: every change numbered after `after`
/// is either in `events` or was already handed to the alarm log.
pub struct AlarmSubscription {
    pub after: u64,
    pub events: broadcast::Receiver<LiveEvent>,
}

/// What happened to an accepted message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: Vec<RecordError>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload could not be read at all; nothing was stored.
    #[error("malformed payload: {0}")]
    Malformed(#[from] DecodeError),
    /// Storage refused the samples; the sender should retry later.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Last contact with a device, kept in memory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DeviceActivity {
    pub last_seen_ms: TimestampMs,
    pub messages: u64,
    /// Connected now (MQTT), if the device keeps a connection.
    pub online: Option<bool>,
    /// The newest reading time of the device's last message with readings,
    /// minus when it arrived: how far ahead (positive) or behind its clock
    /// or its buffering puts it. A reading dated too far ahead is refused
    /// (and still shows here).
    pub clock_offset_ms: Option<i64>,
}

impl DeviceActivity {
    fn new() -> DeviceActivity {
        DeviceActivity {
            last_seen_ms: 0,
            messages: 0,
            online: None,
            clock_offset_ms: None,
        }
    }
}

pub struct Pipeline {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    alarms: Mutex<AlarmBoard>,
    /// Profile rules and their per-patient state; locked before (never
    /// while holding) the board.
    rules: Mutex<RuleEngine>,
    settings_path: Option<std::path::PathBuf>,
    settings_write: Mutex<()>,
    alarm_log: AlarmLog,
    activity: Mutex<HashMap<DeviceId, DeviceActivity>>,
    /// Each device's last reported battery level, kept across restarts
    /// by `battery_log` (see `device_reports.rs`).
    batteries: Mutex<HashMap<DeviceId, BatteryLevel>>,
    battery_log: Option<BatteryLog>,
    live: broadcast::Sender<LiveEvent>,
    /// Alarm lifecycle changes only (no value updates): sinks that deliver
    /// alarms need not wake for every observation.
    alarm_events: broadcast::Sender<LiveEvent>,
    /// Each device's messages reach the rules in arrival order.
    turns: Turns<DeviceId>,
    /// medmesh's own failures, for operations.
    system_alarms: system_alarms::SystemAlarms,
    /// Each patient's charted sets likewise (keyed by the patient's id,
    /// apart from the devices' turns).
    chart_turns: Turns<DeviceId>,
    /// Readings dated further ahead of the server clock are refused.
    max_ahead_ms: i64,
    /// A device clock this far ahead raises a technical alarm.
    clock_skew_alarm_ms: i64,
}

/// A duration for people: "90 s", "12 min", "3 h", "400 days".
fn describe_ms(ms: i64) -> String {
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Where stored observations came from: a device, or a clinician who
/// charted them by hand.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    Device(&'a DeviceId),
    Chart { by: &'a str },
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Device(d) => write!(f, "device {d}"),
            Origin::Chart { by } => write!(f, "charted by {by}"),
        }
    }
}

/// Looks a vital sign's reading up in a patient's latest readings.
fn reading_of(
    latest: &[(VitalSign, news2::Reading)],
) -> impl Fn(VitalSign) -> Option<news2::Reading> + '_ {
    move |v| latest.iter().find(|(lv, _)| *lv == v).map(|(_, r)| *r)
}

/// NEWS2 now from a patient's latest readings (fresh ones only, by the
/// server clock) and the inputs to score a reading with.
fn news2_of(
    latest: &[(VitalSign, news2::Reading)],
    settings: news2::Settings,
) -> (Option<Aggregate>, news2::Inputs) {
    let now = now_ms();
    (
        news2::aggregate_at(reading_of(latest), settings, now),
        news2::inputs(reading_of(latest), settings, now),
    )
}

/// Storage subject of an unassigned device's samples. `:` cannot occur in a
/// patient id, so these never collide with a patient's series.
pub fn unassigned_subject(device: &DeviceId) -> String {
    format!("device:{device}")
}

impl Pipeline {
    /// A pipeline over `store` and `registry`, its alarm board rebuilt from
    /// the alarms `alarm_log` recorded (`recorded`, oldest first).
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        alarm_log: AlarmLog,
        recorded: Vec<Alarm>,
    ) -> Pipeline {
        let mut board = AlarmBoard::default();
        // As `with_rules` sets it from the configuration.
        board.set_default_clear_delay(DEFAULT_CLEAR_AFTER_S as i64 * 1000);
        for alarm in recorded {
            board.restore(alarm);
        }
        Pipeline {
            store,
            registry,
            metrics,
            alarms: Mutex::new(board),
            rules: Mutex::new(
                RuleEngine::new(&RulesConfig::default(), now_ms())
                    .expect("default rules are valid"),
            ),
            settings_path: None,
            settings_write: Mutex::new(()),
            alarm_log,
            activity: Mutex::new(HashMap::new()),
            batteries: Mutex::new(HashMap::new()),
            battery_log: None,
            live: broadcast::channel(LIVE_BUFFER).0,
            alarm_events: broadcast::channel(LIVE_BUFFER).0,
            turns: Turns::default(),
            system_alarms: Default::default(),
            chart_turns: Turns::default(),
            max_ahead_ms: DEFAULT_MAX_AHEAD_MS,
            clock_skew_alarm_ms: DEFAULT_CLOCK_SKEW_ALARM_MS,
        }
    }

    /// Refuses readings dated more than `ms` ahead of the server clock.
    pub fn with_max_ahead_ms(mut self, ms: i64) -> Pipeline {
        self.max_ahead_ms = ms.max(0);
        self
    }

    /// Raises a device-clock alarm for readings dated more than `ms` ahead.
    pub fn with_clock_skew_alarm_ms(mut self, ms: i64) -> Pipeline {
        self.clock_skew_alarm_ms = ms.max(0);
        self
    }

    /// Takes `device`'s next turn: the rules see its messages in the order
    /// their turns were taken (see `order.rs`). A source that stores several
    /// messages of one device at once takes each turn as the message
    /// arrives, before starting to store it, and passes it to
    /// [`Pipeline::ingest`].
    pub fn turn(&self, device: &DeviceId) -> Turn {
        self.turns.take(device)
    }

    /// Decodes a SenML JSON pack from `device` and stores its valid records.
    /// Returns once they are durable; rejected records are listed in the report.
    pub async fn ingest_senml_json(
        &self,
        source: SourceKind,
        device: &DeviceId,
        payload: &[u8],
    ) -> Result<IngestReport, IngestError> {
        self.ingest(
            self.turn(device),
            source,
            device,
            Payload::SenmlJson(payload),
        )
        .await
    }

    /// Like [`Pipeline::ingest_senml_json`] for a SenML CBOR pack.
    pub async fn ingest_senml_cbor(
        &self,
        source: SourceKind,
        device: &DeviceId,
        payload: &[u8],
    ) -> Result<IngestReport, IngestError> {
        self.ingest(
            self.turn(device),
            source,
            device,
            Payload::SenmlCbor(payload),
        )
        .await
    }

    /// Decodes a raw Bluetooth GATT characteristic value forwarded by a
    /// gateway for `device` and stores its valid fields, like
    /// [`Pipeline::ingest_senml_json`].
    pub async fn ingest_gatt(
        &self,
        source: SourceKind,
        device: &DeviceId,
        characteristic: gatt::Characteristic,
        value: &[u8],
    ) -> Result<IngestReport, IngestError> {
        let payload = Payload::Gatt(characteristic, value);
        self.ingest(self.turn(device), source, device, payload)
            .await
    }

    /// Decodes and stores one message of `device` in its `turn` (see
    /// [`Pipeline::turn`]): its samples are stored at once, the rules see
    /// them after every earlier message of the device. Rejected records are
    /// counted, logged and listed in the report. Returns once the accepted
    /// samples are durable.
    pub async fn ingest(
        &self,
        mut turn: Turn,
        source: SourceKind,
        device: &DeviceId,
        payload: Payload<'_>,
    ) -> Result<IngestReport, IngestError> {
        let received = now_ms();
        let decoded = match payload {
            Payload::SenmlJson(bytes) => senml::decode_json(bytes, received),
            Payload::SenmlCbor(bytes) => senml::decode_cbor(bytes, received),
            Payload::Gatt(characteristic, bytes) => gatt::decode(characteristic, bytes, received),
        };
        let mut decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                self.metrics.malformed_message(source);
                tracing::warn!(%device, source = source.as_str(), error = %e, "malformed message rejected");
                return Err(e.into());
            }
        };
        self.screen_times(source, Some(device), &mut decoded, received);
        self.note_rejected(source, device, &decoded.rejected);
        let accepted = decoded.observations.len() + decoded.device.len();
        self.accept(&mut turn, source, device, decoded.observations)
            .await?;
        turn.wait().await;
        self.device_reports(device, &decoded.device)?;
        Ok(IngestReport {
            accepted,
            rejected: decoded.rejected,
        })
    }

    /// Refuses, per record, readings dated more than the tolerance ahead of
    /// the server clock (they would stand as the patient's latest value and
    /// hide the present ones from the rules and every view) and readings
    /// older than their vital sign's retention (they would be dropped at
    /// once). Notes the device's clock offset either way.
    fn screen_times(
        &self,
        source: SourceKind,
        device: Option<&DeviceId>,
        decoded: &mut Decoded,
        received: TimestampMs,
    ) {
        if let (Some(device), Some(newest)) =
            (device, decoded.observations.iter().map(|o| o.time_ms).max())
        {
            let offset = newest.saturating_sub(received);
            let before = {
                let mut activity = self.activity.lock().expect("activity lock");
                let a = activity
                    .entry(device.clone())
                    .or_insert_with(DeviceActivity::new);
                a.clock_offset_ms.replace(offset)
            };
            // Judged while the clock is (or may have been: the first message
            // since start) ahead; a device whose clock is right costs nothing.
            let ahead = |o: i64| o > self.clock_skew_alarm_ms;
            if ahead(offset) || before.is_none_or(ahead) {
                self.judge_clock(device, offset, received);
            }
        }
        let latest_allowed = received.saturating_add(self.max_ahead_ms);
        let mut future = 0;
        decoded.reject_where(|o| {
            if o.time_ms > latest_allowed {
                future += 1;
                return Some(format!(
                    "{} dated {} ahead of the server clock (more than the {} allowed): \
                     check the {}",
                    o.vital.display(),
                    describe_ms(o.time_ms.saturating_sub(received)),
                    describe_ms(self.max_ahead_ms),
                    if device.is_some() {
                        "device's clock"
                    } else {
                        "time the observations were taken"
                    },
                ));
            }
            match self.store.retention_cutoff(o.vital, received) {
                Some(cutoff) if o.time_ms < cutoff => Some(format!(
                    "{} dated {} ago, older than its retention: it would not be kept",
                    o.vital.display(),
                    describe_ms(received.saturating_sub(o.time_ms)),
                )),
                _ => None,
            }
        });
        if future > 0 {
            self.metrics.future_dated(source, future);
        }
    }

    /// The device-clock rule: a device whose newest reading in a message is
    /// dated more than `clock_skew_alarm_ms` ahead of the server clock has
    /// a clock that needs setting: a low technical alarm for its patient,
    /// medium once its readings are refused (beyond `max_ahead_ms`: the
    /// patient is then not monitored). Only a clock ahead is judged: a
    /// reading dated behind may be a gateway forwarding its buffer.
    fn judge_clock(&self, device: &DeviceId, offset_ms: i64, now: TimestampMs) {
        let Some(patient) = self.registry.device(device).and_then(|d| d.patient_id) else {
            return;
        };
        let verdict = if offset_ms > self.clock_skew_alarm_ms {
            let refused = offset_ms > self.max_ahead_ms;
            Verdict::Holds {
                priority: if refused {
                    Priority::Medium
                } else {
                    Priority::Low
                },
                message: format!(
                    "Device {device}'s clock is {} ahead of the server's: {}",
                    describe_ms(offset_ms),
                    if refused {
                        "its readings are refused, the patient is not monitored by it; set its clock"
                    } else {
                        "set its clock (readings more than the allowed tolerance ahead are refused)"
                    }
                ),
                value: offset_ms as f64 / 1000.0,
                worse: Worse::Higher,
            }
        } else {
            Verdict::Clears {
                value: offset_ms as f64 / 1000.0,
            }
        };
        let finding = Finding {
            vital: None,
            device: Some(device.clone()),
            rule: RULE_DEVICE_CLOCK,
            time_ms: now,
            verdict,
        };
        let mut board = self.alarms.lock().expect("alarm board lock");
        if let Some(change) = board.apply(&patient, finding) {
            self.record_and_publish(&board, vec![change]);
        }
    }

    async fn accept(
        &self,
        turn: &mut Turn,
        source: SourceKind,
        device: &DeviceId,
        observations: Vec<Observation>,
    ) -> Result<(), IngestError> {
        // Each reading belongs to the patient the device was assigned to at
        // the reading's own time, so a device moved between patients never
        // mixes their data (nor carries past readings along).
        let Some(d) = self.registry.device(device) else {
            return self
                .store_for(turn, source, Origin::Device(device), None, observations)
                .await;
        };
        let first = observations.first().map(|o| d.patient_at(o.time_ms));
        if observations
            .iter()
            .all(|o| Some(d.patient_at(o.time_ms)) == first)
        {
            let patient = first.flatten().cloned();
            return self
                .store_for(turn, source, Origin::Device(device), patient, observations)
                .await;
        }
        let mut groups: Vec<(Option<PatientId>, Vec<Observation>)> = Vec::new();
        for o in observations {
            let p = d.patient_at(o.time_ms).cloned();
            match groups.iter_mut().find(|(q, _)| *q == p) {
                Some((_, group)) => group.push(o),
                None => groups.push((p, vec![o])),
            }
        }
        for (patient, group) in groups {
            self.store_for(turn, source, Origin::Device(device), patient, group)
                .await?;
        }
        Ok(())
    }

    /// Stores observations of a message that names its patient itself (an
    /// HL7 v2 PID segment) rather than through the device's assignment.
    pub async fn ingest_for_patient(
        &self,
        source: SourceKind,
        device: &DeviceId,
        patient: &PatientId,
        mut decoded: Decoded,
    ) -> Result<IngestReport, IngestError> {
        let mut turn = self.turn(device);
        self.screen_times(source, Some(device), &mut decoded, now_ms());
        self.note_rejected(source, device, &decoded.rejected);
        let accepted = decoded.observations.len();
        let observations = decoded.observations;
        self.store_for(
            &mut turn,
            source,
            Origin::Device(device),
            Some(patient.clone()),
            observations,
        )
        .await?;
        Ok(IngestReport {
            accepted,
            rejected: decoded.rejected,
        })
    }

    /// Stores a set of observations a clinician charted by hand for
    /// `patient` (`by`: their user name), validated like a device's
    /// (`decoded` built through `Observation::measured`) and screened the
    /// same way (dated too far ahead, or older than retention: refused per
    /// record), then judged by the rules like any reading. Returns once the
    /// accepted observations are durable, with the patient's NEWS2 after
    /// them.
    pub async fn record_chart(
        &self,
        patient: &PatientId,
        by: &str,
        mut decoded: Decoded,
    ) -> Result<(IngestReport, Option<Aggregate>), IngestError> {
        let source = SourceKind::Chart;
        // One patient's charted sets are judged in the order they came.
        let mut turn = self
            .chart_turns
            .take(&DeviceId::new(patient.as_str()).expect("a patient id is a valid key"));
        self.screen_times(source, None, &mut decoded, now_ms());
        if !decoded.rejected.is_empty() {
            self.metrics
                .rejected_records(source, decoded.rejected.len());
            for r in &decoded.rejected {
                tracing::warn!(%patient, by, record = r.index, reason = %r.reason, "charted observation refused");
            }
        }
        let accepted = decoded.observations.len();
        self.store_for(
            &mut turn,
            source,
            Origin::Chart { by },
            Some(patient.clone()),
            decoded.observations,
        )
        .await?;
        drop(turn);
        let report = IngestReport {
            accepted,
            rejected: decoded.rejected,
        };
        Ok((report, self.news2(patient)))
    }

    /// Stores the Observations of a FHIR R4 Observation or Bundle. Each names
    /// its patient (`subject`), who must be known; the device is the
    /// Observation's `device`, or "fhir" when it names none.
    /// FHIR Observations in; `may_record` says for which patients the sender
    /// may record readings (the others are rejected, each with a reason).
    pub async fn ingest_fhir(
        &self,
        source: SourceKind,
        payload: &[u8],
        may_record: &(dyn Fn(&PatientId) -> bool + Sync),
    ) -> Result<IngestReport, IngestError> {
        let decoded = match fhir::decode(payload) {
            Ok(d) => d,
            Err(e) => {
                self.metrics.malformed_message(source);
                tracing::warn!(source = source.as_str(), error = %e, "malformed FHIR payload rejected");
                return Err(e.into());
            }
        };
        let mut rejected = decoded.rejected;
        let received = now_ms();
        let latest_allowed = received.saturating_add(self.max_ahead_ms);
        let mut groups: std::collections::BTreeMap<(PatientId, DeviceId), Vec<Observation>> =
            Default::default();
        for o in decoded.observations {
            let patient = PatientId::new(o.patient.clone())
                .ok()
                .filter(|p| self.registry.patient(p).is_some());
            let device = DeviceId::new(o.device.clone().unwrap_or_else(|| "fhir".into()));
            match (patient, device) {
                _ if o.observation.time_ms > latest_allowed => {
                    self.metrics.future_dated(source, 1);
                    rejected.push(RecordError {
                        index: o.index,
                        reason: format!(
                            "{} dated {} ahead of the server clock (more than the {} allowed)",
                            o.observation.vital.display(),
                            describe_ms(o.observation.time_ms.saturating_sub(received)),
                            describe_ms(self.max_ahead_ms),
                        ),
                    })
                }
                (Some(p), _) if !may_record(&p) => rejected.push(RecordError {
                    index: o.index,
                    reason: format!("not permitted to record readings for Patient/{p}"),
                }),
                (Some(p), Ok(d)) => groups.entry((p, d)).or_default().push(o.observation),
                (None, _) => rejected.push(RecordError {
                    index: o.index,
                    reason: format!(
                        "subject Patient/{} is not a patient medmesh knows",
                        o.patient
                    ),
                }),
                (_, Err(e)) => rejected.push(RecordError {
                    index: o.index,
                    reason: format!("device Device/{}: {e}", o.device.unwrap_or_default()),
                }),
            }
        }
        rejected.sort_by_key(|r| r.index);
        self.note_rejected(source, &DeviceId::new("fhir").expect("valid id"), &rejected);
        let mut accepted = 0;
        for ((patient, device), observations) in groups {
            accepted += observations.len();
            // One turn at a time: a call never holds a turn while waiting
            // for another, so two calls cannot wait on each other.
            let mut turn = self.turn(&device);
            self.store_for(
                &mut turn,
                source,
                Origin::Device(&device),
                Some(patient),
                observations,
            )
            .await?;
        }
        Ok(IngestReport { accepted, rejected })
    }

    /// Counts and logs the records a decoder rejected.
    fn note_rejected(&self, source: SourceKind, device: &DeviceId, rejected: &[RecordError]) {
        if rejected.is_empty() {
            return;
        }
        self.metrics.rejected_records(source, rejected.len());
        for r in rejected {
            tracing::warn!(%device, source = source.as_str(), record = r.index, reason = %r.reason, "record rejected");
        }
    }

    /// Stores one patient's (or an unassigned device's) observations, then,
    /// in the device's turn, runs the rules on them and publishes them.
    async fn store_for(
        &self,
        turn: &mut Turn,
        source: SourceKind,
        origin: Origin<'_>,
        patient: Option<PatientId>,
        observations: Vec<Observation>,
    ) -> Result<(), IngestError> {
        if let Origin::Device(device) = origin {
            self.touch(device);
        }
        if observations.is_empty() {
            return Ok(());
        }
        let subject = match (&patient, origin) {
            (Some(p), _) => p.to_string(),
            (None, Origin::Device(device)) => unassigned_subject(device),
            // A chart always names its patient; nothing to keep without one.
            (None, Origin::Chart { .. }) => return Ok(()),
        };
        let count = observations.len();
        if let Err(e) = self.store.append(&subject, observations.clone()).await {
            self.metrics.storage_error();
            tracing::error!(%origin, error = %e, "samples not stored");
            return Err(e.into());
        }
        self.metrics.stored(source, count);
        // Stored concurrently with the device's other messages; judged in
        // their order.
        turn.wait().await;

        let mut aggregate = None;
        let mut changes = Vec::new();
        let mut board = None;
        if let Some(p) = &patient {
            // One lock of the rules per message: the patient's SpO2 scale
            // and the profile rules' findings together.
            let (news2_settings, clear_after_ms, findings, due) = {
                let mut rules = self.rules.lock().expect("rules lock");
                (
                    rules.news2_settings(p),
                    rules.clear_after_ms(p),
                    rules.observe(p, &observations, now_ms()),
                    rules.observations_due(p),
                )
            };
            let latest = self.news2_readings(p);
            let inputs;
            (aggregate, inputs) = news2_of(&latest, news2_settings);
            // A complete set resolves "observations overdue" as it arrives.
            let due = due.map(|w| w.judge(reading_of(&latest), now_ms()));
            let board = board.insert(self.alarms.lock().expect("alarm board lock"));
            board.set_clear_delay(p, clear_after_ms);
            changes.extend(observations.iter().flat_map(|o| {
                board.judge_scored(p, o, news2::score_with(o.vital, o.value, inputs))
            }));
            changes.extend(self.rejudge_spo2_on_oxygen(board, p, &observations, news2_settings));
            changes.extend(findings.into_iter().flat_map(|f| board.apply_all(p, f)));
            changes.extend(due.and_then(|f| board.apply(p, f)));
            let latest = observations
                .iter()
                .map(|o| o.time_ms)
                .max()
                .unwrap_or_else(now_ms);
            changes.extend(board.observe_news2(p, aggregate.as_ref(), latest));
        }
        // Still under the board's lock (when there is a patient): changes
        // are numbered and published in the order the board made them, the
        // readings that made them first.
        let changes = match &board {
            Some(board) => self.record(board, changes),
            None => Vec::new(),
        };
        // Nobody listening is fine: send only fails when there are no subscribers.
        let _ = self.live.send(LiveEvent::observations(
            patient.as_ref(),
            &origin,
            &observations,
            aggregate,
        ));
        for (change, seq) in changes {
            self.publish_alarm(change, seq);
        }
        drop(board);
        Ok(())
    }

    fn touch(&self, device: &DeviceId) {
        let mut activity = self.activity.lock().expect("activity lock");
        let a = activity
            .entry(device.clone())
            .or_insert_with(DeviceActivity::new);
        a.last_seen_ms = now_ms();
        a.messages += 1;
    }

    /// The patient's latest reading of each NEWS2 parameter (and oxygen).
    fn news2_readings(&self, patient: &PatientId) -> Vec<(VitalSign, news2::Reading)> {
        self.store
            .latest(patient.as_str())
            .into_iter()
            .map(|(v, p)| {
                let reading = news2::Reading {
                    value: p.value,
                    time_ms: p.time_ms,
                };
                (v, reading)
            })
            .collect()
    }

    /// The patient's NEWS2 now (fresh readings only, by the server clock)
    /// and the inputs to score a reading with (scale, fresh oxygen).
    fn news2_on_scale(
        &self,
        patient: &PatientId,
        settings: news2::Settings,
    ) -> (Option<Aggregate>, news2::Inputs) {
        news2_of(&self.news2_readings(patient), settings)
    }

    /// The patient's NEWS2 from their fresh readings, on their SpO2 scale
    /// (see [`medmesh_rules::news2::aggregate_at`]).
    pub fn news2(&self, patient: &PatientId) -> Option<Aggregate> {
        let settings = self
            .rules
            .lock()
            .expect("rules lock")
            .news2_settings(patient);
        self.news2_on_scale(patient, settings).0
    }

    /// The SpO2 red rule re-judged on the patient's latest fresh SpO2 when
    /// `observations` change their oxygen (an oxygen flow reading) without
    /// a new SpO2: on scale 2, oxygen changes what an SpO2 scores.
    fn rejudge_spo2_on_oxygen(
        &self,
        board: &mut AlarmBoard,
        patient: &PatientId,
        observations: &[Observation],
        settings: news2::Settings,
    ) -> Option<AlarmChange> {
        let has = |v| observations.iter().any(|o| o.vital == v);
        if !has(VitalSign::OxygenFlow) || has(VitalSign::OxygenSaturation) {
            return None;
        }
        self.rejudge_spo2(board, patient, settings)
    }

    /// The SpO2 red rule on the patient's latest SpO2, if fresh, scored
    /// with their current scale and oxygen.
    fn rejudge_spo2(
        &self,
        board: &mut AlarmBoard,
        patient: &PatientId,
        settings: news2::Settings,
    ) -> Option<AlarmChange> {
        let latest = self.news2_readings(patient);
        let reading = |v| latest.iter().find(|(lv, _)| *lv == v).map(|(_, r)| *r);
        let now = now_ms();
        let spo2 = reading(VitalSign::OxygenSaturation)
            .filter(|r| now - r.time_ms <= settings.max_age_ms)?;
        let inputs = news2::inputs(reading, settings, now);
        let obs = Observation {
            vital: VitalSign::OxygenSaturation,
            value: spo2.value,
            time_ms: spo2.time_ms,
        };
        let score = news2::score_with(obs.vital, obs.value, inputs);
        board.observe_scored(patient, &obs, score)
    }

    /// Re-judges the patient's NEWS2 rules at once after their settings
    /// changed (SpO2 scale, freshness): the SpO2 red rule on the latest
    /// SpO2 and the aggregate, as of the newest reading it counts.
    /// Takes `settings` rather than the rules' lock, which is never taken
    /// while the board's is held.
    pub(crate) fn rejudge_news2(
        &self,
        board: &mut AlarmBoard,
        patient: &PatientId,
        settings: news2::Settings,
    ) -> Vec<AlarmChange> {
        let mut changes: Vec<_> = self
            .rejudge_spo2(board, patient, settings)
            .into_iter()
            .collect();
        let (aggregate, _) = self.news2_on_scale(patient, settings);
        if let Some(a) = &aggregate {
            let newest = a
                .components
                .iter()
                .map(|c| c.time_ms)
                .max()
                .unwrap_or_else(now_ms);
            changes.extend(board.observe_news2(patient, Some(a), newest));
        }
        changes
    }

    /// A device connected or went away (an MQTT connection opened or closed).
    /// Going away without saying goodbye (`graceful` false: a crash, a lost
    /// network, an expired keep-alive) raises a device-offline alarm for
    /// its patient, resolved when it reconnects.
    pub fn device_status(&self, device: &DeviceId, online: bool, graceful: bool, reason: &str) {
        {
            let mut activity = self.activity.lock().expect("activity lock");
            let a = activity
                .entry(device.clone())
                .or_insert_with(DeviceActivity::new);
            a.online = Some(online);
            a.last_seen_ms = now_ms();
        }
        if !online {
            tracing::info!(%device, reason, "device went off line");
        }
        if let Some(patient) = self.registry.device(device).and_then(|d| d.patient_id)
            && (online || !graceful)
        {
            let mut board = self.alarms.lock().expect("alarm board lock");
            if let Some(change) = board.device_status(&patient, device, online, reason, now_ms()) {
                self.record_and_publish(&board, vec![change]);
            }
        }
        let _ = self.live.send(LiveEvent::DeviceStatus {
            device_id: device.clone(),
            online,
            reason: reason.to_string(),
        });
    }

    pub fn device_activity(&self) -> HashMap<DeviceId, DeviceActivity> {
        self.activity.lock().expect("activity lock").clone()
    }

    /// A stream of the alarm changes recorded from now on, each with its
    /// number in the alarm log.
    pub fn subscribe_alarms(&self) -> AlarmSubscription {
        // Under the board's lock, where changes are numbered (and the rules'
        // ones published): a change numbered after `after` is published
        // after the subscription begins, so it is in the stream.
        let _board = self.alarms.lock().expect("alarm board lock");
        AlarmSubscription {
            after: self.alarm_log.last_seq(),
            events: self.alarm_events.subscribe(),
        }
    }

    /// Sends an alarm change to the live stream, and to the alarm stream if
    /// the alarm log numbered it (`seq`): that stream carries every numbered
    /// change, so a sink can tell from the numbers what it missed.
    pub(crate) fn publish_alarm(&self, change: AlarmChange, seq: Option<u64>) {
        let event = LiveEvent::alarm(change, seq);
        if seq.is_some() {
            let _ = self.alarm_events.send(event.clone());
        }
        let _ = self.live.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{Patient, VitalSign};

    fn pipeline(dir: &std::path::Path) -> Pipeline {
        let store = Store::open(dir).unwrap();
        let registry = Arc::new(Registry::open(dir).unwrap());
        let (log, recorded) = AlarmLog::open(dir).unwrap();
        Pipeline::new(store, registry, Arc::new(Metrics::default()), log, recorded)
    }

    /// A pipeline with the default rules config, its settings kept in
    /// `dir`, but no clear delay: these tests judge one reading at a time.
    fn ruled_pipeline(dir: &std::path::Path) -> Pipeline {
        let config = RulesConfig {
            clear_after_s: 0,
            ..RulesConfig::default()
        };
        pipeline(dir).with_rules(&config, dir).unwrap()
    }

    /// Admits `patient` and assigns `device` to them.
    fn admit(p: &Pipeline, patient: &PatientId, device: &DeviceId) {
        p.registry
            .upsert_patient(Patient {
                id: patient.clone(),
                name: "A".into(),
                ward: String::new(),
                bed: String::new(),
            })
            .unwrap();
        p.registry
            .assign_device(device.clone(), Some(patient.clone()))
            .unwrap();
    }

    #[tokio::test]
    async fn assigned_device_samples_go_to_the_patient_and_raise_alarms() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("mon-1").unwrap();
        admit(&p, &patient, &device);
        let mut live = p.subscribe();

        let report = p
            .ingest_senml_json(
                SourceKind::Mqtt,
                &device,
                br#"[{"n":"heart_rate","u":"/min","v":135}]"#,
            )
            .await
            .unwrap();
        assert_eq!(report.accepted, 1);
        assert_eq!(p.store.latest("p1")[0].0, VitalSign::HeartRate);
        assert!(matches!(
            live.recv().await.unwrap(),
            LiveEvent::Observations { .. }
        ));
        assert!(matches!(
            live.recv().await.unwrap(),
            LiveEvent::Alarm { .. }
        ));
        assert_eq!(p.active_alarms_for(&patient).len(), 1);
    }

    #[tokio::test]
    async fn stale_data_on_the_timer_and_settings_saved_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("hub-1").unwrap();
        admit(&p, &patient, &device);
        let settings: medmesh_rules::AlarmSettings =
            serde_json::from_str(r#"{"profile": "home-copd", "spo2_scale": 2}"#).unwrap();
        p.set_alarm_settings(&patient, Some(settings.clone()))
            .unwrap();
        // home-copd expects a reading a day.
        let now = now_ms();
        assert_eq!(p.check_stale(now + 3_600_000), 0);
        assert_eq!(p.check_stale(now + 25 * 3_600_000), 1);
        assert_eq!(p.check_stale(now + 26 * 3_600_000), 0, "raised once");
        assert_eq!(p.active_alarms_for(&patient)[0].rule, "stale-data");
        p.ingest_senml_json(
            SourceKind::Http,
            &device,
            br#"[{"n":"spo2","u":"%","v":90}]"#,
        )
        .await
        .unwrap();
        assert!(p.active_alarms_for(&patient).is_empty());
        drop(p);
        let p = ruled_pipeline(dir.path());
        assert_eq!(p.alarm_settings(&patient).0, Some(settings));
    }

    #[tokio::test]
    async fn an_escalation_clock_at_level_0_survives_a_restart() {
        use medmesh_model::Priority;
        use medmesh_rules::escalation::{Policy, Step};
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("mon-1").unwrap();
        admit(&p, &patient, &device);
        let step = |after_ms| Step {
            after_ms,
            roles: vec!["nurse".into()],
            users: vec![],
        };
        let policy = Policy {
            ladders: [(Priority::Medium, vec![step(0), step(60_000)])].into(),
        };
        // Pulse 135 scores 3 (RCP NEWS2 2017 Chart 1, pulse >= 131): a
        // single red parameter, medium (Chart 2: low-medium risk).
        p.ingest_senml_json(
            SourceKind::Http,
            &device,
            br#"[{"n":"heart_rate","u":"/min","v":135}]"#,
        )
        .await
        .unwrap();
        // The timer first sees the alarm at t0: its clock starts there.
        let t0 = 5_000_000;
        assert_eq!(p.escalate_due(&policy, t0), 0);
        drop(p);
        let p = pipeline(dir.path());
        // After the restart the first climb still comes 60 s after t0.
        assert_eq!(p.escalate_due(&policy, t0 + 59_999), 0);
        assert_eq!(p.escalate_due(&policy, t0 + 60_000), 1);
        assert_eq!(p.active_alarms_for(&patient)[0].escalation_level, 1);
    }

    #[tokio::test]
    async fn a_patient_silent_across_a_restart_is_flagged_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("hub-1").unwrap();
        admit(&p, &patient, &device);
        let settings = serde_json::from_str(r#"{"profile": "home-copd"}"#).unwrap();
        p.set_alarm_settings(&patient, Some(settings)).unwrap();
        // The last reading (HL7, naming its patient) was taken 23 h ago.
        let taken_s = (now_ms() - 23 * 3_600_000) / 1000;
        let pack = format!(r#"[{{"n":"spo2","u":"%","v":96,"t":{taken_s}}}]"#);
        let decoded = senml::decode_json(pack.as_bytes(), now_ms()).unwrap();
        p.ingest_for_patient(SourceKind::Hl7, &device, &patient, decoded)
            .await
            .unwrap();
        drop(p);
        let p = ruled_pipeline(dir.path());
        let now = now_ms();
        assert_eq!(p.check_stale(now), 0, "23 h silent: home-copd allows 24");
        // Counted from start this would wait until a day after the restart.
        assert_eq!(p.check_stale(now + 2 * 3_600_000), 1);
        let alarm = &p.active_alarms_for(&patient)[0];
        assert_eq!(alarm.rule, "stale-data");
        assert!(
            alarm.message.starts_with("No reading for 1 days 1 h"),
            "{}",
            alarm.message
        );
    }

    /// RCP NEWS2 2017 Chart 1, SpO2 scale 2 rows ">=93 on air" (0) and
    /// ">=97 on oxygen" (3), and scale 1 row "<=91" (3): an oxygen flow
    /// reading or a new scale re-judges the latest SpO2 at once.
    #[tokio::test]
    async fn chart_1_spo2_scale_2_rows_rejudged_when_oxygen_or_scale_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("hub-1").unwrap();
        admit(&p, &patient, &device);
        let send =
            |pack: &'static str| p.ingest_senml_json(SourceKind::Http, &device, pack.as_bytes());
        let red = |p: &Pipeline| {
            p.active_alarms_for(&patient)
                .into_iter()
                .filter(|a| a.rule == medmesh_rules::RULE_NEWS2_RED)
                .collect::<Vec<_>>()
        };
        let scale = |n: u8| {
            let s = format!(r#"{{"spo2_scale": {n}}}"#);
            Some(serde_json::from_str::<medmesh_rules::AlarmSettings>(&s).unwrap())
        };
        p.set_alarm_settings(&patient, scale(2)).unwrap();
        // Scale 2, on air: SpO2 97 scores 0.
        send(r#"[{"n":"spo2","u":"%","v":97}]"#).await.unwrap();
        assert!(red(&p).is_empty());
        // Oxygen started: the same SpO2 now scores 3 (>=97 on oxygen).
        send(r#"[{"n":"oxygen_flow","u":"L/min","v":2}]"#)
            .await
            .unwrap();
        let alarms = red(&p);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].vital, Some(VitalSign::OxygenSaturation));
        assert_eq!(alarms[0].priority, medmesh_model::Priority::Medium);
        // Oxygen stopped: 0 again, resolved without a new SpO2.
        send(r#"[{"n":"oxygen_flow","u":"L/min","v":0}]"#)
            .await
            .unwrap();
        assert!(red(&p).is_empty());
        // Scale 1: SpO2 88 scores 3 (<=91)...
        p.set_alarm_settings(&patient, scale(1)).unwrap();
        send(r#"[{"n":"spo2","u":"%","v":88}]"#).await.unwrap();
        assert_eq!(red(&p).len(), 1);
        // ...and on scale 2 (88-92 on air) 0: resolved when the scale is set.
        p.set_alarm_settings(&patient, scale(2)).unwrap();
        assert!(red(&p).is_empty());
        // Back on scale 1 it is raised again at once.
        p.set_alarm_settings(&patient, scale(1)).unwrap();
        assert_eq!(red(&p).len(), 1);
    }

    /// RCP NEWS2 2017 Chart 2 on a partial set: respiration 26 (3), SpO2 92
    /// (2), systolic 95 (2) and pulse 95 (1) are at least 8 without a
    /// temperature; a 6-hour-old systolic counts for nothing.
    #[tokio::test]
    async fn chart_2_partial_and_stale_sets() {
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("mon-1").unwrap();
        admit(&p, &patient, &device);
        let mut live = p.subscribe();
        p.ingest_senml_json(
            SourceKind::Http,
            &device,
            br#"[{"n":"respiratory_rate","u":"/min","v":26},{"n":"spo2","u":"%","v":92},
                 {"n":"systolic_bp","u":"mm[Hg]","v":95},{"n":"heart_rate","u":"/min","v":95}]"#,
        )
        .await
        .unwrap();
        let LiveEvent::Observations { news2: Some(a), .. } = live.recv().await.unwrap() else {
            panic!("observations with NEWS2 first");
        };
        assert_eq!((a.score, a.complete), (8, false));
        assert_eq!(a.missing, vec![VitalSign::BodyTemperature]);
        assert_eq!(a.components.len(), 4);
        let aggregate = p
            .active_alarms_for(&patient)
            .into_iter()
            .find(|x| x.rule == medmesh_rules::RULE_NEWS2_AGGREGATE)
            .expect("aggregate alarm on the lower bound");
        assert_eq!(aggregate.priority, medmesh_model::Priority::High);
        assert!(
            aggregate
                .message
                .starts_with("NEWS2 at least 8 (Body temperature missing"),
            "{}",
            aggregate.message
        );

        // Another patient whose systolic of 85 (3) is 6 hours old.
        let (q, cuff) = (
            PatientId::new("p2").unwrap(),
            DeviceId::new("cuff-2").unwrap(),
        );
        admit(&p, &q, &cuff);
        let six_h_ago = (now_ms() - 6 * 3_600_000) / 1000;
        let old = format!(r#"[{{"n":"systolic_bp","u":"mm[Hg]","v":85,"t":{six_h_ago}}}]"#);
        p.ingest_senml_json(SourceKind::Http, &cuff, old.as_bytes())
            .await
            .unwrap();
        p.ingest_senml_json(
            SourceKind::Http,
            &cuff,
            br#"[{"n":"respiratory_rate","u":"/min","v":16},{"n":"spo2","u":"%","v":97},
                 {"n":"heart_rate","u":"/min","v":70},{"n":"body_temperature","u":"Cel","v":37}]"#,
        )
        .await
        .unwrap();
        let a = p.news2(&q).unwrap();
        assert_eq!((a.score, a.score_max, a.complete), (0, 3, false));
        assert_eq!(a.stale, vec![VitalSign::SystolicBloodPressure]);
    }

    /// RCP NEWS2 2017 Chart 1 "Consciousness" row: responds to voice (V)
    /// scores 3, sent over SenML as a letter; counted in the aggregate.
    #[tokio::test]
    async fn chart_1_consciousness_row_over_senml() {
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        let device = DeviceId::new("tablet-1").unwrap();
        admit(&p, &patient, &device);
        p.ingest_senml_json(
            SourceKind::Http,
            &device,
            br#"[{"n":"heart_rate","u":"/min","v":70},{"n":"consciousness","vs":"V"}]"#,
        )
        .await
        .unwrap();
        let alarms = p.active_alarms_for(&patient);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].vital, Some(VitalSign::Consciousness));
        assert_eq!(
            alarms[0].message,
            "Consciousness (ACVPU) V scores 3 on NEWS2: urgent ward-based response"
        );
        let a = p.news2(&patient).unwrap();
        assert_eq!((a.score, a.assumed_alert), (3, false));
    }

    /// A set charted by hand, as the API builds it.
    fn chart(values: &[(VitalSign, f64)], time_ms: TimestampMs) -> Decoded {
        let mut d = Decoded::default();
        for (i, (v, value)) in values.iter().enumerate() {
            d.accept(
                i,
                Observation::measured(*v, *value, v.ucum(), time_ms).unwrap(),
            );
        }
        d
    }

    /// RCP NEWS2 Chart 4, row "total 1-4: minimum 4-6 hourly": a set
    /// scoring 2 charted 5 h ago is overdue; a complete set charted now
    /// resolves it at once; 4 h later the timer raises it again.
    #[tokio::test]
    async fn charted_sets_drive_observations_due() {
        use VitalSign::*;
        let dir = tempfile::tempdir().unwrap();
        let p = ruled_pipeline(dir.path());
        let patient = PatientId::new("p1").unwrap();
        admit(&p, &patient, &DeviceId::new("mon-1").unwrap());
        let settings = serde_json::from_str(r#"{"profile": "adult-ward"}"#).unwrap();
        p.set_alarm_settings(&patient, Some(settings)).unwrap();
        let mut live = p.subscribe();
        // Pulse 95 (1) and temperature 38.5 (1): NEWS2 2, 4-hourly.
        let set = [
            (RespiratoryRate, 16.0),
            (OxygenSaturation, 97.0),
            (SystolicBloodPressure, 120.0),
            (HeartRate, 95.0),
            (BodyTemperature, 38.5),
            (Consciousness, 0.0),
        ];
        let (report, news2) = p
            .record_chart(&patient, "nurse.ana", chart(&set, now_ms() - 5 * 3_600_000))
            .await
            .unwrap();
        assert_eq!(report.accepted, 6);
        assert!(news2.is_none(), "5 h old: nothing fresh counts");
        let LiveEvent::Observations {
            device_id,
            charted_by,
            ..
        } = live.recv().await.unwrap()
        else {
            panic!("observations first");
        };
        assert_eq!(
            (device_id, charted_by.as_deref()),
            (None, Some("nurse.ana"))
        );
        let due = |p: &Pipeline| {
            p.active_alarms_for(&patient)
                .into_iter()
                .filter(|a| a.rule == medmesh_rules::RULE_OBSERVATIONS_DUE)
                .collect::<Vec<_>>()
        };
        let alarms = due(&p);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert_eq!(alarms[0].priority, medmesh_model::Priority::Low);
        assert!(
            alarms[0].message.starts_with("Observations overdue: NEWS2 2 (RCP NEWS2 Chart 4: a complete set at least every 4 h)"),
            "{}",
            alarms[0].message
        );
        assert_eq!(p.check_observations_due(now_ms()), 0, "raised once");
        // A complete set now resolves it, and scores.
        let (_, news2) = p
            .record_chart(&patient, "nurse.ana", chart(&set, now_ms()))
            .await
            .unwrap();
        let news2 = news2.unwrap();
        assert_eq!((news2.score, news2.complete), (2, true));
        assert!(due(&p).is_empty());
        let now = now_ms();
        assert_eq!(p.check_observations_due(now + 3 * 3_600_000), 0);
        assert_eq!(p.check_observations_due(now + 4 * 3_600_000 + 1_000), 1);
        // A set dated in the future is refused like a device's reading.
        let (report, _) = p
            .record_chart(&patient, "nurse.ana", chart(&set, now_ms() + 3_600_000))
            .await
            .unwrap();
        assert_eq!((report.accepted, report.rejected.len()), (0, 6));
        assert!(
            report.rejected[0]
                .reason
                .contains("check the time the observations were taken"),
            "{:?}",
            report.rejected
        );
        assert_eq!(p.metrics.future_dated_count(SourceKind::Chart), 6);
    }

    #[tokio::test]
    async fn battery_levels_are_kept_when_their_whole_percent_changes() {
        let dir = tempfile::tempdir().unwrap();
        let device = DeviceId::new("watch-1").unwrap();
        let p = pipeline(dir.path()).with_battery_log(dir.path()).unwrap();
        let mut live = p.subscribe();
        for v in [80.2, 79.4, 79.1] {
            let pack = format!(r#"[{{"n":"battery","u":"%EL","v":{v}}}]"#);
            p.ingest_senml_json(SourceKind::Http, &device, pack.as_bytes())
                .await
                .unwrap();
        }
        // Every report is live...
        for v in [80.2, 79.4, 79.1] {
            assert!(matches!(
                live.recv().await.unwrap(),
                LiveEvent::DeviceBattery { percent, .. } if percent == v
            ));
        }
        assert_eq!(p.device_batteries()[&device].percent, 79.1);
        drop(p);
        // ...80.2 (80 %) and 79.4 (79 %) were recorded, 79.1 (79 % again) not.
        let p = pipeline(dir.path()).with_battery_log(dir.path()).unwrap();
        assert_eq!(p.device_batteries()[&device].percent, 79.4);
    }

    #[tokio::test]
    async fn unassigned_device_samples_are_kept_under_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let device = DeviceId::new("stray").unwrap();
        p.ingest_senml_json(
            SourceKind::Http,
            &device,
            br#"[{"n":"spo2","u":"%","v":97}]"#,
        )
        .await
        .unwrap();
        assert_eq!(p.store.latest("device:stray").len(), 1);
        assert_eq!(p.device_activity()[&device].messages, 1);
    }

    #[tokio::test]
    async fn malformed_messages_are_counted_and_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path());
        let device = DeviceId::new("d").unwrap();
        let err = p
            .ingest_senml_json(SourceKind::Mqtt, &device, b"{oops")
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Malformed(_)));
        assert_eq!(p.metrics.malformed_count(SourceKind::Mqtt), 1);
        assert_eq!(p.store.stats().samples, 0);
    }
}
