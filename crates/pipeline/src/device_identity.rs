//! Who a device client is, and for which devices it may send: the one
//! decision every listener (MQTT, CoAP, HTTP, HL7 MLLP) takes, so that no
//! protocol is a side door into another device's patient.
//!
//! A device proves itself with the token issued to it or with a client
//! certificate of the device CA. A client that proves nothing is anonymous:
//! accepted only where anonymous devices are allowed (`medmesh demo`, or
//! `devices.allow_anonymous`), and even then never for a device that has
//! credentials. A device that proved itself sends only as itself.

use crate::{Pipeline, SourceKind};
use medmesh_model::DeviceId;

/// What a client presented to say which device it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Nothing: the client is anonymous.
    Nothing,
    /// A token (MQTT password, HTTP bearer or basic, CoAP `?token=`) for `device`.
    Token { device: DeviceId, token: String },
    /// A verified client certificate of the device CA naming `device`.
    Certificate(DeviceId),
    /// A DTLS session whose handshake proved `device`'s pre-shared key (the
    /// PSK identity is the device id); `key_digest` is the SHA-256 of the
    /// key it proved, so a key replaced or revoked since no longer counts.
    PreSharedKey {
        device: DeviceId,
        key_digest: [u8; 32],
    },
}

/// Who a client is once its proof was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdentity {
    Device(DeviceId),
    Anonymous,
}

impl DeviceIdentity {
    /// The device the client proved it is, if any.
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            DeviceIdentity::Device(d) => Some(d),
            DeviceIdentity::Anonymous => None,
        }
    }
}

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The proof was wrong (unknown device, wrong token): MQTT "bad user
    /// name or password", HTTP and CoAP 401.
    BadCredentials(String),
    /// The client is who it says but may not do this: MQTT "not
    /// authorized", HTTP and CoAP 401 (403 where the sender is known).
    NotAuthorized(String),
}

