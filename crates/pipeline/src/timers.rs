//! Rules driven by time rather than readings: stale data. The server calls
//! [`Pipeline::check_stale`] on an interval (`rules.timer_interval_s`).

use crate::Pipeline;
use medmesh_model::TimestampMs;

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
}
