//! The bench workload: pre-built SenML messages, so that building them costs
//! no time during the measurement.

use medmesh_simulator::demo_ward;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::fmt::Write;

pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

pub struct Workload {
    pub messages: std::sync::Arc<Vec<Message>>,
    pub samples: u64,
    pub payload_bytes: u64,
}

/// Start of the simulated time: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

pub fn build(devices: usize, seconds: usize, batch_seconds: usize) -> Workload {
    // Plain bedside monitors (`demo_ward`, not the demo's
    // `clinical_demo_ward`): the six vital signs only, no battery, oxygen or
    // fall records, so results stay comparable across versions.
    let mut ward = demo_ward(devices, 7);
    let mut rng = SmallRng::seed_from_u64(11);
    // Readings per device: [second][vital].
    let mut per_device: Vec<Vec<[(medmesh_model::VitalSign, f64); 6]>> =
        Vec::with_capacity(devices);
    for p in &mut ward {
        per_device.push(
            (0..seconds)
                .map(|s| p.physiology.sample(START_MS + s as i64 * 1000, &mut rng))
                .collect(),
        );
    }
    let mut messages = Vec::new();
    let mut samples = 0;
    let mut payload_bytes = 0;
    // Batch by batch, every device in turn: the order a live fleet produces.
    for first in (0..seconds).step_by(batch_seconds) {
        let last = (first + batch_seconds).min(seconds);
        for (d, p) in ward.iter().enumerate() {
            let mut s = String::with_capacity(64 * (last - first) * 6);
            let bt = (START_MS + first as i64 * 1000) / 1000;
            s.push('[');
            let readings = &per_device[d][first..last];
            for v in 0..6 {
                for (offset, second) in readings.iter().enumerate() {
                    let (vital, value) = second[v];
                    if s.len() > 1 {
                        s.push(',');
                    }
                    s.push('{');
                    if v == 0 && offset == 0 {
                        let _ = write!(s, "\"bn\":\"urn:dev:medmesh:{}:\",\"bt\":{bt},", p.device);
                    }
                    if offset == 0 {
                        let _ = write!(s, "\"bu\":\"{}\",", vital.ucum());
                    }
                    let _ = write!(
                        s,
                        "\"n\":\"{}\",\"t\":{offset},\"v\":{value}}}",
                        vital.key()
                    );
                    samples += 1;
                }
            }
            s.push(']');
            payload_bytes += s.len() as u64;
            messages.push(Message {
                topic: medmesh_sources::mqtt::device_topic(p.device.as_str()),
                payload: s.into_bytes(),
            });
        }
    }
    Workload {
        messages: std::sync::Arc::new(messages),
        samples,
        payload_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_to_the_announced_samples_at_1_hz() {
        let w = build(3, 20, 10);
        assert_eq!(w.messages.len(), 6);
        assert_eq!(w.samples, 3 * 20 * 6);
        let d = medmesh_codecs::senml::decode_json(&w.messages[0].payload, 0).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.observations.len(), 60);
        assert_eq!(d.observations[1].time_ms - d.observations[0].time_ms, 1000);
        assert_eq!(d.observations[0].time_ms, START_MS);
    }

    #[test]
    fn the_workload_is_the_six_monitored_vital_signs_and_nothing_else() {
        let w = build(30, 20, 10);
        for m in w.messages.iter() {
            let d = medmesh_codecs::senml::decode_json(&m.payload, 0).unwrap();
            assert!(d.device.is_empty(), "no battery or fall reports");
            assert!(
                d.observations
                    .iter()
                    .all(|o| o.vital != medmesh_model::VitalSign::OxygenFlow)
            );
            assert_eq!(d.observations.len(), 10 * 6);
        }
    }
}
