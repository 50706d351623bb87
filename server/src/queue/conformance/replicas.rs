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
                let claimed = stores[r].claim(8).unwrap();
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
                            job.id,
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
        let claimed = stores[0].claim(8).unwrap();
        if claimed.is_empty() {
            break;
        }
        for job in claimed {
            ran.lock().unwrap().push(job.id);
            stores[0]
                .finish(
                    job.id,
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
    assert_eq!(rows, [[Some("1".to_string())]]);
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
