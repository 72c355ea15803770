//! Retrying a delivery: exponential backoff with jitter, a bounded number of
//! attempts. The delay before attempt `n + 1` is drawn between half and all
//! of `first * 2^(n-1)` (capped at 5 minutes), so receivers that come back
//! after an outage are not hit by every sender in the same instant.

use medmesh_pipeline::{DeliveryOutcome, Metrics};
use rand::Rng;
use std::time::Duration;

/// Longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait after the first failure, doubled after each further one.
    pub first_delay: Duration,
}

impl Default for Retry {
    /// 6 attempts over about a minute: 2, 4, 8, 16, 32 s apart at most.
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_delay: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `failed` (1-based), jittered by `rng`.
    pub fn delay(&self, failed: u32, rng: &mut impl Rng) -> Duration {
        let exp = self
            .first_delay
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20))
            .min(MAX_DELAY);
        let half = exp / 2;
        half + half.mul_f64(rng.random::<f64>())
    }

    /// Makes `attempt` until it succeeds or the attempts run out, waiting
    /// [`Retry::delay`] between them; counts each outcome for `channel` and
    /// logs it with `target` (a URL, a user). `attempt` returns the problem
    /// as text when it fails.
    pub async fn run<F, Fut>(
        &self,
        metrics: &Metrics,
        channel: &'static str,
        target: &str,
        mut attempt: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let attempts = self.attempts.max(1);
        for n in 1..=attempts {
            let problem = match attempt().await {
                Ok(()) => {
                    metrics.delivery(channel, DeliveryOutcome::Delivered);
                    tracing::debug!(channel, target, attempt = n, "alarm notification delivered");
                    return;
                }
                Err(problem) => problem,
            };
            if n == attempts {
                metrics.delivery(channel, DeliveryOutcome::Failed);
                tracing::error!(
                    channel,
                    target,
                    attempts,
                    problem,
                    "alarm notification given up"
                );
                return;
            }
            metrics.delivery(channel, DeliveryOutcome::Retried);
            let wait = self.delay(n, &mut rand::rng());
            tracing::warn!(channel, target, attempt = n, problem, retry_in = ?wait, "alarm notification failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_double_within_their_jitter_and_are_capped() {
        let r = Retry {
            attempts: 10,
            first_delay: Duration::from_secs(2),
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for (failed, full) in [(1, 2), (2, 4), (3, 8), (4, 16)] {
            for _ in 0..50 {
                let d = r.delay(failed, &mut rng);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {failed}: {d:?}");
            }
        }
        assert!(r.delay(30, &mut rng) <= MAX_DELAY);
        assert!(r.delay(30, &mut rng) >= MAX_DELAY / 2);
    }
}
