//! The topic scheme devices publish to.

use medmesh_model::DeviceId;

pub const DEVICE_TOPIC_PREFIX: &str = "medmesh/v1/devices/";

/// The topic a device publishes its SenML JSON to.
pub fn device_topic(device: &str) -> String {
    format!("{DEVICE_TOPIC_PREFIX}{device}/senml")
}

/// The device a SenML topic belongs to, or why the topic is not one.
pub(crate) fn parse_senml_topic(topic: &str) -> Result<DeviceId, String> {
    let id = topic
        .strip_prefix(DEVICE_TOPIC_PREFIX)
        .and_then(|rest| rest.strip_suffix("/senml"))
        .ok_or_else(|| {
            format!("topic {topic:?} is not {DEVICE_TOPIC_PREFIX}{{device_id}}/senml")
        })?;
    DeviceId::new(id).map_err(|e| format!("topic {topic:?}: device id: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_topics() {
        assert_eq!(
            parse_senml_topic(&device_topic("bed-1")).unwrap().as_str(),
            "bed-1"
        );
        assert!(parse_senml_topic("medmesh/v1/devices/bed-1/cbor").is_err());
        assert!(parse_senml_topic("medmesh/v1/devices//senml").is_err());
        assert!(parse_senml_topic("medmesh/v1/devices/a/b/senml").is_err());
        assert!(parse_senml_topic("other").is_err());
    }
}
