//! Takes over, every second (or half lease, if shorter), the running jobs whose lease
//! expired (their replica died or lost the database), and resumes them through the
//! ask-CloudFormation logic. A look every half lease made a takeover come up to half a lease
//! after the expiry (14.6 s after a SIGKILL with the 10 s lease); the look is one query on
//! the index of running jobs.

use std::sync::Arc;

use crate::pipeline::{self, Pipeline};
use crate::queue::lease::Orphans;

/// How often expired leases are looked for.
const LOOK: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn run(app: Arc<Pipeline>) {
    let mut every = tokio::time::interval(LOOK.min(app.leases.lease.length / 2));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once; start-up has just recovered.
    every.tick().await;
    loop {
        every.tick().await;
        pipeline::recover(&app, Orphans::Expired).await;
    }
}
