//! The SQLite queue's own tests: state files from older versions, and both `synchronous`
//! levels. What every backend does is the conformance suite (`queue::conformance`).

use rusqlite::Connection;

use super::Store;
use super::schema::SCHEMA;
use crate::config::Synchronous;
use crate::domain::{Context, JobId, JobState, Kind, Phase, StackIdentity, StatusState, Trigger};
use crate::queue::lease::{Claim, Lease, Orphans, Replica};
use crate::queue::*;

/// A lease of a new replica at each call: a claim and a later recovery are two processes.
fn lease() -> Lease {
    Lease {
        owner: Replica::new(),
        length: std::time::Duration::from_secs(60),
    }
}

/// The claim that holds a job now.
fn held(s: &Store, id: JobId) -> Claim {
    s.job(id).unwrap().unwrap().claim()
}

fn none(_: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    Vec::new()
}

fn superseded(old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
    vec![StatusUpdate {
        repo: old.repo.clone(),
        sha: old.sha.clone(),
        context: Context::Policy,
        state: StatusState::Error,
        description: format!("superseded by {}", new.sha),
        target_url: String::new(),
    }]
}

fn deploy(sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Deploy,
        repo: "acme/infra".into(),
        stack: Some("web".into()),
        sha: sha.into(),
        trigger: Trigger::Push,
        pr: None,
        fork: false,
    }
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
    assert!(
        s.recover(&lease(), Orphans::All)
            .unwrap()
            .poisoned
            .is_empty()
    );
    let j = s.claim(&lease(), 1).unwrap().remove(0);
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
    let j = s.claim(&lease(), 1).unwrap().remove(0);
    let entry = |sha, identity| LedgerEntry {
        repo: "acme/infra",
        stack: "web",
        sha,
        removed: false,
        identity,
    };
    s.finish(
        j.claim(),
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        Some(entry("b", Some(&id))),
    )
    .unwrap();
    // Opening again migrates nothing twice; a later entry without identity keeps it.
    let s = Store::open(&path, Synchronous::Full).unwrap();
    s.enqueue(&[deploy("c")], &none, &superseded).unwrap();
    let j = s.claim(&lease(), 1).unwrap().remove(0);
    s.finish(
        j.claim(),
        JobState::Succeeded,
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
        let j = s.claim(&lease(), 1).unwrap().remove(0);
        s.set_phase(j.claim(), Phase::Executing, Some("cs-1"), Some("stack-1"))
            .unwrap();
    }
    let s = Store::open(&path, level).unwrap();
    let resume = s.recover(&lease(), Orphans::All).unwrap().resume;
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0].change_set_id.as_deref(), Some("cs-1"));
    assert_eq!(resume[0].phase, Some(Phase::Executing));
}

/// The schema of a state file written at commit ff596f4 (before the comments table), as
/// that version's `open` left it: its SCHEMA, then the ledger's identity columns.
const SCHEMA_FF596F4: &str = "
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

