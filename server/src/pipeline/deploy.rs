//! Deploy (or remove) one stack: checkout, load, policy, claims, plan, then execute the
//! change set and follow the stack until it settles, or empty and delete it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cloud::deployer::{DeployError, Deployer, Origin, Planned, Progress};
use crate::config::RepoConfig;
use crate::config::targets::TargetConfig;
use crate::domain::StackIdentity;
use crate::domain::{JobState, Phase, StatusState, Trigger};
use crate::policy::Verdict;
use crate::queue::{Job, LedgerEntry, StatusUpdate};
use crate::report::redact::Redactor;
use crate::report::statuses::{policy_status, stack_status};
use crate::stack::Stack;
use crate::stack::ownership::Owner;

use super::approval::{self, Hold, Next};
use super::changes::stale_against_head;
use super::{JobError, Pipeline, hand_over};

/// The CloudFormation events a deploy has seen, for its run page.
pub(super) type Events = Arc<std::sync::Mutex<Vec<Value>>>;

/// Deploy (or remove) one stack.
pub async fn deploy(app: &Pipeline, job: &Job) -> Result<JobState, JobError> {
    let repo = app.repo_of(job)?;
    let stack_name = job.stack.clone().ok_or("a deploy job without a stack")?;
    let mut detail = if job.detail.is_object() {
        job.detail.clone()
    } else {
        json!({})
    };
    let events: Events = Default::default();
    let say = |state: StatusState, d: String| stack_status(&app.cfg, job, &stack_name, state, d);

    // A held change set's decision: the held job runs again for it.
    let decision = match (Hold::of(&job.detail), approval::decided(&job.detail)) {
        (Some(hold), Some(decided)) => Some((hold, decided)),
        _ => None,
    };
    app.queue
        .set_phase(job.claim(), Phase::Checkout, None, None)?;
    // Not for a decision: a newer commit of the stack would have a deploy of its own, and
    // no decision is taken while it does.
    if decision.is_none()
        && let Some(head) = stale_against_head(app, &repo, job, &stack_name).await?
    {
        return hand_over(app, &repo, job, head);
    }
    let snap = app.snapshot(&repo, &job.sha, None).await?;
    let Some(files) = snap.files(&stack_name) else {
        // The folder is gone: remove only with prune, and only what stackgate deployed.
        if !repo.prune {
            let d = format!(
                "folder {}/{stack_name} is gone; prune is off, nothing removed",
                repo.stacks_dir
            );
            app.queue.finish(
                job.claim(),
                JobState::Succeeded,
                &json!({"message": d}),
                &[say(StatusState::Success, d.clone())],
                None,
            )?;
            return Ok(JobState::Succeeded);
        }
        // The stack the folder deployed, as the ledger remembers it: never the folder name.
        let row = app.queue.ledger_row(&job.repo, &stack_name)?;
        let identity = match row {
            Some(r) if r.identity.is_some() => r.identity,
            Some(r) => app.identity_at(&repo, &r.sha, &stack_name).await,
            None => None,
        };
        let Some(identity) = identity else {
            let d = format!(
                "cannot tell which CloudFormation stack {}/{stack_name} deployed; nothing removed",
                repo.stacks_dir
            );
            app.queue.finish(
                job.claim(),
                JobState::Failed,
                &json!({"error": d}),
                &[say(StatusState::Failure, d.clone())],
                None,
            )?;
            return Ok(JobState::Failed);
        };
        let target = app
            .target_of_deployed(&repo, &stack_name, &identity)
            .await?;
        return remove(
            app,
            job,
            (&repo, target),
            &stack_name,
            &identity,
            detail,
            events,
        )
        .await;
    };
    let stack = match Stack::load(&files) {
        Ok(s) => s,
        Err(e) => {
            app.queue.finish(
                job.claim(),
                JobState::Failed,
                &json!({"error": e.to_string()}),
                &[say(StatusState::Failure, format!("bad input: {e}"))],
                None,
            )?;
            return Ok(JobState::Failed);
        }
    };

    // The gate, every time: a manual redeploy must pass it as a push does.
    app.queue
        .set_phase(job.claim(), Phase::Policy, None, None)?;
    let report = app
        .gate(
            (&stack, &files),
            job.trigger.as_str(),
            (job, &stack_name),
            true,
        )
        .await;
    let redact = Redactor::for_stack(&stack).and(&report.hidden);
    detail["policy"] = json!(report);
    // The run page links findings to their lines in this file.
    detail["template"] = json!(stack.template.file);
    if job.trigger == Trigger::Manual {
        app.queue.add_statuses(
            Some(job.claim()),
            &[policy_status(
                &app.cfg,
                job,
                report.verdict,
                report.summary(),
            )],
        )?;
    }
    if let Some((hold, decided)) = decision {
        // The target and region the hold recorded.
        let target = app.target_in(&job.detail)?;
        let deployer = app
            .deployer_for(job.id, target, job_region(&job.detail))
            .await?;
        let total = stack.template.resources().len();
        return match app
            .after_decision(
                job,
                &deployer,
                (hold, decided),
                report.verdict,
                &mut detail,
                &redact,
            )
            .await?
        {
            Next::Ended(state) => Ok(state),
            Next::Execute(planned, moved) => {
                let run = Execution {
                    planned,
                    total,
                    moved,
                };
                execute(app, job, &deployer, run, detail, events, &redact).await
            }
        };
    }
    if report.verdict != Verdict::Pass {
        redact.json(&mut detail);
        app.queue.finish(
            job.claim(),
            JobState::Failed,
            &detail,
            &[say(
                StatusState::Failure,
                format!("blocked by policy: {}", report.summary()),
            )],
            None,
        )?;
        return Ok(JobState::Failed);
    }

    // The gate passed, so the server allows the target.
    let target = app.target_of(&repo, &stack_name, &stack)?;
    let region = stack.deployment.region.clone();
    // Where to resume after a restart. The run page shows the detail while the job runs:
    // the policy report quotes values, NoEcho ones too.
    detail["region"] = json!(region);
    detail["target"] = json!(target.map(|t| &t.name));
    redact.json(&mut detail);
    app.queue.set_detail(job.claim(), &detail)?;
    let deployer = app.deployer_for(job.id, target, region.as_deref()).await?;
    // What it widens against the live stack: the run page shows it, and `on-broadening`
    // holds on it.
    let review = app
        .review((job, &stack_name), &repo, &stack, false, &redact)
        .await;
    detail["review"] = json!(review);
    // One stack, one folder: a manual redeploy is checked as a sync is.
    let identity = app.identity_of(target, &stack).await?;
    let claims = app.claims(&repo, &snap).await?;
    if let Some(refusal) = claims.refusal(&stack_name) {
        detail["error"] = json!(refusal.detail);
        let d = refusal.status;
        app.queue.finish(
            job.claim(),
            JobState::Failed,
            &detail,
            &[say(StatusState::Failure, d)],
            None,
        )?;
        return Ok(JobState::Failed);
    }
    // A folder of this repository that is gone at this commit: the stack moved here.
    let moved = claims.moved_from(&stack_name).map(str::to_string);
    detail["identity"] = json!(identity);

    if stack.deployment.remove {
        return remove(
            app,
            job,
            (&repo, target),
            &stack_name,
            &identity,
            detail,
            events,
        )
        .await;
    }

    let pending = match target {
        Some(t) => format!("deploying to {}…", t.name),
        None => "deploying…".into(),
    };
    app.queue
        .add_statuses(Some(job.claim()), &[say(StatusState::Pending, pending)])?;
    app.wake.outbox.notify_one();
    app.queue
        .set_phase(job.claim(), Phase::Planning, None, None)?;
    let mut origin = origin_of(job, &repo, &stack_name);
    origin.guard = app.guard(job);
    origin.revert_drift = job.trigger == Trigger::Drift;
    origin.moved_from = moved.as_ref().map(|f| app.stacks_path(&job.repo, f));
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    app.close_stale_holds(job, &deployer, &stack_name).await?;
    let planned = match deployer.prepare(&files, &stack, &origin, &mut sink).await {
        Ok(p) => p,
        Err(e) => return fail(app, job, detail, events, &say, e, &redact),
    };
    detail["changes"] = json!(planned.changes);
    let Some(_) = &planned.changes else {
        deployer
            .discard(
                &planned.change_set_id,
                &planned.stack_id,
                planned.create,
                &planned.guard,
            )
            .await;
        app.queue.finish(
            job.claim(),
            JobState::Succeeded,
            &detail,
            &[say(StatusState::Success, "no changes".into())],
            Some(LedgerEntry {
                repo: &job.repo,
                stack: &stack_name,
                sha: &job.sha,
                removed: false,
                identity: identity_in(&detail).as_ref(),
            }),
        )?;
        return Ok(JobState::Succeeded);
    };
    // A target's own approval, else the server's default; the stack may ask for more.
    let server_side = target.map_or(app.cfg.approvals.default, |t| t.approval);
    let approval = approval::required(server_side, &stack);
    // A doubt is in `widens` too: what cannot be told holds.
    if approval::holds(approval, Some(!review.widens.is_empty())) {
        redact.json(&mut detail);
        let hold = (&planned, approval, moved.as_deref());
        return app.hold(job, &deployer, hold, detail, &stack_name).await;
    }
    let run = Execution {
        planned,
        total: stack.template.resources().len(),
        moved,
    };
    execute(app, job, &deployer, run, detail, events, &redact).await
}

