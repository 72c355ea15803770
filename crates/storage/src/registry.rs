//! The registry of patients and devices, kept in `registry.json`.
//!
//! The registry changes rarely (an admission, a device assignment), so it is
//! simply rewritten whole on every change: written to a temporary file,
//! fsynced, and renamed over the old one, so a crash leaves either the old or
//! the new registry, never a mix.

use medmesh_model::{Device, DeviceId, Patient, PatientId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot save registry: {0}")]
    Save(#[from] std::io::Error),
    #[error("no patient with id {0:?}")]
    UnknownPatient(String),
}

#[derive(Default, Serialize, Deserialize)]
struct Contents {
    patients: BTreeMap<PatientId, Patient>,
    devices: BTreeMap<DeviceId, Device>,
    /// argon2 hashes of device tokens (see `credentials`); never served by the API.
    #[serde(default)]
    credentials: BTreeMap<DeviceId, String>,
    /// Devices that proved themselves with a client certificate of the
    /// device CA: from then on they have credentials, and a client without
    /// that certificate may not send or connect as them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    certified: BTreeSet<DeviceId>,
    /// Pre-shared keys for CoAP over DTLS (RFC 7925), kept as issued: a
    /// DTLS-PSK server needs the key itself, not a hash of it. This is why
    /// `registry.json` is private (0600); never served by the API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    psks: BTreeMap<DeviceId, String>,
}

pub struct Registry {
    path: PathBuf,
    contents: RwLock<Contents>,
    /// SHA-256 of the token each device last proved it holds, so a device
    /// on HTTP or CoAP pays for argon2 once, not on every request. Cleared
    /// when the device's credentials are issued again or revoked.
    verified: Mutex<HashMap<DeviceId, [u8; 32]>>,
}

impl Registry {
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        let path = dir.join("registry.json");
        let contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::default(),
            Err(e) => {
                return Err(RegistryError::Load {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Registry {
            path,
            contents: RwLock::new(contents),
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn patients(&self) -> Vec<Patient> {
        self.contents
            .read()
            .expect("registry lock")
            .patients
            .values()
            .cloned()
            .collect()
    }

    pub fn patient(&self, id: &PatientId) -> Option<Patient> {
        self.contents
            .read()
            .expect("registry lock")
            .patients
            .get(id)
            .cloned()
    }

    pub fn devices(&self) -> Vec<Device> {
        self.contents
            .read()
            .expect("registry lock")
            .devices
            .values()
            .cloned()
            .collect()
    }

    pub fn device(&self, id: &DeviceId) -> Option<Device> {
        self.contents
            .read()
            .expect("registry lock")
            .devices
            .get(id)
            .cloned()
    }

    /// Devices assigned to `patient` now.
    pub fn devices_of(&self, patient: &PatientId) -> Vec<DeviceId> {
        let c = self.contents.read().expect("registry lock");
        c.devices
            .values()
            .filter(|d| d.patient_id.as_ref() == Some(patient))
            .map(|d| d.id.clone())
            .collect()
    }

    /// Adds a patient or updates their details. Returns true if newly added.
    pub fn upsert_patient(&self, patient: Patient) -> Result<bool, RegistryError> {
        let mut c = self.contents.write().expect("registry lock");
        if c.patients.get(&patient.id) == Some(&patient) {
            return Ok(false);
        }
        let added = c.patients.insert(patient.id.clone(), patient).is_none();
        self.save(&c)?;
        Ok(added)
    }

    /// Registers a device (if new) and assigns it to `patient` (or unassigns it).
    pub fn assign_device(
        &self,
        device: DeviceId,
        patient: Option<PatientId>,
    ) -> Result<Device, RegistryError> {
        self.reassign_device(device, patient).map(|(_, d)| d)
    }

    /// [`Registry::assign_device`], also returning the patient the device
    /// measured until now (read under the same lock, so two assignments at
    /// once each see the other's result, never the same "before").
    pub fn reassign_device(
        &self,
        device: DeviceId,
        patient: Option<PatientId>,
    ) -> Result<(Option<PatientId>, Device), RegistryError> {
        let mut c = self.contents.write().expect("registry lock");
        if let Some(p) = patient.as_ref().filter(|p| !c.patients.contains_key(*p)) {
            return Err(RegistryError::UnknownPatient(p.to_string()));
        }
        let mut d = c
            .devices
            .get(&device)
            .cloned()
            .unwrap_or_else(|| Device::new(device.clone()));
        let before = d.patient_id.clone();
        d.assign(patient, medmesh_model::now_ms());
        if c.devices.get(&device) != Some(&d) {
            c.devices.insert(device, d.clone());
            self.save(&c)?;
        }
        Ok((before, d))
    }

    /// Admits many patients, each with their device, in one registry write.
    pub fn admit_all(&self, admissions: Vec<(Patient, DeviceId)>) -> Result<(), RegistryError> {
        let mut c = self.contents.write().expect("registry lock");
        for (patient, device) in admissions {
            let now = medmesh_model::now_ms();
            c.devices
                .entry(device.clone())
                .or_insert_with(|| Device::new(device))
                .assign(Some(patient.id.clone()), now);
            c.patients.insert(patient.id.clone(), patient);
        }
        self.save(&c)?;
        Ok(())
    }

    /// Issues a new token for `device` (registering the device if needed),
    /// replacing any earlier one. Returns the token, which is not kept.
    pub fn issue_credential(&self, device: &DeviceId) -> Result<String, RegistryError> {
        let issued = crate::credentials::issue();
        let mut c = self.contents.write().expect("registry lock");
        c.devices
            .entry(device.clone())
            .or_insert_with(|| Device::new(device.clone()));
        c.credentials.insert(device.clone(), issued.hash);
        self.save(&c)?;
        drop(c);
        self.verified.lock().expect("verified lock").remove(device);
        Ok(issued.token)
    }

    /// Issues a new pre-shared key for `device` (registering the device if
    /// needed), replacing any earlier one, and returns it. The key is text
    /// (URL-safe base64 of 256 random bits) and its PSK bytes are exactly
    /// that text's bytes, so tools that take a key as a string (libcoap's
    /// `-k`) and firmware that takes bytes agree.
    pub fn issue_psk(&self, device: &DeviceId) -> Result<String, RegistryError> {
        let key = crate::credentials::issue_key();
        let mut c = self.contents.write().expect("registry lock");
        c.devices
            .entry(device.clone())
            .or_insert_with(|| Device::new(device.clone()));
        c.psks.insert(device.clone(), key.clone());
        self.save(&c)?;
        Ok(key)
    }

    /// `device`'s pre-shared key, if it was issued one.
    pub fn psk(&self, device: &DeviceId) -> Option<String> {
        self.contents
            .read()
            .expect("registry lock")
            .psks
            .get(device)
            .cloned()
    }

    /// Revokes `device`'s token and pre-shared key and forgets that it used a certificate;
    /// returns whether it had either.
    pub fn revoke_credential(&self, device: &DeviceId) -> Result<bool, RegistryError> {
        let mut c = self.contents.write().expect("registry lock");
        let had_token = c.credentials.remove(device).is_some();
        let had_psk = c.psks.remove(device).is_some();
        let had = c.certified.remove(device) || had_token || had_psk;
        if had {
            self.save(&c)?;
        }
        drop(c);
        self.verified.lock().expect("verified lock").remove(device);
        Ok(had)
    }

    /// Records that `device` proved itself with a client certificate
    /// (registering the device if needed); saved only the first time.
    pub fn mark_certified(&self, device: &DeviceId) -> Result<(), RegistryError> {
        if self.is_certified(device) {
            return Ok(());
        }
        let mut c = self.contents.write().expect("registry lock");
        c.devices
            .entry(device.clone())
            .or_insert_with(|| Device::new(device.clone()));
        if c.certified.insert(device.clone()) {
            self.save(&c)?;
        }
        Ok(())
    }

    /// Whether `device` has connected with a device certificate.
    pub fn is_certified(&self, device: &DeviceId) -> bool {
        self.contents
            .read()
            .expect("registry lock")
            .certified
            .contains(device)
    }

    /// Whether `device` has credentials of any kind (a token, a pre-shared
    /// key or a certificate): then only a client proving them may send as it.
    pub fn has_credentials(&self, device: &DeviceId) -> bool {
        let c = self.contents.read().expect("registry lock");
        c.credentials.contains_key(device)
            || c.certified.contains(device)
            || c.psks.contains_key(device)
    }

    /// The stored hash of `device`'s token, if it has one.
    pub fn credential_hash(&self, device: &DeviceId) -> Option<String> {
        self.contents
            .read()
            .expect("registry lock")
            .credentials
            .get(device)
            .cloned()
    }

    /// Whether `token` is `device`'s current token. The first check of a
    /// token is slow (argon2): call this off the async executor.
    pub fn verify_credential(&self, device: &DeviceId, token: &str) -> bool {
        use sha2::Digest;
        let fingerprint: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if self.verified.lock().expect("verified lock").get(device) == Some(&fingerprint) {
            return true;
        }
        let Some(hash) = self.credential_hash(device) else {
            return false;
        };
        if !crate::credentials::verify(&hash, token) {
            return false;
        }
        // Remember it only if the credentials were not replaced meanwhile;
        // checked under the cache lock, which issue and revoke take after
        // changing the hash, so a revoked token is never left cached.
        let mut verified = self.verified.lock().expect("verified lock");
        if self.credential_hash(device).as_ref() == Some(&hash) {
            verified.insert(device.clone(), fingerprint);
        }
        true
    }

    fn save(&self, c: &Contents) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(c).map_err(std::io::Error::other)?;
        crate::write_atomically(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_verify_until_replaced_or_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let r = super::Registry::open(dir.path()).unwrap();
        let d = medmesh_model::DeviceId::new("cuff-1").unwrap();
        let old = r.issue_credential(&d).unwrap();
        assert!(r.verify_credential(&d, &old));
        assert!(r.verify_credential(&d, &old), "cached the second time");
        assert!(!r.verify_credential(&d, "guess"));
        let new = r.issue_credential(&d).unwrap();
        assert!(!r.verify_credential(&d, &old), "replaced token is refused");
        assert!(r.verify_credential(&d, &new));
        r.revoke_credential(&d).unwrap();
        assert!(!r.verify_credential(&d, &new), "revoked token is refused");
        assert!(!r.has_credentials(&d));
        r.mark_certified(&d).unwrap();
        assert!(r.has_credentials(&d) && r.credential_hash(&d).is_none());
        assert!(
            r.revoke_credential(&d).unwrap(),
            "a certified device is revoked too"
        );
        assert!(!r.has_credentials(&d));
    }

    #[test]
    fn pre_shared_keys_are_kept_until_replaced_or_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let r = super::Registry::open(dir.path()).unwrap();
        let d = medmesh_model::DeviceId::new("patch-1").unwrap();
        assert_eq!(r.psk(&d), None);
        let first = r.issue_psk(&d).unwrap();
        assert!(first.len() >= 43, "256 bits: {first}");
        assert!(r.has_credentials(&d) && r.device(&d).is_some());
        let second = r.issue_psk(&d).unwrap();
        assert_ne!(first, second);
        let reopened = super::Registry::open(dir.path()).unwrap();
        assert_eq!(reopened.psk(&d), Some(second));
        assert!(reopened.revoke_credential(&d).unwrap());
        assert_eq!(reopened.psk(&d), None);
        assert!(!reopened.has_credentials(&d));
    }

    use super::*;

    fn patient(id: &str) -> Patient {
        Patient {
            id: PatientId::new(id).unwrap(),
            name: format!("Patient {id}"),
            ward: "Ward A".into(),
            bed: "1".into(),
        }
    }

    #[test]
    fn survives_reopen_and_rejects_assignment_to_unknown_patient() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        assert!(reg.upsert_patient(patient("p1")).unwrap());
        assert!(!reg.upsert_patient(patient("p1")).unwrap());
        let dev = DeviceId::new("mon-1").unwrap();
        reg.assign_device(dev.clone(), Some(PatientId::new("p1").unwrap()))
            .unwrap();
        let err = reg.assign_device(dev.clone(), Some(PatientId::new("p9").unwrap()));
        assert!(matches!(err, Err(RegistryError::UnknownPatient(_))));
        drop(reg);

        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.patients(), vec![patient("p1")]);
        assert_eq!(
            reg.device(&dev).unwrap().patient_id,
            Some(PatientId::new("p1").unwrap())
        );
        assert_eq!(reg.devices_of(&PatientId::new("p1").unwrap()), vec![dev]);
    }

    #[test]
    fn corrupt_registry_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.json"), b"{not json").unwrap();
        let err = Registry::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("registry.json"), "{err}");
    }
}
