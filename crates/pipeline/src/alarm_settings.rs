//! Per-patient alarm settings in the pipeline: kept by the rule engine,
//! saved whole to `alarm_settings.json` in the data directory (atomically
//! replaced) before they take effect, and loaded at start.

use crate::Pipeline;
use medmesh_model::{PatientId, now_ms};
use medmesh_rules::profiles::Profile;
use medmesh_rules::{AlarmSettings, Effective, RuleEngine, RulesConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The settings file, in the data directory.
pub const SETTINGS_FILE: &str = "alarm_settings.json";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The settings do not make sense (unknown profile, low above high...).
    #[error("{0}")]
    Invalid(String),
    /// They could not be saved; nothing changed.
    #[error("alarm settings not saved: {0}")]
    Storage(#[from] std::io::Error),
}

/// Reads the saved settings; a missing file is no settings.
fn load(path: &Path) -> Result<BTreeMap<PatientId, AlarmSettings>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl Pipeline {
    /// Puts the `[rules]` configuration in force, loads the patients'
    /// saved settings from `data_dir` and each patient's last reading time
    /// from the store (for the stale-data rule). Settings naming a profile that no
    /// longer exists are kept on file, logged, and not applied.
    pub fn with_rules(mut self, config: &RulesConfig, data_dir: &Path) -> Result<Pipeline, String> {
        let mut engine = RuleEngine::new(config, now_ms())?;
        let path = data_dir.join(SETTINGS_FILE);
        for problem in engine.load(load(&path)?) {
            tracing::warn!(%problem, "alarm settings not applied");
        }
        // Stale data keeps counting across a restart: from each patient's
        // newest stored reading, not from the start.
        for patient in self.registry.patients() {
            let newest = self.store.latest(patient.id.as_str());
            if let Some(taken) = newest.iter().map(|(_, p)| p.time_ms).max() {
                engine.seed_last_reading(&patient.id, taken);
            }
        }
        self.rules = std::sync::Mutex::new(engine);
        self.alarms
            .get_mut()
            .expect("alarm board lock")
            .set_default_clear_delay(
                i64::try_from(config.clear_after_s.saturating_mul(1000)).unwrap_or(i64::MAX),
            );
        self.settings_path = Some(path);
        Ok(self)
    }

    /// A patient's own alarm settings (if any) and the rules in force.
    pub fn alarm_settings(
        &self,
        patient: &PatientId,
    ) -> (Option<AlarmSettings>, Option<Arc<Effective>>) {
        let rules = self.rules.lock().expect("rules lock");
        (rules.settings(patient), rules.effective(patient))
    }

    /// Every alarm profile known (built-in and configured).
    pub fn alarm_profiles(&self) -> BTreeMap<String, Profile> {
        self.rules
            .lock()
            .expect("rules lock")
            .catalogue()
            .profiles
            .clone()
    }

    /// Gives a patient new alarm settings (`None`: back to the default),
    /// saved before they take effect. Alarms of conditions the new settings
    /// no longer watch are resolved.
    pub fn set_alarm_settings(
        &self,
        patient: &PatientId,
        settings: Option<AlarmSettings>,
    ) -> Result<Option<Arc<Effective>>, SettingsError> {
        // One change at a time, so the file always matches the engine.
        let _writing = self.settings_write.lock().expect("settings write lock");
        let mut all = {
            let rules = self.rules.lock().expect("rules lock");
            if let Some(s) = &settings {
                rules.resolve(s).map_err(SettingsError::Invalid)?;
            }
            rules.all_settings()
        };
        match &settings {
            Some(s) => all.insert(patient.clone(), s.clone()),
            None => all.remove(patient),
        };
        if let Some(path) = &self.settings_path {
            let bytes = serde_json::to_vec_pretty(&all).expect("settings serialise");
            medmesh_storage::write_atomically(path, &bytes)?;
        }
        let (findings, effective, news2_settings) = {
            let mut rules = self.rules.lock().expect("rules lock");
            let findings = rules
                .set(patient, settings, now_ms())
                .map_err(SettingsError::Invalid)?;
            (
                findings,
                rules.effective(patient),
                rules.news2_settings(patient),
            )
        };
        let mut board = self.alarms.lock().expect("alarm board lock");
        let mut changes: Vec<_> = findings
            .into_iter()
            .filter_map(|f| board.apply(patient, f))
            .collect();
        // A new SpO2 scale (or freshness) re-judges NEWS2 now, not at the
        // next SpO2 reading, which for a home patient may be a day away.
        changes.extend(self.rejudge_news2(&mut board, patient, news2_settings));
        self.record_and_publish(&board, changes);
        drop(board);
        Ok(effective)
    }
}
