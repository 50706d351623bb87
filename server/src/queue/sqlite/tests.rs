//! The SQLite queue's own tests: lanes, supersedes, recovery, pruning and migrations.

use rusqlite::Connection;

use super::Store;
use super::schema::SCHEMA;
use crate::config::Synchronous;
use crate::domain::{Context, JobId, JobState, Kind, Phase, StackIdentity, StatusState, Trigger};
use crate::queue::*;

fn none(_: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    Vec::new()
}

fn queued(j: &NewJob, _: JobId) -> Vec<StatusUpdate> {
    vec![StatusUpdate {
        repo: j.repo.clone(),
        sha: j.sha.clone(),
        context: Context::Policy,
        state: StatusState::Pending,
        description: "queued".into(),
        target_url: String::new(),
    }]
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
    let ids: Vec<JobId> = s
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
    let gone = s.jobs_in_state(JobState::Superseded).unwrap();
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
    assert_eq!(s.jobs_in_state(JobState::Queued).unwrap()[0].id, ids[2]);
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
                trigger: Trigger::Poll,
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
    let left = s.jobs_in_state(JobState::Queued).unwrap();
    assert_eq!(
        left.iter()
            .map(|j| (j.id, j.sha.as_str()))
            .collect::<Vec<_>>(),
        [(batch[2], "c")]
    );
    assert_eq!(s.jobs_in_state(JobState::Superseded).unwrap().len(), 2);
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
    assert_eq!(s.jobs_in_state(JobState::Superseded).unwrap().len(), 3);
}

#[test]
fn a_manual_redeploy_is_its_own_job_and_requeued_jobs_are_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let pushed = s.enqueue(&[deploy("a")], &queued, &superseded).unwrap();
    let manual = NewJob {
        trigger: Trigger::Manual,
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
    let left: Vec<JobId> = s
        .jobs_in_state(JobState::Queued)
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
    let run = |job: NewJob, end: JobState| {
        let id = s.enqueue(&[job], &queued, &superseded).unwrap()[0];
        assert!(s.claim(4).unwrap().iter().any(|j| j.id == id));
        s.finish(id, end, &serde_json::json!({}), &[], None)
            .unwrap();
        id
    };
    let web1 = run(web("w1"), JobState::Succeeded);
    let web2 = run(web("w2"), JobState::Failed);
    let api1 = run(api("a1"), JobState::Succeeded);
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
    let api2 = run(api("a2"), JobState::Succeeded);
    s.record_deliveries(&[empty("d-new")], &none, &superseded)
        .unwrap();

    let pruned = s.prune(now() - 3_600_000, 1).unwrap();
    // web1 and the superseded w3 go; web2 is web's last run; api1 goes, api2 is new.
    assert_eq!(
        pruned,
        Pruned {
            jobs: 3,
            statuses: 2,
            comments: 0,
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
        kind: Kind::Sync,
        repo: "acme/infra".into(),
        sha: sha.into(),
        trigger: Trigger::Push,
        stack: None,
        pr: None,
        fork: false,
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
    let b = s.jobs_in_state(JobState::Superseded).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].sha, "b");
    let st = s.unposted_statuses(10).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].description, "superseded by c");
    s.finish(
        running[0].id,
        JobState::Succeeded,
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
        kind: Kind::Preview,
        repo: "acme/infra".into(),
        sha: sha.into(),
        pr: Some(7),
        fork: true,
        trigger: Trigger::PullRequest,
        stack: None,
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
    s.finish(id, JobState::Error, &serde_json::json!({}), &[], None)
        .unwrap();
    // A resumed deploy counts too.
    let d = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
    let j = s.claim(1).unwrap().remove(0);
    assert_eq!(j.id, d);
    s.set_phase(d, Phase::Executing, Some("cs"), Some("st"))
        .unwrap();
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
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        Some(entry("b", Some(&id))),
    )
    .unwrap();
    // Opening again migrates nothing twice; a later entry without identity keeps it.
    let s = Store::open(&path, Synchronous::Full).unwrap();
    s.finish(
        j.id,
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
fn pending_deploys_are_each_stacks_newest_live_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let api = |sha: &str| NewJob {
        stack: Some("api".into()),
        ..deploy(sha)
    };
    let done = s.enqueue(&[api("a0")], &none, &superseded).unwrap()[0];
    s.claim(4).unwrap();
    s.finish(done, JobState::Succeeded, &serde_json::json!({}), &[], None)
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
        s.set_phase(j.id, Phase::Executing, Some("cs-1"), Some("stack-1"))
            .unwrap();
    }
    let s = Store::open(&path, level).unwrap();
    let resume = s.recover().unwrap().resume;
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0].change_set_id.as_deref(), Some("cs-1"));
    assert_eq!(resume[0].phase, Some(Phase::Executing));
}

fn deploy_of(stack: &str, sha: &str) -> NewJob {
    NewJob {
        stack: Some(stack.into()),
        ..deploy(sha)
    }
}

