//! Rules driven by time rather than readings: stale data and observations
//! due (the server calls [`Pipeline::check_stale`] and
//! [`Pipeline::check_observations_due`] on an interval,
//! `rules.timer_interval_s`), and
//! alarms that stayed clear for their delay with no reading to say so
//! ([`Pipeline::settle_alarms`], every second).

use crate::Pipeline;
use medmesh_model::TimestampMs;
use medmesh_rules::AlarmChange;

impl Pipeline {
    /// Raises a stale-data alarm for every patient whose profile has a
    /// stale-data delay and from whom no reading arrived for that long
    /// before `now`. A new reading resolves it. Returns how many were raised.
    pub fn check_stale(&self, now: TimestampMs) -> usize {
        let patients = self.registry.patients().into_iter().map(|p| p.id);
        let found = self
            .rules
            .lock()
            .expect("rules lock")
            .check_stale(patients, now);
        if found.is_empty() {
            return 0;
        }
        let mut board = self.alarms.lock().expect("alarm board lock");
        let changes: Vec<_> = found
            .into_iter()
            .filter_map(|(patient, f)| board.apply(&patient, f))
            .collect();
        let raised = changes.len();
        self.record_and_publish(&board, changes);
        raised
    }

    /// Judges the observations-due rule (RCP NEWS2 Chart 4's frequency of
    /// monitoring) of every patient whose profile has it, on their latest
    /// stored readings at `now`: raises "observations overdue" (low) for
    /// those whose last complete set is older than its score allows,
    /// resolves it for those no longer overdue (a complete set also
    /// resolves it as it is stored). Returns how many were raised.
    pub fn check_observations_due(&self, now: TimestampMs) -> usize {
        let watched: Vec<_> = {
            let rules = self.rules.lock().expect("rules lock");
            self.registry
                .patients()
                .into_iter()
                .filter_map(|p| rules.observations_due(&p.id).map(|w| (p.id, w)))
                .collect()
        };
        if watched.is_empty() {
            return 0;
        }
        // Read the store before taking the board's lock.
        let found: Vec<_> = watched
            .into_iter()
            .map(|(patient, watch)| {
                let latest = self.news2_readings(&patient);
                let finding = watch.judge(crate::reading_of(&latest), now);
                (patient, finding)
            })
            .collect();
        let mut board = self.alarms.lock().expect("alarm board lock");
        let changes: Vec<_> = found
            .into_iter()
            .filter_map(|(patient, f)| board.apply(&patient, f))
            .collect();
        let raised = changes
            .iter()
            .filter(|c| matches!(c, AlarmChange::Raised(_)))
            .count();
        if !changes.is_empty() {
            self.record_and_publish(&board, changes);
        }
        raised
    }

    /// Resolves the alarms whose condition has stayed clear for the
    /// patient's clear delay by `now` (see `AlarmBoard::settle`); returns
    /// how many.
    pub fn settle_alarms(&self, now: TimestampMs) -> usize {
        let mut board = self.alarms.lock().expect("alarm board lock");
        let changes = board.settle(now);
        let n = changes.len();
        if n > 0 {
            self.record_and_publish(&board, changes);
        }
        n
    }
}