/// A change set to execute, and what its run needs to know.
pub(super) struct Execution {
    pub planned: Planned,
    /// The stack's resources, for the progress bar.
    pub total: usize,
    /// A folder of this repository, gone at this commit, whose stack this one now is.
    pub moved: Option<String>,
}

/// Executes a change set and follows the stack until it settles.
async fn execute(
    app: &Pipeline,
    job: &Job,
    deployer: &Deployer,
    run: Execution,
    mut detail: Value,
    events: Events,
    redact: &Redactor,
) -> Result<JobState, JobError> {
    let stack_name = job.stack.as_deref().ok_or("a deploy job without a stack")?;
    let planned = &run.planned;
    // Written before the call: after a crash, resume asks AWS whether it ran.
    app.queue.set_phase(
        job.claim(),
        Phase::Executing,
        Some(&planned.change_set_id),
        Some(&planned.stack_id),
    )?;
    redact.json(&mut detail);
    app.queue.set_detail(job.claim(), &detail)?;
    let (ev, mut written) = (events.clone(), None);
    let mut sink = |p: Progress<'_>| {
        if let Progress::Event { done, total, .. } = &p {
            write_progress(app, job, &detail, (*done, *total), &mut written);
        }
        record(&ev, p)
    };
    let result = deployer.execute(planned, run.total, &mut sink).await;
    let state = finish_deploy(app, job, stack_name, detail, events, result, redact)?;
    // The executed change set retagged the stack: the old folder's claim ends. (Without
    // changes the tags stay, and so does the old claim: the move is seen again.)
    if let Some(old) = run.moved
        && state == JobState::Succeeded
    {
        app.queue.retire(&job.repo, &old)?;
    }
    Ok(state)
}

