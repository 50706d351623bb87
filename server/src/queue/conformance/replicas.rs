//! Several replicas on one database: two stores, each as a process of its own would have
//! it, working at once.

use std::collections::HashSet;
use std::sync::{Barrier, Mutex};

use crate::domain::{JobId, JobState};
use crate::queue::conformance::*;
use crate::queue::*;

/// Runs `f(0)` and `f(1)` on two threads, released together.
fn both<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 2] {
    let go = Barrier::new(2);
    std::thread::scope(|s| {
        let (go, f) = (&go, &f);
        let a = s.spawn(move || {
            go.wait();
            f(0)
        });
        let b = s.spawn(move || {
            go.wait();
            f(1)
        });
        [a.join().unwrap(), b.join().unwrap()]
    })
}

pub fn two_stores_claiming_at_once_never_run_two_jobs_of_a_lane(h: &dyn Harness) {
    let stores = [h.open(), h.open()];
    let lanes = ["a", "b", "c"];
    // The lanes running now, as the two replicas see them; a lane is let go before its job
    // ends, so a claim after the end never finds it taken.
    let running: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let ran: Mutex<Vec<JobId>> = Mutex::new(Vec::new());
    for round in 0..15 {
        for (i, lane) in lanes.iter().enumerate() {
            stores[i % 2]
                .enqueue(&[deploy_of(lane, &format!("{round}"))], &none, &superseded)
                .unwrap();
        }
        both(|r| {
            for _ in 0..3 {
                let claimed = stores[r].claim(&lease(), 8).unwrap();
                for job in claimed {
                    let lane = job.stack.clone().unwrap();
                    assert!(
                        running.lock().unwrap().insert(lane.clone()),
                        "two jobs of lane {lane} run at once"
                    );
                    ran.lock().unwrap().push(job.id);
                    running.lock().unwrap().remove(&lane);
                    stores[r]
                        .finish(
                            job.claim(),
                            JobState::Succeeded,
                            &serde_json::json!({}),
                            &[],
                            None,
                        )
                        .unwrap();
                }
            }
        });
    }
    // Whatever is left runs too, and every job ran at most once.
    loop {
        let claimed = stores[0].claim(&lease(), 8).unwrap();
        if claimed.is_empty() {
            break;
        }
        for job in claimed {
            ran.lock().unwrap().push(job.id);
            stores[0]
                .finish(
                    job.claim(),
                    JobState::Succeeded,
                    &serde_json::json!({}),
                    &[],
                    None,
                )
                .unwrap();
        }
    }
    let ran = ran.into_inner().unwrap();
    let once: HashSet<JobId> = ran.iter().copied().collect();
    assert_eq!(once.len(), ran.len(), "a job ran twice: {ran:?}");
    assert_eq!(stores[1].depth().unwrap(), (0, 0));
    let succeeded = stores[1].jobs_in_state(JobState::Succeeded).unwrap().len();
    let gone = stores[1].jobs_in_state(JobState::Superseded).unwrap().len();
    assert_eq!(succeeded, ran.len());
    assert_eq!(succeeded + gone, 15 * lanes.len());
}

pub fn the_same_delivery_through_two_stores_makes_one_job(h: &dyn Harness) {
    let stores = [h.open(), h.open()];
    let d = |id: &str, stack: &str| DeliveryRecord {
        delivery: id.into(),
        event: "push".into(),
        repo: Some("acme/infra".into()),
        jobs: vec![deploy_of(stack, id)],
    };
    for round in 0..10 {
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        // The same two deliveries, in the opposite order on each replica.
        let got = both(|r| {
            let batch = if r == 0 {
                [d(&x, "web"), d(&y, "api")]
            } else {
                [d(&y, "api"), d(&x, "web")]
            };
            stores[r]
                .record_deliveries(&batch, &queued, &superseded)
                .unwrap()
        });
        let fresh = got.iter().flatten().filter(|o| o.is_some()).count();
        assert_eq!(fresh, 2, "each delivery is fresh exactly once: {got:?}");
    }
    assert_eq!(stores[0].delivery_count().unwrap(), 20);
    // One queued job per lane (each newer push superseded the one before).
    let queued_now = stores[1].jobs_in_state(JobState::Queued).unwrap();
    assert_eq!(queued_now.len(), 2, "{queued_now:?}");
    let all = stores[1].recent_jobs(100).unwrap();
    assert_eq!(all.len(), 20, "one job per delivery");
}

