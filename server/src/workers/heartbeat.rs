//! Renews this replica's leases every third of their length. A renewal that fails changes
//! nothing here: each job's guard runs out on its own, and the job stops before its next
//! AWS write. A renewal that no longer names a job revokes its guard at once.

use std::sync::Arc;
use std::time::Instant;

use crate::pipeline::Pipeline;
use crate::queue::blocking;

pub async fn run(app: Arc<Pipeline>) {
    let mut every = tokio::time::interval(app.leases.lease.length / 3);
    // A late tick renews once, not in a burst.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let asked = Instant::now();
        let lease = app.leases.lease.clone();
        // Gathered after `asked`: a claim made after this renewal was asked is either in
        // it or newer than it.
        let claims = app.leases.claims();
        match blocking(&app.queue, move |q| q.renew(&lease, &claims)).await {
            Ok(held) => app.leases.renewed(asked, &held),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leases; their jobs stop before their next AWS write unless a renewal comes through")
            }
        }
    }
}
