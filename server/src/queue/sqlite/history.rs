//! Forgetting old history, a batch of rows at a time.

use rusqlite::{OptionalExtension, params};

use super::{Store, unsynced};
use crate::queue::{History, Pruned, StoreError};

impl History for Store {
    fn prune(&self, before: i64, batch: usize) -> Result<Pruned, StoreError> {
        let keep: String = self.with(|c| {
            c.query_row(
                "SELECT json_group_array(id) FROM (SELECT MAX(id) AS id FROM jobs
                 WHERE state NOT IN ('queued', 'running', 'superseded') GROUP BY lane)",
                [],
                |r| r.get(0),
            )
        })?;
        Ok(Pruned {
            jobs: self.drain(
                "jobs",
                "created_at",
                "state NOT IN ('queued', 'running', 'held') AND finished_at < ?3
                 AND id NOT IN (SELECT value FROM json_each(?4))",
                before,
                Some(&keep),
                batch,
            )?,
            statuses: self.drain(
                "statuses",
                "created_at",
                "posted_at IS NOT NULL AND created_at < ?3",
                before,
                None,
                batch,
            )?,
            comments: self.drain(
                "comments",
                "created_at",
                "posted_at IS NOT NULL AND created_at < ?3",
                before,
                None,
                batch,
            )?,
            // A check run is written by its job only, which ended long before.
            checks: self.drain(
                "check_runs",
                "created_at",
                "posted_at IS NOT NULL AND created_at < ?3",
                before,
                None,
                batch,
            )? + self.drain(
                "check_run_ids",
                "created_at",
                "created_at < ?3",
                before,
                None,
                batch,
            )?,
            deliveries: self.drain(
                "deliveries",
                "received_at",
                "received_at < ?3",
                before,
                None,
                batch,
            )?,
        })
    }
}

impl Store {
    /// Deletes the rows of `table` matching `condition` (`?3`: `before`, `?4`: `extra`),
    /// walking rowids `batch` at a time from the oldest, one transaction each, and stopping
    /// at the first row whose `stamp` is not before `before`. Rowids follow time, so no step
    /// reads more than a batch of rows however large the table: deliveries wait on a step.
    fn drain(
        &self,
        table: &str,
        stamp: &str,
        condition: &str,
        before: i64,
        extra: Option<&str>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let batch = batch.max(1) as i64;
        let first =
            format!("SELECT rowid, {stamp} FROM {table} WHERE rowid >= ?1 ORDER BY rowid LIMIT 1");
        let delete = format!("DELETE FROM {table} WHERE rowid BETWEEN ?1 AND ?2 AND {condition}");
        let (mut total, mut from) = (0, i64::MIN);
        loop {
            // Forgetting need not survive a power cut: it is simply done again.
            let step = self.with(|c| {
                let Some((start, at)) = c
                    .prepare_cached(&first)?
                    .query_row([from], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()?
                else {
                    return Ok(None);
                };
                if at >= before {
                    return Ok(None);
                }
                let end = start.saturating_add(batch - 1);
                let n = unsynced(c, self.synchronous, |c| {
                    let mut stmt = c.prepare_cached(&delete)?;
                    match extra {
                        Some(x) => stmt.execute(params![start, end, before, x]),
                        None => stmt.execute(params![start, end, before]),
                    }
                })?;
                Ok(Some((end, n)))
            })?;
            let Some((end, n)) = step else {
                return Ok(total);
            };
            total += n;
            if end == i64::MAX {
                return Ok(total);
            }
            from = end + 1;
        }
    }
}
