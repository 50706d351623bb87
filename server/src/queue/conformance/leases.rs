//! Leases: claims with an owner, an expiry and a fence; fenced writes; renewal; takeover.

use std::time::Duration;

use crate::domain::{Context, JobId, JobState, Kind, Phase, StatusState, Trigger};
use crate::queue::conformance::Harness;
use crate::queue::lease::{Claim, Lease, Orphans, Replica};
use crate::queue::{CommentUpdate, Job, LedgerEntry, NewJob, Queue, StatusUpdate, StoreError, now};

fn lease(owner: &str, ms: u64) -> Lease {
    Lease {
        owner: Replica::named(owner),
        length: Duration::from_millis(ms),
    }
}

fn deploy(stack: &str, sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Deploy,
        repo: "acme/infra".into(),
        stack: Some(stack.into()),
        sha: sha.into(),
        pr: None,
        fork: false,
        trigger: Trigger::Push,
    }
}

fn enqueue(q: &dyn Queue, jobs: &[NewJob]) -> Vec<JobId> {
    q.enqueue(jobs, &|_, _| Vec::new(), &|_, _| Vec::new())
        .expect("enqueue")
}

fn job(q: &dyn Queue, id: JobId) -> Job {
    q.job(id).expect("read").expect("the job")
}

fn status(sha: &str, description: &str) -> StatusUpdate {
    StatusUpdate {
        repo: "acme/infra".into(),
        sha: sha.into(),
        context: Context::Stack("web".into()),
        state: StatusState::Success,
        description: description.into(),
        target_url: String::new(),
    }
}

/// Lets a lease of length 0 run out (leases count whole milliseconds).
fn expire() {
    std::thread::sleep(Duration::from_millis(5));
}

fn lost<T: std::fmt::Debug>(r: Result<T, StoreError>, claim: Claim, what: &str) {
    match r {
        Err(StoreError::LeaseLost(c)) => {
            assert_eq!(c, claim, "{what}");
            let said = StoreError::LeaseLost(c).to_string();
            assert!(said.contains("lease lost"), "{what}: {said}");
        }
        other => panic!("{what}: {other:?}, not lease lost"),
    }
}

pub fn a_claim_sets_owner_expiry_and_fence(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let id = enqueue(q, &[deploy("web", "a")])[0];
    assert_eq!(job(q, id).owner, None);
    let before = now();
    let claimed = q.claim(&lease("r1", 60_000), 4).expect("claim");
    let after = now();
    assert_eq!(claimed.len(), 1);
    let j = &claimed[0];
    assert_eq!(j.owner.as_deref(), Some("r1"));
    let until = j.lease_until.expect("a lease");
    assert!(
        (before + 60_000..=after + 60_000).contains(&until),
        "{before} {until} {after}"
    );
    assert!(j.fence >= 1, "{j:?}");
    let stored = job(q, id);
    assert_eq!(
        (stored.owner, stored.lease_until, stored.fence, stored.state),
        (j.owner.clone(), j.lease_until, j.fence, JobState::Running)
    );
}

pub fn a_takeover_and_the_next_claim_grow_the_fence(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let id = enqueue(q, &[deploy("web", "a")])[0];
    let first = q.claim(&lease("r1", 0), 1).expect("claim").remove(0);
    expire();
    let taken = q
        .take_over(&lease("r2", 60_000), Orphans::Expired)
        .expect("take over");
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    let t = &taken[0];
    assert!(t.fence > first.fence, "{} then {}", first.fence, t.fence);
    assert_eq!(t.owner.as_deref(), Some("r2"));
    assert_eq!(t.state, JobState::Running);
    // Taken over, requeued, claimed again: bigger again.
    q.requeue(t.claim()).expect("requeue");
    let again = q.claim(&lease("r3", 60_000), 1).expect("claim").remove(0);
    assert_eq!(again.id, id);
    assert!(again.fence > t.fence, "{} then {}", t.fence, again.fence);
}

