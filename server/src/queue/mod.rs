//! The state stackgate owns, in one SQLite file (WAL): deliveries, jobs, the last deployed
//! sha per stack, the commit statuses still to post, and PR comment ids. Every change that
//! must not be lost is one transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::config::Synchronous;
use crate::ownership::StackIdentity;

#[derive(Debug, thiserror::Error)]
#[error("state database: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read a commit, find the stacks that changed, and enqueue their deploys.
    Sync,
    /// Policy, then plan and deploy (or remove) one stack.
    Deploy,
    /// A pull request's dry run: policy and plans, never executed.
    Preview,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Deploy => "deploy",
            Kind::Preview => "preview",
        }
    }

    fn parse(s: &str) -> Kind {
        match s {
            "deploy" => Kind::Deploy,
            "preview" => Kind::Preview,
            _ => Kind::Sync,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    pub kind: Option<Kind>,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub pr: Option<u64>,
    pub fork: bool,
    /// `push`, `poll`, `pull_request`, `manual`.
    pub trigger: String,
}

impl NewJob {
    /// Jobs in one lane run one at a time, and a newer one supersedes the queued ones.
    pub fn lane(&self) -> String {
        match (self.kind.unwrap_or(Kind::Sync), &self.stack, self.pr) {
            (Kind::Deploy, Some(stack), _) => format!("{}#stack:{stack}", self.repo),
            (Kind::Preview, _, Some(pr)) => format!("{}#pr:{pr}", self.repo),
            _ => format!("{}#sync", self.repo),
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: Kind,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub pr: Option<u64>,
    pub fork: bool,
    pub trigger: String,
    pub state: String,
    pub phase: Option<String>,
    pub change_set_id: Option<String>,
    pub stack_id: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub superseded_by: Option<i64>,
    /// How many times a worker took it up: claimed, or resumed after a restart.
    pub attempts: i64,
}

impl Job {
    /// A job of a batch as stored when a later job of the batch superseded it at birth.
    fn superseded(id: i64, job: &NewJob, by: i64, at: i64) -> Job {
        Job {
            id,
            kind: job.kind.unwrap_or(Kind::Sync),
            repo: job.repo.clone(),
            stack: job.stack.clone(),
            sha: job.sha.clone(),
            pr: job.pr,
            fork: job.fork,
            trigger: job.trigger.clone(),
            state: "superseded".into(),
            phase: None,
            change_set_id: None,
            stack_id: None,
            detail: serde_json::Value::Object(Default::default()),
            created_at: at,
            started_at: None,
            finished_at: Some(at),
            superseded_by: Some(by),
            attempts: 0,
        }
    }
}

/// One webhook delivery and the jobs it asks for.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery: String,
    pub event: String,
    pub repo: Option<String>,
    pub jobs: Vec<NewJob>,
}

/// A commit status waiting to be posted.
#[derive(Debug, Clone, Serialize)]
pub struct PendingStatus {
    pub id: i64,
    pub repo: String,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: String,
    pub attempts: i64,
}

/// A status to record; the reporter posts it later, in order.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub repo: String,
    pub sha: String,
    pub context: String,
    pub state: &'static str,
    pub description: String,
    pub target_url: String,
}

/// A stack folder's line in the deployed ledger, written as its job ends.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEntry<'a> {
    pub repo: &'a str,
    /// The stack folder.
    pub stack: &'a str,
    pub sha: &'a str,
    pub removed: bool,
    /// The CloudFormation stack the folder deployed; `None` keeps what the ledger has.
    pub identity: Option<&'a StackIdentity>,
}

/// A folder's last deploy, as the ledger remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub sha: String,
    pub removed: bool,
    /// `None` for rows written before the ledger kept the stack's identity.
    pub identity: Option<StackIdentity>,
}

/// What [`Store::recover`] found running after a restart.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Deploys to resume or run again.
    pub resume: Vec<Job>,
    /// Jobs that took the worker down [`MAX_ATTEMPTS`] times.
    pub poisoned: Vec<Job>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: usize,
    pub statuses: usize,
    pub deliveries: usize,
}

pub struct Store {
    conn: Mutex<Connection>,
    synchronous: Synchronous,
}

/// How long a queued sync waits for newer pushes before it runs.
pub const SYNC_DEBOUNCE_MS: i64 = 200;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    repo TEXT,
    received_at INTEGER NOT NULL,
    jobs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    repo TEXT NOT NULL,
    stack TEXT,
    sha TEXT NOT NULL,
    lane TEXT NOT NULL,
    pr INTEGER,
    fork INTEGER NOT NULL DEFAULT 0,
    trigger TEXT NOT NULL,
    delivery TEXT,
    state TEXT NOT NULL,
    phase TEXT,
    change_set_id TEXT,
    stack_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    superseded_by INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
-- Partial indexes: only the live jobs, so that finished ones cost no index writes.
DROP INDEX IF EXISTS jobs_lane_state;
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(lane) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs(lane) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS deployed (
    repo TEXT NOT NULL,
    stack TEXT NOT NULL,
    sha TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    at INTEGER NOT NULL,
    PRIMARY KEY (repo, stack)
);
CREATE TABLE IF NOT EXISTS statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER,
    repo TEXT NOT NULL,
    sha TEXT NOT NULL,
    context TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    target_url TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    posted_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
DROP INDEX IF EXISTS statuses_unposted;
CREATE INDEX IF NOT EXISTS statuses_waiting ON statuses(id) WHERE posted_at IS NULL;
CREATE TABLE IF NOT EXISTS pr_comments (
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    comment_id INTEGER NOT NULL,
    PRIMARY KEY (repo, pr)
);
";

