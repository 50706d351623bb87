//! Each stack folder's latest drift check.

use rusqlite::{OptionalExtension, params};

use super::{Store, text};
use crate::queue::lease::Claim;
use crate::queue::{DriftRow, Drifts, StoreError};

const COLUMNS: &str = "repo, stack, sha, job, state, drifted, live_findings, checked_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DriftRow> {
    Ok(DriftRow {
        repo: r.get(0)?,
        stack: r.get(1)?,
        sha: r.get(2)?,
        job: r.get(3)?,
        state: text(r, "drift", 4)?,
        drifted: r.get(5)?,
        live_findings: r.get(6)?,
        checked_at: r.get(7)?,
    })
}

impl Drifts for Store {
    fn record_drift(&self, claim: Claim, d: &DriftRow) -> Result<Option<DriftRow>, StoreError> {
        self.with_store(|c| {
            let tx = c.transaction()?;
            let before = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM drift WHERE repo = ?1 AND stack = ?2"),
                    params![d.repo, d.stack],
                    row,
                )
                .optional()?;
            // Only while the claim holds its job: a replica that lost it writes nothing.
            let n = tx.execute(
                "INSERT INTO drift (repo, stack, sha, job, state, drifted, live_findings, checked_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?4 AND fence = ?9 AND state = 'running')
                 ON CONFLICT (repo, stack) DO UPDATE SET sha = excluded.sha, job = excluded.job,
                     state = excluded.state, drifted = excluded.drifted,
                     live_findings = excluded.live_findings, checked_at = excluded.checked_at",
                params![
                    d.repo,
                    d.stack,
                    d.sha,
                    d.job,
                    d.state.as_str(),
                    d.drifted,
                    d.live_findings,
                    d.checked_at,
                    claim.fence
                ],
            )?;
            if n == 0 {
                return Err(StoreError::LeaseLost(claim));
            }
            tx.commit()?;
            Ok(before)
        })
    }

    /// Of the stacks still deployed: a removed stack's last check says nothing now.
    fn drifts(&self) -> Result<Vec<DriftRow>, StoreError> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM drift WHERE EXISTS (SELECT 1 FROM deployed l
                     WHERE l.repo = drift.repo AND l.stack = drift.stack AND l.removed = 0)
                 ORDER BY repo, stack"
            ))?
            .query_map([], row)?
            .collect()
        })
    }
}
