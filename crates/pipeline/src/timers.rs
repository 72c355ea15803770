//! Rules driven by time rather than readings: stale data (the server calls
//! [`Pipeline::check_stale`] on an interval, `rules.timer_interval_s`), and
//! alarms that stayed clear for their delay with no reading to say so
//! ([`Pipeline::settle_alarms`], every second).

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