/// How often a running deploy writes how far it is, for the run page's live bar.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Records `done` of `total` resources on the running job's detail (`base`, already
/// redacted), at most every [`PROGRESS_EVERY`], and when the last one is done. A write that
/// fails (the lease lost) changes nothing; the deploy's own next write says so.
fn write_progress(
    app: &Pipeline,
    job: &Job,
    base: &Value,
    (done, total): (usize, usize),
    written: &mut Option<std::time::Instant>,
) {
    let due = written.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) || done >= total;
    if !due {
        return;
    }
    *written = Some(std::time::Instant::now());
    let mut d = base.clone();
    d["progress"] = json!({"done": done, "total": total});
    if let Err(e) = app.queue.set_detail(job.claim(), &d) {
        tracing::debug!(error = %e, "progress not recorded");
    }
}

/// The region a deploy job recorded (`None`: the server's own).
pub(super) fn job_region(detail: &Value) -> Option<&str> {
    detail["region"].as_str()
}

pub(super) fn record(events: &std::sync::Mutex<Vec<Value>>, p: Progress<'_>) {
    let v = match p {
        Progress::Note(n) => json!({"note": n}),
        Progress::Changes(c) => json!({"changes": c.len()}),
        Progress::Event { event, done, total } => {
            json!({"event": event, "done": done, "total": total})
        }
    };
    events.lock().unwrap_or_else(|p| p.into_inner()).push(v);
}

