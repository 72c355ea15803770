//! Login throttling: brute-forcing a password must be slow. Each username
//! and each client address gets a few free failed attempts; after that, each
//! further attempt must wait twice as long as the last (1 s, 2 s, 4 s, ...
//! up to 15 minutes). A success clears the username's count; failures are
//! forgotten after 15 quiet minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed before waiting is required.
pub const FREE_ATTEMPTS: u32 = 5;
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Entries kept before quiet ones are pruned (bounds memory under a spray).
const PRUNE_ABOVE: usize = 10_000;

struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    by_key: Mutex<HashMap<String, Failures>>,
}

fn wait_after(count: u32) -> Duration {
    if count < FREE_ATTEMPTS {
        return Duration::ZERO;
    }
    let exp = (count - FREE_ATTEMPTS).min(10);
    Duration::from_secs(1u64 << exp).min(MAX_WAIT)
}

impl LoginThrottle {
    /// `Err(wait)` if any of `keys` must wait before trying again.
    pub fn check(&self, keys: &[&str]) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.by_key.lock().expect("throttle lock");
        let wait = keys
            .iter()
            .filter_map(|k| map.get(*k))
            .filter(|f| now.duration_since(f.last) < MAX_WAIT)
            .map(|f| wait_after(f.count).saturating_sub(now.duration_since(f.last)))
            .max()
            .unwrap_or_default();
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut map = self.by_key.lock().expect("throttle lock");
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, f| now.duration_since(f.last) < MAX_WAIT);
        }
        for k in keys {
            let f = map.entry(k.to_string()).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= MAX_WAIT {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.by_key.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_attempts_then_doubling_waits() {
        assert_eq!(wait_after(4), Duration::ZERO);
        assert_eq!(wait_after(5), Duration::from_secs(1));
        assert_eq!(wait_after(7), Duration::from_secs(4));
        assert_eq!(wait_after(40), MAX_WAIT);
        let t = LoginThrottle::default();
        for _ in 0..FREE_ATTEMPTS {
            assert!(t.check(&["user:a", "ip:1"]).is_ok());
            t.failed(&["user:a", "ip:1"]);
        }
        let wait = t.check(&["user:a"]).unwrap_err();
        assert!(wait > Duration::from_millis(900));
        // The address is throttled for other usernames too.
        assert!(t.check(&["user:b", "ip:1"]).is_err());
        assert!(t.check(&["user:b", "ip:2"]).is_ok());
        t.succeeded("user:a");
        assert!(t.check(&["user:a"]).is_ok());
    }
}
