//! Jobs: enqueued by lane (the rules are `queue::lanes`), claimed one per lane, ended once.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::{
    JOB_COLUMNS, Store, add_check, add_comment, add_status, end_open_checks, end_unreadable,
    fenced, job_from_row, read_jobs, unreadable,
};
use crate::domain::{CheckState, JobId, JobState, Lane, Phase};
use crate::queue::lanes::{self, Place};
use crate::queue::lease::{Claim, Lease, Orphans};
use crate::queue::{
    Job, Jobs, LedgerEntry, NOT_IN_RUN, NewJob, Outbound, QueuedStatuses, SYNC_DEBOUNCE_MS,
    StoreError, SupersededStatuses, now, superseded_checks,
};

impl Jobs for Store {
    /// Enqueues jobs (manual, poll, or a sync's expansion), superseding queued ones.
    fn enqueue(
        &self,
        jobs: &[NewJob],
        status_for: QueuedStatuses<'_>,
        superseded_status: SupersededStatuses<'_>,
    ) -> Result<Vec<JobId>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let jobs: Vec<_> = jobs.iter().map(|j| (j, None)).collect();
            let ids = enqueue_tx(&tx, &jobs, status_for, superseded_status)?;
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Claims up to `limit` queued jobs whose lane has nothing running, oldest first.
    fn claim(&self, lease: &Lease, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            // The parallel limit is each replica's own.
            let running: i64 = tx.query_row(
                "SELECT COUNT(*) FROM jobs INDEXED BY jobs_running WHERE state = 'running' AND owner = ?1",
                [lease.owner.as_str()],
                |r| r.get(0),
            )?;
            let room = limit.saturating_sub(running as usize);
            let mut claimed = Vec::new();
            // Again after a row this version cannot read was ended: its lane is free.
            loop {
                let room = room.saturating_sub(claimed.len());
                if room == 0 {
                    break;
                }
                let ids: Vec<JobId> = {
                    // A sync waits out SYNC_DEBOUNCE_MS so that a burst of pushes runs once:
                    // a newer push supersedes it meanwhile. Without INDEXED BY the planner
                    // scans every job ever run to return them in id order.
                    let mut stmt = tx.prepare_cached(
                        "SELECT id FROM jobs j INDEXED BY jobs_queued WHERE state = 'queued'
                           AND (kind != 'sync' OR created_at <= ?2)
                           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lane = j.lane AND r.state = 'running')
                           AND id = (SELECT MIN(id) FROM jobs q WHERE q.lane = j.lane AND q.state = 'queued')
                         ORDER BY id LIMIT ?1",
                    )?;
                    stmt.query_map(params![room as i64, now() - SYNC_DEBOUNCE_MS], |r| r.get(0))?
                        .collect::<Result<_, _>>()?
                };
                let mut ended = false;
                for id in ids {
                    let at = now();
                    tx.execute(
                        "UPDATE jobs SET state = 'running', started_at = ?2, attempts = attempts + 1,
                                         owner = ?3, lease_until = ?4, fence = fence + 1 WHERE id = ?1",
                        params![id, at, lease.owner.as_str(), at.saturating_add(lease.millis())],
                    )?;
                    match tx.query_row(
                        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                        [id],
                        job_from_row,
                    ) {
                        Ok(job) => claimed.push(job),
                        Err(e) => match unreadable(&e) {
                            Some(bad) => {
                                end_unreadable(&tx, bad)?;
                                ended = true;
                            }
                            None => return Err(e),
                        },
                    }
                }
                if !ended {
                    break;
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
    }

    /// The file is this process's alone: what ran before it is dead.
    fn orphans_at_start(&self) -> Orphans {
        Orphans::All
    }

    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()
        })
    }

    fn jobs_in_state(&self, state: JobState) -> Result<Vec<Job>, StoreError> {
        // The state is written into the text (one of a few names), not bound: with the
        // planner's plans fixed, only a literal lets it use the partial index of live jobs.
        self.with(|c| {
            read_jobs(
                c,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = '{}' ORDER BY id",
                    state.as_str()
                ),
                [],
            )
        })
    }

    fn recent_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            read_jobs(
                c,
                &format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"),
                [limit as i64],
            )
        })
    }

    fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let until = now().saturating_add(lease.millis());
            let mut held = Vec::with_capacity(claims.len());
            for claim in claims {
                let n = tx
                    .prepare_cached(
                        "UPDATE jobs SET lease_until = ?4
                         WHERE id = ?1 AND fence = ?2 AND owner = ?3 AND state = 'running'",
                    )?
                    .execute(params![claim.job, claim.fence, lease.owner.as_str(), until])?;
                if n == 1 {
                    held.push(*claim);
                }
            }
            tx.commit()?;
            held.sort_by_key(|c| c.job);
            Ok(held)
        })
    }

    fn take_over(&self, lease: &Lease, orphans: Orphans) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            // One transaction: SQLite's single writer is what PostgreSQL's
            // FOR UPDATE SKIP LOCKED gives several replicas, each orphan taken once.
            let tx = c.transaction()?;
            let at = now();
            // Expired: this owner's too (a job no worker here renews any more). All, at
            // start-up: every job but those this owner has already taken.
            let (expired_before, not_of) = match orphans {
                Orphans::Expired => (at, None),
                Orphans::All => (i64::MAX, Some(lease.owner.as_str())),
            };
            let ids: Vec<JobId> = tx
                .prepare_cached(
                    "SELECT id FROM jobs INDEXED BY jobs_running
                     WHERE state = 'running'
                       AND (lease_until IS NULL OR lease_until < ?1)
                       AND (?2 IS NULL OR owner IS NOT ?2)
                     ORDER BY id",
                )?
                .query_map(params![expired_before, not_of], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut taken = Vec::with_capacity(ids.len());
            for id in ids {
                tx.prepare_cached(
                    "UPDATE jobs SET owner = ?2, lease_until = ?3, fence = fence + 1 WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    lease.owner.as_str(),
                    at.saturating_add(lease.millis())
                ])?;
                match tx.query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                    [id],
                    job_from_row,
                ) {
                    Ok(job) => taken.push(job),
                    Err(e) => match unreadable(&e) {
                        Some(bad) => end_unreadable(&tx, bad)?,
                        None => return Err(e),
                    },
                }
            }
            tx.commit()?;
            Ok(taken)
        })
    }

    fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET attempts = MAX(attempts - 1, 0), owner = NULL, lease_until = 0
                 WHERE state = 'running' AND owner = ?1",
                [lease.owner.as_str()],
            )
        })
    }

    /// Counts one more attempt of a running job (a deploy resumed after a takeover).
    fn attempt(&self, claim: Claim) -> Result<(), StoreError> {
        self.with_store(|c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET attempts = attempts + 1
                 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[],
            )
        })
    }

    fn requeue(&self, claim: Claim) -> Result<(), StoreError> {
        self.with_store(|c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET state = 'queued', phase = NULL, owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[],
            )
        })
    }

    /// Records where a deploy stands; written before each step that AWS cannot undo.
    fn set_phase(
        &self,
        claim: Claim,
        phase: Phase,
        change_set_id: Option<&str>,
        stack_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_store(|c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET phase = ?3, change_set_id = COALESCE(?4, change_set_id),
                                 stack_id = COALESCE(?5, stack_id)
                 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[&phase.as_str(), &change_set_id, &stack_id],
            )
        })
    }

    fn set_detail(&self, claim: Claim, detail: &serde_json::Value) -> Result<(), StoreError> {
        self.with_store(|c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET detail = ?3 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[&detail.to_string()],
            )
        })
    }

    fn finish_with(
        &self,
        claim: Claim,
        state: JobState,
        detail: &serde_json::Value,
        out: Outbound<'_>,
        deployed: Option<LedgerEntry<'_>>,
    ) -> Result<(), StoreError> {
        let id = claim.job;
        self.with_store(|c| {
            let tx = c.transaction()?;
            // Nothing of a lost claim's end is written: no status, comment or ledger line.
            fenced(
                &tx,
                claim,
                "UPDATE jobs SET state = ?3, detail = ?4, finished_at = ?5, lease_until = NULL,
                                 phase = CASE WHEN ?3 = 'held' THEN 'held' ELSE 'done' END
                 WHERE id = ?1 AND fence = ?2 AND state = 'running'",
                &[&state.as_str(), &detail.to_string(), &now()],
            )?;
            if let Some(c) = out.comment {
                add_comment(&tx, Some(id), c)?;
            }
            for s in out.statuses {
                add_status(&tx, Some(id), s)?;
            }
            for c in out.checks {
                add_check(&tx, id, c)?;
            }
            // A run it started and did not end (a requeued preview whose changed stacks shrank).
            end_open_checks(&tx, id, CheckState::Cancelled, NOT_IN_RUN, NOT_IN_RUN)?;
            if let Some(e) = deployed {
                let id = e.identity;
                tx.execute(
                    "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(repo, stack) DO UPDATE SET sha = excluded.sha, removed = excluded.removed, at = excluded.at,
                       stack_name = COALESCE(excluded.stack_name, stack_name),
                       region = COALESCE(excluded.region, region),
                       account = COALESCE(excluded.account, account)",
                    params![
                        e.repo,
                        e.stack,
                        e.sha,
                        e.removed as i64,
                        now(),
                        id.map(|i| &i.name),
                        id.map(|i| &i.region),
                        id.map(|i| &i.account)
                    ],
                )?;
            }
            Ok(tx.commit()?)
        })
    }

    /// The commit of each stack's newest queued or running deploy: what the stack will be
    /// once the queue drains. Read through the partial indexes, which hold live jobs only.
    fn pending_deploys(&self, repo: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut out: Vec<(i64, String, String)> = Vec::new();
            for sql in [
                "SELECT id, stack, sha FROM jobs INDEXED BY jobs_queued
                 WHERE state = 'queued' AND repo = ?1 AND kind = 'deploy' AND stack IS NOT NULL",
                "SELECT id, stack, sha FROM jobs INDEXED BY jobs_running
                 WHERE state = 'running' AND repo = ?1 AND kind = 'deploy' AND stack IS NOT NULL",
            ] {
                let mut stmt = c.prepare_cached(sql)?;
                let rows = stmt.query_map([repo], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                for row in rows {
                    out.push(row?);
                }
            }
            out.sort();
            let mut newest: HashMap<String, String> = HashMap::new();
            for (_, stack, sha) in out {
                newest.insert(stack, sha);
            }
            Ok(newest.into_iter().collect())
        })
    }

    /// (queued, running) job counts.
    fn depth(&self) -> Result<(i64, i64), StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued'), (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }
}

