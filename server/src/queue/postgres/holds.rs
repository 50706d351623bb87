//! Held change sets, as `sqlite/holds.rs`; a decision takes its lane's lock, so that an
//! enqueue or a claim in the lane cannot slip between its check and its write.

use super::{
    JOB_COLUMNS, LOCK_LANE, Store, add_status, execute, lock_outbox, query, query_opt, read_jobs,
};
use crate::domain::{JobId, JobState};
use crate::queue::lanes::stack_lane;
use crate::queue::{Decided, Holds, Job, StatusUpdate, StoreError, Undecidable, now};

impl Holds for Store {
    fn decide(&self, id: JobId, decided: &Decided) -> Result<Result<Job, Undecidable>, StoreError> {
        self.tx(async |tx| {
            let Some(lane) = query_opt(tx, "SELECT lane FROM jobs WHERE id = $1", &[&id.0]).await?
            else {
                return Ok(Err(Undecidable::NotFound(id)));
            };
            let lane: String = lane.get(0);
            query(
                tx,
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_LANE, &lane],
            )
            .await?;
            let select = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE");
            let Some(job) = read_jobs(tx, &select, &[&id.0]).await?.pop() else {
                return Ok(Err(Undecidable::NotFound(id)));
            };
            if job.state != JobState::Held {
                return Ok(Err(Undecidable::NotHeld {
                    id,
                    state: job.state,
                }));
            }
            let newer = query_opt(
                tx,
                "SELECT MIN(id) FROM jobs WHERE lane = $1 AND id > $2
                 AND state IN ('queued', 'running', 'held')",
                &[&lane, &id.0],
            )
            .await?
            .and_then(|r| r.get::<_, Option<i64>>(0));
            if let Some(newer) = newer {
                return Ok(Err(Undecidable::Newer {
                    id,
                    newer: JobId(newer),
                }));
            }
            let mut detail = job.detail.clone();
            detail["decision"] = serde_json::json!(decided);
            // A new piece of work: the attempts that count towards a poisoned job start over.
            execute(
                tx,
                "UPDATE jobs SET state = 'queued', detail = $2, finished_at = NULL, attempts = 0
                 WHERE id = $1 AND state = 'held'",
                &[&id.0, &detail],
            )
            .await?;
            let select = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
            Ok(read_jobs(tx, &select, &[&id.0])
                .await?
                .pop()
                .ok_or(Undecidable::NotFound(id)))
        })
    }

    fn stale_holds(&self, repo: &str, stack: &str, before: JobId) -> Result<Vec<Job>, StoreError> {
        let lane = stack_lane(repo, stack);
        self.conn(async |c| {
            read_jobs(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = $1 AND id < $2 AND phase = 'held'
                     AND state IN ('held', 'superseded') ORDER BY id"
                ),
                &[&lane.as_str(), &before.0],
            )
            .await
        })
    }

    fn close_hold(
        &self,
        id: JobId,
        by: JobId,
        statuses: &[StatusUpdate],
    ) -> Result<bool, StoreError> {
        self.tx(async |tx| {
            lock_outbox(tx).await?;
            let n = execute(
                tx,
                "UPDATE jobs SET phase = 'done',
                     state = CASE WHEN state = 'held' THEN 'superseded' ELSE state END,
                     superseded_by = COALESCE(superseded_by, $2),
                     finished_at = COALESCE(finished_at, $3)
                 WHERE id = $1 AND phase = 'held' AND state IN ('held', 'superseded')",
                &[&id.0, &by.0, &now()],
            )
            .await?;
            if n > 0 {
                for s in statuses {
                    add_status(tx, Some(id), s).await?;
                }
            }
            Ok(n > 0)
        })
    }
}
