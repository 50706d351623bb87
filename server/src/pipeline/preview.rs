//! A pull request's dry run: policy and plans for the changed stacks, never executed, and
//! one comment, through the outbox; as a GitHub App, check runs too.

use std::collections::HashMap;

use serde_json::json;

use crate::cloud::deployer::{DeployError, Progress};
use crate::config::RepoConfig;
use crate::domain::{CheckState, Context, JobState, StatusState, short};
use crate::policy::Verdict;
use crate::queue::{CommentUpdate, Job, Outbound};
use crate::report::check_runs::{self, COMMENT_MAX, DryRunChecks, fit};
use crate::report::comment;
use crate::report::redact::Redactor;
use crate::report::statuses::{on_job, policy_status};
use crate::stack::Stack;

use super::deploy::{origin_of, public_reason};
use super::{JobError, Pipeline};

/// A pull request's dry run: policy and plans for the changed stacks, one comment.
pub(super) async fn preview(app: &Pipeline, job: &Job) -> Result<JobState, JobError> {
    let repo = app.repo_of(job)?;
    let pr = job.pr.ok_or("a preview without a pull request")?;
    if let Some(head) = moved_on(app, &repo, job, pr).await? {
        return pr_superseded(app, job, pr, &head);
    }
    let snap = app.snapshot(&repo, &job.sha, Some(pr)).await?;
    let deployed = app.queue.deployed(&repo.name)?;
    let (changed, _) = app.changed_stacks(&repo, &snap, &deployed).await?;
    let mut checks = DryRunChecks::new(&app.cfg, job);
    let started = checks.started(changed.iter().filter(|n| snap.files(n).is_some()));
    if !started.is_empty() {
        app.queue.add_checks(job.claim(), &started)?;
    }
    let mut statuses = Vec::new();
    let mut worst = Verdict::Pass;
    let mut sections = Vec::new();
    let mut reviews = Vec::new();
    let mut detail = json!({"changed": changed, "stacks": {}});
    let mut plan_errors: HashMap<String, String> = HashMap::new();
    // The policy status names the first bad input, as a push's does.
    let mut bad_input = None::<String>;
    for name in &changed {
        let Some(files) = snap.files(name) else {
            continue;
        };
        let stack = match Stack::load(&files) {
            Ok(s) => s,
            Err(e) => {
                worst = Verdict::Error;
                bad_input.get_or_insert(format!("{name}: {e}"));
                let section = comment::bad_input(name, &e.to_string());
                checks.bad_input(name, &e.to_string(), &section);
                sections.push(section);
                continue;
            }
        };
        let report = app
            .gate((&stack, &files), "pull_request", (job, name), !job.fork)
            .await;
        // The comment is public, and policy messages quote values, NoEcho ones too.
        let redact = Redactor::for_stack(&stack).and(&report.hidden);
        // What it widens, against the live stack (a fork's: the deployed commit, from git).
        let review = app
            .review((job, name), &repo, &stack, job.fork, &redact)
            .await;
        if report.verdict != Verdict::Pass && worst != Verdict::Error {
            worst = report.verdict;
        }
        let context = Context::Plan(name.clone());
        let say = |state, d: String| on_job(&app.cfg, job, context.clone(), state, d);
        let planned = if report.verdict != Verdict::Pass || job.fork || stack.deployment.remove {
            None
        } else {
            let mut origin = origin_of(job, &repo, name);
            origin.guard = app.guard(job);
            let mut sink = |_p: Progress<'_>| {};
            Some(
                match app.deployer_for_stack(job, &repo, name, &stack).await {
                    Ok(d) => d.plan(&files, &stack, &origin, &mut sink).await,
                    // Public: no account ids or role ARNs.
                    Err(e) => Err(DeployError::Stack(crate::stack::StackError::Io {
                        file: stack.deployment_file.clone(),
                        message: e.public(),
                    })),
                },
            )
        };
        if let Some(Err(DeployError::LeaseLapsed(e))) = planned {
            return Err(e.into());
        }
        let reason = match &planned {
            Some(Err(e)) => public_reason(e),
            _ => String::new(),
        };
        let plan = match &planned {
            // CreateChangeSet runs macros, Lambda-backed ones included: only for a stack
            // that passed.
            None if report.verdict != Verdict::Pass => comment::Plan::NotRun,
            None if job.fork => comment::Plan::Fork,
            None => {
                statuses.push(say(StatusState::Success, "will remove the stack".into()));
                comment::Plan::Remove
            }
            Some(Ok(p)) => match &p.changes {
                None => {
                    statuses.push(say(StatusState::Success, "no changes".into()));
                    comment::Plan::NoChanges
                }
                Some(c) => {
                    statuses.push(say(StatusState::Success, format!("{} change(s)", c.len())));
                    comment::Plan::Changes(c)
                }
            },
            Some(Err(e)) => {
                // Comments and statuses are public: the AWS text goes to the run page.
                statuses.push(say(StatusState::Failure, reason.clone()));
                plan_errors.insert(name.clone(), e.to_string());
                comment::Plan::Failed(&reason)
            }
        };
        let concluded = checks.concluded(&report, &plan);
        let section = comment::stack_section(name, &stack.template.file, &report, &redact, plan);
        // The check run's summary opens with what the stack widens, as the comment does.
        let with_review = format!(
            "{}\n{section}",
            crate::report::review::markdown(name, &review)
        );
        checks.stack(
            name,
            concluded,
            &report,
            &stack.template.file,
            &redact,
            &with_review,
        );
        detail["stacks"][name] =
            json!({"policy": report, "template": stack.template.file, "review": review});
        reviews.push((name.clone(), review));
        // The pull request page shows each plan's change table.
        if let Some(Ok(p)) = &planned {
            detail["stacks"][name]["changes"] = json!(p.changes);
        }
        if let Some(e) = plan_errors.remove(name) {
            detail["stacks"][name]["plan_error"] = json!(e);
        }
        redact.json(&mut detail["stacks"][name]);
        sections.push(section);
    }
    let summary = if changed.is_empty() {
        "no stack changed".to_string()
    } else {
        format!("{} stack(s) checked", changed.len())
    };
    let description = bad_input.unwrap_or_else(|| summary.clone());
    // The gate's check run opens with what the change widens, as the comment does.
    let widens = comment::widens(&reviews);
    let gate_sections: Vec<String> = std::iter::once(widens.clone())
        .chain(sections.iter().cloned())
        .collect();
    let checks = checks.gate(worst, &description, &summary, &gate_sections);
    statuses.insert(0, policy_status(&app.cfg, job, worst, description));
    if !app.cfg.pr_statuses() {
        statuses.clear();
    }
    let run_url = app.cfg.run_url(job.id);
    let body = comment::body(&job.sha, &summary, &widens, &sections, job.id, &run_url);
    // The head may have moved while this ran: its comment is the newer head's to write.
    if let Some(head) = moved_on(app, &repo, job, pr).await? {
        return pr_superseded(app, job, pr, &head);
    }
    detail["comment"] = json!(&body);
    // GitHub refuses a longer comment: the run page has it all.
    let body = fit(body, COMMENT_MAX, &run_url);
    let state = if worst == Verdict::Pass {
        JobState::Succeeded
    } else {
        JobState::Failed
    };
    // The outbox posts it once, into the pull request's comment, before these statuses.
    let comment = CommentUpdate {
        repo: job.repo.clone(),
        pr,
        body,
    };
    let out = Outbound {
        comment: Some(&comment),
        statuses: &statuses,
        checks: &checks,
    };
    app.queue
        .finish_with(job.claim(), state, &detail, out, None)?;
    Ok(state)
}