/// Inserts jobs in order, placed by [`lanes::plan`]. A newer job supersedes what is queued
/// in its lane: jobs already queued, and the earlier jobs of this batch, which are inserted
/// superseded and so never get a "queued" status. A job for the very commit already queued
/// in its lane (a webhook racing the poller, a redeploy clicked twice) is that queued job:
/// its id is returned and nothing is written for it.
pub(super) fn enqueue_tx(
    tx: &Transaction<'_>,
    jobs: &[(&NewJob, Option<&str>)],
    status_for: QueuedStatuses<'_>,
    superseded_status: SupersededStatuses<'_>,
) -> rusqlite::Result<Vec<JobId>> {
    let batch: Vec<&NewJob> = jobs.iter().map(|(j, _)| *j).collect();
    let placed = lanes::plan(&batch);
    let at = now();
    let mut ids: Vec<JobId> = vec![JobId(0); jobs.len()];
    // Per lane: the ids inserted superseded, waiting for their successor's id.
    let mut waiting: HashMap<&Lane, Vec<(JobId, &NewJob)>> = HashMap::new();
    // Per lane: its newest queued job before this batch (normally its only one; a restart
    // can put older ones back).
    let mut queued: HashMap<&Lane, Option<(JobId, NewJob)>> = HashMap::new();
    for (i, ((job, delivery), (lane, place))) in jobs.iter().zip(&placed).enumerate() {
        if let Place::Folded(_) = place {
            continue; // shares the id of the batch's newest job for this commit, set below
        }
        let newest = *place == Place::Newest;
        if !queued.contains_key(lane) {
            let q = read_jobs(
                tx,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_queued
                     WHERE lane = ?1 AND state = 'queued' ORDER BY id DESC LIMIT 1"
                ),
                params![lane.as_str()],
            )?
            .pop()
            .map(|q| (q.id, q.as_new()));
            queued.insert(lane, q);
        }
        let same_as_queued = queued
            .get(lane)
            .and_then(|q| q.as_ref())
            .filter(|(_, q)| lanes::same_commit(q, job))
            .map(|(id, _)| *id);
        if let (Some(id), false) = (same_as_queued, newest) {
            // The queued job for this commit: the batch's newest job supersedes it, once.
            ids[i] = id;
            continue;
        }
        let (id, fresh) = match same_as_queued {
            Some(id) => {
                // Jobs put back in the queue after a restart may wait behind it.
                supersede_queued(tx, lane, id, job, at, superseded_status)?;
                (id, false)
            }
            None => {
                let state = if newest {
                    JobState::Queued
                } else {
                    JobState::Superseded
                };
                tx.prepare_cached(
                    "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, delivery, state, created_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    job.kind.as_str(),
                    job.repo,
                    job.stack,
                    job.sha,
                    lane.as_str(),
                    job.pr.map(|p| p as i64),
                    job.fork as i64,
                    job.trigger.as_str(),
                    delivery,
                    state.as_str(),
                    at,
                    (!newest).then_some(at),
                ])?;
                let id = JobId(tx.last_insert_rowid());
                if newest {
                    supersede_queued(tx, lane, id, job, at, superseded_status)?;
                }
                (id, true)
            }
        };
        ids[i] = id;
        if !newest {
            waiting.entry(lane).or_default().push((id, job));
            continue;
        }
        for (old, old_job) in waiting.remove(lane).unwrap_or_default() {
            tx.prepare_cached("UPDATE jobs SET superseded_by = ?2 WHERE id = ?1")?
                .execute(params![old, id])?;
            for s in superseded_status(&Job::superseded(old, old_job, id, at), job) {
                add_status(tx, Some(old), &s)?;
            }
        }
        if fresh {
            for s in status_for(job, id) {
                add_status(tx, Some(id), &s)?;
            }
        }
    }
    for (i, (_, place)) in placed.iter().enumerate() {
        if let Place::Folded(last) | Place::Superseded(last) = *place
            && ids[i] == JobId(0)
        {
            ids[i] = ids[last];
        }
    }
    Ok(ids)
}

/// Marks the jobs queued in `lane` before `id` superseded by it.
pub(super) fn supersede_queued(
    tx: &Transaction<'_>,
    lane: &Lane,
    id: JobId,
    job: &NewJob,
    at: i64,
    superseded_status: SupersededStatuses<'_>,
) -> rusqlite::Result<()> {
    let older = read_jobs(
        tx,
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE lane = ?1 AND state = 'queued' AND id < ?2"),
        params![lane.as_str(), id],
    )?;
    for old in &older {
        tx.prepare_cached(
            "UPDATE jobs SET state = 'superseded', superseded_by = ?2, finished_at = ?3 WHERE id = ?1",
        )?
        .execute(params![old.id, id, at])?;
        for s in superseded_status(old, job) {
            add_status(tx, Some(old.id), &s)?;
        }
        // It may have started check runs before it was queued again.
        let why = superseded_checks(job);
        end_open_checks(tx, old.id, CheckState::Cancelled, &why, &why)?;
    }
    Ok(())
}
