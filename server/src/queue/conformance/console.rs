//! The console's reads: every backend answers them alike.

use serde_json::json;

use crate::domain::{JobState, Kind, StackIdentity};
use crate::queue::conformance::*;
use crate::queue::*;

pub fn the_console_reads_each_lanes_newest_job_runs_and_previews(h: &dyn Harness) {
    let s = h.open();
    let id = StackIdentity {
        account: "123456789012".into(),
        region: "eu-west-1".into(),
        name: "web-prod".into(),
    };
    let run = |job: NewJob, end: JobState, detail: serde_json::Value, ledger: bool| {
        let j = s
            .enqueue(std::slice::from_ref(&job), &none, &superseded)
            .unwrap()[0];
        assert!(s.claim(&lease(), 4).unwrap().iter().any(|c| c.id == j));
        let stack = job.stack.clone().unwrap_or_default();
        s.finish(
            held(&*s, j),
            end,
            &detail,
            &[],
            ledger.then_some(LedgerEntry {
                repo: "acme/infra",
                stack: &stack,
                sha: &job.sha,
                removed: false,
                identity: Some(&id),
            }),
        )
        .unwrap();
        j
    };
    let deployed = json!({"policy": {"verdict": "pass"}, "identity": id, "outputs": {"Url": "u"}});
    let w1 = run(
        deploy_of("web", "w1"),
        JobState::Succeeded,
        deployed.clone(),
        true,
    );
    let w2 = run(
        deploy_of("web", "w2"),
        JobState::Succeeded,
        json!({"policy": {"verdict": "pass"}, "identity": id}),
        true,
    );
    let w3 = run(
        deploy_of("web", "w3"),
        JobState::Failed,
        json!({"policy": {"verdict": "fail"}}),
        false,
    );
    let a1 = run(deploy_of("api", "a1"), JobState::Error, json!({}), false);
    let p1 = run(
        preview("p1"),
        JobState::Succeeded,
        json!({"stacks": {}}),
        false,
    );
    // web's w4 is queued then superseded by w5, which waits: the lane's head.
    s.enqueue(&[deploy_of("web", "w4")], &none, &superseded)
        .unwrap();
    let w5 = s
        .enqueue(&[deploy_of("web", "w5")], &none, &superseded)
        .unwrap()[0];

    let heads = s.lane_heads().unwrap();
    let got: Vec<_> = heads
        .iter()
        .map(|r| (r.stack.as_deref().unwrap(), r.id, r.state, r.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("api", a1, JobState::Error, Kind::Deploy),
            ("web", w5, JobState::Queued, Kind::Deploy)
        ]
    );
    assert_eq!(heads[0].verdict, None);

    let runs = s.stack_runs("acme/infra", "web", 0, 3).unwrap();
    let ids: Vec<_> = runs.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], w5);
    assert_eq!(runs[2].id, w3);
    assert_eq!(runs[2].verdict.as_deref(), Some("fail"));
    let older = s.stack_runs("acme/infra", "web", 3, 3).unwrap();
    let ids: Vec<_> = older.iter().map(|r| r.id).collect();
    assert_eq!(ids, [w2, w1]);
    assert_eq!(older[0].identity.as_ref(), Some(&id));
    assert_eq!(older[0].verdict.as_deref(), Some("pass"));
    assert!(s.stack_runs("acme/infra", "web", 9, 3).unwrap().is_empty());
    assert!(s.stack_runs("acme/other", "web", 0, 3).unwrap().is_empty());

    assert_eq!(
        s.last_succeeded("acme/infra", "web", false)
            .unwrap()
            .map(|j| j.id),
        Some(w2)
    );
    let with_outputs = s
        .last_succeeded("acme/infra", "web", true)
        .unwrap()
        .unwrap();
    assert_eq!((with_outputs.id, &with_outputs.detail), (w1, &deployed));
    assert!(
        s.last_succeeded("acme/infra", "api", false)
            .unwrap()
            .is_none()
    );

    let prs = s.pr_runs("acme/infra", 7, 10).unwrap();
    assert_eq!(prs.iter().map(|j| j.id).collect::<Vec<_>>(), [p1]);
    assert!(s.pr_runs("acme/infra", 8, 10).unwrap().is_empty());

    let ledger = s.ledger_lines().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].repo.as_str(), ledger[0].stack.as_str()),
        ("acme/infra", "web")
    );
    assert_eq!(ledger[0].row.sha, "w2");
    assert_eq!(ledger[0].row.identity.as_ref(), Some(&id));
    assert!(ledger[0].at > 0);
}
