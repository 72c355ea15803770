//! A simulated ward: patients, their beds and their monitors.

use crate::Protocol;
use crate::physiology::{MONITORED, Physiology, Trajectory};
use crate::reports::{Battery, FallDetector};
use medmesh_model::{DeviceId, Patient, PatientId, TimestampMs, VitalSign};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

const GIVEN: &[&str] = &[
    "Amara", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonah", "Kiri",
    "Liam", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tess", "Umar", "Vera",
    "Wen", "Yusuf", "Zoe",
];
const FAMILY: &[&str] = &[
    "Abbott",
    "Brennan",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Gallagher",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quigley",
    "Rossi",
    "Santos",
    "Tanaka",
];

/// What a demo patient's devices send besides the monitor's vital signs,
/// and the alarm settings the demo gives the patient. Empty for the plain
/// monitors of [`demo_ward`].
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Reported as SenML `battery` (`%EL`) once a minute.
    pub battery: Option<Battery>,
    /// Inhaled oxygen flow (L/min), sent with every pack as `oxygen_flow`
    /// (LOINC 3151-8).
    pub oxygen_l_min: Option<f64>,
    /// A wearable's fall detector: SenML `{"n": "fall", "vb": true}`.
    pub wearable: Option<FallDetector>,
    /// Body of `PUT /api/v1/patients/{id}/alarm-settings`.
    pub alarm_settings: Option<Value>,
    /// Blood pressure by cuff (NIBP) on this cycle rather than with every
    /// pack, as a ward monitor takes it; `None`: with every pack.
    pub nibp: Option<Cycle>,
    /// Temperature on this cycle (a nurse's or a monitor's spot check);
    /// `None`: with every pack.
    pub temperature: Option<Cycle>,
}

/// A measurement taken every so often rather than continuously: due at the
/// first pack, then `every_ms` after the last one.
#[derive(Debug, Clone)]
pub struct Cycle {
    every_ms: TimestampMs,
    next_ms: Option<TimestampMs>,
}

impl Cycle {
    pub fn every_minutes(minutes: i64) -> Cycle {
        Cycle {
            every_ms: minutes * 60_000,
            next_ms: None,
        }
    }

    fn due(&mut self, now_ms: TimestampMs) -> bool {
        let next = self.next_ms.get_or_insert(now_ms);
        if now_ms < *next {
            return false;
        }
        *next = now_ms + self.every_ms;
        true
    }
}

/// One simulated patient with the monitor assigned to them.
#[derive(Debug, Clone)]
pub struct SimPatient {
    pub patient: Patient,
    pub device: DeviceId,
    pub physiology: Physiology,
    pub extras: Extras,
    /// Samples (vital signs and oxygen flow) in the last message built.
    samples: usize,
}

