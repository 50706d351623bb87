//! Forgetting old history, a batch of rows at a time.

use super::{Store, execute, query};
use crate::queue::{History, Pruned, StoreError};

impl History for Store {
    fn prune(&self, before: i64, batch: usize) -> Result<Pruned, StoreError> {
        // The last finished job of each lane stays: the stack pages show it.
        let keep: Vec<i64> = self.conn(async |c| {
            let rows = query(
                c,
                "SELECT MAX(id) FROM jobs WHERE state NOT IN ('queued', 'running', 'superseded')
                 GROUP BY lane",
                &[],
            )
            .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        Ok(Pruned {
            jobs: self.drain(
                "jobs",
                "state NOT IN ('queued', 'running', 'held') AND finished_at < $1 AND id <> ALL($3)",
                before,
                Some(&keep),
                batch,
            )?,
            statuses: self.drain(
                "statuses",
                "posted_at IS NOT NULL AND created_at < $1",
                before,
                None,
                batch,
            )?,
            comments: self.drain(
                "comments",
                "posted_at IS NOT NULL AND created_at < $1",
                before,
                None,
                batch,
            )?,
            // A check run is written by its job only, which ended long before.
            checks: self.drain(
                "check_runs",
                "posted_at IS NOT NULL AND created_at < $1",
                before,
                None,
                batch,
            )? + self.drain("check_run_ids", "created_at < $1", before, None, batch)?,
            deliveries: self.drain("deliveries", "received_at < $1", before, None, batch)?,
        })
    }
}

impl Store {
    /// Deletes the rows of `table` matching `condition` (`$1`: `before`, `$3`: `keep`),
    /// `batch` at a time, one transaction each, so that no step holds many rows.
    fn drain(
        &self,
        table: &str,
        condition: &str,
        before: i64,
        keep: Option<&[i64]>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let batch = batch.max(1) as i64;
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} LIMIT $2)"
        );
        let mut total = 0;
        loop {
            let n = self.conn(async |c| match keep {
                Some(k) => execute(c, &sql, &[&before, &batch, &k]).await,
                None => execute(c, &sql, &[&before, &batch]).await,
            })?;
            total += n as usize;
            if (n as i64) < batch {
                return Ok(total);
            }
        }
    }
}
