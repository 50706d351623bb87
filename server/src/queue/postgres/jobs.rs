//! Jobs: enqueued by lane (the rules are `queue::lanes`), claimed one per lane, ended once;
//! safe with several replicas on one database. Mirrors `sqlite/jobs.rs`.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::{GenericClient, Transaction};

use super::{
    JOB_COLUMNS, LOCK_LANE, Store, add_check, add_comment, add_status, end_open_checks,
    end_unreadable, execute, job_from_row, lock_outbox, query, query_opt, read_jobs,
};
use crate::domain::{CheckState, JobId, JobState, Lane, Phase};
use crate::queue::lanes::{self, Place};
use crate::queue::lease::{Claim, Lease, Orphans};
use crate::queue::{
    Job, Jobs, LedgerEntry, NOT_IN_RUN, NewJob, Outbound, QueuedStatuses, SYNC_DEBOUNCE_MS,
    StoreError, SupersededStatuses, now, superseded_checks,
};

impl Jobs for Store {
    fn enqueue(
        &self,
        jobs: &[NewJob],
        status_for: QueuedStatuses<'_>,
        superseded_status: SupersededStatuses<'_>,
    ) -> Result<Vec<JobId>, StoreError> {
        self.tx(async |tx| {
            let jobs: Vec<_> = jobs.iter().map(|j| (j, None)).collect();
            enqueue_tx(tx, &jobs, status_for, superseded_status).await
        })
    }