pub fn a_write_under_an_old_fence_changes_nothing_and_says_lease_lost(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let id = enqueue(q, &[deploy("web", "a")])[0];
    let old = q.claim(&lease("r1", 0), 1).expect("claim").remove(0);
    q.set_phase(old.claim(), Phase::Planning, None, None)
        .expect("held: written");
    expire();
    let new = q
        .take_over(&lease("r2", 60_000), Orphans::Expired)
        .expect("take over")
        .remove(0);
    let stale = old.claim();
    let before = job(q, id);
    let statuses = q.unposted_statuses(100).expect("statuses").len();
    lost(
        q.set_phase(stale, Phase::Executing, Some("cs-1"), Some("st-1")),
        stale,
        "set_phase",
    );
    lost(
        q.set_detail(stale, &serde_json::json!({"stale": true})),
        stale,
        "set_detail",
    );
    lost(q.attempt(stale), stale, "attempt");
    lost(
        q.add_statuses(Some(stale), &[status("a", "pending")]),
        stale,
        "add_statuses",
    );
    let comment = CommentUpdate {
        repo: "acme/infra".into(),
        pr: 7,
        body: "stale".into(),
    };
    lost(
        q.finish_with(
            stale,
            JobState::Succeeded,
            &serde_json::json!({"stale": true}),
            crate::queue::Outbound {
                comment: Some(&comment),
                statuses: &[status("a", "deployed")],
                checks: &[],
            },
            Some(LedgerEntry {
                repo: "acme/infra",
                stack: "web",
                sha: "a",
                removed: false,
                identity: None,
            }),
        ),
        stale,
        "finish_with",
    );
    lost(q.requeue(stale), stale, "requeue");
    // Nothing of it landed: the job, the outbox and the ledger are as they were.
    let after = job(q, id);
    assert_eq!(
        (after.state, after.phase, after.change_set_id.clone()),
        (JobState::Running, Some(Phase::Planning), None)
    );
    assert_eq!(
        (after.detail.clone(), after.attempts, after.fence),
        (before.detail.clone(), before.attempts, new.fence)
    );
    assert_eq!(q.unposted_statuses(100).expect("statuses").len(), statuses);
    assert!(q.unposted_comments(100).expect("comments").is_empty());
    assert_eq!(q.ledger_row("acme/infra", "web").expect("ledger"), None);
    // The holder's writes land.
    q.add_statuses(Some(new.claim()), &[status("a", "pending")])
        .expect("the holder's status");
    q.finish(
        new.claim(),
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        None,
    )
    .expect("the holder's end");
    assert_eq!(job(q, id).state, JobState::Succeeded);
    // An ended job takes no more ends, not even from its last holder.
    lost(
        q.finish(
            new.claim(),
            JobState::Error,
            &serde_json::json!({}),
            &[],
            None,
        ),
        new.claim(),
        "a second end",
    );
    assert_eq!(job(q, id).state, JobState::Succeeded);
}

pub fn a_renewal_extends_only_its_owners_leases(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let ids = enqueue(q, &[deploy("web", "a"), deploy("api", "b")]);
    let mine = q.claim(&lease("r1", 1_000), 1).expect("claim").remove(0);
    let theirs = q.claim(&lease("r2", 1_000), 1).expect("claim").remove(0);
    assert_eq!(
        [mine.id, theirs.id]
            .iter()
            .collect::<std::collections::BTreeSet<_>>(),
        ids.iter().collect()
    );
    let before = now();
    // r1 names its own claim and r2's: only its own is renewed.
    let held = q
        .renew(&lease("r1", 120_000), &[mine.claim(), theirs.claim()])
        .expect("renew");
    assert_eq!(held, [mine.claim()]);
    let until = job(q, mine.id).lease_until.expect("a lease");
    assert!(until >= before + 120_000, "{until} < {before} + 120000");
    assert_eq!(job(q, theirs.id).lease_until, theirs.lease_until);
    // A job taken over is no longer among the renewer's.
    expire();
    q.renew(&lease("r1", 0), &[mine.claim()]).expect("renew");
    expire();
    q.take_over(&lease("r3", 60_000), Orphans::Expired)
        .expect("take over");
    assert!(
        q.renew(&lease("r1", 60_000), &[mine.claim()])
            .expect("renew")
            .is_empty()
    );
    assert_eq!(job(q, mine.id).owner.as_deref(), Some("r3"));
}

