//! The topic scheme devices publish to.
//!
//! - `medmesh/v1/devices/{device_id}/senml`: a SenML JSON pack.
//! - `medmesh/v1/devices/{device_id}/gatt/{characteristic}`: one raw Bluetooth
//!   GATT characteristic value, as a gateway received it (binary payload);
//!   the characteristic is its 16-bit UUID ("2a35") or name
//!   ("blood_pressure_measurement").

use medmesh_model::DeviceId;
use medmesh_pipeline::{GattCharacteristic, Payload};

pub const DEVICE_TOPIC_PREFIX: &str = "medmesh/v1/devices/";

/// The topic a device publishes its SenML JSON to.
pub fn device_topic(device: &str) -> String {
    format!("{DEVICE_TOPIC_PREFIX}{device}/senml")
}

/// The topic medmesh sends a device's commands to (subscribe to receive them).
pub fn command_topic(device: &str) -> String {
    format!("{DEVICE_TOPIC_PREFIX}{device}/commands")
}

/// The topic a gateway forwards a device's GATT characteristic values to.
pub fn gatt_topic(device: &str, characteristic: &str) -> String {
    format!("{DEVICE_TOPIC_PREFIX}{device}/gatt/{characteristic}")
}

/// What a publish carries, by its topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DeviceTopic {
    Senml(DeviceId),
    Gatt(DeviceId, GattCharacteristic),
}

impl DeviceTopic {
    /// The device the topic is for.
    pub(crate) fn device(&self) -> &DeviceId {
        match self {
            DeviceTopic::Senml(d) | DeviceTopic::Gatt(d, _) => d,
        }
    }

    /// A message on this topic, read as the format the topic names.
    pub(crate) fn payload<'a>(&self, bytes: &'a [u8]) -> Payload<'a> {
        match self {
            DeviceTopic::Senml(_) => Payload::SenmlJson(bytes),
            DeviceTopic::Gatt(_, characteristic) => Payload::Gatt(*characteristic, bytes),
        }
    }
}

/// Reads a device topic, or says why the topic is not one.
pub(crate) fn parse_topic(topic: &str) -> Result<DeviceTopic, String> {
    let expected = || {
        format!(
            "topic {topic:?} is neither {DEVICE_TOPIC_PREFIX}{{device_id}}/senml nor \
             {DEVICE_TOPIC_PREFIX}{{device_id}}/gatt/{{characteristic}}"
        )
    };
    let rest = topic
        .strip_prefix(DEVICE_TOPIC_PREFIX)
        .ok_or_else(expected)?;
    let device =
        |id: &str| DeviceId::new(id).map_err(|e| format!("topic {topic:?}: device id: {e}"));
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [id, "senml"] => Ok(DeviceTopic::Senml(device(id)?)),
        [id, "gatt", characteristic] => {
            let c = GattCharacteristic::parse(characteristic).ok_or_else(|| {
                format!(
                    "topic {topic:?}: {characteristic:?} is not a supported GATT characteristic \
                     (2a37 heart rate, 2a35 blood pressure, 2a1c temperature, 2a5e/2a5f pulse \
                     oximetry, 2a18 glucose, 2a9d weight)"
                )
            })?;
            Ok(DeviceTopic::Gatt(device(id)?, c))
        }
        _ => Err(expected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_topics() {
        let bed = DeviceId::new("bed-1").unwrap();
        assert_eq!(
            parse_topic(&device_topic("bed-1")).unwrap(),
            DeviceTopic::Senml(bed.clone())
        );
        assert_eq!(
            parse_topic(&gatt_topic("bed-1", "2A35")).unwrap(),
            DeviceTopic::Gatt(bed, GattCharacteristic::BloodPressureMeasurement)
        );
        assert!(parse_topic("medmesh/v1/devices/bed-1/cbor").is_err());
        assert!(parse_topic("medmesh/v1/devices//senml").is_err());
        assert!(parse_topic("medmesh/v1/devices/a/b/senml").is_err());
        assert!(
            parse_topic("medmesh/v1/devices/a/gatt/2a00")
                .unwrap_err()
                .contains("not a supported")
        );
        assert!(parse_topic("other").is_err());
    }
}
