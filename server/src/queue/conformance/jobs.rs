//! Jobs: folded, superseded, claimed one per lane, recovered after a crash.

use crate::domain::{JobId, JobState, Kind, Phase, Trigger};
use crate::queue::conformance::*;
use crate::queue::*;

pub fn a_job_for_the_commit_already_queued_is_that_job(h: &dyn Harness) {
    let s = h.open();
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

pub fn a_manual_redeploy_is_its_own_job_and_requeued_jobs_are_superseded(h: &dyn Harness) {
    let s = h.open();
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
    assert!(s.claim(&lease(), 1).unwrap().iter().any(|j| j.id == x));
    let y = s.enqueue(&[deploy("y")], &queued, &superseded).unwrap();
    s.requeue(held(&*s, x)).unwrap();
    assert_eq!(s.enqueue(&[deploy("y")], &queued, &superseded).unwrap(), y);
    let left: Vec<JobId> = s
        .jobs_in_state(JobState::Queued)
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, y, "x is superseded by y, as a newer push would do");
}

pub fn a_burst_of_pushes_runs_one_sync(h: &dyn Harness) {
    let s = h.open();
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
        s.claim(&lease(), 4).unwrap().is_empty(),
        "a sync waits out the debounce"
    );
    s.enqueue(&[sync("b")], &none, &superseded).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(
        SYNC_DEBOUNCE_MS as u64 + 50,
    ));
    let run = s.claim(&lease(), 4).unwrap();
    assert_eq!(
        run.iter().map(|j| j.sha.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
}

pub fn one_job_per_lane_and_newer_commits_supersede_queued_ones(h: &dyn Harness) {
    let s = h.open();
    s.enqueue(&[deploy("a")], &none, &superseded).unwrap();
    let running = s.claim(&lease(), 4).unwrap();
    assert_eq!(running.len(), 1);
    s.enqueue(&[deploy("b")], &none, &superseded).unwrap();
    s.enqueue(&[deploy("c")], &none, &superseded).unwrap();
    // The lane is busy: nothing more runs.
    assert!(s.claim(&lease(), 4).unwrap().is_empty());
    let b = s.jobs_in_state(JobState::Superseded).unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].sha, "b");
    let st = s.unposted_statuses(10).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].description, "superseded by c");
    s.finish(
        running[0].claim(),
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
    let next = s.claim(&lease(), 4).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].sha, "c");
    assert_eq!(
        s.deployed("acme/infra").unwrap(),
        vec![("web".to_string(), "a".to_string(), false)]
    );
}

pub fn a_job_that_takes_the_process_down_twice_is_not_run_again(h: &dyn Harness) {
    let open = || h.open();
    let id = open().enqueue(&[preview("a")], &none, &superseded).unwrap()[0];
    // Claimed, then the process dies mid-job: requeued once.
    for attempt in 1..=MAX_ATTEMPTS {
        let s = open();
        let r = s
            .recover(&lease(), crate::queue::lease::Orphans::All)
            .unwrap();
        assert!(r.poisoned.is_empty() && r.resume.is_empty());
        let j = s.claim(&lease(), 1).unwrap().remove(0);
        assert_eq!((j.id, j.attempts), (id, attempt));
    }
    // The second crash: it comes back poisoned, not queued.
    let s = open();
    let r = s
        .recover(&lease(), crate::queue::lease::Orphans::All)
        .unwrap();
    assert_eq!(r.poisoned.len(), 1);
    assert_eq!(r.poisoned[0].id, id);
    assert!(s.claim(&lease(), 1).unwrap().is_empty());
    s.finish(
        held(&*s, id),
        JobState::Error,
        &serde_json::json!({}),
        &[],
        None,
    )
    .unwrap();
    // A resumed deploy counts too.
    let d = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
    let j = s.claim(&lease(), 1).unwrap().remove(0);
    assert_eq!(j.id, d);
    s.set_phase(held(&*s, d), Phase::Executing, Some("cs"), Some("st"))
        .unwrap();
    drop(s);
    let s = open();
    let r = s
        .recover(&lease(), crate::queue::lease::Orphans::All)
        .unwrap();
    assert_eq!(r.resume.len(), 1);
    s.attempt(held(&*s, d)).unwrap();
    drop(s);
    let r = open()
        .recover(&lease(), crate::queue::lease::Orphans::All)
        .unwrap();
    assert!(r.poisoned.iter().any(|j| j.id == d), "{r:?}");
}