/// A lease that is not renewed expires, and a job no worker runs any more is not renewed:
/// the worker stopped (its guard lapsed, the database was away). A takeover picks such a
/// job up, this owner's too: a worker of its that still runs is fenced off by the new fence.
/// Only the claims named are renewed: a job whose worker stopped here (it is no longer
/// among this replica's claims) keeps its old lease and expires.
pub fn a_renewal_renews_only_the_claims_it_names(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    enqueue(q, &[deploy("web", "a"), deploy("api", "b")]);
    let mut both = q.claim(&lease("r1", 0), 2).expect("claim");
    let (stopped, running) = (both.remove(1), both.remove(0));
    let held = q
        .renew(&lease("r1", 120_000), &[running.claim()])
        .expect("renew");
    assert_eq!(held, [running.claim()]);
    assert_eq!(job(q, stopped.id).lease_until, stopped.lease_until);
    expire();
    let taken = q
        .take_over(&lease("r2", 60_000), Orphans::Expired)
        .expect("take over");
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), [stopped.id]);
}

pub fn a_takeover_takes_only_expired_leases(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let ids = enqueue(
        q,
        &[deploy("web", "a"), deploy("api", "b"), deploy("db", "c")],
    );
    let live = q.claim(&lease("r1", 60_000), 1).expect("claim").remove(0);
    let dead = q.claim(&lease("r2", 0), 1).expect("claim").remove(0);
    let own = q.claim(&lease("r3", 0), 1).expect("claim").remove(0);
    assert_eq!(live.id, ids[0]);
    expire();
    let taken = q
        .take_over(&lease("r3", 60_000), Orphans::Expired)
        .expect("take over");
    // Not r1's live lease: r2's, and r3's own that expired.
    assert_eq!(
        taken.iter().map(|j| j.id).collect::<Vec<_>>(),
        [dead.id, own.id]
    );
    assert_eq!(job(q, live.id).owner.as_deref(), Some("r1"));
    assert_eq!(job(q, live.id).fence, live.fence);
    assert!(
        job(q, own.id).fence > own.fence,
        "a new fence fences off r3's old worker"
    );
    // Taken once: a second replica finds nothing more.
    let again = q
        .take_over(&lease("r4", 60_000), Orphans::Expired)
        .expect("take over");
    assert!(again.is_empty(), "{again:?}");
    // At start-up with the state to itself, a replica takes every other one's.
    let all = q
        .take_over(&lease("r5", 60_000), Orphans::All)
        .expect("take over");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|j| j.owner.as_deref() == Some("r5")));
    assert!(
        q.take_over(&lease("r5", 60_000), Orphans::All)
            .expect("again")
            .is_empty()
    );
}

pub fn a_clean_stop_hands_its_leases_back(h: &dyn Harness) {
    let q = h.open();
    let q = q.as_ref();
    let id = enqueue(q, &[deploy("web", "a")])[0];
    let j = q.claim(&lease("r1", 60_000), 1).expect("claim").remove(0);
    assert_eq!(j.attempts, 1);
    assert_eq!(q.release(&lease("r2", 60_000)).expect("release"), 0);
    assert_eq!(q.release(&lease("r1", 60_000)).expect("release"), 1);
    let back = job(q, id);
    assert_eq!((back.state, back.attempts), (JobState::Running, 0));
    // Another replica takes it at once, not after the lease.
    let taken = q
        .take_over(&lease("r2", 60_000), Orphans::Expired)
        .expect("take over");
    assert_eq!(taken.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}