/// A job's state and stored error as an operator reads them with `sqlite3`: the row
/// cannot be read as a `Job`, whose kind has no value for it.
fn raw_state(s: &Store, id: JobId) -> (String, String) {
    s.with(|c| {
        c.query_row("SELECT state, detail FROM jobs WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    })
    .unwrap()
}

#[test]
fn a_stored_job_of_an_unknown_kind_is_an_error_not_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let ids = s
        .enqueue(
            &[deploy_of("a", "1"), deploy_of("b", "2")],
            &none,
            &superseded,
        )
        .unwrap();
    s.with(|c| c.execute("UPDATE jobs SET kind = 'redeploy' WHERE id = ?1", [ids[0]]))
        .unwrap();
    let e = s.job(ids[0]).unwrap_err().to_string();
    assert!(e.contains("unknown job kind `redeploy`"), "{e}");
    // The good job runs; the bad one is not run as something else but ends in error,
    // saying where and why.
    let claimed = s.claim(4).unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1]],
        "{claimed:?}"
    );
    let (state, detail) = raw_state(&s, ids[0]);
    assert_eq!(state, "error");
    for part in [
        "jobs row 1",
        "column kind",
        "`redeploy`",
        "another version of stackgate",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }
    assert!(s.claim(4).unwrap().is_empty());
    // The pages list the jobs they can read.
    let recent: Vec<JobId> = s.recent_jobs(10).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(recent, [ids[1]]);
}

#[test]
fn a_bad_running_job_ends_in_error_and_the_others_resume() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let ids = s
        .enqueue(
            &[deploy_of("a", "1"), deploy_of("b", "2")],
            &none,
            &superseded,
        )
        .unwrap();
    assert_eq!(s.claim(4).unwrap().len(), 2);
    s.with(|c| c.execute("UPDATE jobs SET phase = 'warping' WHERE id = ?1", [ids[0]]))
        .unwrap();
    let r = s.recover().unwrap();
    assert_eq!(r.resume.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[1]]);
    assert!(r.poisoned.is_empty());
    let (state, detail) = raw_state(&s, ids[0]);
    assert_eq!(state, "error");
    assert!(detail.contains("column phase"), "{detail}");
    // Its lane is free again.
    s.enqueue(&[deploy_of("a", "3")], &none, &superseded)
        .unwrap();
    assert_eq!(s.claim(4).unwrap()[0].sha, "3");
}

#[test]
fn a_bad_queued_job_does_not_fail_the_enqueue_of_its_lane_or_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let old = s
        .enqueue(&[deploy_of("a", "1")], &none, &superseded)
        .unwrap()[0];
    s.with(|c| c.execute("UPDATE jobs SET trigger = 'cron' WHERE id = ?1", [old]))
        .unwrap();
    let d = |id: &str, stack: &str, sha: &str| DeliveryRecord {
        delivery: id.into(),
        event: "push".into(),
        repo: Some("acme/infra".into()),
        jobs: vec![deploy_of(stack, sha)],
    };
    let got = s
        .record_deliveries(
            &[d("d1", "a", "2"), d("d2", "b", "3")],
            &queued,
            &superseded,
        )
        .unwrap();
    assert!(got.iter().all(Option::is_some), "{got:?}");
    let (state, detail) = raw_state(&s, old);
    assert_eq!(state, "error");
    assert!(
        detail.contains("column trigger") && detail.contains("`cron`"),
        "{detail}"
    );
    let shas: Vec<String> = s.claim(4).unwrap().into_iter().map(|j| j.sha).collect();
    assert_eq!(shas, ["2", "3"]);
}

#[test]
fn a_bad_status_is_given_up_on_and_the_rest_posts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
    let status = |sha: &str| StatusUpdate {
        repo: "acme/infra".into(),
        sha: sha.into(),
        context: Context::Policy,
        state: StatusState::Pending,
        description: "queued".into(),
        target_url: String::new(),
    };
    s.add_statuses(None, &[status("1"), status("2")]).unwrap();
    s.with(|c| c.execute("UPDATE statuses SET state = 'neutral' WHERE sha = '1'", []))
        .unwrap();
    let left = s.unposted_statuses(10).unwrap();
    assert_eq!(
        left.iter().map(|p| p.sha.as_str()).collect::<Vec<_>>(),
        ["2"]
    );
    let (posted, error): (i64, String) = s
        .with(|c| {
            c.query_row(
                "SELECT posted_at, last_error FROM statuses WHERE sha = '1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    assert_eq!(posted, -1, "given up on");
    for part in [
        "statuses row 1",
        "column state",
        "`neutral`",
        "another version of stackgate",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
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
    let r = s.recover().unwrap();
    assert_eq!(r.resume.len(), 1, "{r:?}");
    let running = &r.resume[0];
    assert_eq!(
        (running.sha.as_str(), running.phase),
        ("r1", Some(Phase::Executing))
    );
    assert_eq!(running.trigger, Trigger::Manual);
    assert_eq!(running.change_set_id.as_deref(), Some("cs-1"));
    // The queued job is claimed (its lane is free).
    let claimed = s.claim(4).unwrap();
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
        running.id,
        JobState::Succeeded,
        &serde_json::json!({}),
        Some(&comment),
        &[],
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