const JOB_COLUMNS: &str = "id, kind, repo, stack, sha, pr, fork, trigger, state, phase, change_set_id, stack_id, detail, created_at, started_at, finished_at, superseded_by, attempts";

/// A job that took its worker down (a crash, or a deadline) this many times is failed, not
/// retried: one that kills the process would otherwise kill it at every restart.
pub const MAX_ATTEMPTS: i64 = 2;

/// Brings a state file written by an older stackgate up to this schema.
fn migrate_jobs(conn: &Connection) -> rusqlite::Result<()> {
    let has_attempts = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'attempts'")?
        .exists([])?;
    if !has_attempts {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let detail: String = r.get(12)?;
    Ok(Job {
        id: r.get(0)?,
        kind: Kind::parse(&r.get::<_, String>(1)?),
        repo: r.get(2)?,
        stack: r.get(3)?,
        sha: r.get(4)?,
        pr: r.get::<_, Option<i64>>(5)?.map(|p| p as u64),
        fork: r.get::<_, i64>(6)? != 0,
        trigger: r.get(7)?,
        state: r.get(8)?,
        phase: r.get(9)?,
        change_set_id: r.get(10)?,
        stack_id: r.get(11)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        created_at: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        superseded_by: r.get(16)?,
        attempts: r.get(17)?,
    })
}

impl Store {
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate_deployed(&conn)?;
        migrate_jobs(&conn)?;
        // SQLite's own checkpoints, on the writing connection after a commit that takes the
        // log past 1,000 pages: only a checkpoint that runs between two writes lets the next
        // write start the log over, so under a steady load one on another thread leaves the
        // log growing, and every fsync slower. The log is cut back to 16 MiB after a restart.
        conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
        Ok(Self {
            conn: Mutex::new(conn),
            synchronous,
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let run = || {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(StoreError::from)
        };
        // Called from async code, a commit may wait on fsync or on the writer thread's
        // batch: hand this worker's other tasks to the rest of the runtime meanwhile.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    /// Records a batch of deliveries in one transaction: one fsync for all of them (group
    /// commit). For each, `None` when its delivery id was seen before.
    pub fn record_deliveries(
        &self,
        batch: &[DeliveryRecord],
        status_for: &dyn Fn(&NewJob, i64) -> Vec<StatusUpdate>,
        superseded_status: &dyn Fn(&Job, &NewJob) -> Vec<StatusUpdate>,
    ) -> Result<Vec<Option<Vec<i64>>>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut fresh = Vec::with_capacity(batch.len());
            let mut jobs = Vec::new();
            for d in batch {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO deliveries (id, event, repo, received_at, jobs) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(id) DO NOTHING",
                    )?
                    .execute(params![d.delivery, d.event, d.repo, now(), d.jobs.len() as i64])?;
                fresh.push(inserted != 0);
                if inserted != 0 {
                    jobs.extend(d.jobs.iter().map(|j| (j, Some(d.delivery.as_str()))));
                }
            }
            let mut ids = enqueue_tx(&tx, &jobs, status_for, superseded_status)?.into_iter();
            tx.commit()?;
            Ok(batch
                .iter()
                .zip(fresh)
                .map(|(d, fresh)| fresh.then(|| ids.by_ref().take(d.jobs.len()).collect()))
                .collect())
        })
    }

    /// Enqueues jobs (manual, poll, or a sync's expansion), superseding queued ones.
    pub fn enqueue(
        &self,
        jobs: &[NewJob],
        status_for: &dyn Fn(&NewJob, i64) -> Vec<StatusUpdate>,
        superseded_status: &dyn Fn(&Job, &NewJob) -> Vec<StatusUpdate>,
    ) -> Result<Vec<i64>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let jobs: Vec<_> = jobs.iter().map(|j| (j, None)).collect();
            let ids = enqueue_tx(&tx, &jobs, status_for, superseded_status)?;
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Claims up to `limit` queued jobs whose lane has nothing running, oldest first.
    pub fn claim(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let running: i64 = tx.query_row("SELECT COUNT(*) FROM jobs WHERE state = 'running'", [], |r| r.get(0))?;
            let room = limit.saturating_sub(running as usize);
            let mut claimed = Vec::new();
            if room > 0 {
                let ids: Vec<i64> = {
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
                for id in ids {
                    tx.execute(
                        "UPDATE jobs SET state = 'running', started_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                        params![id, now()],
                    )?;
                    claimed.push(tx.query_row(
                        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                        [id],
                        job_from_row,
                    )?);
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
    }

    pub fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()
        })
    }

    pub fn jobs_in_state(&self, state: &str) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY id"
            ))?;
            stmt.query_map([state], job_from_row)?.collect()
        })
    }

    pub fn recent_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"
            ))?;
            stmt.query_map([limit as i64], job_from_row)?.collect()
        })
    }

    /// Puts jobs that were running when the process died back in the queue (sync and
    /// preview jobs are idempotent) and returns the deploys to resume. Jobs that were
    /// running at [`MAX_ATTEMPTS`] crashes are not: they come back in `poisoned`, to end.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let running = self.jobs_in_state("running")?;
        let mut out = Recovered::default();
        for job in running {
            if job.attempts >= MAX_ATTEMPTS {
                out.poisoned.push(job);
            } else if job.kind == Kind::Deploy {
                out.resume.push(job);
            } else {
                self.requeue(job.id)?;
            }
        }
        Ok(out)
    }

    /// Takes back the attempt of each running job when the service stops cleanly: only a
    /// crash counts towards [`MAX_ATTEMPTS`]. Returns how many jobs were running.
    pub fn release_running(&self) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET attempts = MAX(attempts - 1, 0) WHERE state = 'running'",
                [],
            )
        })
    }

    /// Counts one more attempt of a running job (a deploy resumed after a restart).
    pub fn attempt(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?1",
                [id],
            )
        })?;
        Ok(())
    }

    pub fn requeue(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET state = 'queued', phase = NULL WHERE id = ?1",
                [id],
            )
        })?;
        Ok(())
    }

    /// Records where a deploy stands; written before each step that AWS cannot undo.
    pub fn set_phase(
        &self,
        id: i64,
        phase: &str,
        change_set_id: Option<&str>,
        stack_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET phase = ?2, change_set_id = COALESCE(?3, change_set_id),
                                 stack_id = COALESCE(?4, stack_id) WHERE id = ?1",
                params![id, phase, change_set_id, stack_id],
            )
        })?;
        Ok(())
    }

    pub fn set_detail(&self, id: i64, detail: &serde_json::Value) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET detail = ?2 WHERE id = ?1",
                params![id, detail.to_string()],
            )
        })?;
        Ok(())
    }

    /// Ends a job and queues its statuses in one transaction.
    pub fn finish(
        &self,
        id: i64,
        state: &str,
        detail: &serde_json::Value,
        statuses: &[StatusUpdate],
        deployed: Option<LedgerEntry<'_>>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE jobs SET state = ?2, detail = ?3, finished_at = ?4, phase = 'done' WHERE id = ?1",
                params![id, state, detail.to_string(), now()],
            )?;
            for s in statuses {
                add_status(&tx, Some(id), s)?;
            }
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
            tx.commit()
        })
    }

    /// Queues statuses outside a job's end (e.g. "pending" as a step starts).
    pub fn add_statuses(
        &self,
        job: Option<i64>,
        statuses: &[StatusUpdate],
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for s in statuses {
                add_status(&tx, job, s)?;
            }
            tx.commit()
        })
    }

    /// The commit of each stack's newest queued or running deploy: what the stack will be
    /// once the queue drains. Read through the partial indexes, which hold live jobs only.
    pub fn pending_deploys(&self, repo: &str) -> Result<Vec<(String, String)>, StoreError> {
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

    /// The last deployed sha of each stack of a repo, and whether it was a removal.
    pub fn deployed(&self, repo: &str) -> Result<Vec<(String, String, bool)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT stack, sha, removed FROM deployed WHERE repo = ?1 ORDER BY stack",
            )?;
            stmt.query_map([repo], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
            })?
            .collect()
        })
    }

    /// Marks a folder's stack as no longer its own (it moved to another folder) without
    /// any AWS call.
    pub fn retire(&self, repo: &str, stack: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE deployed SET removed = 1, at = ?3 WHERE repo = ?1 AND stack = ?2",
                params![repo, stack, now()],
            )
        })?;
        Ok(())
    }

    /// What the ledger remembers of one stack folder's last deploy.
    pub fn ledger_row(&self, repo: &str, stack: &str) -> Result<Option<LedgerRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT sha, removed, stack_name, region, account FROM deployed WHERE repo = ?1 AND stack = ?2",
                params![repo, stack],
                |r| {
                    let (name, region, account): (Option<String>, Option<String>, Option<String>) =
                        (r.get(2)?, r.get(3)?, r.get(4)?);
                    Ok(LedgerRow {
                        sha: r.get(0)?,
                        removed: r.get::<_, i64>(1)? != 0,
                        identity: match (name, region, account) {
                            (Some(name), Some(region), Some(account)) => Some(StackIdentity {
                                account,
                                region,
                                name,
                            }),
                            _ => None,
                        },
                    })
                },
            )
            .optional()
        })
    }

    /// The (repo, stack folder, sha) of every live row from before the ledger kept
    /// identities: `App::ledger` reads them from their commit.
    pub fn live_unidentified(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT repo, stack, sha FROM deployed
                 WHERE removed = 0 AND (stack_name IS NULL OR region IS NULL OR account IS NULL)
                 ORDER BY repo, stack",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// Fills in the identity of a row from before the ledger kept identities.
    pub fn fill_identity(
        &self,
        repo: &str,
        stack: &str,
        id: &StackIdentity,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE deployed SET stack_name = ?3, region = ?4, account = ?5
                 WHERE repo = ?1 AND stack = ?2 AND stack_name IS NULL",
                params![repo, stack, id.name, id.region, id.account],
            )
        })?;
        Ok(())
    }

    /// The (repo, stack folder) of every live stack of the ledger, by its identity. Rows
    /// from before the ledger kept identities are not in it until `fill_identity`.
    pub fn live_identities(&self) -> Result<Vec<(StackIdentity, String, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT account, region, stack_name, repo, stack FROM deployed
                 WHERE removed = 0 AND stack_name IS NOT NULL AND region IS NOT NULL AND account IS NOT NULL
                 ORDER BY repo, stack",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    StackIdentity {
                        account: r.get(0)?,
                        region: r.get(1)?,
                        name: r.get(2)?,
                    },
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .collect()
        })
    }

    pub fn unposted_statuses(&self, limit: usize) -> Result<Vec<PendingStatus>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, repo, sha, context, state, description, target_url, attempts
                 FROM statuses WHERE posted_at IS NULL ORDER BY id LIMIT ?1",
            )?;
            stmt.query_map([limit as i64], |r| {
                Ok(PendingStatus {
                    id: r.get(0)?,
                    repo: r.get(1)?,
                    sha: r.get(2)?,
                    context: r.get(3)?,
                    state: r.get(4)?,
                    description: r.get(5)?,
                    target_url: r.get(6)?,
                    attempts: r.get(7)?,
                })
            })?
            .collect()
        })
    }

    /// Marks several statuses posted in one transaction.
    pub fn statuses_posted(&self, ids: &[i64]) -> Result<(), StoreError> {
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

    pub fn status_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE statuses SET attempts = attempts + 1, last_error = ?2,
                        posted_at = CASE WHEN ?3 THEN -1 ELSE NULL END WHERE id = ?1",
                params![id, error, give_up],
            )
        })?;
        Ok(())
    }

    pub fn pr_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>, StoreError> {
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

    pub fn set_pr_comment(&self, repo: &str, pr: u64, comment: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pr_comments (repo, pr, comment_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
                params![repo, pr as i64, comment as i64],
            )
        })?;
        Ok(())
    }

    /// (queued, running) job counts.
    pub fn depth(&self) -> Result<(i64, i64), StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'queued'), (SELECT COUNT(*) FROM jobs WHERE state = 'running')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// Forgets history older than `before` (ms since the epoch): finished jobs (except the
    /// last one that ran in each lane, which the stack pages show), statuses GitHub has or
    /// that were given up on, and delivery ids. Live jobs and unposted statuses stay.
    pub fn prune(&self, before: i64, batch: usize) -> Result<Pruned, StoreError> {
        let keep: String = self.with(|c| {
            c.query_row(
                "SELECT json_group_array(id) FROM (SELECT MAX(id) AS id FROM jobs
                 WHERE state NOT IN ('queued', 'running', 'superseded') GROUP BY lane)",
                [],
                |r| r.get(0),
            )
        })?;
        Ok(Pruned {
            jobs: self.drain(
                "jobs",
                "created_at",
                "state NOT IN ('queued', 'running') AND finished_at < ?3
                 AND id NOT IN (SELECT value FROM json_each(?4))",
                before,
                Some(&keep),
                batch,
            )?,
            statuses: self.drain(
                "statuses",
                "created_at",
                "posted_at IS NOT NULL AND created_at < ?3",
                before,
                None,
                batch,
            )?,
            deliveries: self.drain(
                "deliveries",
                "received_at",
                "received_at < ?3",
                before,
                None,
                batch,
            )?,
        })
    }

    /// Deletes the rows of `table` matching `condition` (`?3`: `before`, `?4`: `extra`),
    /// walking rowids `batch` at a time from the oldest, one transaction each, and stopping
    /// at the first row whose `stamp` is not before `before`. Rowids follow time, so no step
    /// reads more than a batch of rows however large the table: deliveries wait on a step.
    fn drain(
        &self,
        table: &str,
        stamp: &str,
        condition: &str,
        before: i64,
        extra: Option<&str>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let batch = batch.max(1) as i64;
        let first =
            format!("SELECT rowid, {stamp} FROM {table} WHERE rowid >= ?1 ORDER BY rowid LIMIT 1");
        let delete = format!("DELETE FROM {table} WHERE rowid BETWEEN ?1 AND ?2 AND {condition}");
        let (mut total, mut from) = (0, i64::MIN);
        loop {
            // Forgetting need not survive a power cut: it is simply done again.
            let step = self.with(|c| {
                let Some((start, at)) = c
                    .prepare_cached(&first)?
                    .query_row([from], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()?
                else {
                    return Ok(None);
                };
                if at >= before {
                    return Ok(None);
                }
                let end = start.saturating_add(batch - 1);
                let n = unsynced(c, self.synchronous, |c| {
                    let mut stmt = c.prepare_cached(&delete)?;
                    match extra {
                        Some(x) => stmt.execute(params![start, end, before, x]),
                        None => stmt.execute(params![start, end, before]),
                    }
                })?;
                Ok(Some((end, n)))
            })?;
            let Some((end, n)) = step else {
                return Ok(total);
            };
            total += n;
            if end == i64::MAX {
                return Ok(total);
            }
            from = end + 1;
        }
    }

    pub fn delivery_count(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
    }
}

