//! Taking in every row of another backend (`stackgate state copy`), in one transaction,
//! ids kept and each id sequence moved past them.
//!
//! Rows go in batches, each one statement of column arrays (`UNNEST`): a round trip per
//! row would take minutes over a network for a busy installation's history.

use std::time::Duration;

use super::{Store, execute, query};
use crate::queue::StoreError;
use crate::queue::copy::Rows;

/// Rows per statement: a few MB of parameters at most.
const BATCH: usize = 5_000;
/// The whole copy's deadline: it grows with the data, unlike any other call.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One column of a batch.
fn col<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

impl Store {
    /// Takes in `rows`; refuses a database that already holds jobs.
    pub fn import(&self, rows: &Rows) -> Result<(), StoreError> {
        self.tx_within(IMPORT_TIMEOUT, async |tx| {
            // Nobody else enqueues meanwhile: the lock every enqueue takes.
            super::lock_outbox(tx).await?;
            let jobs: i64 = query(tx, "SELECT COUNT(*) FROM jobs", &[]).await?[0].get(0);
            if jobs > 0 {
                return Err(StoreError::Backend(
                    format!(
                        "the target already holds {jobs} jobs: copy into a new, empty database"
                    )
                    .into(),
                ));
            }
            for b in rows.jobs.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO jobs (id, kind, repo, stack, sha, lane, pr, fork, trigger, delivery,
                       state, phase, change_set_id, stack_id, detail, created_at, started_at,
                       finished_at, superseded_by, attempts, owner, lease_until, fence)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::bigint[], $8::boolean[], $9::text[],
                       $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                       $15::jsonb[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[],
                       $20::bigint[], $21::text[], $22::bigint[], $23::bigint[])",
                    &[
                        &col(b, |j| j.id),
                        &col(b, |j| j.kind.as_str()),
                        &col(b, |j| j.repo.as_str()),
                        &col(b, |j| j.stack.as_deref()),
                        &col(b, |j| j.sha.as_str()),
                        &col(b, |j| j.lane.as_str()),
                        &col(b, |j| j.pr),
                        &col(b, |j| j.fork),
                        &col(b, |j| j.trigger.as_str()),
                        &col(b, |j| j.delivery.as_deref()),
                        &col(b, |j| j.state.as_str()),
                        &col(b, |j| j.phase.as_deref()),
                        &col(b, |j| j.change_set_id.as_deref()),
                        &col(b, |j| j.stack_id.as_deref()),
                        &col(b, |j| &j.detail),
                        &col(b, |j| j.created_at),
                        &col(b, |j| j.started_at),
                        &col(b, |j| j.finished_at),
                        &col(b, |j| j.superseded_by),
                        &col(b, |j| j.attempts),
                        &col(b, |j| j.owner.as_deref()),
                        &col(b, |j| j.lease_until),
                        &col(b, |j| j.fence),
                    ],
                )
                .await?;
            }
            for b in rows.deliveries.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO deliveries (id, event, repo, received_at, jobs)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                       $5::bigint[])
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &col(b, |d| d.id.as_str()),
                        &col(b, |d| d.event.as_str()),
                        &col(b, |d| d.repo.as_deref()),
                        &col(b, |d| d.received_at),
                        &col(b, |d| d.jobs),
                    ],
                )
                .await?;
            }
            for b in rows.ledger.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::boolean[],
                       $5::bigint[], $6::text[], $7::text[], $8::text[])",
                    &[
                        &col(b, |l| l.repo.as_str()),
                        &col(b, |l| l.stack.as_str()),
                        &col(b, |l| l.sha.as_str()),
                        &col(b, |l| l.removed),
                        &col(b, |l| l.at),
                        &col(b, |l| l.stack_name.as_deref()),
                        &col(b, |l| l.region.as_deref()),
                        &col(b, |l| l.account.as_deref()),
                    ],
                )
                .await?;
            }
            for b in rows.statuses.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO statuses (id, job, repo, sha, context, state, description, target_url,
                       created_at, posted_at, attempts, last_error)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
                       $10::bigint[], $11::bigint[], $12::text[])",
                    &[
                        &col(b, |s| s.id),
                        &col(b, |s| s.job),
                        &col(b, |s| s.repo.as_str()),
                        &col(b, |s| s.sha.as_str()),
                        &col(b, |s| s.context.as_str()),
                        &col(b, |s| s.state.as_str()),
                        &col(b, |s| s.description.as_str()),
                        &col(b, |s| s.target_url.as_str()),
                        &col(b, |s| s.created_at),
                        &col(b, |s| s.posted_at),
                        &col(b, |s| s.attempts),
                        &col(b, |s| s.last_error.as_deref()),
                    ],
                )
                .await?;
            }
            for b in rows.comments.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO comments (id, job, repo, pr, body, after_status, created_at,
                       posted_at, attempts, last_error)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                       $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                       $10::text[])",
                    &[
                        &col(b, |c| c.id),
                        &col(b, |c| c.job),
                        &col(b, |c| c.repo.as_str()),
                        &col(b, |c| c.pr),
                        &col(b, |c| c.body.as_str()),
                        &col(b, |c| c.after_status),
                        &col(b, |c| c.created_at),
                        &col(b, |c| c.posted_at),
                        &col(b, |c| c.attempts),
                        &col(b, |c| c.last_error.as_deref()),
                    ],
                )
                .await?;
            }
            for b in rows.pr_comments.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO pr_comments (repo, pr, comment_id)
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])",
                    &[
                        &col(b, |(repo, _, _)| repo.as_str()),
                        &col(b, |(_, pr, _)| *pr),
                        &col(b, |(_, _, comment)| *comment),
                    ],
                )
                .await?;
            }
            for b in rows.check_runs.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO check_runs (id, job, repo, sha, name, state, title, summary,
                       annotations, details_url, external_id, created_at, posted_at, attempts,
                       last_error)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                       $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[],
                       $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], $15::text[])",
                    &[
                        &col(b, |c| c.id),
                        &col(b, |c| c.job),
                        &col(b, |c| c.repo.as_str()),
                        &col(b, |c| c.sha.as_str()),
                        &col(b, |c| c.name.as_str()),
                        &col(b, |c| c.state.as_str()),
                        &col(b, |c| c.title.as_str()),
                        &col(b, |c| c.summary.as_str()),
                        &col(b, |c| &c.annotations),
                        &col(b, |c| c.details_url.as_str()),
                        &col(b, |c| c.external_id.as_str()),
                        &col(b, |c| c.created_at),
                        &col(b, |c| c.posted_at),
                        &col(b, |c| c.attempts),
                        &col(b, |c| c.last_error.as_deref()),
                    ],
                )
                .await?;
            }
            for b in rows.check_run_ids.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO check_run_ids (id, job, name, check_run_id, created_at)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                       $5::bigint[])",
                    &[
                        &col(b, |c| c.id),
                        &col(b, |c| c.job),
                        &col(b, |c| c.name.as_str()),
                        &col(b, |c| c.check_run_id),
                        &col(b, |c| c.created_at),
                    ],
                )
                .await?;
            }
            for b in rows.drift.chunks(BATCH) {
                execute(
                    tx,
                    "INSERT INTO drift (repo, stack, sha, job, state, drifted, live_findings,
                       checked_at)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[],
                       $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])",
                    &[
                        &col(b, |d| d.repo.as_str()),
                        &col(b, |d| d.stack.as_str()),
                        &col(b, |d| d.sha.as_str()),
                        &col(b, |d| d.job),
                        &col(b, |d| d.state.as_str()),
                        &col(b, |d| d.drifted),
                        &col(b, |d| d.live_findings),
                        &col(b, |d| d.checked_at),
                    ],
                )
                .await?;
            }
            // New ids go past the copied ones.
            for table in ["jobs", "statuses", "comments", "check_runs", "check_run_ids"] {
                query(
                    tx,
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                       GREATEST((SELECT MAX(id) FROM {table}), 1),
                                       (SELECT MAX(id) FROM {table}) IS NOT NULL)"
                    ),
                    &[],
                )
                .await?;
            }
            Ok(())
        })
    }
}
