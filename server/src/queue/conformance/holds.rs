//! Held change sets: a hold frees its lane; a decision queues it again once, unless a
//! newer deploy of the stack came; the newer one closes the holds its lane still has.

use crate::domain::{Decision, JobState, Phase};
use crate::queue::conformance::*;
use crate::queue::*;

fn decided(decision: Decision) -> Decided {
    Decided {
        decision,
        by: "alice@example.com".into(),
        at: 1_000,
    }
}

/// Enqueues and runs a deploy of `sha` up to its hold.
fn hold(s: &dyn Queue, sha: &str) -> JobId {
    let id = s.enqueue(&[deploy(sha)], &none, &superseded).unwrap()[0];
    let job = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!(job.id, id);
    let detail = serde_json::json!({"hold": {"change_set_id": format!("cs-{sha}")}});
    s.finish(job.claim(), JobState::Held, &detail, &[], None)
        .unwrap();
    id
}

pub fn a_held_job_frees_its_lane_and_an_approval_queues_it_once(h: &dyn Harness) {
    let s = h.open();
    let id = hold(&*s, "a");
    let job = s.job(id).unwrap().unwrap();
    assert_eq!((job.state, job.phase), (JobState::Held, Some(Phase::Held)));
    // Nothing runs while it waits, and the lane is free.
    assert!(s.claim(&lease(), 4).unwrap().is_empty());
    assert_eq!(s.depth().unwrap(), (0, 0));

    let again = s.decide(id, &decided(Decision::Approved)).unwrap().unwrap();
    assert_eq!((again.state, again.attempts), (JobState::Queued, 0));
    assert_eq!(again.detail["decision"]["by"], "alice@example.com");
    assert_eq!(again.detail["decision"]["decision"], "approved");
    // What the hold recorded is still there for the worker.
    assert_eq!(again.detail["hold"]["change_set_id"], "cs-a");
    // A second decision finds it no longer held.
    assert_eq!(
        s.decide(id, &decided(Decision::Rejected)).unwrap().err(),
        Some(Undecidable::NotHeld {
            id,
            state: JobState::Queued
        })
    );
    let claimed = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!((claimed.id, claimed.phase), (id, Some(Phase::Held)));
    assert_eq!(
        s.decide(JobId(9_999), &decided(Decision::Approved))
            .unwrap()
            .err(),
        Some(Undecidable::NotFound(JobId(9_999)))
    );
}

pub fn a_newer_deploy_makes_a_hold_undecidable_and_closes_it(h: &dyn Harness) {
    let s = h.open();
    let old = hold(&*s, "a");
    let new = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
    // The held job is not queued: the enqueue does not touch it.
    assert_eq!(s.job(old).unwrap().unwrap().state, JobState::Held);
    assert_eq!(
        s.decide(old, &decided(Decision::Approved)).unwrap().err(),
        Some(Undecidable::Newer {
            id: old,
            newer: new
        })
    );
    let running = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!(running.id, new);
    let stale = s.stale_holds("acme/infra", "web", new).unwrap();
    assert_eq!(stale.iter().map(|j| j.id).collect::<Vec<_>>(), [old]);
    assert_eq!(stale[0].detail["hold"]["change_set_id"], "cs-a");
    // Another stack's lane has none.
    assert!(s.stale_holds("acme/infra", "db", new).unwrap().is_empty());

    let said = StatusUpdate {
        repo: "acme/infra".into(),
        sha: "a".into(),
        context: Context::Stack("web".into()),
        state: StatusState::Error,
        description: "superseded; held change set deleted".into(),
        target_url: String::new(),
    };
    assert!(s.close_hold(old, new, std::slice::from_ref(&said)).unwrap());
    let closed = s.job(old).unwrap().unwrap();
    assert_eq!(
        (closed.state, closed.phase, closed.superseded_by),
        (JobState::Superseded, Some(Phase::Done), Some(new))
    );
    assert!(s.stale_holds("acme/infra", "web", new).unwrap().is_empty());
    // Closed once: its status is queued once.
    assert!(!s.close_hold(old, new, &[said]).unwrap());
    let posted: Vec<_> = s.unposted_statuses(10).unwrap();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].description, "superseded; held change set deleted");
}

pub fn an_approved_hold_superseded_before_it_runs_is_still_closed(h: &dyn Harness) {
    let s = h.open();
    let old = hold(&*s, "a");
    s.decide(old, &decided(Decision::Approved))
        .unwrap()
        .unwrap();
    // A push before a worker took the approved job up supersedes it as a queued job.
    let new = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
    assert_eq!(s.job(old).unwrap().unwrap().state, JobState::Superseded);
    let running = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!(running.id, new);
    let stale = s.stale_holds("acme/infra", "web", new).unwrap();
    assert_eq!(stale.iter().map(|j| j.id).collect::<Vec<_>>(), [old]);
    assert!(s.close_hold(old, new, &[]).unwrap());
    assert_eq!(s.job(old).unwrap().unwrap().phase, Some(Phase::Done));
}

pub fn a_held_job_is_kept_by_the_pruner(h: &dyn Harness) {
    let s = h.open();
    let id = hold(&*s, "a");
    // A later run of the lane that ended, so the hold is not kept as the lane's last run.
    let later = s.enqueue(&[deploy("b")], &none, &superseded).unwrap()[0];
    let job = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!(job.id, later);
    s.finish(
        job.claim(),
        JobState::Failed,
        &serde_json::json!({}),
        &[],
        None,
    )
    .unwrap();
    h.exec("UPDATE jobs SET created_at = 1, finished_at = 1");
    s.prune(i64::MAX, 100).unwrap();
    assert_eq!(s.job(id).unwrap().unwrap().state, JobState::Held);
}
