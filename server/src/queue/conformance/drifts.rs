//! Drift checks: each stack's latest, written only by the job's holder.

use crate::domain::{DriftState, JobState, Kind, Trigger};
use crate::queue::conformance::*;
use crate::queue::*;

fn check(sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Drift,
        trigger: Trigger::Schedule,
        ..deploy(sha)
    }
}

fn row(job: JobId, state: DriftState, at: i64) -> DriftRow {
    DriftRow {
        repo: "acme/infra".into(),
        stack: "web".into(),
        sha: "a".into(),
        job,
        state,
        drifted: if state == DriftState::Drifted { 2 } else { 0 },
        live_findings: 0,
        checked_at: at,
    }
}

pub fn a_check_replaces_the_last_and_hands_it_back(h: &dyn Harness) {
    let s = h.open();
    let run = |state: DriftState, at: i64| {
        let id = s.enqueue(&[check("a")], &none, &superseded).unwrap()[0];
        let job = s.claim(&lease(), 4).unwrap().remove(0);
        assert_eq!((job.id, job.kind), (id, Kind::Drift));
        let before = s.record_drift(job.claim(), &row(id, state, at)).unwrap();
        s.finish(
            job.claim(),
            JobState::Succeeded,
            &serde_json::json!({}),
            &[],
            None,
        )
        .unwrap();
        (id, before)
    };
    let (first, none_before) = run(DriftState::InSync, 10);
    assert_eq!(none_before, None);
    let (second, before) = run(DriftState::Drifted, 20);
    assert_eq!(before, Some(row(first, DriftState::InSync, 10)));
    // Only stacks still deployed are listed.
    assert_eq!(s.drifts().unwrap(), []);
    let deploy = s.enqueue(&[deploy("a")], &none, &superseded).unwrap()[0];
    let job = s.claim(&lease(), 4).unwrap().remove(0);
    assert_eq!(job.id, deploy);
    let ledger = |removed| LedgerEntry {
        repo: "acme/infra",
        stack: "web",
        sha: "a",
        removed,
        identity: None,
    };
    s.finish(
        job.claim(),
        JobState::Succeeded,
        &serde_json::json!({}),
        &[],
        Some(ledger(false)),
    )
    .unwrap();
    assert_eq!(s.drifts().unwrap(), [row(second, DriftState::Drifted, 20)]);
    s.retire("acme/infra", "web").unwrap();
    assert_eq!(s.drifts().unwrap(), []);
}

pub fn a_check_whose_lease_is_lost_records_nothing(h: &dyn Harness) {
    let s = h.open();
    let id = s.enqueue(&[check("a")], &none, &superseded).unwrap()[0];
    let job = s.claim(&lease(), 4).unwrap().remove(0);
    let stale = job.claim();
    // Another replica takes the job over: the old claim's fence is no longer the job's.
    s.take_over(&lease(), crate::queue::lease::Orphans::All)
        .unwrap();
    let err = s
        .record_drift(stale, &row(id, DriftState::Drifted, 5))
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(s.drifts().unwrap(), []);
}
