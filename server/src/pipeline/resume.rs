//! A deploy in flight when the process died: re-attach to it (AWS says whether its change
//! set ran; it never runs twice), or run it again when nothing reached AWS.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloud::cfn;
use crate::cloud::deployer::Progress;
use crate::domain::StackIdentity;
use crate::domain::{JobState, Kind, Phase};
use crate::queue::lease::{Claim, Orphans};
use crate::queue::{Job, blocking};
use crate::report::redact::Redactor;
use crate::stack::Stack;

use super::deploy::{Events, finish_deploy, identity_in, job_region, record, remove};
use super::{JobError, Pipeline, end_in_error, supervise};

/// Where a deploy resumes after a restart.
pub struct Resume {
    pub phase: Phase,
}

/// Re-attaches to a deploy that was in flight when the process died. Never executes a
/// change set twice: AWS says whether it ran.
pub(super) async fn resume_deploy(
    app: &Pipeline,
    job: &Job,
    r: Resume,
) -> Result<JobState, JobError> {
    // Fault injection for the tests (debug builds only): a resumed deploy that panics.
    #[cfg(debug_assertions)]
    if std::env::var_os("STACKGATE_TEST_PANIC_ON_RESUME").is_some() {
        panic!("injected fault: a resumed deploy panics");
    }
    let stack_name = job.stack.as_deref().ok_or("a deploy job without a stack")?;
    let detail = if job.detail.is_object() {
        job.detail.clone()
    } else {
        serde_json::json!({})
    };
    let events: Events = Default::default();
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let target = app.target_in(&detail)?;
    let deployer = app
        .deployer_for(job.id, target, job_region(&detail))
        .await?;
    let cfn_client = &deployer.aws.cfn;
    match r.phase {
        Phase::Executing => {
            let (Some(cs), Some(stack_id)) = (job.change_set_id.clone(), job.stack_id.clone())
            else {
                return Err("resumed without a change set id".into());
            };
            let exec = cfn::change_set_execution(cfn_client, &cs).await?;
            if exec == Some(aws_sdk_cloudformation::types::ExecutionStatus::Available) {
                tracing::info!("the change set never ran; executing it now");
                let guard = app.guard(job);
                guard.check("ExecuteChangeSet")?;
                cfn::execute_change_set(cfn_client, &cs, guard.token()).await?;
            } else {
                tracing::info!(?exec, "the change set already ran; following the stack");
            }
            let total = detail["changes"].as_array().map(|a| a.len()).unwrap_or(0);
            let settled = deployer
                .follow(stack_name, &stack_id, HashSet::new(), total, &mut sink)
                .await;
            let result = settled.and_then(|s| s.into_deployed(stack_name));
            let redact = resumed_redactor(app, job, stack_name).await;
            finish_deploy(app, job, stack_name, detail, events, result, &redact)
        }
        Phase::Removing => {
            let name = detail["stack_name"]
                .as_str()
                .unwrap_or(stack_name)
                .to_string();
            // Wait for a delete in flight, then remove (a no-op if it is gone).
            if let Ok(Some(info)) = cfn::describe_stack(cfn_client, &name).await
                && info.in_progress()
            {
                let _ = deployer
                    .follow(&name, &info.id, HashSet::new(), 0, &mut sink)
                    .await;
            }
            let identity = match identity_in(&detail) {
                Some(id) => id,
                None => StackIdentity {
                    account: app.deployer.aws.account().await?.to_string(),
                    region: app.deployer.aws.region.clone(),
                    name,
                },
            };
            let repo = app.repo_of(job)?;
            remove(
                app,
                job,
                (&repo, target),
                stack_name,
                &identity,
                detail,
                events,
            )
            .await
        }
        _ => Err("unreachable resume phase".into()),
    }
}

