//! The demo's fixed accounts: one per role, all with the password
//! `medmesh-demo`, so that every view can be tried at once. Stated in the
//! README; never use them outside a demo.

use medmesh_access::{Role, Scope, Team};
use medmesh_server::Running;
use medmesh_simulator::SimPatient;

pub const DEMO_PASSWORD: &str = "medmesh-demo";

/// Creates the demo accounts, the Ward A care team and the first patient's
/// consent for the caregiver (each only if missing); returns how to sign in.
pub fn accounts(running: &Running, ward: &[SimPatient]) -> anyhow::Result<String> {
    let d = &running.access.directory;
    let first_patient = ward.first().map(|w| w.patient.id.clone());
    for role in Role::ALL {
        let patient = (role == Role::Patient)
            .then(|| first_patient.clone())
            .flatten();
        if d.user(role.as_str()).is_none() && (role != Role::Patient || patient.is_some()) {
            // The first-run administrator exists already with a random
            // password; the demo makes it known.
            d.add_user(role.as_str(), role, patient, DEMO_PASSWORD)?;
        }
    }
    d.set_password("admin", DEMO_PASSWORD)?;
    if d.teams().is_empty() {
        d.put_team(Team {
            id: "ward-a".into(),
            name: "Ward A".into(),
            members: ["nurse".to_string(), "physician".to_string()].into(),
            // Ward A and the patients it follows at home.
            wards: ["Ward A".to_string(), "Home".to_string()].into(),
            patients: Default::default(),
        })?;
    }
    if let Some(p) = first_patient
        && d.consents_of(&p).is_empty()
    {
        d.grant_consent(
            p,
            "caregiver",
            vec![Scope::Observations, Scope::Alarms],
            "family care (demo)",
            None,
            "patient",
        )?;
    }
    Ok(format!(
        "as admin, physician, nurse, patient, caregiver, insurer, researcher or operations; password {DEMO_PASSWORD}"
    ))
}

/// The ward acts on what it acknowledges: an acknowledged alarm of a
/// simulated patient starts their treatment (their deterioration ebbs;
/// see `medmesh_simulator::physiology`). Without it, they worsen until the
/// simulated outreach team responds. Runs until the server stops.
pub fn treat_on_acknowledgement(running: &Running, ward: &[SimPatient]) {
    let treatments: std::collections::HashMap<_, _> = ward
        .iter()
        .map(|p| (p.patient.id.clone(), p.physiology.treatment()))
        .collect();
    let mut alarms = running.pipeline.subscribe_alarms().events;
    tokio::spawn(async move {
        loop {
            match alarms.recv().await {
                Ok(medmesh_pipeline::LiveEvent::Alarm {
                    change: "acknowledged",
                    alarm,
                    ..
                }) => {
                    if let Some(t) = treatments.get(&alarm.patient_id) {
                        t.order(medmesh_model::now_ms());
                    }
                }
                Ok(_) => {}
                // Missed some: the next acknowledgement still counts.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
