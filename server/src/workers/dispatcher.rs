//! Claims runnable jobs (one per lane, up to the parallel limit) and runs them.

use std::sync::Arc;
use std::time::Duration;

use super::GATHER;
use crate::pipeline::{self, Pipeline};

/// The wait after `failures` claims in a row failed (the state database is away): doubling
/// from 0.25 s to 8 s, so that an outage is a line every few seconds, not ten a second.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250) * 2u32.pow(failures.saturating_sub(1).min(5))
}

pub async fn run(app: Arc<Pipeline>) {
    let mut failures = 0u32;
    loop {
        match app.claim(app.cfg.max_parallel_jobs.max(1)) {
            Ok(jobs) => {
                if failures > 0 {
                    tracing::info!(failures, "claiming jobs again");
                }
                failures = 0;
                for job in jobs {
                    tokio::spawn(pipeline::run(app.clone(), job));
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(failures);
                tracing::error!(error = %e, retry_in = ?wait, "cannot claim jobs");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        // Short enough to pick up a debounced sync soon after it is due.
        if tokio::time::timeout(Duration::from_millis(100), app.wake.jobs.notified())
            .await
            .is_ok()
        {
            // A burst of deliveries wakes this once per delivery: claim once for all.
            tokio::time::sleep(GATHER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_claims_back_off_to_a_few_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
