//! Browser sessions: a random token in an HttpOnly cookie, held in memory
//! (a restart signs everyone out, which is the safe direction). A session
//! ends after 30 minutes without use or 12 hours after sign-in, whichever
//! comes first, or when its user signs out or is disabled.

use crate::secret;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

struct Session {
    username: String,
    started: Instant,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    /// Keyed by the token's digest, so a memory dump does not hold live tokens.
    by_digest: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `username`; returns the cookie value.
    pub fn start(&self, username: &str) -> String {
        let token = secret::random_token("ms_");
        let now = Instant::now();
        let mut map = self.by_digest.lock().expect("sessions lock");
        map.retain(|_, s| live(s, now));
        map.insert(
            secret::digest(&token),
            Session {
                username: username.to_string(),
                started: now,
                last_used: now,
            },
        );
        token
    }

    /// The user of a live session, marking it used.
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.by_digest.lock().expect("sessions lock");
        let digest = secret::digest(token);
        match map.get_mut(&digest) {
            Some(s) if live(s, now) => {
                s.last_used = now;
                Some(s.username.clone())
            }
            Some(_) => {
                map.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// The user of a live session, without marking it used (for checking
    /// that an open stream's session still stands).
    pub fn holder(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        self.by_digest
            .lock()
            .expect("sessions lock")
            .get(&secret::digest(token))
            .filter(|s| live(s, now))
            .map(|s| s.username.clone())
    }

    pub fn end(&self, token: &str) {
        self.by_digest
            .lock()
            .expect("sessions lock")
            .remove(&secret::digest(token));
    }

    /// Ends every session of `username` (disabled, password changed).
    pub fn end_all_of(&self, username: &str) {
        self.by_digest
            .lock()
            .expect("sessions lock")
            .retain(|_, s| s.username != username);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE_TIMEOUT && now.duration_since(s.started) < MAX_AGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_resolve_and_end() {
        let s = Sessions::default();
        let a = s.start("nurse1");
        let b = s.start("nurse1");
        let c = s.start("dr1");
        assert_eq!(s.user(&a).as_deref(), Some("nurse1"));
        assert_eq!(s.user("ms_forged"), None);
        assert_eq!(s.holder(&a).as_deref(), Some("nurse1"));
        s.end(&a);
        assert_eq!(s.holder(&a), None);
        assert_eq!(s.user(&a), None);
        assert_eq!(s.user(&b).as_deref(), Some("nurse1"));
        s.end_all_of("nurse1");
        assert_eq!(s.user(&b), None);
        assert_eq!(s.user(&c).as_deref(), Some("dr1"));
    }
}
