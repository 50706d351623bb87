//! The queue in one SQLite file (WAL), one module per role. One connection behind a mutex:
//! SQLite has one writer anyway, and the delivery recorder batches the busiest writes.

mod console;
mod deliveries;
mod drift;
mod export;
mod history;
mod holds;
mod jobs;
mod ledger;
mod outbox;
mod schema;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, Transaction, params};

use crate::config::Synchronous;
use crate::domain::{JobId, UnknownName};
use crate::queue::lease::Claim;
use crate::queue::{CheckUpdate, CommentUpdate, Job, StatusUpdate, StoreError, UnreadableRow, now};

impl rusqlite::ToSql for JobId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for JobId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(JobId)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // An unreadable row says so itself, without rusqlite's "Conversion error" wrapping.
        match e {
            rusqlite::Error::FromSqlConversionFailure(i, t, b) => {
                match b.downcast::<UnreadableRow>() {
                    Ok(bad) => StoreError::Backend(bad),
                    Err(b) => {
                        StoreError::backend(rusqlite::Error::FromSqlConversionFailure(i, t, b))
                    }
                }
            }
            e => StoreError::backend(e),
        }
    }
}

/// The unreadable row behind a read's error, if that is what it is.
fn unreadable(e: &rusqlite::Error) -> Option<&UnreadableRow> {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, b) => b.downcast_ref(),
        _ => None,
    }
}

pub struct Store {
    conn: Mutex<Connection>,
    synchronous: Synchronous,
}

const JOB_COLUMNS: &str = "id, kind, repo, stack, sha, pr, fork, trigger, state, phase, change_set_id, stack_id, detail, created_at, started_at, finished_at, superseded_by, attempts, fence, owner, lease_until";

/// A stored name read back as its type; an unknown one is an error, not a default. The
/// row's id is its first column.
fn text<T>(r: &rusqlite::Row<'_>, table: &'static str, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = UnknownName>,
{
    let s: String = r.get(i)?;
    s.parse().map_err(|name| {
        let bad = UnreadableRow {
            table,
            id: r.get(0).unwrap_or_default(),
            column: r.as_ref().column_name(i).unwrap_or("?").to_string(),
            name,
        };
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(bad))
    })
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let detail: String = r.get(12)?;
    let phase: Option<String> = r.get(9)?;
    Ok(Job {
        id: r.get(0)?,
        kind: text(r, "jobs", 1)?,
        repo: r.get(2)?,
        stack: r.get(3)?,
        sha: r.get(4)?,
        pr: r.get::<_, Option<i64>>(5)?.map(|p| p as u64),
        fork: r.get::<_, i64>(6)? != 0,
        trigger: text(r, "jobs", 7)?,
        state: text(r, "jobs", 8)?,
        phase: match phase {
            Some(_) => Some(text(r, "jobs", 9)?),
            None => None,
        },
        change_set_id: r.get(10)?,
        stack_id: r.get(11)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        created_at: r.get(13)?,
        started_at: r.get(14)?,
        finished_at: r.get(15)?,
        superseded_by: r.get(16)?,
        attempts: r.get(17)?,
        fence: r.get(18)?,
        owner: r.get(19)?,
        lease_until: r.get(20)?,
    })
}

/// Reads jobs, leaving out the rows this version cannot read (each logged). A live one,
/// queued or running, ends in error: it would otherwise hold its lane forever.
fn read_jobs(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Job>> {
    let rows: Vec<rusqlite::Result<Job>> = c
        .prepare_cached(sql)?
        .query_map(params, job_from_row)?
        .collect();
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Ok(job) => jobs.push(job),
            Err(e) => match unreadable(&e) {
                Some(bad) => end_unreadable(c, bad)?,
                None => return Err(e),
            },
        }
    }
    Ok(jobs)
}

