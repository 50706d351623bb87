//! Deliveries: each recorded once, with its jobs, superseding as one batch.

use crate::domain::{JobId, JobState};
use crate::queue::conformance::*;
use crate::queue::*;

pub fn a_delivery_is_recorded_once_even_within_one_batch(h: &dyn Harness) {
    let s = h.open();
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

pub fn the_newest_job_of_a_batch_supersedes_the_rest_and_queued_ones(h: &dyn Harness) {
    let s = h.open();
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

pub fn a_bad_queued_job_does_not_fail_the_enqueue_of_its_lane_or_batch(h: &dyn Harness) {
    let s = h.open();
    let old = s
        .enqueue(&[deploy_of("a", "1")], &none, &superseded)
        .unwrap()[0];
    h.exec(&format!(
        "UPDATE jobs SET trigger = 'cron' WHERE id = {old}"
    ));
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
    let (state, detail) = raw_state(h, old);
    assert_eq!(state, "error");
    assert!(
        detail.contains("column trigger") && detail.contains("`cron`"),
        "{detail}"
    );
    let shas: Vec<String> = s
        .claim(&lease(), 4)
        .unwrap()
        .into_iter()
        .map(|j| j.sha)
        .collect();
    assert_eq!(shas, ["2", "3"]);
}