pub(super) fn fail(
    app: &Pipeline,
    job: &Job,
    mut detail: Value,
    events: Events,
    say: &dyn Fn(StatusState, String) -> StatusUpdate,
    e: DeployError,
    redact: &Redactor,
) -> Result<JobState, JobError> {
    // Not a failure of the deploy: this replica stops, and the job's holder goes on.
    if let DeployError::LeaseLapsed(e) = e {
        return Err(e.into());
    }
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    detail["error"] = json!(e.to_string());
    redact.json(&mut detail);
    let status = say(StatusState::Failure, public_reason(&e));
    app.queue.finish(
        job.claim(),
        JobState::Failed,
        &detail,
        std::slice::from_ref(&status),
        None,
    )?;
    // Worded as the status is: no AWS error text.
    let text = format!(
        "stackgate: deploy of {} {} at {} failed: {} {}",
        job.repo,
        status.context,
        crate::domain::short(&job.sha),
        status.description,
        status.target_url
    );
    let notify = app.notify.clone();
    tokio::spawn(async move { notify.send(&text).await });
    Ok(JobState::Failed)
}

pub(super) fn finish_deploy(
    app: &Pipeline,
    job: &Job,
    stack_name: &str,
    mut detail: Value,
    events: Events,
    result: Result<crate::cloud::deployer::Deployed, DeployError>,
    redact: &Redactor,
) -> Result<JobState, JobError> {
    let say = |state: StatusState, d: String| stack_status(&app.cfg, job, stack_name, state, d);
    match result {
        Ok(d) => {
            // Outputs may be secrets: their names only, and values only where public.
            let names: Vec<&str> = d.outputs.iter().map(|(k, _)| k.as_str()).collect();
            tracing::info!(status = %d.status, outputs = %names.join(" "), "deployed");
            detail["outputs"] = redact.outputs(&d.outputs, &app.cfg.public_outputs);
            let done = say(StatusState::Success, in_target(d.status, &detail));
            succeed(app, job, detail, &events, done, (stack_name, false), redact)
        }
        Err(e) => fail(app, job, detail, events, &say, e, redact),
    }
}

/// A status's words, and the target the job deployed to (its name only: no account).
fn in_target(what: String, detail: &Value) -> String {
    match detail["target"].as_str() {
        Some(t) => format!("{what} in {t}"),
        None => what,
    }
}

/// A deploy failure as a commit status says it: public on public repositories, so no AWS
/// error text (account ids, ARNs); the run page has the detail.
pub(super) fn public_reason(e: &DeployError) -> String {
    match e {
        DeployError::Stack(e) => format!("bad input: {e}"),
        DeployError::Aws(_) => "AWS refused a request; see the run page".into(),
        DeployError::S3(_) => "an artifact upload or bucket check failed; see the run page".into(),
        // The stack's name is the folder's own; who holds it instead stays on the run page.
        DeployError::NotOwned(n) => format!(
            "stack `{}` is not stackgate's to change from this folder; see the run page",
            n.stack
        ),
        DeployError::ServiceRole { stack, .. } => format!(
            "stack `{stack}` acts as another service role than the target's; see the run page"
        ),
        DeployError::DeployedTemplate { .. } => {
            "cannot read the deployed template; nothing removed; see the run page".into()
        }
        DeployError::Failed {
            status,
            failure: Some(f),
            ..
        } => format!(
            "{status}: {} ({}) {}; see the run page",
            f.logical_id, f.resource_type, f.status
        ),
        DeployError::Failed { status, .. } => format!("{status}; see the run page"),
        DeployError::RollbackComplete { .. }
        | DeployError::Busy { .. }
        | DeployError::LeaseLapsed(_) => e.to_string(),
    }
}