/// The redactor of a resumed deploy's stack, read again from its commit.
async fn resumed_redactor(app: &Pipeline, job: &Job, stack_name: &str) -> Redactor {
    let Some(repo) = app.repo(&job.repo).cloned() else {
        return Redactor::unknown();
    };
    match app.snapshot(&repo, &job.sha, None).await {
        Ok(snap) => snap
            .files(stack_name)
            .and_then(|f| Stack::load(&f).ok())
            .map_or_else(Redactor::unknown, |s| Redactor::for_stack(&s)),
        Err(_) => Redactor::unknown(),
    }
}

/// Takes over the jobs whose worker is gone (`orphans`: those whose lease expired, or at
/// start-up with SQLite every one of the dead process) and resumes, reruns or ends each.
pub async fn recover(app: &Arc<Pipeline>, orphans: Orphans) {
    if app.leases.stopping() {
        return;
    }
    let asked = Instant::now();
    let recovered = match app.queue.recover(&app.leases.lease, orphans) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read jobs to resume");
            return;
        }
    };
    for job in recovered.poisoned {
        tracing::error!(
            job = job.id.0,
            attempts = job.attempts,
            "a job stopped the worker at each attempt; failing it"
        );
        end_in_error(app, &job, &JobError::Poisoned(job.attempts));
    }
    if !recovered.resume.is_empty() {
        tracing::info!(jobs = recovered.resume.len(), ?orphans, "took over deploys");
    }
    for job in recovered.resume {
        app.leases.hold(job.claim(), asked);
        pick_up(app, job, true).await;
    }
    app.wake.jobs.notify_one();
}

/// Picks up a deploy this replica holds but no worker runs: re-attached when its change
/// set may have run, else cleaned up and queued again. `crashed`: its worker died, which
/// counts as an attempt.
async fn pick_up(app: &Arc<Pipeline>, job: Job, crashed: bool) {
    if let Some(phase @ (Phase::Executing | Phase::Removing)) = job.phase {
        tracing::info!(job = job.id.0, %phase, "resuming a deploy that was in flight");
        if crashed && let Err(e) = app.queue.attempt(job.claim()) {
            tracing::error!(error = %e, "cannot count the attempt");
        }
        tokio::spawn(supervise(app.clone(), job, Some(Resume { phase })));
    } else {
        // Nothing reached AWS that cannot be redone: clean up and run it again.
        if let Some(cs) = &job.change_set_id {
            let target = app.target_in(&job.detail);
            let deployer = match target {
                Ok(t) => app.deployer_for(job.id, t, job_region(&job.detail)).await,
                Err(e) => Err(e),
            };
            match deployer {
                Ok(d) => {
                    let guard = app.guard(&job);
                    d.discard(cs, job.stack_id.as_deref().unwrap_or(""), true, &guard)
                        .await
                }
                Err(e) => tracing::warn!(error = %e, "cannot discard the change set"),
            }
        }
        if let Err(e) = app.queue.requeue(job.claim()) {
            tracing::error!(error = %e, "cannot requeue");
        }
        app.leases.end(job.claim());
    }
}

/// A job whose worker stopped because the state database failed. Once the database
/// answers, and while the job is still under `claim`, it is picked up as a takeover would
/// pick it up; a job that ended, or that another replica took over meanwhile, is left.
///
/// Boxed: it runs deploys through `supervise`, which spawns it, and the compiler cannot see
/// through that cycle that the future is `Send`.
pub(super) fn pick_up_when_back(
    app: Arc<Pipeline>,
    claim: Claim,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut wait = Duration::from_millis(500);
        while !app.leases.stopping() {
            tokio::time::sleep(wait).await;
            match blocking(&app.queue, move |q| q.job(claim.job)).await {
                Ok(Some(job)) if job.state == JobState::Running && job.claim() == claim => {
                    if job.kind == Kind::Deploy {
                        pick_up(&app, job, false).await;
                    } else {
                        if let Err(e) = app.queue.requeue(claim) {
                            tracing::error!(error = %e, "cannot requeue");
                        }
                        app.leases.end(claim);
                    }
                    app.wake.jobs.notify_one();
                    return;
                }
                Ok(_) => {
                    app.leases.end(claim);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?wait, "the state database is still away");
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
            }
        }
    })
}