/// State files from before the ledger kept each stack's CloudFormation identity get the
/// columns, empty; the next deploy of each folder fills them in.
fn migrate_deployed(conn: &Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('deployed')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for col in ["stack_name", "region", "account"] {
        if !have.iter().any(|h| h == col) {
            conn.execute_batch(&format!("ALTER TABLE deployed ADD COLUMN {col} TEXT"))?;
        }
    }
    Ok(())
}

/// Runs `f` with commits that write the log but do not fsync it (they survive a crash of
/// the process, not a power cut); back to the store's level after.
fn unsynced<T>(
    c: &mut Connection,
    level: Synchronous,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if level == Synchronous::Normal {
        return f(c);
    }
    c.prepare_cached("PRAGMA synchronous = NORMAL")?
        .execute([])?;
    let out = f(c);
    c.prepare_cached("PRAGMA synchronous = FULL")?.execute([])?;
    out
}

fn add_status(tx: &Transaction<'_>, job: Option<i64>, s: &StatusUpdate) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO statuses (job, repo, sha, context, state, description, target_url, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job,
        s.repo,
        s.sha,
        s.context,
        s.state,
        crate::policy::truncate(&s.description, 140),
        s.target_url,
        now()
    ])
}

/// Inserts jobs in order. A newer job supersedes what is queued in its lane: jobs already
/// queued, and the earlier jobs of this batch, which are inserted superseded and so never
/// get a "queued" status. A job for the very commit already queued in its lane (a webhook
/// racing the poller, a redeploy clicked twice) is that queued job: its id is returned and
/// nothing is written for it.
fn enqueue_tx(
    tx: &Transaction<'_>,
    jobs: &[(&NewJob, Option<&str>)],
    status_for: &dyn Fn(&NewJob, i64) -> Vec<StatusUpdate>,
    superseded_status: &dyn Fn(&Job, &NewJob) -> Vec<StatusUpdate>,
) -> rusqlite::Result<Vec<i64>> {
    // A manual redeploy posts its own policy status and tells the policies it is manual,
    // so it is never folded into a push's or a poll's job, nor they into it.
    let same_commit = |a: &NewJob, b: &NewJob| {
        a.sha == b.sha && a.fork == b.fork && (a.trigger == "manual") == (b.trigger == "manual")
    };
    let lanes: Vec<String> = jobs.iter().map(|(j, _)| j.lane()).collect();
    let mut newest: HashMap<&str, usize> = HashMap::new();
    for (i, lane) in lanes.iter().enumerate() {
        newest.insert(lane, i);
    }
    let at = now();
    let mut ids = vec![0; jobs.len()];
    // Per lane: the ids inserted superseded, waiting for their successor's id.
    let mut waiting: HashMap<&str, Vec<(i64, &NewJob)>> = HashMap::new();
    // Per lane: its newest queued job before this batch (normally its only one; a restart
    // can put older ones back).
    let mut queued: HashMap<&str, Option<(i64, NewJob)>> = HashMap::new();
    for (i, ((job, delivery), lane)) in jobs.iter().zip(&lanes).enumerate() {
        let last = newest.get(lane.as_str()).copied().unwrap_or(i);
        if last != i && same_commit(job, jobs[last].0) {
            continue; // shares the id of the batch's last job for this commit, set below
        }
        if !queued.contains_key(lane.as_str()) {
            let q = tx
                .prepare_cached(
                    "SELECT id, sha, fork, trigger FROM jobs INDEXED BY jobs_queued
                     WHERE lane = ?1 AND state = 'queued' ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![lane], |r| {
                    Ok((
                        r.get(0)?,
                        NewJob {
                            sha: r.get(1)?,
                            fork: r.get(2)?,
                            trigger: r.get(3)?,
                            ..Default::default()
                        },
                    ))
                })
                .optional()?;
            queued.insert(lane, q);
        }
        let same_as_queued = queued
            .get(lane.as_str())
            .and_then(|q| q.as_ref())
            .filter(|(_, q)| same_commit(q, job))
            .map(|(id, _)| *id);
        if let (Some(id), true) = (same_as_queued, last != i) {
            // The queued job for this commit: the batch's last job supersedes it, once.
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
                tx.prepare_cached(
                    "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, delivery, state, created_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    job.kind.unwrap_or(Kind::Sync).as_str(),
                    job.repo,
                    job.stack,
                    job.sha,
                    lane,
                    job.pr.map(|p| p as i64),
                    job.fork as i64,
                    job.trigger,
                    delivery,
                    if last == i { "queued" } else { "superseded" },
                    at,
                    (last != i).then_some(at),
                ])?;
                let id = tx.last_insert_rowid();
                if last == i {
                    supersede_queued(tx, lane, id, job, at, superseded_status)?;
                }
                (id, true)
            }
        };
        ids[i] = id;
        if last != i {
            waiting.entry(lane).or_default().push((id, job));
            continue;
        }
        for (old, old_job) in waiting.remove(lane.as_str()).unwrap_or_default() {
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
    for (i, lane) in lanes.iter().enumerate() {
        if ids[i] == 0 {
            ids[i] = newest.get(lane.as_str()).map_or(0, |&last| ids[last]);
        }
    }
    Ok(ids)
}

