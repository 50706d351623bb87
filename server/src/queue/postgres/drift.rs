//! Each stack folder's latest drift check.

use tokio_postgres::Row;

use super::jobs::holds;
use super::{Store, execute, name, query, query_opt};
use crate::domain::JobId;
use crate::queue::lease::Claim;
use crate::queue::{DriftRow, Drifts, StoreError};

const COLUMNS: &str = "repo, stack, sha, job, state, drifted, live_findings, checked_at";

fn row(r: &Row) -> Result<DriftRow, StoreError> {
    Ok(DriftRow {
        repo: r.get(0),
        stack: r.get(1),
        sha: r.get(2),
        job: JobId(r.get(3)),
        state: name(r, "drift", 4).map_err(StoreError::backend)?,
        drifted: r.get(5),
        live_findings: r.get(6),
        checked_at: r.get(7),
    })
}

impl Drifts for Store {
    fn record_drift(&self, claim: Claim, d: &DriftRow) -> Result<Option<DriftRow>, StoreError> {
        self.tx(async |tx| {
            // Only while the claim holds its job: a replica that lost it writes nothing.
            holds(tx, claim).await?;
            let before = query_opt(
                tx,
                &format!("SELECT {COLUMNS} FROM drift WHERE repo = $1 AND stack = $2 FOR UPDATE"),
                &[&d.repo, &d.stack],
            )
            .await?
            .map(|r| row(&r))
            .transpose()?;
            execute(
                tx,
                "INSERT INTO drift (repo, stack, sha, job, state, drifted, live_findings, checked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (repo, stack) DO UPDATE SET sha = excluded.sha, job = excluded.job,
                     state = excluded.state, drifted = excluded.drifted,
                     live_findings = excluded.live_findings, checked_at = excluded.checked_at",
                &[
                    &d.repo,
                    &d.stack,
                    &d.sha,
                    &d.job.0,
                    &d.state.as_str(),
                    &d.drifted,
                    &d.live_findings,
                    &d.checked_at,
                ],
            )
            .await?;
            Ok(before)
        })
    }

    /// Of the stacks still deployed: a removed stack's last check says nothing now.
    fn drifts(&self) -> Result<Vec<DriftRow>, StoreError> {
        self.conn(async |c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM drift WHERE EXISTS (SELECT 1 FROM deployed l
                         WHERE l.repo = drift.repo AND l.stack = drift.stack AND NOT l.removed)
                     ORDER BY repo, stack"
                ),
                &[],
            )
            .await?
            .iter()
            .map(row)
            .collect()
        })
    }
}
