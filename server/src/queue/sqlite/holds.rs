//! Held change sets: a decision queues the held job again; a newer deploy of the stack
//! closes the holds its lane still has.

use rusqlite::params;

use super::{JOB_COLUMNS, Store, add_status, read_jobs};
use crate::domain::{JobId, JobState};
use crate::queue::lanes::stack_lane;
use crate::queue::{Decided, Holds, Job, StatusUpdate, StoreError, Undecidable, now};

impl Holds for Store {
    fn decide(&self, id: JobId, decided: &Decided) -> Result<Result<Job, Undecidable>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let Some(job) = read_jobs(
                &tx,
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
            )?
            .pop() else {
                return Ok(Err(Undecidable::NotFound(id)));
            };
            if job.state != JobState::Held {
                return Ok(Err(Undecidable::NotHeld {
                    id,
                    state: job.state,
                }));
            }
            let newer: Option<i64> = tx
                .prepare_cached(
                    "SELECT MIN(id) FROM jobs WHERE lane = (SELECT lane FROM jobs WHERE id = ?1)
                     AND id > ?1 AND state IN ('queued', 'running', 'held')",
                )?
                .query_row([id], |r| r.get(0))?;
            if let Some(newer) = newer {
                return Ok(Err(Undecidable::Newer {
                    id,
                    newer: JobId(newer),
                }));
            }
            let mut detail = job.detail.clone();
            detail["decision"] = serde_json::json!(decided);
            // A new piece of work: the attempts that count towards a poisoned job start over.
            tx.prepare_cached(
                "UPDATE jobs SET state = 'queued', detail = ?2, finished_at = NULL, attempts = 0
                 WHERE id = ?1 AND state = 'held'",
            )?
            .execute(params![id, detail.to_string()])?;
            let job = read_jobs(
                &tx,
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
            )?
            .pop();
            tx.commit()?;
            Ok(job.ok_or(Undecidable::NotFound(id)))
        })
    }

    fn stale_holds(&self, repo: &str, stack: &str, before: JobId) -> Result<Vec<Job>, StoreError> {
        let lane = stack_lane(repo, stack);
        self.with(|c| {
            read_jobs(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = ?1 AND id < ?2 AND phase = 'held'
                     AND state IN ('held', 'superseded') ORDER BY id"
                ),
                params![lane.as_str(), before],
            )
        })
    }

    fn close_hold(
        &self,
        id: JobId,
        by: JobId,
        statuses: &[StatusUpdate],
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET phase = 'done',
                         state = CASE WHEN state = 'held' THEN 'superseded' ELSE state END,
                         superseded_by = COALESCE(superseded_by, ?2),
                         finished_at = COALESCE(finished_at, ?3)
                     WHERE id = ?1 AND phase = 'held' AND state IN ('held', 'superseded')",
                )?
                .execute(params![id, by, now()])?;
            if n > 0 {
                for s in statuses {
                    add_status(&tx, Some(id), s)?;
                }
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }
}
