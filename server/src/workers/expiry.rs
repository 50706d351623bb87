//! Expires held change sets nobody decided on in `[approvals] expire_after_seconds`: each
//! goes back in the queue as expired, and its worker deletes the change set.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Decision, JobState};
use crate::pipeline::Pipeline;
use crate::queue::{Decided, blocking, now};

/// How often held jobs are looked at: an expiry is late by at most this, or a tenth of the
/// expiry time when that is shorter (tests wait seconds, not a minute).
const LOOK_EVERY: Duration = Duration::from_secs(60);

pub async fn run(app: Arc<Pipeline>) {
    let expiry = Duration::from_secs(app.cfg.approvals.expire_after_seconds);
    let every = LOOK_EVERY.min(expiry / 10).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let held = match blocking(&app.queue, |q| q.jobs_in_state(JobState::Held)).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list held change sets");
                continue;
            }
        };
        let at = now();
        let due = held.into_iter().filter(|j| {
            j.detail["hold"]["expires_at"]
                .as_i64()
                .is_some_and(|e| e <= at)
        });
        for job in due {
            let decided = Decided {
                decision: Decision::Expired,
                by: "stackgate".into(),
                at,
            };
            let id = job.id;
            match blocking(&app.queue, move |q| q.decide(id, &decided)).await {
                Ok(Ok(_)) => {
                    tracing::info!(job = %id, "held change set expired");
                    app.wake.jobs.notify_one();
                }
                // Decided or superseded meanwhile: nothing to expire.
                Ok(Err(why)) => tracing::debug!(job = %id, %why, "not expired"),
                Err(e) => tracing::warn!(job = %id, error = %e, "cannot expire a held change set"),
            }
        }
    }
}
