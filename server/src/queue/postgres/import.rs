//! Taking in every row of another backend (`stackgate state copy`), in one transaction,
//! ids kept and each id sequence moved past them.

use super::{Store, execute, query};
use crate::queue::StoreError;
use crate::queue::copy::Rows;

impl Store {
    /// Takes in `rows`; refuses a database that already holds jobs.
    pub fn import(&self, rows: &Rows) -> Result<(), StoreError> {
        self.tx(async |tx| {
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
            for j in &rows.jobs {
                execute(
                    tx,
                    "INSERT INTO jobs (id, kind, repo, stack, sha, lane, pr, fork, trigger, delivery,
                       state, phase, change_set_id, stack_id, detail, created_at, started_at,
                       finished_at, superseded_by, attempts, owner, lease_until, fence)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                       $16, $17, $18, $19, $20, $21, $22, $23)",
                    &[
                        &j.id,
                        &j.kind,
                        &j.repo,
                        &j.stack,
                        &j.sha,
                        &j.lane,
                        &j.pr,
                        &j.fork,
                        &j.trigger,
                        &j.delivery,
                        &j.state,
                        &j.phase,
                        &j.change_set_id,
                        &j.stack_id,
                        &j.detail,
                        &j.created_at,
                        &j.started_at,
                        &j.finished_at,
                        &j.superseded_by,
                        &j.attempts,
                        &j.owner,
                        &j.lease_until,
                        &j.fence,
                    ],
                )
                .await?;
            }
            for d in &rows.deliveries {
                execute(
                    tx,
                    "INSERT INTO deliveries (id, event, repo, received_at, jobs) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING",
                    &[&d.id, &d.event, &d.repo, &d.received_at, &d.jobs],
                )
                .await?;
            }
            for l in &rows.ledger {
                execute(
                    tx,
                    "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &l.repo,
                        &l.stack,
                        &l.sha,
                        &l.removed,
                        &l.at,
                        &l.stack_name,
                        &l.region,
                        &l.account,
                    ],
                )
                .await?;
            }
            for s in &rows.statuses {
                execute(
                    tx,
                    "INSERT INTO statuses (id, job, repo, sha, context, state, description, target_url,
                       created_at, posted_at, attempts, last_error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    &[
                        &s.id,
                        &s.job,
                        &s.repo,
                        &s.sha,
                        &s.context,
                        &s.state,
                        &s.description,
                        &s.target_url,
                        &s.created_at,
                        &s.posted_at,
                        &s.attempts,
                        &s.last_error,
                    ],
                )
                .await?;
            }
            for c in &rows.comments {
                execute(
                    tx,
                    "INSERT INTO comments (id, job, repo, pr, body, after_status, created_at,
                       posted_at, attempts, last_error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &c.id,
                        &c.job,
                        &c.repo,
                        &c.pr,
                        &c.body,
                        &c.after_status,
                        &c.created_at,
                        &c.posted_at,
                        &c.attempts,
                        &c.last_error,
                    ],
                )
                .await?;
            }
            for (repo, pr, comment) in &rows.pr_comments {
                execute(
                    tx,
                    "INSERT INTO pr_comments (repo, pr, comment_id) VALUES ($1, $2, $3)",
                    &[repo, pr, comment],
                )
                .await?;
            }
            // New ids go past the copied ones.
            for table in ["jobs", "statuses", "comments"] {
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