pub fn pending_deploys_are_each_stacks_newest_live_job(h: &dyn Harness) {
    let s = h.open();
    let api = |sha: &str| NewJob {
        stack: Some("api".into()),
        ..deploy(sha)
    };
    let done = s.enqueue(&[api("a0")], &none, &superseded).unwrap()[0];
    s.claim(&lease(), 4).unwrap();
    s.finish(
        held(&*s, done),
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        None,
    )
    .unwrap();
    assert!(s.pending_deploys("acme/infra").unwrap().is_empty());
    s.enqueue(&[deploy("w1")], &none, &superseded).unwrap();
    assert_eq!(s.claim(&lease(), 4).unwrap().len(), 1, "w1 runs");
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

pub fn a_stored_job_of_an_unknown_kind_is_an_error_not_a_sync(h: &dyn Harness) {
    let s = h.open();
    let ids = s
        .enqueue(
            &[deploy_of("a", "1"), deploy_of("b", "2")],
            &none,
            &superseded,
        )
        .unwrap();
    h.exec(&format!(
        "UPDATE jobs SET kind = 'redeploy' WHERE id = {}",
        ids[0]
    ));
    let e = s.job(ids[0]).unwrap_err().to_string();
    assert!(e.contains("unknown job kind `redeploy`"), "{e}");
    // The good job runs; the bad one is not run as something else but ends in error,
    // saying where and why.
    let claimed = s.claim(&lease(), 4).unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1]],
        "{claimed:?}"
    );
    let (state, detail) = raw_state(h, ids[0]);
    assert_eq!(state, "error");
    for part in [
        "jobs row 1",
        "column kind",
        "`redeploy`",
        "another version of stackgate",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }
    assert!(s.claim(&lease(), 4).unwrap().is_empty());
    // The pages list the jobs they can read.
    let recent: Vec<JobId> = s.recent_jobs(10).unwrap().iter().map(|j| j.id).collect();
    assert_eq!(recent, [ids[1]]);
}

pub fn a_bad_running_job_ends_in_error_and_the_others_resume(h: &dyn Harness) {
    let s = h.open();
    let ids = s
        .enqueue(
            &[deploy_of("a", "1"), deploy_of("b", "2")],
            &none,
            &superseded,
        )
        .unwrap();
    assert_eq!(s.claim(&lease(), 4).unwrap().len(), 2);
    h.exec(&format!(
        "UPDATE jobs SET phase = 'warping' WHERE id = {}",
        ids[0]
    ));
    let r = s
        .recover(&lease(), crate::queue::lease::Orphans::All)
        .unwrap();
    assert_eq!(r.resume.iter().map(|j| j.id).collect::<Vec<_>>(), [ids[1]]);
    assert!(r.poisoned.is_empty());
    let (state, detail) = raw_state(h, ids[0]);
    assert_eq!(state, "error");
    assert!(detail.contains("column phase"), "{detail}");
    // Its lane is free again.
    s.enqueue(&[deploy_of("a", "3")], &none, &superseded)
        .unwrap();
    assert_eq!(s.claim(&lease(), 4).unwrap()[0].sha, "3");
}

pub fn a_running_deploy_survives_a_restart(h: &dyn Harness) {
    {
        let s = h.open();
        s.enqueue(&[deploy("a")], &none, &superseded).unwrap();
        let j = s.claim(&lease(), 1).unwrap().remove(0);
        s.set_phase(j.claim(), Phase::Executing, Some("cs-1"), Some("stack-1"))
            .unwrap();
    }
    let s = h.open();
    let resume = s
        .recover(&lease(), crate::queue::lease::Orphans::All)
        .unwrap()
        .resume;
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0].change_set_id.as_deref(), Some("cs-1"));
    assert_eq!(resume[0].phase, Some(Phase::Executing));
}
