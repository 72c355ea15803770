//! The audit log: every read and write of health data, every login and
//! every change to who may see what, with actor, patient, action, outcome
//! and time. Append-only (`audit.jsonl`, a [`Journal`]) and hash-chained:
//! each entry carries the SHA-256 of the line before it, so an edit or a
//! deletion anywhere breaks the chain, which [`verify_chain`] reports.

use crate::role::Role;
use medmesh_model::{PatientId, TimestampMs, now_ms};
use medmesh_storage::Journal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Denied,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time_ms: TimestampMs,
    /// Username, `device:<id>`, or `anonymous`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// e.g. "read observations", "acknowledge alarm", "login".
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientId>,
    /// Every patient a list read returned: one entry for the whole answer
    /// (a dashboard load), found by a query for any one of them. Empty (and
    /// left out of the line, so older lines hash as they did) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<PatientId>,
    pub outcome: Outcome,
    /// Request path, client address, reason for a denial.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// SHA-256 (hex) of the previous entry's line; empty for the first.
    pub prev: String,
}

/// What is being recorded; [`AuditLog::record`] adds sequence, time and chain.
pub struct Event<'a> {
    pub actor: &'a str,
    pub role: Option<Role>,
    pub action: &'a str,
    pub patient: Option<&'a PatientId>,
    pub outcome: Outcome,
    pub detail: String,
}

/// Which entries a query wants, newest first. Every field given must match:
/// `patient` answers "who looked at this patient" (entries naming them alone
/// or among a list's patients), `actor` with `since_ms`/`until_ms` "what did
/// this user do today", `outcome=denied` "every refusal".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub actor: Option<String>,
    pub patient: Option<PatientId>,
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// At or after this time (epoch ms).
    pub since_ms: Option<TimestampMs>,
    /// At or before this time (epoch ms).
    pub until_ms: Option<TimestampMs>,
    pub limit: Option<usize>,
}

impl Filter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.patient.as_ref().is_none_or(|p| e.names(p))
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self.since_ms.is_none_or(|s| e.time_ms >= s)
            && self.until_ms.is_none_or(|u| e.time_ms <= u)
    }
}

impl AuditEntry {
    /// Whether the entry concerns `patient`, alone or in a list.
    pub fn names(&self, patient: &PatientId) -> bool {
        self.patient.as_ref() == Some(patient) || self.patients.contains(patient)
    }
}

pub struct AuditLog {
    journal: Journal<AuditEntry>,
    /// Next sequence number and the hash of the last line; the lock also
    /// keeps lines in chain order on their way to the writer.
    chain: Mutex<(u64, String)>,
}

fn line_hash(entry: &AuditEntry) -> String {
    let line = serde_json::to_vec(entry).expect("audit entry serialises");
    Sha256::digest(&line)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditLog {
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        let (journal, entries) = Journal::<AuditEntry>::open(dir, "audit.jsonl")?;
        if let Err(seq) = verify_chain(&entries) {
            tracing::error!(
                seq,
                "audit log chain is broken: the file was edited outside medmesh"
            );
        }
        let chain = entries
            .last()
            .map(|e| (e.seq + 1, line_hash(e)))
            .unwrap_or((1, String::new()));
        Ok(AuditLog {
            journal,
            chain: Mutex::new(chain),
        })
    }

    pub fn record(&self, event: Event<'_>) {
        self.record_list(event, Vec::new());
    }

    /// Records one read that returned several patients (a list): one entry
    /// naming them all, instead of one per patient, so a dashboard load
    /// leaves one line and the entries that matter stay readable.
    pub fn record_list(&self, event: Event<'_>, patients: Vec<PatientId>) {
        let mut chain = self.chain.lock().expect("audit chain lock");
        let entry = AuditEntry {
            seq: chain.0,
            time_ms: now_ms(),
            actor: event.actor.to_string(),
            role: event.role,
            action: event.action.to_string(),
            patient: event.patient.cloned(),
            patients,
            outcome: event.outcome,
            detail: event.detail,
            prev: std::mem::take(&mut chain.1),
        };
        *chain = (entry.seq + 1, line_hash(&entry));
        self.journal.append(&entry);
    }

    /// Entries matching `filter`, newest first (at most `limit`, default 1000).
    pub fn query(&self, filter: &Filter) -> std::io::Result<Vec<AuditEntry>> {
        // Everything recorded before the query is part of its answer.
        self.journal.flush()?;
        let entries = self.journal.read_all()?;
        let limit = filter.limit.unwrap_or(1000);
        Ok(entries
            .into_iter()
            .rev()
            .filter(|e| filter.matches(e))
            .take(limit)
            .collect())
    }
}

/// Checks the hash chain; `Err(seq)` names the first entry whose `prev` does
/// not match the line before it.
pub fn verify_chain(entries: &[AuditEntry]) -> Result<(), u64> {
    let mut prev = String::new();
    for e in entries {
        if e.prev != prev {
            return Err(e.seq);
        }
        prev = line_hash(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(actor: &'a str, patient: Option<&'a PatientId>) -> Event<'a> {
        Event {
            actor,
            role: Some(Role::Nurse),
            action: "read observations",
            patient,
            outcome: Outcome::Allowed,
            detail: String::new(),
        }
    }

    #[test]
    fn entries_chain_survive_reopen_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let p1 = PatientId::new("p1").unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
            log.record(event("nurse1", Some(&p1)));
            log.record(event("nurse2", None));
        }
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(event("nurse1", None));
        drop(log);
        let log = AuditLog::open(dir.path()).unwrap();
        let all = log.query(&Filter::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
        let mut oldest_first = all.clone();
        oldest_first.reverse();
        assert_eq!(verify_chain(&oldest_first), Ok(()));
        let by_patient = Filter {
            patient: Some(p1.clone()),
            ..Filter::default()
        };
        assert_eq!(log.query(&by_patient).unwrap().len(), 1);
        // A list read is one entry, found by any patient it returned.
        let p2 = PatientId::new("p2").unwrap();
        log.record_list(event("nurse2", None), vec![p1.clone(), p2.clone()]);
        let mut refused = event("nurse2", Some(&p2));
        refused.outcome = Outcome::Denied;
        log.record(refused);
        let found = log.query(&by_patient).unwrap();
        assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 1]);
        assert_eq!(found[0].patients, [p1.clone(), p2.clone()]);
        let denied = Filter {
            outcome: Some(Outcome::Denied),
            ..Filter::default()
        };
        assert_eq!(log.query(&denied).unwrap()[0].seq, 5);
        let all = log.query(&Filter::default()).unwrap();
        let until = all[1].time_ms;
        let before = Filter {
            actor: Some("nurse2".into()),
            until_ms: Some(until),
            ..Filter::default()
        };
        let want: Vec<u64> = all
            .iter()
            .filter(|e| e.actor == "nurse2" && e.time_ms <= until)
            .map(|e| e.seq)
            .collect();
        let got: Vec<u64> = log.query(&before).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, want);
        assert!(got.contains(&4) && got.contains(&2), "{got:?}");
        let mut oldest_first = all.clone();
        oldest_first.reverse();
        assert_eq!(verify_chain(&oldest_first), Ok(()));
        // Editing any line breaks the chain at the entry after it.
        oldest_first[0].actor = "someone-else".into();
        assert_eq!(verify_chain(&oldest_first), Err(2));
    }
}
