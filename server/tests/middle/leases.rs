//! A worker that lost its job's lease: in-process, SQLite, the emulator, a fake GitHub.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Polls `f` every 50 ms until it gives a value; fails after 30 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_taken_over_while_it_runs_makes_no_further_aws_write_and_posts_nothing() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("lease-lost-{nanos}");
    let [deployment, template] = passing_stack("web");
    let deployment = (
        deployment.0,
        deployment
            .1
            .replace("stack-name: web", &format!("stack-name: {name}")),
    );
    // A one-second lease, and no heartbeat here: the worker cannot renew it.
    let t = TestApp::on_emulator(&files(&[deployment, template]), "lease_seconds = 1").await;
    let sha = git(&t.origin, &["rev-parse", "HEAD"]);
    // CloudFormation's first look at the stack answers late: the worker is mid-plan when
    // another replica takes the job over.
    slow_call(&name, "DescribeStacks", 3.0);
    let id = t.enqueue(&[NewJob {
        kind: Kind::Deploy,
        repo: REPO.into(),
        stack: Some("web".into()),
        sha: sha.clone(),
        pr: None,
        fork: false,
        trigger: Trigger::Push,
    }])[0];
    let job = t.claim().remove(0);
    assert_eq!(job.id, id);
    let run = t.spawn_run(job.clone());
    until("the plan to start", || {
        let j = t.stored(id);
        assert_eq!(j.state, JobState::Running, "{j:?}");
        (j.phase == Some(Phase::Planning)).then_some(())
    })
    .await;
    let before: Vec<String> = t
        .statuses(&sha)
        .iter()
        .map(|s| s.description.clone())
        .collect();
    let taken = until("the lease to expire and be taken over", || {
        Some(t.take_over_as("replica-b")).filter(|j| !j.is_empty())
    })
    .await;
    assert!(taken[0].fence > job.fence, "{taken:?}");
    run.await.expect("the worker's task");
    slow_call(&name, "DescribeStacks", 0.0);

    // No change set was created (it would have made the stack, REVIEW_IN_PROGRESS).
    assert!(
        !t.stack_exists(&name).await,
        "the worker wrote to AWS after the takeover"
    );
    // The job is the new holder's, as the takeover left it: running, not ended.
    let row = t.stored(id);
    assert_eq!(row.state, JobState::Running);
    assert_eq!(row.owner.as_deref(), Some("replica-b"));
    assert_eq!(row.fence, taken[0].fence);
    assert_eq!(row.phase, Some(Phase::Planning));
    // Nothing new to tell GitHub, and what GitHub gets has no end of the deploy.
    let after: Vec<String> = t
        .statuses(&sha)
        .iter()
        .map(|s| s.description.clone())
        .collect();
    assert_eq!(after, before);
    let github = FakeGithub::default();
    t.post_outbox(&github).await;
    let said: Vec<(String, String)> = github
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Status {
                context,
                state,
                description,
                ..
            } => Some((context, format!("{state:?}: {description}"))),
            Call::Comment { .. } | Call::CheckRun { .. } => None,
        })
        .collect();
    assert!(
        !said.is_empty(),
        "the statuses from before the takeover post"
    );
    assert!(
        said.iter().all(|(_, s)| s.starts_with("Pending")),
        "{said:?}"
    );
}
