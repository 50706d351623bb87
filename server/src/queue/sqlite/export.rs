//! Every row as stored, for `stackgate state copy`.

use super::Store;
use crate::queue::StoreError;
use crate::queue::copy::{
    CheckRunIdRow, CheckRunRow, CommentRow, DeliveryRow, DriftCheckRow, JobRow, LedgerRow, Rows,
    StatusRow,
};

impl Store {
    pub fn export(&self) -> Result<Rows, StoreError> {
        self.with(|c| {
            // One read transaction: every table as of one moment, though the service were
            // still writing. Only read, it ends with a rollback when dropped.
            let c = c.transaction()?;
            let mut rows = Rows::default();
            let mut q = c.prepare(
                "SELECT id, kind, repo, stack, sha, lane, pr, fork, trigger, delivery, state, phase,
                        change_set_id, stack_id, detail, created_at, started_at, finished_at,
                        superseded_by, attempts, owner, lease_until, fence FROM jobs ORDER BY id",
            )?;
            rows.jobs = q
                .query_map([], |r| {
                    let detail: String = r.get(14)?;
                    Ok(JobRow {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        repo: r.get(2)?,
                        stack: r.get(3)?,
                        sha: r.get(4)?,
                        lane: r.get(5)?,
                        pr: r.get(6)?,
                        fork: r.get::<_, i64>(7)? != 0,
                        trigger: r.get(8)?,
                        delivery: r.get(9)?,
                        state: r.get(10)?,
                        phase: r.get(11)?,
                        change_set_id: r.get(12)?,
                        stack_id: r.get(13)?,
                        // As the job page reads it: what is not JSON is no detail.
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                        created_at: r.get(15)?,
                        started_at: r.get(16)?,
                        finished_at: r.get(17)?,
                        superseded_by: r.get(18)?,
                        attempts: r.get(19)?,
                        owner: r.get(20)?,
                        lease_until: r.get(21)?,
                        fence: r.get(22)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT id, event, repo, received_at, jobs FROM deliveries ORDER BY received_at",
            )?;
            rows.deliveries = q
                .query_map([], |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        event: r.get(1)?,
                        repo: r.get(2)?,
                        received_at: r.get(3)?,
                        jobs: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT repo, stack, sha, removed, at, stack_name, region, account FROM deployed
                 ORDER BY repo, stack",
            )?;
            rows.ledger = q
                .query_map([], |r| {
                    Ok(LedgerRow {
                        repo: r.get(0)?,
                        stack: r.get(1)?,
                        sha: r.get(2)?,
                        removed: r.get::<_, i64>(3)? != 0,
                        at: r.get(4)?,
                        stack_name: r.get(5)?,
                        region: r.get(6)?,
                        account: r.get(7)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT id, job, repo, sha, context, state, description, target_url, created_at,
                        posted_at, attempts, last_error FROM statuses ORDER BY id",
            )?;
            rows.statuses = q
                .query_map([], |r| {
                    Ok(StatusRow {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        repo: r.get(2)?,
                        sha: r.get(3)?,
                        context: r.get(4)?,
                        state: r.get(5)?,
                        description: r.get(6)?,
                        target_url: r.get(7)?,
                        created_at: r.get(8)?,
                        posted_at: r.get(9)?,
                        attempts: r.get(10)?,
                        last_error: r.get(11)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT id, job, repo, pr, body, after_status, created_at, posted_at, attempts,
                        last_error FROM comments ORDER BY id",
            )?;
            rows.comments = q
                .query_map([], |r| {
                    Ok(CommentRow {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        repo: r.get(2)?,
                        pr: r.get(3)?,
                        body: r.get(4)?,
                        after_status: r.get(5)?,
                        created_at: r.get(6)?,
                        posted_at: r.get(7)?,
                        attempts: r.get(8)?,
                        last_error: r.get(9)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q =
                c.prepare("SELECT repo, pr, comment_id FROM pr_comments ORDER BY repo, pr")?;
            rows.pr_comments = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT id, job, repo, sha, name, state, title, summary, annotations, details_url,
                        external_id, created_at, posted_at, attempts, last_error
                 FROM check_runs ORDER BY id",
            )?;
            rows.check_runs = q
                .query_map([], |r| {
                    let annotations: String = r.get(8)?;
                    Ok(CheckRunRow {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        repo: r.get(2)?,
                        sha: r.get(3)?,
                        name: r.get(4)?,
                        state: r.get(5)?,
                        title: r.get(6)?,
                        summary: r.get(7)?,
                        // As the poster reads it: what is not JSON is no annotations.
                        annotations: serde_json::from_str(&annotations)
                            .unwrap_or_else(|_| serde_json::json!([])),
                        details_url: r.get(9)?,
                        external_id: r.get(10)?,
                        created_at: r.get(11)?,
                        posted_at: r.get(12)?,
                        attempts: r.get(13)?,
                        last_error: r.get(14)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT id, job, name, check_run_id, created_at FROM check_run_ids ORDER BY id",
            )?;
            rows.check_run_ids = q
                .query_map([], |r| {
                    Ok(CheckRunIdRow {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        name: r.get(2)?,
                        check_run_id: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut q = c.prepare(
                "SELECT repo, stack, sha, job, state, drifted, live_findings, checked_at FROM drift
                 ORDER BY repo, stack",
            )?;
            rows.drift = q
                .query_map([], |r| {
                    Ok(DriftCheckRow {
                        repo: r.get(0)?,
                        stack: r.get(1)?,
                        sha: r.get(2)?,
                        job: r.get(3)?,
                        state: r.get(4)?,
                        drifted: r.get(5)?,
                        live_findings: r.get(6)?,
                        checked_at: r.get(7)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}