#[test]
fn a_state_file_from_ff596f4_opens_with_its_work_and_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(SCHEMA_FF596F4).unwrap();
        for col in ["stack_name", "region", "account"] {
            c.execute_batch(&format!("ALTER TABLE deployed ADD COLUMN {col} TEXT"))
                .unwrap();
        }
        c.execute_batch(
            "INSERT INTO jobs (kind, repo, stack, sha, lane, trigger, state, created_at)
               VALUES ('deploy', 'acme/infra', 'web', 'q1', 'acme/infra#stack:web', 'push', 'queued', 1);
             INSERT INTO jobs (kind, repo, stack, sha, lane, trigger, state, phase, change_set_id,
                               stack_id, created_at, started_at, attempts)
               VALUES ('deploy', 'acme/infra', 'db', 'r1', 'acme/infra#stack:db', 'manual', 'running',
                       'executing', 'cs-1', 'st-1', 1, 2, 1);
             INSERT INTO statuses (job, repo, sha, context, state, description, target_url, created_at)
               VALUES (2, 'acme/infra', 'r1', 'stackgate/db', 'pending', 'deploying', '', 2);
             INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
               VALUES ('acme/infra', 'db', 'r0', 0, 1, 'db-stack', 'eu-west-1', '123456789012'),
                      ('acme/infra', 'old', 'o0', 1, 1, NULL, NULL, NULL);",
        )
        .unwrap();
    }
    let s = Store::open(&path, Synchronous::Full).unwrap();
    // The running deploy resumes where it stood.
    let r = s.recover(&lease(), Orphans::All).unwrap();
    assert_eq!(r.resume.len(), 1, "{r:?}");
    let running = &r.resume[0];
    assert_eq!(
        (running.sha.as_str(), running.phase),
        ("r1", Some(Phase::Executing))
    );
    assert_eq!(running.trigger, Trigger::Manual);
    assert_eq!(running.change_set_id.as_deref(), Some("cs-1"));
    // The queued job is claimed (its lane is free).
    let claimed = s.claim(&lease(), 4).unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.sha.as_str()).collect::<Vec<_>>(),
        ["q1"]
    );
    // The ledger keeps its rows, with and without identities.
    assert_eq!(
        s.deployed("acme/infra").unwrap(),
        [
            ("db".into(), "r0".into(), false),
            ("old".into(), "o0".into(), true)
        ]
    );
    let db = s.ledger_row("acme/infra", "db").unwrap().unwrap();
    assert_eq!(db.identity.map(|i| i.name).as_deref(), Some("db-stack"));
    // The unposted status posts, and a comment written now goes after it.
    let st = s.unposted_statuses(10).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].context.as_str(), st[0].state),
        ("stackgate/db", StatusState::Pending)
    );
    let comment = CommentUpdate {
        repo: "acme/infra".into(),
        pr: 7,
        body: "plan".into(),
    };
    s.finish_with(
        running.claim(),
        JobState::Succeeded,
        &serde_json::json!({}),
        crate::queue::Outbound {
            comment: Some(&comment),
            statuses: &[],
            checks: &[],
        },
        None,
    )
    .unwrap();
    let waiting = s.unposted_comments(10).unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].after_status >= st[0].id);
    s.statuses_posted(&[st[0].id]).unwrap();
    s.comment_posted(waiting[0].id, Some(("acme/infra", 7, 99)))
        .unwrap();
    assert!(s.unposted_statuses(10).unwrap().is_empty());
    assert!(s.unposted_comments(10).unwrap().is_empty());
    assert_eq!(s.pr_comment("acme/infra", 7).unwrap(), Some(99));
}

#[test]
fn a_starting_process_takes_over_every_running_job_of_its_file() {
    // The file is one process's: whatever held a job when it stopped is dead, lease or not.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let id = {
        let s = Store::open(&path, Synchronous::Full).unwrap();
        let id = s.enqueue(&[deploy("a")], &none, &superseded).unwrap()[0];
        s.claim(&lease(), 1).unwrap();
        s.set_phase(held(&s, id), Phase::Executing, Some("cs-1"), None)
            .unwrap();
        id
    };
    let s = Store::open(&path, Synchronous::Full).unwrap();
    assert_eq!(s.orphans_at_start(), Orphans::All);
    let r = s.recover(&lease(), s.orphans_at_start()).unwrap();
    assert_eq!(r.resume.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

/// SQLite 3.54 compiles a statement again whenever a `LIMIT ?` (and some other bound
/// values) is bound anew, which every cached statement is on every call: the outbox's and
/// the dispatcher's reads cost a compilation each time. The store's connection must not.
#[test]
fn a_cached_read_with_a_bound_limit_is_not_compiled_again_on_every_call() {
    use rusqlite::StatementStatus;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let c = s.conn.lock().unwrap();
    let sql = "SELECT id FROM statuses WHERE posted_at IS NULL ORDER BY id LIMIT ?1";
    for limit in [100, 100, 7] {
        let mut stmt = c.prepare_cached(sql).unwrap();
        let rows: Vec<i64> = stmt
            .query_map([limit], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(rows.is_empty());
    }
    let stmt = c.prepare_cached(sql).unwrap();
    assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
}