/// Ends a live job this version cannot read in error, saying why in its detail.
fn end_unreadable(c: &Connection, bad: &UnreadableRow) -> rusqlite::Result<()> {
    let ended = c
        .prepare_cached(
            "UPDATE jobs SET state = 'error', finished_at = ?2, detail = ?3
             WHERE id = ?1 AND state IN ('queued', 'running')",
        )?
        .execute(params![
            bad.id,
            now(),
            serde_json::json!({ "error": bad.to_string() }).to_string()
        ])?;
    if ended > 0 {
        tracing::error!(error = %bad, "ended a job this version cannot read in error");
    } else {
        tracing::warn!(error = %bad, "left out a job this version cannot read");
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Plans that do not depend on bound values: otherwise SQLite compiles a cached
        // statement again each time a `LIMIT ?` is bound, which was most of the CPU behind
        // each webhook delivery (the dispatcher's claim and the outbox's reads).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        schema::migrate(&mut conn)?;
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
        self.with_store(|c| f(c).map_err(StoreError::from))
    }

    /// [`Store::with`] for work that may fail with a store error of its own (a lost lease).
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let run = || {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        };
        // Called from async code, a commit may wait on fsync or on the writer thread's
        // batch: hand this worker's other tasks to the rest of the runtime meanwhile.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }
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

/// Checks, inside a write's transaction, that `claim` still holds its running job.
fn holds(c: &Connection, claim: Claim) -> Result<(), StoreError> {
    let held = c
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND fence = ?2 AND state = 'running'")?
        .exists(params![claim.job, claim.fence])?;
    if held {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(claim))
    }
}

/// A worker's update of its job: changes nothing, and says so, once the claim is lost.
fn fenced(
    c: &Connection,
    claim: Claim,
    sql: &str,
    p: &[&dyn rusqlite::ToSql],
) -> Result<(), StoreError> {
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&claim.job, &claim.fence];
    args.extend_from_slice(p);
    let n = c.prepare_cached(sql)?.execute(args.as_slice())?;
    if n == 0 {
        return Err(StoreError::LeaseLost(claim));
    }
    Ok(())
}

fn add_status(
    tx: &Transaction<'_>,
    job: Option<JobId>,
    s: &StatusUpdate,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO statuses (job, repo, sha, context, state, description, target_url, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job,
        s.repo,
        s.sha,
        s.context.to_string(),
        s.state.as_str(),
        s.description,
        s.target_url,
        now()
    ])
}

/// A check run write of job `job`; the poster posts them in order.
fn add_check(tx: &Transaction<'_>, job: JobId, c: &CheckUpdate) -> Result<usize, StoreError> {
    let annotations = serde_json::to_string(&c.annotations).map_err(StoreError::backend)?;
    Ok(tx
        .prepare_cached(
            "INSERT INTO check_runs (job, repo, sha, name, state, title, summary, annotations,
                                     details_url, external_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            job,
            c.repo,
            c.sha,
            c.context.to_string(),
            c.state.as_str(),
            c.title,
            c.summary,
            annotations,
            c.details_url,
            c.external_id,
            now()
        ])?)
}

/// A comment goes after every status recorded before it: the poster keeps that order.
fn add_comment(
    tx: &Transaction<'_>,
    job: Option<JobId>,
    c: &CommentUpdate,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO comments (job, repo, pr, body, after_status, created_at)
         VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(id), 0) FROM statuses), ?5)",
    )?
    .execute(params![job, c.repo, c.pr as i64, c.body, now()])
}

/// Ends, with `state`, each check run of `job` that has only `in_progress` writes (one
/// that stops before its verdict, or is superseded while queued again).
pub(super) fn end_open_checks(
    c: &rusqlite::Connection,
    job: JobId,
    state: crate::domain::CheckState,
    title: &str,
    summary: &str,
) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO check_runs (job, repo, sha, name, state, title, summary, annotations,
                                 details_url, external_id, created_at)
         SELECT job, repo, sha, name, ?3, ?4, ?5, '[]', details_url, external_id, ?6
         FROM check_runs c
         WHERE job = ?1 AND state = ?2 AND NOT EXISTS (
             SELECT 1 FROM check_runs d
             WHERE d.job = c.job AND d.name = c.name AND d.state <> ?2)
         GROUP BY name",
    )?
    .execute(params![
        job,
        crate::domain::CheckState::InProgress.as_str(),
        state.as_str(),
        title,
        summary,
        now()
    ])
}
