//! Forgetting old history.

use crate::domain::JobState;
use crate::queue::conformance::*;
use crate::queue::*;

pub fn old_history_is_forgotten_but_live_work_and_each_lanes_last_run_stay(h: &dyn Harness) {
    let s = h.open();
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
        assert!(s.claim(&lease(), 4).unwrap().iter().any(|j| j.id == id));
        s.finish(held(&*s, id), end, &serde_json::json!({}), &[], None)
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
    h.exec(
        "UPDATE jobs SET created_at = created_at - 86400000,
             finished_at = finished_at - 86400000;
         UPDATE statuses SET created_at = created_at - 86400000;
         UPDATE deliveries SET received_at = received_at - 86400000;",
    );
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
            checks: 0,
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
