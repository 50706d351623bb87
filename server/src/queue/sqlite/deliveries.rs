//! Webhook deliveries, each recorded once, with its jobs, in one transaction per batch.

use rusqlite::params;

use super::Store;
use super::jobs::enqueue_tx;
use crate::domain::JobId;
use crate::queue::{
    Deliveries, DeliveryRecord, QueuedStatuses, StoreError, SupersededStatuses, now,
};

impl Deliveries for Store {
    fn record_deliveries(
        &self,
        batch: &[DeliveryRecord],
        status_for: QueuedStatuses<'_>,
        superseded_status: SupersededStatuses<'_>,
    ) -> Result<Vec<Option<Vec<JobId>>>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut fresh = Vec::with_capacity(batch.len());
            let mut jobs = Vec::new();
            for d in batch {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO deliveries (id, event, repo, received_at, jobs) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(id) DO NOTHING",
                    )?
                    .execute(params![d.delivery, d.event, d.repo, now(), d.jobs.len() as i64])?;
                fresh.push(inserted != 0);
                if inserted != 0 {
                    jobs.extend(d.jobs.iter().map(|j| (j, Some(d.delivery.as_str()))));
                }
            }
            let mut ids = enqueue_tx(&tx, &jobs, status_for, superseded_status)?.into_iter();
            tx.commit()?;
            Ok(batch
                .iter()
                .zip(fresh)
                .map(|(d, fresh)| fresh.then(|| ids.by_ref().take(d.jobs.len()).collect()))
                .collect())
        })
    }

    fn delivery_count(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
    }
}
