//! Checking a device's token, shared by every source that authenticates
//! devices (MQTT CONNECT, CoAP `?token=`, HTTP `Authorization`).

use crate::Pipeline;
use medmesh_model::DeviceId;

impl Pipeline {
    /// Whether `token` is the one issued to `device`. argon2 is slow on
    /// purpose, so the check runs off the async workers.
    pub async fn verify_device_token(&self, device: &DeviceId, token: String) -> bool {
        let (registry, device) = (self.registry.clone(), device.clone());
        tokio::task::spawn_blocking(move || registry.verify_credential(&device, &token))
            .await
            .unwrap_or(false)
    }
}
