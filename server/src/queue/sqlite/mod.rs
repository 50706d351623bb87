//! The queue in one SQLite file (WAL), one module per role. One connection behind a mutex:
//! SQLite has one writer anyway, and the delivery recorder batches the busiest writes.

mod deliveries;
mod history;
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
use crate::domain::JobId;
use crate::queue::{CommentUpdate, Job, StatusUpdate, StoreError, now};

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
        StoreError(Box::new(e))
    }
}

pub struct Store {
    conn: Mutex<Connection>,
    synchronous: Synchronous,
}

const JOB_COLUMNS: &str = "id, kind, repo, stack, sha, pr, fork, trigger, state, phase, change_set_id, stack_id, detail, created_at, started_at, finished_at, superseded_by, attempts";

/// A stored name read back as its type; an unknown one is an error, not a default.
fn text<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = crate::domain::UnknownName>,
{
    let s: String = r.get(i)?;
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let detail: String = r.get(12)?;
    let phase: Option<String> = r.get(9)?;
    Ok(Job {
        id: r.get(0)?,
        kind: text(r, 1)?,
        repo: r.get(2)?,
        stack: r.get(3)?,
        sha: r.get(4)?,
        pr: r.get::<_, Option<i64>>(5)?.map(|p| p as u64),
        fork: r.get::<_, i64>(6)? != 0,
        trigger: text(r, 7)?,
        state: text(r, 8)?,
        phase: match phase {
            Some(_) => Some(text(r, 9)?),
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
    })
}

impl Store {
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(schema::SCHEMA)?;
        schema::migrate_deployed(&conn)?;
        schema::migrate_jobs(&conn)?;
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