pub fn two_enqueues_at_once_supersede_as_one_process_would(h: &dyn Harness) {
    let stores = [h.open(), h.open()];
    for round in 0..10 {
        let stack = format!("s{round}");
        let first = stores[0]
            .enqueue(&[deploy_of(&stack, "a")], &queued, &superseded)
            .unwrap()[0];
        let [b, c] = both(|r| {
            let sha = if r == 0 { "b" } else { "c" };
            stores[r]
                .enqueue(&[deploy_of(&stack, sha)], &queued, &superseded)
                .unwrap()[0]
        });
        let lane: Vec<Job> = stores[0]
            .recent_jobs(1000)
            .unwrap()
            .into_iter()
            .filter(|j| j.stack.as_deref() == Some(stack.as_str()))
            .collect();
        let live: Vec<&Job> = lane
            .iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        assert_eq!(live.len(), 1, "one queued job in the lane: {lane:?}");
        let last = live[0].id;
        let middle = if last == b { c } else { b };
        assert!(last == b || last == c);
        // a was superseded by the one that came second, that one by the last: each once.
        let by = |id: JobId| lane.iter().find(|j| j.id == id).unwrap().superseded_by;
        assert_eq!(by(first), Some(middle));
        assert_eq!(by(middle), Some(last));
        let said: Vec<String> = stores[1]
            .unposted_statuses(1000)
            .unwrap()
            .into_iter()
            .filter(|p| p.description.starts_with("superseded"))
            .map(|p| p.description)
            .collect();
        assert_eq!(said.len(), 2 * (round + 1), "{said:?}");
    }
}

pub fn two_stores_opening_a_new_database_at_once_migrate_once(h: &dyn Harness) {
    let opened = both(|_| h.try_open().map(drop));
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let rows = h.query("SELECT CAST(version AS TEXT) FROM schema_migrations ORDER BY version");
    let versions: Vec<Option<&str>> = rows.iter().map(|r| r[0].as_deref()).collect();
    assert_eq!(versions, [Some("1"), Some("2"), Some("3"), Some("4")]);
}

