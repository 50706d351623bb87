//! The console's reads: the ledger, each lane's newest job, a stack's runs, a PR's previews.

use tokio_postgres::Row;

use super::{JOB_COLUMNS, Store, job_from_row, name, query, query_opt, read_jobs};
use crate::domain::{JobId, StackIdentity};
use crate::queue::lanes::{pr_lane, stack_lane};
use crate::queue::{Console, Job, LedgerLine, LedgerRow, RunSummary, StoreError, UnreadableRow};

/// A run's columns without its detail, and the facts of the detail a list shows.
const SUMMARY_COLUMNS: &str =
    "id, kind, repo, stack, sha, pr, trigger, state, phase, created_at, started_at, finished_at,
     detail #>> '{policy,verdict}', detail #>> '{identity,account}',
     detail #>> '{identity,region}', detail #>> '{identity,name}'";

fn identity(
    account: Option<String>,
    region: Option<String>,
    name: Option<String>,
) -> Option<StackIdentity> {
    Some(StackIdentity {
        account: account?,
        region: region?,
        name: name?,
    })
}

fn summary_from_row(r: &Row) -> Result<RunSummary, UnreadableRow> {
    let phase: Option<String> = r.get(8);
    Ok(RunSummary {
        id: JobId(r.get(0)),
        kind: name(r, "jobs", 1)?,
        repo: r.get(2),
        stack: r.get(3),
        sha: r.get(4),
        pr: r.get::<_, Option<i64>>(5).map(|p| p as u64),
        trigger: name(r, "jobs", 6)?,
        state: name(r, "jobs", 7)?,
        phase: match phase {
            Some(_) => Some(name(r, "jobs", 8)?),
            None => None,
        },
        created_at: r.get(9),
        started_at: r.get(10),
        finished_at: r.get(11),
        verdict: r.get(12),
        identity: identity(r.get(13), r.get(14), r.get(15)),
    })
}

/// Summaries, leaving out the rows this version cannot read: a page shows the rest.
fn summaries(rows: &[Row]) -> Vec<RunSummary> {
    rows.iter()
        .filter_map(|r| match summary_from_row(r) {
            Ok(s) => Some(s),
            Err(bad) => {
                tracing::warn!(error = %bad, "run left out");
                None
            }
        })
        .collect()
}

impl Console for Store {
    fn ledger_lines(&self) -> Result<Vec<LedgerLine>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT repo, stack, sha, removed, at, account, region, stack_name FROM deployed
                 ORDER BY repo, stack",
                &[],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|r| LedgerLine {
                    repo: r.get(0),
                    stack: r.get(1),
                    row: LedgerRow {
                        sha: r.get(2),
                        removed: r.get(3),
                        identity: identity(r.get(5), r.get(6), r.get(7)),
                    },
                    at: r.get(4),
                })
                .collect())
        })
    }

    /// A lane's newest job is never superseded (what supersedes it is newer, in its lane),
    /// so this is a plain newest-per-lane, and the outer filter keeps the stack lanes.
    /// PostgreSQL has no skip scan: `MAX(id) … GROUP BY lane` would go over every entry of
    /// `jobs_lane_id`, growing with the history. The recursive part walks that index from
    /// lane to next lane instead (one probe per lane), and each lane's newest job is one
    /// more probe: the work grows with the lanes, not with the runs.
    fn lane_heads(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                &format!(
                    "WITH RECURSIVE lanes(lane) AS (
                         (SELECT lane FROM jobs ORDER BY lane LIMIT 1)
                         UNION ALL
                         SELECT (SELECT j.lane FROM jobs j WHERE j.lane > lanes.lane
                                 ORDER BY j.lane LIMIT 1)
                         FROM lanes WHERE lanes.lane IS NOT NULL
                     )
                     SELECT {SUMMARY_COLUMNS} FROM lanes CROSS JOIN LATERAL (
                         SELECT * FROM jobs WHERE jobs.lane = lanes.lane ORDER BY id DESC LIMIT 1
                     ) AS head
                     WHERE kind = 'deploy' AND stack IS NOT NULL AND state <> 'superseded'
                     ORDER BY repo, stack"
                ),
                &[],
            )
            .await?;
            Ok(summaries(&rows))
        })
    }

    fn stack_runs(
        &self,
        repo: &str,
        stack: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let lane = stack_lane(repo, stack);
        let (limit, offset) = (limit as i64, offset as i64);
        self.conn(async |c| {
            let rows = query(
                c,
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM jobs WHERE lane = $1
                     ORDER BY id DESC LIMIT $2 OFFSET $3"
                ),
                &[&lane.as_str(), &limit, &offset],
            )
            .await?;
            Ok(summaries(&rows))
        })
    }

    fn last_succeeded(
        &self,
        repo: &str,
        stack: &str,
        with_outputs: bool,
    ) -> Result<Option<Job>, StoreError> {
        let lane = stack_lane(repo, stack);
        let outputs = if with_outputs {
            "AND detail ? 'outputs'"
        } else {
            ""
        };
        self.conn(async |c| {
            let row = query_opt(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = $1 AND state = 'succeeded' {outputs}
                     ORDER BY id DESC LIMIT 1"
                ),
                &[&lane.as_str()],
            )
            .await?;
            row.map(|r| job_from_row(&r).map_err(|bad| StoreError::Backend(Box::new(bad))))
                .transpose()
        })
    }

    fn pr_runs(&self, repo: &str, pr: u64, limit: usize) -> Result<Vec<Job>, StoreError> {
        let lane = pr_lane(repo, pr);
        let limit = limit as i64;
        self.conn(async |c| {
            read_jobs(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = $1 AND kind = 'preview'
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&lane.as_str(), &limit],
            )
            .await
        })
    }
}