/// The pull request's current head, when it is not the job's commit: a replayed or late
/// delivery, or a push to the pull request since. A head the remote does not have is an error.
async fn moved_on(
    app: &Pipeline,
    repo: &RepoConfig,
    job: &Job,
    pr: u64,
) -> Result<Option<String>, JobError> {
    let head = app
        .fetch(repo, Some(pr))
        .await?
        .pull_request
        .ok_or_else(|| {
            JobError::Invalid(format!(
                "pull request #{pr} has no refs/pull/{pr}/head on the remote; cannot tell its head"
            ))
        })?;
    Ok((head != job.sha).then_some(head))
}

/// Ends a preview of a commit that is no longer the pull request's head: no comment, and
/// only this commit's own status.
fn pr_superseded(app: &Pipeline, job: &Job, pr: u64, head: &str) -> Result<JobState, JobError> {
    let why = format!(
        "superseded by {} on pull request #{pr}; not previewed",
        short(head)
    );
    // The check runs it started, if any, end cancelled.
    let (title, summary) = check_runs::ending(&app.cfg, job, &why, &why);
    app.queue
        .end_checks(job.claim(), CheckState::Cancelled, &title, &summary)?;
    let said = on_job(&app.cfg, job, Context::Policy, StatusState::Error, why);
    let said: &[_] = if app.cfg.pr_statuses() { &[said] } else { &[] };
    app.queue.finish(
        job.claim(),
        JobState::Superseded,
        &json!({"superseded_by": head}),
        said,
        None,
    )?;
    Ok(JobState::Superseded)
}