pub fn one_store_posts_at_a_time(h: &dyn Harness) {
    let (a, b) = (h.open(), h.open());
    assert!(a.may_post().unwrap(), "the first asks and gets it");
    assert!(!b.may_post().unwrap(), "the second stands by");
    assert!(a.may_post().unwrap(), "the first keeps it");
    drop(a);
    // The lock goes with the first's connection; the other takes over.
    let mut took = false;
    for _ in 0..50 {
        if b.may_post().unwrap() {
            took = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(took, "the second takes over once the first is gone");
}

fn lease_of(owner: &str, ms: u64) -> crate::queue::lease::Lease {
    crate::queue::lease::Lease {
        owner: crate::queue::lease::Replica::named(owner),
        length: std::time::Duration::from_millis(ms),
    }
}

pub fn two_stores_taking_over_at_once_never_take_the_same_job(h: &dyn Harness) {
    use crate::queue::lease::Orphans;
    let stores = [h.open(), h.open()];
    let lanes: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    for round in 0..5 {
        let jobs: Vec<NewJob> = lanes
            .iter()
            .map(|l| deploy_of(l, &format!("{round}")))
            .collect();
        stores[0].enqueue(&jobs, &none, &superseded).unwrap();
        // A replica that died with all of them running: its leases run out at once.
        let dead = stores[0].claim(&lease_of("dead", 0), 100).unwrap();
        assert_eq!(dead.len(), lanes.len());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let taken = both(|r| {
            stores[r]
                .take_over(&lease_of(&format!("r{r}"), 60_000), Orphans::Expired)
                .unwrap()
        });
        let by: Vec<Vec<JobId>> = taken
            .iter()
            .map(|t| t.iter().map(|j| j.id).collect())
            .collect();
        let ids: Vec<JobId> = by.iter().flatten().copied().collect();
        let once: HashSet<JobId> = ids.iter().copied().collect();
        assert_eq!(once.len(), ids.len(), "a job taken twice: {by:?}");
        assert_eq!(once.len(), lanes.len(), "every orphan taken: {by:?}");
        // Each job is held by the store that says it took it, under the fence it got.
        for (r, got) in taken.iter().enumerate() {
            for j in got {
                let now = stores[1 - r].job(j.id).unwrap().unwrap();
                assert_eq!(now.owner.as_deref(), Some(format!("r{r}").as_str()));
                assert_eq!(now.fence, j.fence);
                stores[r]
                    .finish(
                        j.claim(),
                        JobState::Succeeded,
                        &serde_json::json!({}),
                        &[],
                        None,
                    )
                    .unwrap();
            }
        }
    }
}

pub fn a_store_whose_lease_was_taken_over_gets_lease_lost_and_writes_nothing(h: &dyn Harness) {
    use crate::queue::lease::Orphans;
    let (a, b) = (h.open(), h.open());
    let id = a.enqueue(&[deploy("a")], &none, &superseded).unwrap()[0];
    let mine = a.claim(&lease_of("a", 0), 1).unwrap().remove(0);
    a.set_phase(mine.claim(), crate::domain::Phase::Planning, None, None)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let theirs = b
        .take_over(&lease_of("b", 60_000), Orphans::Expired)
        .unwrap()
        .remove(0);
    assert_eq!(theirs.id, id);
    let statuses = b.unposted_statuses(100).unwrap().len();
    let write = a.set_phase(
        mine.claim(),
        crate::domain::Phase::Executing,
        Some("cs-stale"),
        None,
    );
    assert!(
        matches!(write, Err(StoreError::LeaseLost(c)) if c == mine.claim()),
        "{write:?}"
    );
    let end = a.finish(
        mine.claim(),
        JobState::Failed,
        &serde_json::json!({"stale": true}),
        &[queued(&deploy("a"), id).remove(0)],
        Some(LedgerEntry {
            repo: "acme/infra",
            stack: "web",
            sha: "a",
            removed: false,
            identity: None,
        }),
    );
    assert!(matches!(end, Err(StoreError::LeaseLost(_))), "{end:?}");
    let status = a.add_statuses(Some(mine.claim()), &queued(&deploy("a"), id));
    assert!(
        matches!(status, Err(StoreError::LeaseLost(_))),
        "{status:?}"
    );
    // As the other store reads it: b's, running, planning, nothing of a's landed.
    let now = b.job(id).unwrap().unwrap();
    assert_eq!(
        (
            now.state,
            now.phase,
            now.change_set_id,
            now.owner.as_deref()
        ),
        (
            JobState::Running,
            Some(crate::domain::Phase::Planning),
            None,
            Some("b")
        )
    );
    assert_eq!(now.detail, serde_json::json!({}));
    assert_eq!(b.unposted_statuses(100).unwrap().len(), statuses);
    assert_eq!(b.ledger_row("acme/infra", "web").unwrap(), None);
    b.finish(
        theirs.claim(),
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        None,
    )
    .unwrap();
}

pub fn a_renewal_by_one_store_never_extends_anothers_lease(h: &dyn Harness) {
    let (a, b) = (h.open(), h.open());
    a.enqueue(
        &[deploy_of("web", "1"), deploy_of("api", "2")],
        &none,
        &superseded,
    )
    .unwrap();
    let x = a.claim(&lease_of("a", 1_000), 1).unwrap().remove(0);
    let y = b.claim(&lease_of("b", 1_000), 1).unwrap().remove(0);
    // Both renew at once, each for a very different length.
    let held = both(|r| match r {
        0 => a
            .renew(&lease_of("a", 600_000), &[x.claim(), y.claim()])
            .unwrap(),
        _ => b
            .renew(&lease_of("b", 2_000), &[x.claim(), y.claim()])
            .unwrap(),
    });
    assert_eq!(held, [vec![x.claim()], vec![y.claim()]]);
    let (xa, yb) = (
        b.job(x.id).unwrap().unwrap().lease_until.unwrap(),
        a.job(y.id).unwrap().unwrap().lease_until.unwrap(),
    );
    assert!(xa >= x.lease_until.unwrap() + 500_000, "a's lease renewed");
    assert!(yb < x.lease_until.unwrap() + 100_000, "b's only by b: {yb}");
    // A store renewing as an owner of nothing extends nothing.
    assert!(
        a.renew(&lease_of("c", 900_000), &[x.claim(), y.claim()])
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.job(y.id).unwrap().unwrap().lease_until, Some(yb));
}

/// A replica starting beside a live one takes what its backend says it may at start: on a
/// shared database only leases that ran out, never the live replica's jobs.
pub fn a_starting_replica_takes_over_only_expired_leases(h: &dyn Harness) {
    let live = h.open();
    live.enqueue(
        &[deploy_of("web", "1"), deploy_of("api", "2")],
        &none,
        &superseded,
    )
    .unwrap();
    let kept = live.claim(&lease_of("live", 60_000), 1).unwrap().remove(0);
    let gone = live.claim(&lease_of("dead", 0), 1).unwrap().remove(0);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let starting = h.open();
    let at_start = starting.orphans_at_start();
    assert_eq!(at_start, crate::queue::lease::Orphans::Expired);
    let r = starting
        .recover(&lease_of("new", 60_000), at_start)
        .unwrap();
    assert_eq!(r.resume.iter().map(|j| j.id).collect::<Vec<_>>(), [gone.id]);
    let still = live.job(kept.id).unwrap().unwrap();
    assert_eq!(
        (still.owner.as_deref(), still.fence),
        (Some("live"), kept.fence)
    );
    // And a clean stop of the new one hands back its own only.
    assert_eq!(starting.release(&lease_of("new", 60_000)).unwrap(), 1);
    assert_eq!(
        live.job(kept.id).unwrap().unwrap().owner.as_deref(),
        Some("live")
    );
}
