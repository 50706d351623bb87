//! Webhook deliveries, each recorded once (a unique key, across replicas), with its jobs,
//! in one transaction per batch.

use super::jobs::enqueue_tx;
use super::{Store, execute, query};
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
        self.tx(async |tx| {
            // Keys in sorted order: two replicas recording the same deliveries wait on each
            // other rather than deadlock. The sort is stable: of one id twice in a batch,
            // the first is the fresh one.
            let mut order: Vec<usize> = (0..batch.len()).collect();
            order.sort_by(|a, b| batch[*a].delivery.cmp(&batch[*b].delivery));
            let mut fresh = vec![false; batch.len()];
            for i in order {
                let d = &batch[i];
                let inserted = execute(
                    tx,
                    "INSERT INTO deliveries (id, event, repo, received_at, jobs) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING",
                    &[&d.delivery, &d.event, &d.repo, &now(), &(d.jobs.len() as i64)],
                )
                .await?;
                fresh[i] = inserted != 0;
            }
            let mut jobs = Vec::new();
            for (d, fresh) in batch.iter().zip(&fresh) {
                if *fresh {
                    jobs.extend(d.jobs.iter().map(|j| (j, Some(d.delivery.as_str()))));
                }
            }
            let mut ids = enqueue_tx(tx, &jobs, status_for, superseded_status)
                .await?
                .into_iter();
            Ok(batch
                .iter()
                .zip(fresh)
                .map(|(d, fresh)| fresh.then(|| ids.by_ref().take(d.jobs.len()).collect()))
                .collect())
        })
    }

    fn delivery_count(&self) -> Result<i64, StoreError> {
        self.conn(async |c| Ok(query(c, "SELECT COUNT(*) FROM deliveries", &[]).await?[0].get(0)))
    }
}