impl SimPatient {
    /// The monitor's next SenML JSON pack: one record per monitored vital
    /// sign, then the oxygen flow and device reports, if any.
    pub fn next_pack(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> Vec<u8> {
        self.next_message(Protocol::Mqtt, now_ms, rng)
    }

    /// The monitor's next message in the given protocol's payload format:
    /// SenML JSON, or an HL7 v2 ORU^R01 for [`Protocol::Hl7`] (vital signs
    /// and oxygen flow only: an HL7 gateway carries no device reports).
    pub fn next_message(
        &mut self,
        protocol: Protocol,
        now_ms: TimestampMs,
        rng: &mut impl Rng,
    ) -> Vec<u8> {
        let mut readings = self.physiology.sample(now_ms, rng).to_vec();
        let nibp = self.extras.nibp.as_mut().is_none_or(|c| c.due(now_ms));
        let temperature = self
            .extras
            .temperature
            .as_mut()
            .is_none_or(|c| c.due(now_ms));
        readings.retain(|(vital, _)| match vital {
            VitalSign::SystolicBloodPressure | VitalSign::DiastolicBloodPressure => nibp,
            VitalSign::BodyTemperature => temperature,
            _ => true,
        });
        if let Some(flow) = self.extras.oxygen_l_min {
            readings.push((VitalSign::OxygenFlow, flow));
        }
        self.samples = readings.len();
        match protocol {
            Protocol::Hl7 => self.oru(&readings, now_ms).into_bytes(),
            _ => {
                let reports = self.reports(now_ms, rng);
                self.senml(&readings, reports, now_ms)
            }
        }
    }

    /// Samples in the last message built (6, or 7 with oxygen; fewer when
    /// blood pressure or temperature is not due).
    pub fn samples_in_last_message(&self) -> usize {
        self.samples
    }

    /// Battery level and fall records due at `now_ms`.
    fn reports(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(percent) = self.extras.battery.as_mut().and_then(|b| b.due(now_ms)) {
            out.push(json!({"n": "battery", "u": "%EL", "v": percent}));
        }
        if let Some(w) = self.extras.wearable.as_mut()
            && w.fell(now_ms, rng)
        {
            out.push(json!({"n": "fall", "vb": true}));
        }
        out
    }

    fn senml(
        &self,
        readings: &[(VitalSign, f64)],
        reports: Vec<Value>,
        now_ms: TimestampMs,
    ) -> Vec<u8> {
        let mut records = Vec::with_capacity(readings.len() + reports.len());
        for (i, (vital, value)) in readings.iter().enumerate() {
            let mut r = json!({"n": vital.key(), "u": vital.ucum(), "v": value});
            if i == 0 {
                r["bn"] = format!("urn:dev:medmesh:{}:", self.device).into();
                r["bt"] = (now_ms as f64 / 1000.0).into();
            }
            records.push(r);
        }
        records.extend(reports);
        serde_json::to_vec(&records).expect("JSON of numbers and strings")
    }

    /// An ORU^R01 as a bedside-monitor gateway would send it, LOINC-coded.
    fn oru(&self, readings: &[(VitalSign, f64)], now_ms: TimestampMs) -> String {
        let time = medmesh_codecs::hl7v2::format_time(now_ms);
        let (given, family) = self
            .patient
            .name
            .split_once(' ')
            .unwrap_or((&self.patient.name, ""));
        let mut m = format!(
            "MSH|^~\\&|{}|WARD_A|MEDMESH|HOSP|{time}||ORU^R01^ORU_R01|{}-{now_ms}|P|2.5\r\
             PID|||{}^^^HOSP^MR||{family}^{given}\rOBR|1|||VITALS|||{time}",
            self.device, self.device, self.patient.id
        );
        for (i, (vital, value)) in readings.iter().enumerate() {
            m.push_str(&format!(
                "\rOBX|{}|NM|{}^{}^LN||{value}|{}^^UCUM|||||F",
                i + 1,
                vital.loinc(),
                vital.display(),
                vital.ucum()
            ));
        }
        m
    }
}

/// A ward of `n` patients in beds 1..=n on "Ward A"; about one in five
/// has episodes of deterioration, the first of them (bed 3) two minutes after
/// the start so a demo shows one soon, the others' first spread over the
/// first three hours. The same seed gives the same ward.
pub fn demo_ward(n: usize, seed: u64) -> Vec<SimPatient> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (1..=n)
        .map(|bed| {
            let name = format!(
                "{} {}",
                GIVEN[rng.random_range(0..GIVEN.len())],
                FAMILY[rng.random_range(0..FAMILY.len())]
            );
            let trajectory = if bed % 5 == 3 {
                // Worsening to the full picture over 10-20 minutes: alarms
                // follow one another as a nurse would see them, and each
                // crosses its limit once rather than hovering on it.
                Trajectory::Deteriorating {
                    onset_s: if bed == 3 {
                        120.0
                    } else {
                        rng.random_range(900.0..10_800.0)
                    },
                    ramp_s: rng.random_range(600.0..1200.0),
                }
            } else {
                Trajectory::Stable
            };
            SimPatient {
                patient: Patient {
                    id: PatientId::new(format!("ward-a-{bed:03}")).expect("valid id"),
                    name,
                    ward: "Ward A".into(),
                    bed: bed.to_string(),
                },
                device: DeviceId::new(format!("ward-a-bed-{bed:03}")).expect("valid id"),
                physiology: Physiology::new(&mut rng, trajectory),
                extras: Extras::default(),
                samples: MONITORED.len(),
            }
        })
        .collect()
}

