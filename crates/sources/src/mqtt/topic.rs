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

/// The prefix of every topic `device` owns.
fn own_prefix(device: &DeviceId) -> String {
    format!("{DEVICE_TOPIC_PREFIX}{device}/")
}

/// Where alarm changes are published, one topic per patient.
pub const ALARM_TOPIC_PREFIX: &str = "medmesh/v1/alarms/";

/// Whether a device or anonymous client may subscribe to `filter`. A device
/// that proved who it is listens only under its own
/// `medmesh/v1/devices/{id}/` topics. An anonymous client (allowed in demos
/// only) gets its client ID's device topics too and anything outside
/// `medmesh/`; no wildcard of its reaches another device's topics. Neither
/// ever reaches the alarms: those are for accounts signed in with an
/// alarm-feed token ([`may_subscribe_alarm_feed`]), which see only their
/// patients' alarms.
pub(crate) fn may_subscribe(
    authenticated: bool,
    own: Option<&DeviceId>,
    filter: &str,
) -> Result<(), String> {
    if own.is_some_and(|d| filter.starts_with(&own_prefix(d))) {
        return Ok(());
    }
    if let (true, Some(d)) = (authenticated, own) {
        return Err(format!(
            "device {d} may subscribe only under {}",
            own_prefix(d)
        ));
    }
    if !reaches_medmesh(filter) {
        Ok(())
    } else if filter.starts_with(ALARM_TOPIC_PREFIX) {
        Err(format!(
            "{filter:?}: the alarm feed needs an account's alarm-feed token (user name: the \
             account, password: the token)"
        ))
    } else {
        Err(format!(
            "an anonymous client may not subscribe to {filter:?}: it reaches other devices' topics"
        ))
    }
}

/// Whether an account signed in to the alarm feed may subscribe to
/// `filter`: `medmesh/v1/alarms/{patient}`, `medmesh/v1/alarms/+`, or
/// another filter under `medmesh/v1/alarms/` without `#`. Nothing else: an
/// account is no device and reads no device's topics. Which alarms reach it
/// is decided per message, not by the filter.
pub(crate) fn may_subscribe_alarm_feed(filter: &str) -> Result<(), String> {
    match filter.strip_prefix(ALARM_TOPIC_PREFIX) {
        Some(rest) if !rest.is_empty() && !rest.contains('#') => Ok(()),
        _ => Err(format!(
            "an alarm-feed account may subscribe only to {ALARM_TOPIC_PREFIX}{{patient_id}} or \
             {ALARM_TOPIC_PREFIX}+, not {filter:?}"
        )),
    }
}

/// Whether a client may leave its last will on `topic`: a device only on
/// its own topics, an anonymous client only on its client ID's device topics
/// or outside `medmesh/`. Otherwise a will could forge another device's
/// command or an alarm change.
pub(crate) fn may_will(
    authenticated: bool,
    own: Option<&DeviceId>,
    topic: &str,
) -> Result<(), String> {
    if own.is_some_and(|d| topic.starts_with(&own_prefix(d))) {
        return Ok(());
    }
    match own {
        Some(d) if authenticated => Err(format!(
            "device {d} may set a will only under {}",
            own_prefix(d)
        )),
        _ if reaches_medmesh(topic) => Err(format!(
            "a will on {topic:?} would speak for medmesh or another device"
        )),
        _ => Ok(()),
    }
}

/// Whether `filter` can match a topic under `medmesh/`.
fn reaches_medmesh(filter: &str) -> bool {
    matches!(filter.split('/').next(), Some("medmesh" | "+" | "#"))
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

    #[test]
    fn subscriptions_and_wills_stay_within_the_clients_own_topics() {
        let a = DeviceId::new("dev-a").unwrap();
        // A device that proved itself: its own topics only.
        assert!(may_subscribe(true, Some(&a), "medmesh/v1/devices/dev-a/#").is_ok());
        assert!(may_subscribe(true, Some(&a), "medmesh/v1/devices/dev-b/commands").is_err());
        assert!(may_subscribe(true, Some(&a), "medmesh/v1/devices/dev-a+/#").is_err());
        assert!(may_subscribe(true, Some(&a), "#").is_err());
        assert!(may_subscribe(true, Some(&a), "medmesh/v1/alarms/p1").is_err());
        assert!(may_will(true, Some(&a), "medmesh/v1/devices/dev-a/status").is_ok());
        assert!(may_will(true, Some(&a), "medmesh/v1/devices/dev-b/commands").is_err());
        assert!(may_will(true, Some(&a), "elsewhere").is_err());
        // Anonymous: no wildcard into medmesh, no other device, no alarms but one by name.
        for f in [
            "#",
            "+/v1/#",
            "medmesh/#",
            "medmesh/v1/alarms/#",
            "medmesh/v1/alarms/+",
            "medmesh/v1/devices/dev-b/commands",
            "medmesh/v1/devices/+/commands",
        ] {
            assert!(may_subscribe(false, Some(&a), f).is_err(), "{f}");
            assert!(may_subscribe(false, None, f).is_err(), "{f}");
        }
        assert!(may_subscribe(false, Some(&a), "medmesh/v1/devices/dev-a/commands").is_ok());
        // Not even one patient's alarms by name: that is for accounts.
        let why = may_subscribe(false, None, "medmesh/v1/alarms/p1").unwrap_err();
        assert!(why.contains("alarm-feed token"), "{why}");
        assert!(may_subscribe(false, None, "lab/#").is_ok());
        assert!(may_will(false, Some(&a), "medmesh/v1/devices/dev-a/status").is_ok());
        assert!(may_will(false, Some(&a), "medmesh/v1/devices/dev-b/commands").is_err());
        assert!(may_will(false, None, "medmesh/v1/alarms/p1").is_err());
        assert!(may_will(false, None, "lab/gone").is_ok());
    }

    #[test]
    fn an_alarm_feed_account_subscribes_under_the_alarms_only_without_hash() {
        for ok in [
            "medmesh/v1/alarms/p1",
            "medmesh/v1/alarms/+",
            "medmesh/v1/alarms/+/x",
        ] {
            assert!(may_subscribe_alarm_feed(ok).is_ok(), "{ok}");
        }
        for refused in [
            "#",
            "+/v1/alarms/+",
            "medmesh/#",
            "medmesh/+/alarms/p1",
            "medmesh/v1/alarms/#",
            "medmesh/v1/alarms/",
            "medmesh/v1/alarms",
            "medmesh/v1/devices/dev-a/commands",
            "lab/#",
        ] {
            assert!(may_subscribe_alarm_feed(refused).is_err(), "{refused}");
        }
    }
}