impl Refusal {
    pub fn reason(&self) -> &str {
        match self {
            Refusal::BadCredentials(r) | Refusal::NotAuthorized(r) => r,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl Pipeline {
    /// Checks what a client presented. A certificate is recorded, so that
    /// from then on the device counts as having credentials.
    pub async fn authenticate_device(
        &self,
        proof: Proof,
        allow_anonymous: bool,
    ) -> Result<DeviceIdentity, Refusal> {
        match proof {
            Proof::Certificate(device) => {
                if let Err(e) = self.registry.mark_certified(&device) {
                    // The device is still who its certificate says; only the
                    // record that protects it on anonymous listeners is missing.
                    tracing::error!(%device, error = %e, "cannot record a certified device");
                }
                Ok(DeviceIdentity::Device(device))
            }
            Proof::Token { device, token } => {
                if self.registry.credential_hash(&device).is_none() {
                    return Err(Refusal::BadCredentials(format!(
                        "device {device} has no token; provision its credentials first"
                    )));
                }
                if self.verify_device_token(&device, token).await {
                    Ok(DeviceIdentity::Device(device))
                } else {
                    Err(Refusal::BadCredentials(format!(
                        "wrong token for device {device}"
                    )))
                }
            }
            Proof::PreSharedKey { device, key_digest } => {
                let current = self
                    .registry
                    .psk(&device)
                    .map(|k| medmesh_storage::credentials::key_digest(k.as_bytes()));
                if current == Some(key_digest) {
                    Ok(DeviceIdentity::Device(device))
                } else {
                    Err(Refusal::BadCredentials(format!(
                        "the pre-shared key of device {device} was replaced or revoked"
                    )))
                }
            }
            Proof::Nothing if allow_anonymous => Ok(DeviceIdentity::Anonymous),
            Proof::Nothing => Err(Refusal::NotAuthorized(
                "anonymous devices are not allowed: send the device's credentials".into(),
            )),
        }
    }

    /// Whether `who` may send readings as (or hold the session of) `device`.
    pub fn authorize_device(&self, who: &DeviceIdentity, device: &DeviceId) -> Result<(), Refusal> {
        match who {
            DeviceIdentity::Device(me) if me == device => Ok(()),
            DeviceIdentity::Device(me) => Err(Refusal::NotAuthorized(format!(
                "device {me} may not send as device {device}"
            ))),
            DeviceIdentity::Anonymous if self.registry.has_credentials(device) => {
                Err(Refusal::NotAuthorized(format!(
                    "device {device} has credentials but sent none (a client without them may not act as it)"
                )))
            }
            DeviceIdentity::Anonymous => Ok(()),
        }
    }

    /// Both checks for one request that names its device (HTTP, CoAP):
    /// refusals are counted and logged for `source`.
    pub async fn admit_device(
        &self,
        source: SourceKind,
        proof: Proof,
        device: &DeviceId,
        allow_anonymous: bool,
    ) -> Result<DeviceIdentity, Refusal> {
        let result = async {
            // Named first: a device with credentials that sent none is the
            // more useful answer than "anonymous devices are off".
            if proof == Proof::Nothing {
                self.authorize_device(&DeviceIdentity::Anonymous, device)?;
            }
            let who = self.authenticate_device(proof, allow_anonymous).await?;
            self.authorize_device(&who, device)?;
            Ok(who)
        }
        .await;
        if let Err(refusal) = &result {
            self.device_refused(source, device, refusal);
        }
        result
    }

    /// Counts and logs a refused device message or connection.
    pub fn device_refused(&self, source: SourceKind, device: &DeviceId, refusal: &Refusal) {
        self.metrics.refused_message(source);
        tracing::warn!(source = source.as_str(), %device, reason = refusal.reason(), "device refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_device_sends_only_as_itself_and_anonymous_never_for_a_credentialed_one() {
        let dir = tempfile::tempdir().unwrap();
        let (log, recorded) = medmesh_storage::AlarmLog::open(dir.path()).unwrap();
        let p = Pipeline::new(
            medmesh_storage::Store::open(dir.path()).unwrap(),
            std::sync::Arc::new(medmesh_storage::Registry::open(dir.path()).unwrap()),
            std::sync::Arc::new(crate::Metrics::default()),
            log,
            recorded,
        );
        let (a, b, c) = (
            DeviceId::new("dev-a").unwrap(),
            DeviceId::new("dev-b").unwrap(),
            DeviceId::new("dev-c").unwrap(),
        );
        let token = p.registry.issue_credential(&a).unwrap();
        let me = p
            .authenticate_device(
                Proof::Token {
                    device: a.clone(),
                    token,
                },
                false,
            )
            .await
            .unwrap();
        assert_eq!(me, DeviceIdentity::Device(a.clone()));
        assert!(p.authorize_device(&me, &a).is_ok());
        assert!(
            p.authorize_device(&me, &b).is_err(),
            "not as another device"
        );
        let wrong = Proof::Token {
            device: a.clone(),
            token: "guess".into(),
        };
        assert!(matches!(
            p.authenticate_device(wrong, true).await,
            Err(Refusal::BadCredentials(_))
        ));
        let anon = p.authenticate_device(Proof::Nothing, true).await.unwrap();
        assert!(p.authorize_device(&anon, &a).is_err(), "token device");
        assert!(p.authorize_device(&anon, &b).is_ok(), "no credentials");
        assert!(p.authenticate_device(Proof::Nothing, false).await.is_err());
        p.authenticate_device(Proof::Certificate(c.clone()), false)
            .await
            .unwrap();
        assert!(p.authorize_device(&anon, &c).is_err(), "certificate device");
        assert!(
            p.admit_device(SourceKind::Http, Proof::Nothing, &a, true)
                .await
                .unwrap_err()
                .reason()
                .contains("has credentials")
        );
        assert_eq!(p.metrics.refused_count(SourceKind::Http), 1);

        let key = p.registry.issue_psk(&b).unwrap();
        let proved = Proof::PreSharedKey {
            device: b.clone(),
            key_digest: medmesh_storage::credentials::key_digest(key.as_bytes()),
        };
        let who = p.authenticate_device(proved.clone(), false).await.unwrap();
        assert_eq!(who, DeviceIdentity::Device(b.clone()));
        assert!(
            p.authorize_device(&who, &a).is_err(),
            "its own resource only"
        );
        assert!(p.authorize_device(&anon, &b).is_err(), "a PSK device");
        p.registry.issue_psk(&b).unwrap();
        assert!(
            p.authenticate_device(proved, false).await.is_err(),
            "a session of a replaced key no longer counts"
        );
    }
}
