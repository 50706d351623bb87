//! The outbox: commit statuses and PR comments still to post, and the PR comment ids.

use rusqlite::{OptionalExtension, params};

use super::{Store, add_check, add_status, holds, text, unreadable, unsynced};
use crate::domain::{CheckState, JobId};
use crate::queue::lease::Claim;
use crate::queue::{
    CheckUpdate, Outbox, PendingCheck, PendingComment, PendingStatus, StatusUpdate, StoreError, now,
};

impl Outbox for Store {
    /// Queues statuses outside a job's end (e.g. "pending" as a step starts).
    fn add_statuses(
        &self,
        job: Option<Claim>,
        statuses: &[StatusUpdate],
    ) -> Result<(), StoreError> {
        self.with_store(|c| {
            let tx = c.transaction()?;
            if let Some(claim) = job {
                holds(&tx, claim)?;
            }
            for s in statuses {
                add_status(&tx, job.map(|c| c.job), s)?;
            }
            Ok(tx.commit()?)
        })
    }

    fn unposted_statuses(&self, limit: usize) -> Result<Vec<PendingStatus>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.id, s.repo, s.sha, s.context, s.state, s.description, s.target_url,
                        s.attempts, j.pr
                 FROM statuses s LEFT JOIN jobs j ON j.id = s.job
                 WHERE s.posted_at IS NULL ORDER BY s.id LIMIT ?1",
            )?;
            let rows: Vec<rusqlite::Result<PendingStatus>> = stmt
                .query_map([limit as i64], |r| {
                    Ok(PendingStatus {
                        id: r.get(0)?,
                        repo: r.get(1)?,
                        sha: r.get(2)?,
                        context: r.get(3)?,
                        state: text(r, "statuses", 4)?,
                        description: r.get(5)?,
                        target_url: r.get(6)?,
                        attempts: r.get(7)?,
                        pr: r.get::<_, Option<i64>>(8)?.map(|p| p as u64),
                    })
                })?
                .collect();
            drop(stmt);
            readable(c, "statuses", rows)
        })
    }

    /// Marks several statuses posted in one transaction.
    fn statuses_posted(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Not synced: after a power cut these are posted again, which is harmless (a
        // status is a state).
        self.with(|c| {
            unsynced(c, self.synchronous, |c| {
                let tx = c.transaction()?;
                let at = now();
                for id in ids {
                    tx.prepare_cached("UPDATE statuses SET posted_at = ?2 WHERE id = ?1")?
                        .execute(params![id, at])?;
                }
                tx.commit()
            })
        })
    }

    fn status_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.with(|c| mark_failed(c, "statuses", id, error, give_up).map(drop))
    }

    fn pr_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT comment_id FROM pr_comments WHERE repo = ?1 AND pr = ?2",
                params![repo, pr as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as u64))
        })
    }

    fn unposted_comments(&self, limit: usize) -> Result<Vec<PendingComment>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, repo, pr, body, after_status, attempts
                 FROM comments WHERE posted_at IS NULL ORDER BY id LIMIT ?1",
            )?;
            stmt.query_map([limit as i64], |r| {
                Ok(PendingComment {
                    id: r.get(0)?,
                    repo: r.get(1)?,
                    pr: r.get::<_, i64>(2)? as u64,
                    body: r.get(3)?,
                    after_status: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    fn comment_posted(&self, id: i64, comment: Option<(&str, u64, u64)>) -> Result<(), StoreError> {
        // Synced, unlike a status: a comment posted twice would be two comments.
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE comments SET posted_at = ?2 WHERE id = ?1",
                params![id, now()],
            )?;
            tx.execute(
                "UPDATE jobs SET detail = json_remove(detail, '$.comment_error')
                 WHERE id = (SELECT job FROM comments WHERE id = ?1)
                   AND json_extract(detail, '$.comment_error') IS NOT NULL",
                [id],
            )?;
            if let Some((repo, pr, comment)) = comment {
                tx.execute(
                    "INSERT INTO pr_comments (repo, pr, comment_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT(repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
                    params![repo, pr as i64, comment as i64],
                )?;
            }
            tx.commit()
        })
    }

    fn add_checks(&self, job: Claim, checks: &[CheckUpdate]) -> Result<(), StoreError> {
        self.with_store(|c| {
            let tx = c.transaction()?;
            holds(&tx, job)?;
            for check in checks {
                add_check(&tx, job.job, check)?;
            }
            Ok(tx.commit()?)
        })
    }

    fn unposted_checks(&self, limit: usize, held: &[i64]) -> Result<Vec<PendingCheck>, StoreError> {
        let held = serde_json::to_string(held).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, job, repo, sha, name, state, title, summary, annotations,
                        details_url, external_id, attempts, created_at
                 FROM check_runs c WHERE posted_at IS NULL AND (job, name) NOT IN (
                     SELECT job, name FROM check_runs
                     WHERE id IN (SELECT value FROM json_each(?2)))
                 ORDER BY id LIMIT ?1",
            )?;
            let rows: Vec<rusqlite::Result<PendingCheck>> = stmt
                .query_map(params![limit as i64, held], |r| {
                    let annotations: String = r.get(8)?;
                    Ok(PendingCheck {
                        id: r.get(0)?,
                        job: r.get(1)?,
                        repo: r.get(2)?,
                        sha: r.get(3)?,
                        name: r.get(4)?,
                        state: text(r, "check_runs", 5)?,
                        title: r.get(6)?,
                        summary: r.get(7)?,
                        annotations: serde_json::from_str(&annotations).map_err(|e| {
                            let bad = crate::queue::UnreadableRow {
                                table: "check_runs",
                                id: r.get(0).unwrap_or_default(),
                                column: "annotations".into(),
                                name: crate::domain::UnknownName {
                                    what: "annotation list",
                                    value: e.to_string(),
                                },
                            };
                            rusqlite::Error::FromSqlConversionFailure(
                                8,
                                rusqlite::types::Type::Text,
                                Box::new(bad),
                            )
                        })?,
                        details_url: r.get(9)?,
                        external_id: r.get(10)?,
                        attempts: r.get(11)?,
                        created_at: r.get(12)?,
                    })
                })?
                .collect();
            drop(stmt);
            readable(c, "check_runs", rows)
        })
    }

    fn keep_check_run(&self, job: JobId, name: &str, check_run: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO check_run_ids (job, name, check_run_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(job, name) DO UPDATE SET check_run_id = excluded.check_run_id",
                params![job, name, check_run as i64, now()],
            )
            .map(drop)
        })
    }

    fn check_run(&self, job: JobId, name: &str) -> Result<Option<u64>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT check_run_id FROM check_run_ids WHERE job = ?1 AND name = ?2",
                params![job, name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|v| v as u64))
        })
    }

    fn end_checks(
        &self,
        job: Claim,
        state: CheckState,
        title: &str,
        summary: &str,
    ) -> Result<usize, StoreError> {
        self.with_store(|c| {
            let tx = c.transaction()?;
            holds(&tx, job)?;
            let ended = super::end_open_checks(&tx, job.job, state, title, summary)?;
            tx.commit()?;
            Ok(ended)
        })
    }

    fn check_posted(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE check_runs SET posted_at = ?2 WHERE id = ?1",
                params![id, now()],
            )
            .map(drop)
        })
    }

    fn check_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.with(|c| mark_failed(c, "check_runs", id, error, give_up).map(drop))
    }

    fn comment_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            mark_failed(&tx, "comments", id, error, give_up)?;
            tx.execute(
                "UPDATE jobs SET detail = json_set(detail, '$.comment_error', ?2)
                 WHERE id = (SELECT job FROM comments WHERE id = ?1)",
                params![id, error],
            )?;
            tx.commit()
        })
    }
}

/// The rows read, less those another version wrote: each given up on, so that the rest
/// posts.
fn readable<T>(
    c: &rusqlite::Connection,
    table: &str,
    rows: Vec<rusqlite::Result<T>>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Ok(r) => out.push(r),
            Err(e) => match unreadable(&e) {
                Some(bad) => {
                    tracing::error!(error = %bad, table, "gave up on a row this version cannot read");
                    mark_failed(c, table, bad.id, &bad.to_string(), true)?;
                }
                None => return Err(e),
            },
        }
    }
    Ok(out)
}

fn mark_failed(
    c: &rusqlite::Connection,
    table: &str,
    id: i64,
    error: &str,
    give_up: bool,
) -> rusqlite::Result<usize> {
    c.execute(
        &format!(
            "UPDATE {table} SET attempts = attempts + 1, last_error = ?2,
                posted_at = CASE WHEN ?3 THEN -1 ELSE NULL END WHERE id = ?1"
        ),
        params![id, error, give_up],
    )
}
