//! Takes over, every half lease, the running jobs whose lease expired (their replica died
//! or lost the database), and resumes them through the ask-CloudFormation logic.

use std::sync::Arc;

use crate::pipeline::{self, Pipeline};
use crate::queue::lease::Orphans;

pub async fn run(app: Arc<Pipeline>) {
    let mut every = tokio::time::interval(app.leases.lease.length / 2);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once; start-up has just recovered.
    every.tick().await;
    loop {
        every.tick().await;
        pipeline::recover(&app, Orphans::Expired).await;
    }
}