    /// Claims up to `limit` queued jobs whose lane has nothing running, oldest first. A
    /// candidate is locked (`FOR UPDATE SKIP LOCKED`: another replica's candidates are
    /// skipped), then its lane (`pg_try_advisory_xact_lock`: a lane another replica is
    /// claiming or enqueuing into is skipped), then checked again under the lane's lock.
    /// Each claimed job goes into a lease of `lease.owner` under a new fence. `limit` counts
    /// this replica's own running jobs: `max_parallel_jobs` is each replica's.
    fn claim(&self, lease: &Lease, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.tx(async |tx| {
            let running: i64 = query(
                tx,
                "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND owner = $1",
                &[&lease.owner.as_str()],
            )
            .await?[0]
            .get(0);
            let room = limit.saturating_sub(running.max(0) as usize);
            if room == 0 {
                return Ok(Vec::new());
            }
            let candidates = query(
                tx,
                "SELECT id, lane FROM jobs j WHERE state = 'queued'
                   AND (kind <> 'sync' OR created_at <= $2)
                   AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lane = j.lane AND r.state = 'running')
                   AND id = (SELECT MIN(id) FROM jobs q WHERE q.lane = j.lane AND q.state = 'queued')
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                &[&(room as i64), &(now() - SYNC_DEBOUNCE_MS)],
            )
            .await?;
            let mut claimed = Vec::new();
            for row in candidates {
                let (id, lane): (i64, String) = (row.get(0), row.get(1));
                let free: bool = query(
                    tx,
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                    &[&LOCK_LANE, &lane],
                )
                .await?[0]
                .get(0);
                if !free {
                    continue;
                }
                // Under the lane's lock: what other replicas committed in it is seen now.
                let at = now();
                let row = query_opt(
                    tx,
                    &format!(
                        "UPDATE jobs SET state = 'running', started_at = $2, attempts = attempts + 1,
                                         owner = $4, lease_until = $5, fence = fence + 1
                         WHERE id = $1 AND state = 'queued'
                           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lane = $3 AND r.state = 'running')
                           AND id = (SELECT MIN(id) FROM jobs q WHERE q.lane = $3 AND q.state = 'queued')
                         RETURNING {JOB_COLUMNS}"
                    ),
                    &[
                        &id,
                        &at,
                        &lane,
                        &lease.owner.as_str(),
                        &at.saturating_add(lease.millis()),
                    ],
                )
                .await?;
                let Some(row) = row else { continue };
                match job_from_row(&row) {
                    Ok(job) => claimed.push(job),
                    // Ended, not run; its lane is free for the next claim.
                    Err(bad) => end_unreadable(tx, &bad).await?,
                }
            }
            Ok(claimed)
        })
    }

    /// Other replicas share the database: only leases that ran out are orphans.
    fn orphans_at_start(&self) -> Orphans {
        Orphans::Expired
    }

    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.conn(async |c| {
            let row = query_opt(
                c,
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                &[&id.0],
            )
            .await?;
            row.map(|r| job_from_row(&r).map_err(|bad| StoreError::Backend(Box::new(bad))))
                .transpose()
        })
    }

    fn jobs_in_state(&self, state: JobState) -> Result<Vec<Job>, StoreError> {
        self.conn(async |c| {
            read_jobs(
                c,
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY id"),
                &[&state.as_str()],
            )
            .await
        })
    }

    fn recent_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.conn(async |c| {
            read_jobs(
                c,
                &format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"),
                &[&(limit as i64)],
            )
            .await
        })
    }

    /// Extends this owner's leases. A replica that took one of its jobs over changed the
    /// owner under a row lock: the update, re-checked against the row as committed, skips it.
    fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>, StoreError> {
        let (ids, fences): (Vec<i64>, Vec<i64>) = claims.iter().map(|c| (c.job.0, c.fence)).unzip();
        self.conn(async |c| {
            let rows = query(
                c,
                "UPDATE jobs SET lease_until = $2
                 WHERE state = 'running' AND owner = $1
                   AND (id, fence) IN (SELECT * FROM unnest($3::bigint[], $4::bigint[]))
                 RETURNING id, fence",
                &[
                    &lease.owner.as_str(),
                    &now().saturating_add(lease.millis()),
                    &ids,
                    &fences,
                ],
            )
            .await?;
            let mut held: Vec<Claim> = rows
                .iter()
                .map(|r| Claim {
                    job: JobId(r.get(0)),
                    fence: r.get(1),
                })
                .collect();
            held.sort_by_key(|c| c.job);
            Ok(held)
        })
    }

    /// Takes over other owners' running jobs whose lease ran out (or all of them). The rows
    /// are locked `FOR UPDATE SKIP LOCKED`: two replicas taking over at once each get other
    /// jobs, and a row renewed or taken meanwhile is re-checked as committed, so it is
    /// taken once, and never while its lease is live.
    fn take_over(&self, lease: &Lease, orphans: Orphans) -> Result<Vec<Job>, StoreError> {
        self.tx(async |tx| {
            let at = now();
            // Expired: this owner's too (a job no worker here renews any more). All: every
            // job but those this owner has already taken.
            let (expired_before, all) = match orphans {
                Orphans::Expired => (at, false),
                Orphans::All => (i64::MAX, true),
            };
            let rows = query(
                tx,
                &format!(
                    "UPDATE jobs SET owner = $1, lease_until = $3, fence = fence + 1
                     WHERE id IN (
                         SELECT id FROM jobs
                         WHERE state = 'running'
                           AND (lease_until IS NULL OR lease_until < $2)
                           AND NOT ($4 AND owner IS NOT DISTINCT FROM $1)
                         ORDER BY id FOR UPDATE SKIP LOCKED)
                     RETURNING {JOB_COLUMNS}"
                ),
                &[
                    &lease.owner.as_str(),
                    &expired_before,
                    &at.saturating_add(lease.millis()),
                    &all,
                ],
            )
            .await?;
            let mut taken = Vec::with_capacity(rows.len());
            for row in &rows {
                match job_from_row(row) {
                    Ok(job) => taken.push(job),
                    Err(bad) => end_unreadable(tx, &bad).await?,
                }
            }
            taken.sort_by_key(|j| j.id);
            Ok(taken)
        })
    }

    /// Hands back this owner's leases, expired at once, and their attempt; another
    /// replica's running jobs are not touched.
    fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.conn(async |c| {
            let n = execute(
                c,
                "UPDATE jobs SET attempts = GREATEST(attempts - 1, 0), owner = NULL, lease_until = 0
                 WHERE state = 'running' AND owner = $1",
                &[&lease.owner.as_str()],
            )
            .await?;
            Ok(n as usize)
        })
    }

    fn attempt(&self, claim: Claim) -> Result<(), StoreError> {
        self.conn(async |c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET attempts = attempts + 1
                 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[],
            )
            .await
        })
    }

    fn requeue(&self, claim: Claim) -> Result<(), StoreError> {
        self.conn(async |c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET state = 'queued', phase = NULL, owner = NULL, lease_until = NULL
                 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[],
            )
            .await
        })
    }

    fn set_phase(
        &self,
        claim: Claim,
        phase: Phase,
        change_set_id: Option<&str>,
        stack_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn(async |c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET phase = $3, change_set_id = COALESCE($4, change_set_id),
                                 stack_id = COALESCE($5, stack_id)
                 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[&phase.as_str(), &change_set_id, &stack_id],
            )
            .await
        })
    }

    fn set_detail(&self, claim: Claim, detail: &serde_json::Value) -> Result<(), StoreError> {
        self.conn(async |c| {
            fenced(
                c,
                claim,
                "UPDATE jobs SET detail = $3 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[detail],
            )
            .await
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
        self.tx(async |tx| {
            // Nothing of a lost claim's end is written: no status, comment or ledger line.
            fenced(
                tx,
                claim,
                "UPDATE jobs SET state = $3, detail = $4, finished_at = $5, lease_until = NULL,
                                 phase = CASE WHEN $3 = 'held' THEN 'held' ELSE 'done' END
                 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[&state.as_str(), detail, &now()],
            )
            .await?;
            if out.comment.is_some() || !out.statuses.is_empty() {
                lock_outbox(tx).await?;
            }
            if let Some(c) = out.comment {
                add_comment(tx, Some(id), c).await?;
            }
            for s in out.statuses {
                add_status(tx, Some(id), s).await?;
            }
            for c in out.checks {
                add_check(tx, id, c).await?;
            }
            // A run it started and did not end (a requeued preview whose changed stacks shrank).
            end_open_checks(tx, id, CheckState::Cancelled, NOT_IN_RUN, NOT_IN_RUN).await?;
            if let Some(e) = deployed {
                let i = e.identity;
                execute(
                    tx,
                    "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (repo, stack) DO UPDATE SET sha = excluded.sha, removed = excluded.removed, at = excluded.at,
                       stack_name = COALESCE(excluded.stack_name, deployed.stack_name),
                       region = COALESCE(excluded.region, deployed.region),
                       account = COALESCE(excluded.account, deployed.account)",
                    &[
                        &e.repo,
                        &e.stack,
                        &e.sha,
                        &e.removed,
                        &now(),
                        &i.map(|i| i.name.as_str()),
                        &i.map(|i| i.region.as_str()),
                        &i.map(|i| i.account.as_str()),
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }

    /// The commit of each stack's newest queued or running deploy.
    fn pending_deploys(&self, repo: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.conn(async |c| {
            let rows = query(
                c,
                "SELECT DISTINCT ON (stack) stack, sha FROM jobs
                 WHERE state IN ('queued', 'running') AND repo = $1 AND kind = 'deploy' AND stack IS NOT NULL
                 ORDER BY stack, id DESC",
                &[&repo],
            )
            .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn depth(&self) -> Result<(i64, i64), StoreError> {
        self.conn(async |c| {
            let r = query(
                c,
                "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued'), (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
                &[],
            )
            .await?;
            Ok((r[0].get(0), r[0].get(1)))
        })
    }
}

/// A worker's update of its job (`$1` its id, `$2` its fence, then `p`): changes nothing,
/// and says so, once the claim is lost. Under READ COMMITTED an update that waited on a
/// takeover re-checks the fence against the row as committed, and so matches nothing.
pub(super) async fn fenced<C: GenericClient>(
    c: &C,
    claim: Claim,
    sql: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StoreError> {
    let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&claim.job.0, &claim.fence];
    args.extend_from_slice(p);
    if execute(c, sql, &args).await? == 0 {
        return Err(StoreError::LeaseLost(claim));
    }
    Ok(())
}

/// Whether `claim` still holds its job, the row share-locked until the transaction ends:
/// a takeover cannot commit in between (it skips the row, and takes it at its next round).
pub(super) async fn holds<C: GenericClient>(c: &C, claim: Claim) -> Result<(), StoreError> {
    let held = query_opt(
        c,
        "SELECT 1 FROM jobs WHERE id = $1 AND fence = $2 AND state = 'running' FOR SHARE",
        &[&claim.job.0, &claim.fence],
    )
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost(claim)),
    }
}

/// Takes the lock of each lane of a batch, in sorted order (two replicas enqueuing into the
/// same lanes then wait on each other instead of deadlocking), then the outbox's. Held
/// until the transaction ends: the lane's queued jobs read next are all there are.
async fn lock_lanes(tx: &Transaction<'_>, lanes: BTreeSet<&Lane>) -> Result<(), StoreError> {
    for lane in lanes {
        query(
            tx,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_LANE, &lane.as_str()],
        )
        .await?;
    }
    lock_outbox(tx).await
}

/// Inserts jobs in order, placed by [`lanes::plan`], as `sqlite::jobs::enqueue_tx` does: a
/// newer job supersedes what its lane has queued; a job for the very commit already queued
/// in its lane is that queued job.
pub(super) async fn enqueue_tx(
    tx: &Transaction<'_>,
    jobs: &[(&NewJob, Option<&str>)],
    status_for: QueuedStatuses<'_>,
    superseded_status: SupersededStatuses<'_>,
) -> Result<Vec<JobId>, StoreError> {
    let batch: Vec<&NewJob> = jobs.iter().map(|(j, _)| *j).collect();
    let placed = lanes::plan(&batch);
    if placed.is_empty() {
        return Ok(Vec::new());
    }
    lock_lanes(tx, placed.iter().map(|(lane, _)| lane).collect()).await?;
    let at = now();
    let mut ids: Vec<JobId> = vec![JobId(0); jobs.len()];
    let mut waiting: HashMap<&Lane, Vec<(JobId, &NewJob)>> = HashMap::new();
    let mut queued: HashMap<&Lane, Option<(JobId, NewJob)>> = HashMap::new();
    for (i, ((job, delivery), (lane, place))) in jobs.iter().zip(&placed).enumerate() {
        if let Place::Folded(_) = place {
            continue;
        }
        let newest = *place == Place::Newest;
        if !queued.contains_key(lane) {
            let q = read_jobs(
                tx,
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE lane = $1 AND state = 'queued' ORDER BY id DESC LIMIT 1"
                ),
                &[&lane.as_str()],
            )
            .await?
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
            ids[i] = id;
            continue;
        }
        let (id, fresh) = match same_as_queued {
            Some(id) => {
                supersede_queued(tx, lane, id, job, at, superseded_status).await?;
                (id, false)
            }
            None => {
                let state = if newest {
                    JobState::Queued
                } else {
                    JobState::Superseded
                };
                let row = query(
                    tx,
                    "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, delivery, state, created_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                    &[
                        &job.kind.as_str(),
                        &job.repo,
                        &job.stack,
                        &job.sha,
                        &lane.as_str(),
                        &job.pr.map(|p| p as i64),
                        &job.fork,
                        &job.trigger.as_str(),
                        delivery,
                        &state.as_str(),
                        &at,
                        &(!newest).then_some(at),
                    ],
                )
                .await?;
                let id = JobId(row[0].get(0));
                if newest {
                    supersede_queued(tx, lane, id, job, at, superseded_status).await?;
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
            execute(
                tx,
                "UPDATE jobs SET superseded_by = $2 WHERE id = $1",
                &[&old.0, &id.0],
            )
            .await?;
            for s in superseded_status(&Job::superseded(old, old_job, id, at), job) {
                add_status(tx, Some(old), &s).await?;
            }
        }
        if fresh {
            for s in status_for(job, id) {
                add_status(tx, Some(id), &s).await?;
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
async fn supersede_queued<C: GenericClient>(
    tx: &C,
    lane: &Lane,
    id: JobId,
    job: &NewJob,
    at: i64,
    superseded_status: SupersededStatuses<'_>,
) -> Result<(), StoreError> {
    let older = read_jobs(
        tx,
        &format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = $1 AND state = 'queued' AND id < $2 ORDER BY id"
        ),
        &[&lane.as_str(), &id.0],
    )
    .await?;
    for old in &older {
        execute(
            tx,
            "UPDATE jobs SET state = 'superseded', superseded_by = $2, finished_at = $3
             WHERE id = $1 AND state = 'queued'",
            &[&old.id.0, &id.0, &at],
        )
        .await?;
        for s in superseded_status(old, job) {
            add_status(tx, Some(old.id), &s).await?;
        }
        // It may have started check runs before it was queued again.
        let why = superseded_checks(job);
        end_open_checks(tx, old.id, CheckState::Cancelled, &why, &why).await?;
    }
    Ok(())
}
