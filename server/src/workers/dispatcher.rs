//! Claims runnable jobs (one per lane, up to the parallel limit) and runs them.

use std::sync::Arc;
use std::time::Duration;

use super::GATHER;
use crate::pipeline::{self, Pipeline};

pub async fn run(app: Arc<Pipeline>) {
    loop {
        match app.claim(app.cfg.max_parallel_jobs.max(1)) {
            Ok(jobs) => {
                for job in jobs {
                    tokio::spawn(pipeline::run(app.clone(), job));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot claim jobs"),
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
