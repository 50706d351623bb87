//! The console's reads: the ledger, each lane's newest job, a stack's runs, a PR's previews.

use rusqlite::{OptionalExtension, params};

use super::{JOB_COLUMNS, Store, job_from_row, read_jobs, text, unreadable};
use crate::domain::StackIdentity;
use crate::queue::lanes::{pr_lane, stack_lane};
use crate::queue::{Console, Job, LedgerLine, LedgerRow, RunSummary, StoreError};

/// A run's columns without its detail, and the facts of the detail a list shows.
const SUMMARY_COLUMNS: &str =
    "id, kind, repo, stack, sha, pr, trigger, state, phase, created_at, started_at, finished_at,
     json_extract(detail, '$.policy.verdict'), json_extract(detail, '$.identity.account'),
     json_extract(detail, '$.identity.region'), json_extract(detail, '$.identity.name')";

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    let phase: Option<String> = r.get(8)?;
    let (account, region, name): (Option<String>, Option<String>, Option<String>) =
        (r.get(13)?, r.get(14)?, r.get(15)?);
    Ok(RunSummary {
        id: r.get(0)?,
        kind: text(r, "jobs", 1)?,
        repo: r.get(2)?,
        stack: r.get(3)?,
        sha: r.get(4)?,
        pr: r.get::<_, Option<i64>>(5)?.map(|p| p as u64),
        trigger: text(r, "jobs", 6)?,
        state: text(r, "jobs", 7)?,
        phase: match phase {
            Some(_) => Some(text(r, "jobs", 8)?),
            None => None,
        },
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        // A verdict that is not text (a hand-edited detail) is no verdict.
        verdict: r.get::<_, Option<String>>(12).ok().flatten(),
        identity: match (account, region, name) {
            (Some(account), Some(region), Some(name)) => Some(StackIdentity {
                account,
                region,
                name,
            }),
            _ => None,
        },
    })
}

/// Summaries, leaving out the rows this version cannot read: a page shows the rest (the
/// dispatcher ends the live ones when it reads them).
fn read_summaries(
    c: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RunSummary>> {
    let mut out = Vec::new();
    for row in c.prepare_cached(sql)?.query_map(params, summary_from_row)? {
        match row {
            Ok(s) => out.push(s),
            Err(e) if unreadable(&e).is_some() => tracing::warn!(error = %e, "run left out"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Console for Store {
    fn ledger_lines(&self) -> Result<Vec<LedgerLine>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT repo, stack, sha, removed, at, account, region, stack_name FROM deployed
                 ORDER BY repo, stack",
            )?
            .query_map([], |r| {
                let (account, region, name): (Option<String>, Option<String>, Option<String>) =
                    (r.get(5)?, r.get(6)?, r.get(7)?);
                Ok(LedgerLine {
                    repo: r.get(0)?,
                    stack: r.get(1)?,
                    row: LedgerRow {
                        sha: r.get(2)?,
                        removed: r.get::<_, i64>(3)? != 0,
                        identity: match (account, region, name) {
                            (Some(account), Some(region), Some(name)) => Some(StackIdentity {
                                account,
                                region,
                                name,
                            }),
                            _ => None,
                        },
                    },
                    at: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// A lane's newest job is never superseded (what supersedes it is newer, in its lane),
    /// so the inner query is a plain newest-per-lane: one pass over an index on
    /// (lane, id) where there is one, and the outer filter keeps the stack lanes.
    fn lane_heads(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.with(|c| {
            read_summaries(
                c,
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM jobs
                     WHERE id IN (SELECT MAX(id) FROM jobs GROUP BY lane)
                         AND kind = 'deploy' AND stack IS NOT NULL AND state <> 'superseded'
                     ORDER BY repo, stack"
                ),
                [],
            )
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
        self.with(|c| {
            read_summaries(
                c,
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM jobs WHERE lane = ?1
                     ORDER BY id DESC LIMIT ?2 OFFSET ?3"
                ),
                params![lane.as_str(), limit as i64, offset as i64],
            )
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
            "AND json_extract(detail, '$.outputs') IS NOT NULL"
        } else {
            ""
        };
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = ?1 AND state = 'succeeded' {outputs}
                 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([lane.as_str()], job_from_row)
            .optional()
        })
    }

    fn pr_runs(&self, repo: &str, pr: u64, limit: usize) -> Result<Vec<Job>, StoreError> {
        let lane = pr_lane(repo, pr);
        self.with(|c| {
            read_jobs(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = ?1 AND kind = 'preview'
                     ORDER BY id DESC LIMIT ?2"
                ),
                params![lane.as_str(), limit as i64],
            )
        })
    }
}