/// The demo's ward: [`demo_ward`]'s patients (the same for the same seed),
/// whose devices also report battery (a few nearly flat), some on oxygen,
/// some wearing fall detectors, and some with alarm profiles:
///
/// - every 6th from bed 2 has COPD with hypercapnic respiratory failure and
///   is monitored at home (ward "Home", no bed): SpO2 around 90-92 %, 1-2
///   L/min of oxygen, profile `home-copd` and NEWS2 SpO2 scale 2, a fall
///   detector;
/// - every 6th from bed 5 is on 2-4 L/min of oxygen (NEWS2 scale 1), with
///   a saturation that oxygen keeps at 96-98 %;
/// - the deteriorating ones follow `adult-ward`;
/// - every 4th from bed 1 wears a fall detector; bed 9's battery is under
///   20 % (a battery-low alarm from the start, until it is swapped).
///
/// Falls come about once every 16 hours per wearer (hospital inpatients
/// fall far less often; a demo wants to show one): two dozen patients see
/// one every hour or two.
pub fn clinical_demo_ward(n: usize, seed: u64) -> Vec<SimPatient> {
    const FALL_EVERY_MS: f64 = 16.0 * 3_600_000.0;
    let mut ward = demo_ward(n, seed);
    // A generator of its own, so the patients stay demo_ward's.
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xba77_e2e5);
    for (i, p) in ward.iter_mut().enumerate() {
        let bed = i + 1;
        // A device that sends reports (bed 9's monitor is on MQTT; an HL7
        // gateway's carry none).
        let battery = if bed == 9 {
            Battery::new(rng.random_range(14.0..19.5), rng.random_range(1.0..3.0))
        } else {
            Battery::new(rng.random_range(35.0..100.0), rng.random_range(0.5..2.0))
        };
        // Pulse, respiration, SpO2 and temperature (a probe) are
        // continuous; the monitor's cuff takes blood pressure every 10
        // minutes, so a full set is never older than the 15 minutes RCP
        // NEWS2 Chart 4's continuous monitoring allows here.
        let mut extras = Extras {
            battery: Some(battery),
            nibp: Some(Cycle::every_minutes(10)),
            ..Extras::default()
        };
        if bed % 4 == 1 {
            extras.wearable = Some(FallDetector::new(FALL_EVERY_MS));
        }
        match bed % 6 {
            2 => {
                p.patient.id = PatientId::new(format!("home-{bed:03}")).expect("valid id");
                p.patient.ward = "Home".into();
                p.patient.bed = String::new();
                p.device = DeviceId::new(format!("home-hub-{bed:03}")).expect("valid id");
                p.physiology = p
                    .physiology
                    .clone()
                    .with_spo2_baseline(rng.random_range(90.0..92.0));
                extras.oxygen_l_min = Some(f64::from(rng.random_range(1..=2)));
                extras.wearable = Some(FallDetector::new(FALL_EVERY_MS));
                extras.alarm_settings = Some(json!({"profile": "home-copd", "spo2_scale": 2}));
            }
            5 => {
                extras.oxygen_l_min = Some(f64::from(rng.random_range(2..=4)));
                p.physiology = p
                    .physiology
                    .clone()
                    .with_spo2_baseline(rng.random_range(96.0..98.0))
                    .with_respiration_at_most(16.0);
            }
            _ => {}
        }
        if extras.alarm_settings.is_none()
            && matches!(p.physiology.trajectory(), Trajectory::Deteriorating { .. })
        {
            extras.alarm_settings = Some(json!({"profile": "adult-ward"}));
        }
        p.extras = extras;
    }
    ward
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ward_has_unique_ids_and_some_deteriorating_patients() {
        let ward = demo_ward(24, 1);
        let ids: std::collections::BTreeSet<_> = ward.iter().map(|p| p.device.clone()).collect();
        assert_eq!(ids.len(), 24);
        let deteriorating = ward
            .iter()
            .filter(|p| matches!(p.physiology.trajectory(), Trajectory::Deteriorating { .. }))
            .count();
        assert!(deteriorating >= 4, "{deteriorating}");
    }

    fn records(payload: &[u8]) -> Vec<Value> {
        serde_json::from_slice(payload).unwrap()
    }

    #[test]
    fn plain_monitors_send_the_six_vital_signs_only() {
        let mut rng = SmallRng::seed_from_u64(1);
        for mut p in demo_ward(12, 1) {
            for s in 0..120 {
                let pack = records(&p.next_pack(s * 1000, &mut rng));
                assert_eq!(pack.len(), 6, "{pack:?}");
                assert_eq!(p.samples_in_last_message(), 6);
            }
        }
    }

    #[test]
    fn the_demo_ward_reports_battery_oxygen_and_falls_and_has_profiles() {
        let plain = demo_ward(24, 9);
        let mut ward = clinical_demo_ward(24, 9);
        // The same people, only their extras added.
        assert_eq!(plain[0].patient, ward[0].patient);
        let copd: Vec<_> = ward.iter().filter(|p| p.patient.ward == "Home").collect();
        assert_eq!(copd.len(), 4);
        assert!(copd.iter().all(|p| {
            p.extras.alarm_settings == Some(json!({"profile": "home-copd", "spo2_scale": 2}))
        }));
        let mut rng = SmallRng::seed_from_u64(2);
        let (mut batteries, mut low, mut oxygen, mut falls) = (0, 0, 0, 0);
        // Ten hours at one pack a minute.
        for p in &mut ward {
            for minute in 0..600 {
                let pack = records(&p.next_pack(minute * 60_000, &mut rng));
                for r in &pack {
                    match r["n"].as_str().unwrap() {
                        "battery" => {
                            batteries += 1;
                            let v = r["v"].as_f64().unwrap();
                            assert!((0.0..=100.0).contains(&v), "{r}");
                            low += usize::from(v < 20.0);
                            assert_eq!(r["u"], "%EL");
                        }
                        "oxygen_flow" => {
                            oxygen += 1;
                            assert_eq!(r["u"], "L/min");
                        }
                        "fall" => falls += usize::from(r["vb"] == true),
                        _ => {}
                    }
                }
                let decoded =
                    medmesh_codecs::senml::decode_json(&serde_json::to_vec(&pack).unwrap(), 0)
                        .unwrap();
                assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
                assert_eq!(decoded.observations.len(), p.samples_in_last_message());
            }
        }
        assert_eq!(batteries, 24 * 600, "every device, once a minute");
        assert!(low > 0, "some batteries run low");
        assert_eq!(oxygen, 8 * 600, "4 COPD patients and 4 others on oxygen");
        // 10 wearers for 10 hours at one fall per 16 hours: about 6.
        assert!((1..=16).contains(&falls), "{falls}");
    }
}