/// Ends a job that deployed or removed its stack: its events, the final status, and the
/// sha now deployed (`removed` when the stack is gone).
pub(super) fn succeed(
    app: &Pipeline,
    job: &Job,
    mut detail: Value,
    events: &std::sync::Mutex<Vec<Value>>,
    final_status: StatusUpdate,
    (stack, removed): (&str, bool),
    redact: &Redactor,
) -> Result<JobState, JobError> {
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    redact.json(&mut detail);
    app.queue.finish(
        job.claim(),
        JobState::Succeeded,
        &detail,
        &[final_status],
        Some(LedgerEntry {
            repo: &job.repo,
            stack,
            sha: &job.sha,
            removed,
            identity: identity_in(&detail).as_ref(),
        }),
    )?;
    Ok(JobState::Succeeded)
}

/// The owner a stack folder of this repository is tagged with.
pub(super) fn owner_of(job: &Job, repo: &RepoConfig, folder: &str) -> Owner {
    Owner {
        repo: Some(job.repo.clone()),
        path: format!("{}/{folder}", repo.stacks_dir),
    }
}

pub(super) fn origin_of(job: &Job, repo: &RepoConfig, folder: &str) -> Origin {
    let owner = owner_of(job, repo, folder);
    Origin {
        repo: owner.repo,
        sha: Some(job.sha.clone()),
        path: Some(owner.path),
        ..Origin::default()
    }
}

/// The stack a job deploys or removes, as written in its detail before AWS was called.
pub(super) fn identity_in(detail: &Value) -> Option<StackIdentity> {
    serde_json::from_value(detail.get("identity")?.clone()).ok()
}

pub(super) async fn remove(
    app: &Pipeline,
    job: &Job,
    (repo, target): (&RepoConfig, Option<&TargetConfig>),
    folder: &str,
    identity: &StackIdentity,
    mut detail: Value,
    events: Events,
) -> Result<JobState, JobError> {
    let stack_name = identity.name.as_str();
    let say = |state: StatusState, d: String| stack_status(&app.cfg, job, folder, state, d);
    app.queue.add_statuses(
        Some(job.claim()),
        &[say(StatusState::Pending, "removing…".into())],
    )?;
    app.wake.outbox.notify_one();
    app.queue
        .set_phase(job.claim(), Phase::Removing, None, None)?;
    detail["stack_name"] = json!(stack_name);
    detail["identity"] = json!(identity);
    // A resumed removal waits for the delete where it runs.
    detail["region"] = json!(identity.region);
    detail["target"] = json!(target.map(|t| &t.name));
    app.queue.set_detail(job.claim(), &detail)?;
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let owner = owner_of(job, repo, folder);
    // The identity's region: a prune has no deployment file to say it.
    let deployer = app
        .deployer_for(job.id, target, Some(identity.region.as_str()))
        .await?;
    // A held change set of the stack goes with it.
    app.close_stale_holds(job, &deployer, folder).await?;
    let guard = app.guard(job);
    match deployer
        .remove(stack_name, &owner, false, &guard, &mut sink)
        .await
    {
        Ok(r) => {
            detail["removed"] = json!(r);
            succeed(
                app,
                job,
                detail,
                &events,
                say(StatusState::Success, "removed".into()),
                (folder, true),
                &Redactor::default(),
            )
        }
        Err(e) => fail(app, job, detail, events, &say, e, &Redactor::default()),
    }
}
