//! The schema as numbered migrations, applied once each under `BEGIN IMMEDIATE` (one
//! writer: two processes opening one file together migrate once). Version 1 is the schema
//! as it was before migrations were numbered, with the upgrades that brought older files up
//! to it: a file from before has no `schema_migrations` table, and gets version 1 with its
//! rows kept.

use rusqlite::{Connection, TransactionBehavior};

use crate::queue::StoreError;
use crate::queue::migrations::{Migration, newer_than_known};

/// The migrations, in order; a released one is never edited, only followed by another.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "the queue: deliveries, jobs, ledger, outbox",
        sql: SCHEMA,
    },
    Migration {
        version: 2,
        name: "leases: a running job's owner, expiry and fence",
        sql: LEASES,
    },
    Migration {
        version: 3,
        name: "drift: each stack's latest drift check; jobs by lane",
        sql: DRIFT,
    },
    Migration {
        version: 4,
        name: "check runs: writes still to post, and the ids GitHub gave",
        sql: CHECK_RUNS,
    },
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let have: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    newer_than_known(have, MIGRATIONS)?;
    for m in MIGRATIONS.iter().filter(|m| m.version > have) {
        tx.execute_batch(m.sql)?;
        if m.version == 1 {
            migrate_deployed(&tx)?;
            migrate_jobs(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, crate::queue::now()],
        )?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "migrated the state database"
        );
    }
    tx.commit()?;
    Ok(())
}

pub(super) const SCHEMA: &str = "
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
-- PR comments still to post, each after the statuses recorded before it.
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER,
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    body TEXT NOT NULL,
    after_status INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    posted_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS comments_waiting ON comments(id) WHERE posted_at IS NULL;
CREATE TABLE IF NOT EXISTS pr_comments (
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    comment_id INTEGER NOT NULL,
    PRIMARY KEY (repo, pr)
);
";

/// Version 2: the lease of a running job, who holds it, until when (ms), under which fence.
/// A job left running by a version before it has no owner and no lease: an orphan, taken
/// over at the next start.
const LEASES: &str = "
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
";

/// Version 3: each stack folder's latest drift check (its history is the drift jobs), and
/// an index for a lane's jobs newest first (the console's run history).
const DRIFT: &str = "
CREATE TABLE drift (
    repo TEXT NOT NULL,
    stack TEXT NOT NULL,
    sha TEXT NOT NULL,
    job INTEGER NOT NULL,
    state TEXT NOT NULL,
    drifted INTEGER NOT NULL,
    live_findings INTEGER NOT NULL,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (repo, stack)
);
CREATE INDEX jobs_lane_id ON jobs(lane, id);
";

/// Version 4: check run writes still to post (a job's check run is created by its first
/// write and updated by the next), and the id GitHub gave each job's check run.
const CHECK_RUNS: &str = "
CREATE TABLE check_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL,
    repo TEXT NOT NULL,
    sha TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    annotations TEXT NOT NULL,
    details_url TEXT NOT NULL,
    external_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    posted_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX check_runs_waiting ON check_runs(id) WHERE posted_at IS NULL;
CREATE TABLE check_run_ids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL,
    name TEXT NOT NULL,
    check_run_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job, name)
);
";

/// Brings a state file written by an older stackgate up to version 1.
fn migrate_jobs(conn: &Connection) -> rusqlite::Result<()> {
    let has_attempts = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'attempts'")?
        .exists([])?;
    if !has_attempts {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
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
