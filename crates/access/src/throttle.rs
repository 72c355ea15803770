//! Login throttling: guessing passwords must be slow, yet nobody can lock a
//! clinician out (a colleague's mistyping, or someone trying the night
//! nurse's name on purpose, must not keep her from signing in at 3 a.m.).
//!
//! Failures are counted under two keys per attempt, and each key allows a
//! few free failures, after which every further attempt waits twice as long
//! as the last (1 s, 2 s, 4 s), never more than [`MAX_WAIT`]:
//!
//! - the account *from one source address* ([`FREE_PER_ACCOUNT`]): slows one
//!   attacker guessing one password, and touches nobody signing in to the
//!   same account from another machine;
//! - the source address across all accounts ([`FREE_PER_ADDRESS`]): slows
//!   one attacker trying many accounts.
//!
//! There is no count per account alone, so no failures from elsewhere ever
//! make an account wait, and no key ever waits longer than [`MAX_WAIT`]:
//! the worst a clinician meets is "try again in a few seconds". A success
//! clears its account-and-address count; failures are forgotten after
//! [`FORGET_AFTER`] without one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts at one account from one address before waiting starts.
pub const FREE_PER_ACCOUNT: u32 = 3;
/// Failed attempts from one address (any accounts) before waiting starts.
pub const FREE_PER_ADDRESS: u32 = 10;
/// The longest anyone is asked to wait.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Quiet time after which a key's failures are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
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

fn account_key(username: &str, client: &str) -> String {
    format!("user:{username} addr:{client}")
}

fn address_key(client: &str) -> String {
    format!("addr:{client}")
}

fn wait_after(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let exp = (count - free).min(10);
    Duration::from_secs(1u64 << exp).min(MAX_WAIT)
}

impl LoginThrottle {
    /// `Err(wait)` if an attempt at `username` from `client` must wait.
    pub fn check(&self, username: &str, client: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.by_key.lock().expect("throttle lock");
        let wait = [
            (account_key(username, client), FREE_PER_ACCOUNT),
            (address_key(client), FREE_PER_ADDRESS),
        ]
        .iter()
        .filter_map(|(k, free)| map.get(k).map(|f| (f, *free)))
        .filter(|(f, _)| now.duration_since(f.last) < FORGET_AFTER)
        .map(|(f, free)| wait_after(f.count, free).saturating_sub(now.duration_since(f.last)))
        .max()
        .unwrap_or_default();
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, username: &str, client: &str) {
        let now = Instant::now();
        let mut map = self.by_key.lock().expect("throttle lock");
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        for k in [account_key(username, client), address_key(client)] {
            let f = map.entry(k).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    pub fn succeeded(&self, username: &str, client: &str) {
        self.by_key
            .lock()
            .expect("throttle lock")
            .remove(&account_key(username, client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_attempts_then_doubling_waits_capped_at_a_few_seconds() {
        assert_eq!(wait_after(2, FREE_PER_ACCOUNT), Duration::ZERO);
        assert_eq!(wait_after(3, FREE_PER_ACCOUNT), Duration::from_secs(1));
        assert_eq!(wait_after(5, FREE_PER_ACCOUNT), Duration::from_secs(4));
        assert_eq!(wait_after(6, FREE_PER_ACCOUNT), MAX_WAIT);
        assert_eq!(wait_after(u32::MAX, FREE_PER_ACCOUNT), MAX_WAIT);
        let t = LoginThrottle::default();
        for _ in 0..FREE_PER_ACCOUNT {
            assert!(t.check("nurse", "10.0.0.9").is_ok());
            t.failed("nurse", "10.0.0.9");
        }
        let wait = t.check("nurse", "10.0.0.9").unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= MAX_WAIT);
        // The same account from the nurse's own station: not held up.
        assert!(t.check("nurse", "10.0.0.1").is_ok());
        // Other accounts from the guessing address: free until the
        // address's own allowance is spent.
        assert!(t.check("dr", "10.0.0.9").is_ok());
        t.succeeded("nurse", "10.0.0.9");
        assert!(t.check("nurse", "10.0.0.9").is_ok());
    }

    #[test]
    fn one_address_trying_many_accounts_is_slowed() {
        let t = LoginThrottle::default();
        for i in 0..FREE_PER_ADDRESS {
            let user = format!("user{i}");
            assert!(t.check(&user, "10.0.0.9").is_ok());
            t.failed(&user, "10.0.0.9");
        }
        let wait = t.check("someone-else", "10.0.0.9").unwrap_err();
        assert!(wait <= MAX_WAIT);
        assert!(t.check("someone-else", "10.0.0.1").is_ok());
    }
}
