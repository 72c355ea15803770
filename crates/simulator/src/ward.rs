//! A simulated ward: patients, their beds and their monitors.

use crate::Protocol;
use crate::physiology::{MONITORED, Physiology, Trajectory};
use medmesh_model::{DeviceId, Patient, PatientId, TimestampMs, VitalSign};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;

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

/// One simulated patient with the monitor assigned to them.
#[derive(Debug, Clone)]
pub struct SimPatient {
    pub patient: Patient,
    pub device: DeviceId,
    pub physiology: Physiology,
}

impl SimPatient {
    /// The monitor's next SenML JSON pack: one record per monitored vital sign.
    pub fn next_pack(&mut self, now_ms: TimestampMs, rng: &mut impl Rng) -> Vec<u8> {
        let readings = self.physiology.sample(now_ms, rng);
        self.senml(&readings, now_ms)
    }

    /// The monitor's next message in the given protocol's payload format:
    /// SenML JSON, or an HL7 v2 ORU^R01 for [`Protocol::Hl7`].
    pub fn next_message(
        &mut self,
        protocol: Protocol,
        now_ms: TimestampMs,
        rng: &mut impl Rng,
    ) -> Vec<u8> {
        let readings = self.physiology.sample(now_ms, rng);
        match protocol {
            Protocol::Hl7 => self.oru(&readings, now_ms).into_bytes(),
            _ => self.senml(&readings, now_ms),
        }
    }

    fn senml(&self, readings: &[(VitalSign, f64)], now_ms: TimestampMs) -> Vec<u8> {
        let mut records = Vec::with_capacity(readings.len());
        for (i, (vital, value)) in readings.iter().enumerate() {
            let mut r = serde_json::json!({"n": vital.key(), "u": vital.ucum(), "v": value});
            if i == 0 {
                r["bn"] = format!("urn:dev:medmesh:{}:", self.device).into();
                r["bt"] = (now_ms as f64 / 1000.0).into();
            }
            records.push(r);
        }
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

    /// Samples in each pack.
    pub const SAMPLES_PER_PACK: usize = MONITORED.len();
}

/// A ward of `n` patients in beds 1..=n on "Ward A"; about one in five
/// deteriorates, starting within the first minutes so a demo shows alarms soon.
/// The same seed gives the same ward.
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
                Trajectory::Deteriorating {
                    onset_s: rng.random_range(10.0..90.0),
                    ramp_s: rng.random_range(120.0..300.0),
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
            }
        })
        .collect()
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
}