/// Marks the jobs queued in `lane` before `id` superseded by it.
fn supersede_queued(
    tx: &Transaction<'_>,
    lane: &str,
    id: i64,
    job: &NewJob,
    at: i64,
    superseded_status: &dyn Fn(&Job, &NewJob) -> Vec<StatusUpdate>,
) -> rusqlite::Result<()> {
    let older: Vec<Job> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE lane = ?1 AND state = 'queued' AND id < ?2"
        ))?;
        stmt.query_map(params![lane, id], job_from_row)?
            .collect::<Result<_, _>>()?
    };
    for old in &older {
        tx.prepare_cached(
            "UPDATE jobs SET state = 'superseded', superseded_by = ?2, finished_at = ?3 WHERE id = ?1",
        )?
        .execute(params![old.id, id, at])?;
        for s in superseded_status(old, job) {
            add_status(tx, Some(old.id), &s)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &NewJob, _: i64) -> Vec<StatusUpdate> {
        Vec::new()
    }

    fn queued(j: &NewJob, _: i64) -> Vec<StatusUpdate> {
        vec![StatusUpdate {
            repo: j.repo.clone(),
            sha: j.sha.clone(),
            context: "stackgate".into(),
            state: "pending",
            description: "queued".into(),
            target_url: String::new(),
        }]
    }

    fn superseded(old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
        vec![StatusUpdate {
            repo: old.repo.clone(),
            sha: old.sha.clone(),
            context: "stackgate".into(),
            state: "error",
            description: format!("superseded by {}", new.sha),
            target_url: String::new(),
        }]
    }

    fn deploy(sha: &str) -> NewJob {
        NewJob {
            kind: Some(Kind::Deploy),
            repo: "acme/infra".into(),
            stack: Some("web".into()),
            sha: sha.into(),
            trigger: "push".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_delivery_is_recorded_once_even_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let d = |id: &str| DeliveryRecord {
            delivery: id.into(),
            event: "push".into(),
            repo: Some("acme/infra".into()),
            jobs: vec![deploy("a")],
        };
        let first = s
            .record_deliveries(&[d("d1"), d("d2"), d("d1")], &none, &superseded)
            .unwrap();
        assert_eq!(
            first.iter().map(|o| o.is_some()).collect::<Vec<_>>(),
            [true, true, false]
        );
        let again = s.record_deliveries(&[d("d2")], &none, &superseded).unwrap();
        assert!(again[0].is_none());
        assert_eq!(s.delivery_count().unwrap(), 2);
    }

    #[test]
    fn the_newest_job_of_a_batch_supersedes_the_rest_and_queued_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let d = |id: &str, sha: &str| DeliveryRecord {
            delivery: id.into(),
            event: "push".into(),
            repo: Some("acme/infra".into()),
            jobs: vec![deploy(sha)],
        };
        s.record_deliveries(&[d("d0", "z")], &queued, &superseded)
            .unwrap();
        let ids: Vec<i64> = s
            .record_deliveries(
                &[d("d1", "a"), d("d2", "b"), d("d3", "c")],
                &queued,
                &superseded,
            )
            .unwrap()
            .into_iter()
            .flat_map(|o| o.unwrap())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids follow arrival");
        let gone = s.jobs_in_state("superseded").unwrap();
        assert_eq!(
            gone.iter()
                .map(|j| (j.sha.as_str(), j.superseded_by))
                .collect::<Vec<_>>(),
            [
                ("z", Some(ids[2])),
                ("a", Some(ids[2])),
                ("b", Some(ids[2]))
            ]
        );
        assert_eq!(s.jobs_in_state("queued").unwrap()[0].id, ids[2]);
        // z was queued before; a and b never were, so they get no "queued" status.
        let said: Vec<(String, String)> = s
            .unposted_statuses(10)
            .unwrap()
            .into_iter()
            .map(|p| (p.sha, p.description))
            .collect();
        let said: Vec<(&str, &str)> = said.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            said,
            [
                ("z", "queued"),
                ("z", "superseded by c"),
                ("a", "superseded by c"),
                ("b", "superseded by c"),
                ("c", "queued"),
            ]
        );
    }

    #[test]
    fn a_job_for_the_commit_already_queued_is_that_job() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let first = s.enqueue(&[deploy("a")], &queued, &superseded).unwrap();
        // The poller and the webhook both saw `a`; then a batch with `a` twice around `b`.
        let polled = s
            .enqueue(
                &[NewJob {
                    trigger: "poll".into(),
                    ..deploy("a")
                }],
                &queued,
                &superseded,
            )
            .unwrap();
        assert_eq!(polled, first, "the queued job for `a` is returned");
        let batch = s
            .enqueue(
                &[deploy("b"), deploy("c"), deploy("c")],
                &queued,
                &superseded,
            )
            .unwrap();
        assert_eq!(batch[1], batch[2], "one job for `c` within a batch");
        assert!(batch[0] < batch[1]);
        let left = s.jobs_in_state("queued").unwrap();
        assert_eq!(
            left.iter()
                .map(|j| (j.id, j.sha.as_str()))
                .collect::<Vec<_>>(),
            [(batch[2], "c")]
        );
        assert_eq!(s.jobs_in_state("superseded").unwrap().len(), 2);
        let said: Vec<String> = s
            .unposted_statuses(10)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}: {}", p.sha, p.description))
            .collect();
        assert_eq!(
            said,
            [
                "a: queued",
                "a: superseded by c",
                "b: superseded by c",
                "c: queued"
            ]
        );

        // `c` again, then `d`, in one batch: the first is the queued job for `c`, which `d`
        // supersedes once.
        let next = s
            .enqueue(&[deploy("c"), deploy("d")], &queued, &superseded)
            .unwrap();
        assert_eq!(next[0], batch[2]);
        assert!(next[1] > next[0]);
        let said: Vec<String> = s
            .unposted_statuses(10)
            .unwrap()
            .into_iter()
            .skip(4)
            .map(|p| format!("{}: {}", p.sha, p.description))
            .collect();
        assert_eq!(said, ["c: superseded by d", "d: queued"]);
        assert_eq!(s.jobs_in_state("superseded").unwrap().len(), 3);
    }

    #[test]
    fn a_manual_redeploy_is_its_own_job_and_requeued_jobs_are_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let pushed = s.enqueue(&[deploy("a")], &queued, &superseded).unwrap();
        let manual = NewJob {
            trigger: "manual".into(),
            ..deploy("a")
        };
        let by_hand = s
            .enqueue(std::slice::from_ref(&manual), &queued, &superseded)
            .unwrap();
        assert_ne!(
            by_hand, pushed,
            "a redeploy is not folded into a push's job"
        );
        assert_eq!(
            s.enqueue(&[manual], &queued, &superseded).unwrap(),
            by_hand,
            "clicked twice"
        );

        // x was running when the process died and went back to the queue behind y.
        let x = s.enqueue(&[deploy("x")], &queued, &superseded).unwrap()[0];
        assert!(s.claim(1).unwrap().iter().any(|j| j.id == x));
        let y = s.enqueue(&[deploy("y")], &queued, &superseded).unwrap();
        s.requeue(x).unwrap();
        assert_eq!(s.enqueue(&[deploy("y")], &queued, &superseded).unwrap(), y);
        let left: Vec<i64> = s
            .jobs_in_state("queued")
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left, y, "x is superseded by y, as a newer push would do");
    }

    #[test]
    fn old_history_is_forgotten_but_live_work_and_each_lanes_last_run_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let empty = |d: &str| DeliveryRecord {
            delivery: d.into(),
            event: "push".into(),
            repo: None,
            jobs: vec![],
        };
        let web = |sha: &str| deploy(sha);
        let api = |sha: &str| NewJob {
            stack: Some("api".into()),
            ..deploy(sha)
        };
        let run = |job: NewJob, end: &str| {
            let id = s.enqueue(&[job], &queued, &superseded).unwrap()[0];
            assert!(s.claim(4).unwrap().iter().any(|j| j.id == id));
            s.finish(id, end, &serde_json::json!({}), &[], None)
                .unwrap();
            id
        };
        let web1 = run(web("w1"), "succeeded");
        let web2 = run(web("w2"), "failed");
        let api1 = run(api("a1"), "succeeded");
        // w3 is queued, then superseded by w4, which stays queued.
        s.enqueue(&[web("w3")], &queued, &superseded).unwrap();
        let live = s.enqueue(&[web("w4")], &queued, &superseded).unwrap()[0];
        s.record_deliveries(&[empty("d-old")], &none, &superseded)
            .unwrap();
        let posted: Vec<i64> = s
            .unposted_statuses(100)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        s.statuses_posted(&posted[..2]).unwrap();
        let waiting = posted.len() - 2;

        // Everything so far is a day old; then one more delivery and run, fresh.
        s.with(|c| {
            c.execute_batch(
                "UPDATE jobs SET created_at = created_at - 86400000,
                     finished_at = finished_at - 86400000;
                 UPDATE statuses SET created_at = created_at - 86400000;
                 UPDATE deliveries SET received_at = received_at - 86400000;",
            )
        })
        .unwrap();
        let api2 = run(api("a2"), "succeeded");
        s.record_deliveries(&[empty("d-new")], &none, &superseded)
            .unwrap();

        let pruned = s.prune(now() - 3_600_000, 1).unwrap();
        // web1 and the superseded w3 go; web2 is web's last run; api1 goes, api2 is new.
        assert_eq!(
            pruned,
            Pruned {
                jobs: 3,
                statuses: 2,
                deliveries: 1
            }
        );
        let id = |j: Option<Job>| j.map(|j| j.id);
        assert_eq!(id(s.job(web1).unwrap()), None);
        assert_eq!(id(s.job(api1).unwrap()), None);
        assert_eq!(id(s.job(web2).unwrap()), Some(web2));
        assert_eq!(id(s.job(api2).unwrap()), Some(api2));
        assert_eq!(id(s.job(live).unwrap()), Some(live));
        // a2's own "queued" status came after the day passed.
        assert_eq!(s.unposted_statuses(100).unwrap().len(), waiting + 1);
        assert_eq!(s.delivery_count().unwrap(), 1);
        // A forgotten delivery id is new again; a kept one is still a duplicate.
        let out = s
            .record_deliveries(&[empty("d-old"), empty("d-new")], &none, &superseded)
            .unwrap();
        assert_eq!(out, [Some(vec![]), None]);
        assert_eq!(s.prune(now() - 3_600_000, 1).unwrap(), Pruned::default());
    }

    #[test]
    fn a_burst_of_pushes_runs_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let sync = |sha: &str| NewJob {
            kind: Some(Kind::Sync),
            repo: "acme/infra".into(),
            sha: sha.into(),
            trigger: "push".into(),
            ..Default::default()
        };
        s.enqueue(&[sync("a")], &none, &superseded).unwrap();
        assert!(
            s.claim(4).unwrap().is_empty(),
            "a sync waits out the debounce"
        );
        s.enqueue(&[sync("b")], &none, &superseded).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(
            SYNC_DEBOUNCE_MS as u64 + 50,
        ));
        let run = s.claim(4).unwrap();
        assert_eq!(
            run.iter().map(|j| j.sha.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn one_job_per_lane_and_newer_commits_supersede_queued_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        s.enqueue(&[deploy("a")], &none, &superseded).unwrap();
        let running = s.claim(4).unwrap();
        assert_eq!(running.len(), 1);
        s.enqueue(&[deploy("b")], &none, &superseded).unwrap();
        s.enqueue(&[deploy("c")], &none, &superseded).unwrap();
        // The lane is busy: nothing more runs.
        assert!(s.claim(4).unwrap().is_empty());
        let b = s.jobs_in_state("superseded").unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].sha, "b");
        let st = s.unposted_statuses(10).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].description, "superseded by c");
        s.finish(
            running[0].id,
            "succeeded",
            &serde_json::json!({}),
            &[],
            Some(LedgerEntry {
                repo: "acme/infra",
                stack: "web",
                sha: "a",
                removed: false,
                identity: None,
            }),
        )
        .unwrap();
        let next = s.claim(4).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].sha, "c");
        assert_eq!(
            s.deployed("acme/infra").unwrap(),
            vec![("web".to_string(), "a".to_string(), false)]
        );
    }

    fn preview(sha: &str) -> NewJob {
        NewJob {
            kind: Some(Kind::Preview),
            repo: "acme/infra".into(),
            sha: sha.into(),
            pr: Some(7),
            fork: true,
            trigger: "pull_request".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_that_takes_the_process_down_twice_is_not_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let open = || Store::open(&path, Synchronous::Normal).unwrap();
        let id = open().enqueue(&[preview("a")], &none, &superseded).unwrap()[0];
        // Claimed, then the process dies mid-job: requeued once.
        for attempt in 1..=MAX_ATTEMPTS {
            let s = open();
            let r = s.recover().unwrap();
            assert!(r.poisoned.is_empty() && r.resume.is_empty());
            let j = s.claim(1).unwrap().remove(0);
            assert_eq!((j.id, j.attempts), (id, attempt));
        }
        // The second crash: it comes back poisoned, not queued.
        let s = open();
        let r = s.recover().unwrap();
        assert_eq!(r.poisoned.len(), 1);
        assert_eq!(r.poisoned[0].id, id);
        assert!(s.claim(1).unwrap().is_empty());
        s.finish(id, "error", &serde_json::json!({}), &[], None)
            .unwrap();
        // A resumed deploy counts too.
        let d = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
        let j = s.claim(1).unwrap().remove(0);
        assert_eq!(j.id, d);
        s.set_phase(d, "executing", Some("cs"), Some("st")).unwrap();
        drop(s);
        let s = open();
        let r = s.recover().unwrap();
        assert_eq!(r.resume.len(), 1);
        s.attempt(d).unwrap();
        drop(s);
        let r = open().recover().unwrap();
        assert!(r.poisoned.iter().any(|j| j.id == d), "{r:?}");
    }

    #[test]
    fn a_state_file_from_before_attempts_opens_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // The jobs table as stackgate wrote it before the attempts column.
            let c = Connection::open(&path).unwrap();
            let old = SCHEMA.replace(",\n    attempts INTEGER NOT NULL DEFAULT 0", "");
            assert_ne!(old, SCHEMA);
            c.execute_batch(&old).unwrap();
            c.execute(
                "INSERT INTO jobs (kind, repo, sha, lane, trigger, state, created_at)
                 VALUES ('sync', 'acme/infra', 'a', 'acme/infra#sync', 'push', 'running', 0)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path, Synchronous::Normal).unwrap();
        assert!(s.recover().unwrap().poisoned.is_empty());
        let j = s.claim(1).unwrap().remove(0);
        assert_eq!(j.attempts, 1);
        drop(s);
        // Opening again does not migrate twice.
        let s = Store::open(&path, Synchronous::Normal).unwrap();
        assert_eq!(s.job(j.id).unwrap().unwrap().attempts, 1);
    }

    #[test]
    fn an_old_ledger_gains_identities_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // The ledger as stackgate wrote it before it kept identities.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE deployed (repo TEXT NOT NULL, stack TEXT NOT NULL, sha TEXT NOT NULL,
                 removed INTEGER NOT NULL DEFAULT 0, at INTEGER NOT NULL, PRIMARY KEY (repo, stack));
                 INSERT INTO deployed VALUES ('acme/infra', 'web', 'a', 0, 1);",
            )
            .unwrap();
        }
        let s = Store::open(&path, Synchronous::Full).unwrap();
        let row = s.ledger_row("acme/infra", "web").unwrap().unwrap();
        assert_eq!(
            (row.sha.as_str(), row.removed, row.identity),
            ("a", false, None)
        );
        assert!(s.live_identities().unwrap().is_empty());
        let id = StackIdentity {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            name: "web-prod".into(),
        };
        s.enqueue(&[deploy("b")], &none, &superseded).unwrap();
        let j = s.claim(1).unwrap().remove(0);
        let entry = |sha, identity| LedgerEntry {
            repo: "acme/infra",
            stack: "web",
            sha,
            removed: false,
            identity,
        };
        s.finish(
            j.id,
            "succeeded",
            &serde_json::json!({}),
            &[],
            Some(entry("b", Some(&id))),
        )
        .unwrap();
        // Opening again migrates nothing twice; a later entry without identity keeps it.
        let s = Store::open(&path, Synchronous::Full).unwrap();
        s.finish(
            j.id,
            "succeeded",
            &serde_json::json!({}),
            &[],
            Some(entry("c", None)),
        )
        .unwrap();
        let row = s.ledger_row("acme/infra", "web").unwrap().unwrap();
        assert_eq!(row.sha, "c");
        assert_eq!(row.identity.as_ref(), Some(&id));
        assert_eq!(
            s.live_identities().unwrap(),
            vec![(id, "acme/infra".to_string(), "web".to_string())]
        );
    }

    #[test]
    fn pending_deploys_are_each_stacks_newest_live_job() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let api = |sha: &str| NewJob {
            stack: Some("api".into()),
            ..deploy(sha)
        };
        let done = s.enqueue(&[api("a0")], &none, &superseded).unwrap()[0];
        s.claim(4).unwrap();
        s.finish(done, "succeeded", &serde_json::json!({}), &[], None)
            .unwrap();
        assert!(s.pending_deploys("acme/infra").unwrap().is_empty());
        s.enqueue(&[deploy("w1")], &none, &superseded).unwrap();
        assert_eq!(s.claim(4).unwrap().len(), 1, "w1 runs");
        s.enqueue(&[deploy("w2"), api("a1")], &none, &superseded)
            .unwrap();
        let mut pending = s.pending_deploys("acme/infra").unwrap();
        pending.sort();
        assert_eq!(
            pending,
            [
                ("api".to_string(), "a1".to_string()),
                ("web".to_string(), "w2".to_string())
            ]
        );
        assert!(s.pending_deploys("acme/other").unwrap().is_empty());
    }

    #[test]
    fn running_deploys_survive_a_restart() {
        for level in [Synchronous::Full, Synchronous::Normal] {
            running_deploy_survives_a_restart(level);
        }
    }

    fn running_deploy_survives_a_restart(level: Synchronous) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path, level).unwrap();
            s.enqueue(&[deploy("a")], &none, &superseded).unwrap();
            let j = s.claim(1).unwrap().remove(0);
            s.set_phase(j.id, "executing", Some("cs-1"), Some("stack-1"))
                .unwrap();
        }
        let s = Store::open(&path, level).unwrap();
        let resume = s.recover().unwrap().resume;
        assert_eq!(resume.len(), 1);
        assert_eq!(resume[0].change_set_id.as_deref(), Some("cs-1"));
        assert_eq!(resume[0].phase.as_deref(), Some("executing"));
    }
}
