//! A push (or a poll): find what changed, gate it, enqueue the deploys.

use serde_json::json;

use crate::domain::{JobState, Kind, StatusState};
use crate::policy::{Severity, Verdict};
use crate::queue::{Job, NewJob};
use crate::report::redact::Redactor;
use crate::report::statuses::{policy_status, stack_status};
use crate::stack::Stack;
use crate::stack::claims;

use super::changes::after_the_queue;
use super::{JobError, Pipeline, hand_over};

/// A push (or poll): find what changed, gate it, enqueue the deploys.
pub(super) async fn sync(app: &Pipeline, job: &Job) -> Result<JobState, JobError> {
    let repo = app.repo_of(job)?;
    // The branch is the truth, not the webhook: deliveries arrive late and out of order.
    // A commit that is no longer the head hands over to the head, so an older push can
    // never undo a newer one.
    if let Some(head) = app.fetch(&repo, None).await?.branch
        && head != job.sha
    {
        return hand_over(app, &repo, job, head);
    }
    let snap = app.snapshot(&repo, &job.sha, None).await?;
    let deployed = app.queue.deployed(&repo.name)?;
    // Compared with what each stack will be once the queue drains, not only with the last
    // finished deploy: a push that restores the deployed content while another deploy runs
    // or waits must still win.
    let pending = app.queue.pending_deploys(&repo.name)?;
    let base = after_the_queue(&deployed, &pending);
    // A gone stack's prune supersedes a queued deploy of it, and waits behind a running
    // one: that one passed its head check already, and nothing else would prune it.
    let (mut changed, gone) = app.changed_stacks(&repo, &snap, &base).await?;
    let busy: Vec<String> = changed
        .iter()
        .cloned()
        .chain(pending.iter().map(|(s, _)| s.clone()))
        .collect();
    let missing = app
        .missing_stacks((&repo, job), &snap, &deployed, &busy)
        .await;
    let claims = app.claims(&repo, &snap).await?;
    let mut statuses = Vec::new();
    let mut deploys = Vec::new();
    let mut detail = json!({"changed": changed, "missing": missing, "gone": gone, "stacks": {}});
    changed.extend(missing);
    let mut worst = Verdict::Pass;
    let (mut errors, mut warnings, mut first) = (0, 0, None::<String>);
    for name in &changed {
        let Some(files) = snap.files(name) else {
            continue;
        };
        match Stack::load(&files) {
            Err(e) => {
                worst = Verdict::Error;
                first.get_or_insert(format!("{name}: {e}"));
                detail["stacks"][name] = json!({"error": e.to_string()});
                statuses.push(stack_status(
                    &app.cfg,
                    job,
                    name,
                    StatusState::Failure,
                    format!("bad input: {e}"),
                ));
            }
            Ok(_) if claims.refusal(name).is_some() => {
                let why = claims.refusal(name).unwrap_or_default();
                worst = Verdict::Error;
                first.get_or_insert(format!("{name}: {}", why.status));
                detail["stacks"][name] = json!({"error": why.detail});
                statuses.push(stack_status(
                    &app.cfg,
                    job,
                    name,
                    StatusState::Failure,
                    why.status,
                ));
            }
            Ok(stack) => {
                let report = app.gate((&stack, &files), "push", (job, name), true).await;
                errors += report.count(Severity::Error);
                warnings += report.count(Severity::Warning);
                // Policy messages quote values, NoEcho ones too; the job API is public.
                detail["stacks"][name] = json!({"policy": report});
                Redactor::for_stack(&stack)
                    .and(&report.hidden)
                    .json(&mut detail["stacks"][name]);
                if report.verdict == Verdict::Pass {
                    deploys.push(name.clone());
                } else {
                    if report.verdict == Verdict::Error || worst == Verdict::Pass {
                        worst = report.verdict;
                    }
                    first.get_or_insert(format!("{name}: {}", report.summary()));
                    statuses.push(stack_status(
                        &app.cfg,
                        job,
                        name,
                        StatusState::Failure,
                        format!("blocked by policy: {}", report.summary()),
                    ));
                }
            }
        }
    }
    // A gone folder whose stack another folder now names moved: never pruned.
    let gone: Vec<String> = gone
        .into_iter()
        .filter(|f| claims.moved_to(f).is_none())
        .collect();
    if repo.prune {
        let bound =
            claims::prune_refusal(&repo.stacks_dir, snap.stacks.len(), &gone, repo.max_prune);
        for folder in &gone {
            match bound
                .clone()
                .map(claims::Refusal::public)
                .or_else(|| claims.refusal(folder))
            {
                Some(why) => {
                    worst = Verdict::Error;
                    first.get_or_insert(why.status.clone());
                    detail["stacks"][folder] = json!({"error": why.detail});
                    statuses.push(stack_status(
                        &app.cfg,
                        job,
                        folder,
                        StatusState::Failure,
                        why.status,
                    ));
                }
                None => deploys.push(folder.clone()),
            }
        }
    } else if !gone.is_empty() {
        tracing::warn!(stacks = ?gone, "stack folders were deleted but prune is off; nothing is removed");
    }
    let description = match (worst, &first) {
        (Verdict::Pass, _) if changed.is_empty() => "no stack changed".to_string(),
        (Verdict::Pass, _) => format!(
            "{} stack(s) passed: {errors} error(s), {warnings} warning(s)",
            changed.len()
        ),
        (_, Some(f)) => f.clone(),
        _ => "policy failed".into(),
    };
    statuses.insert(0, policy_status(&app.cfg, job, worst, description));
    let state = if worst == Verdict::Pass {
        JobState::Succeeded
    } else {
        JobState::Failed
    };
    detail["deploys"] = json!(deploys);
    app.queue
        .finish(job.claim(), state, &detail, &statuses, None)?;
    let jobs: Vec<NewJob> = deploys
        .into_iter()
        .map(|stack| NewJob {
            kind: Kind::Deploy,
            repo: job.repo.clone(),
            stack: Some(stack),
            sha: job.sha.clone(),
            trigger: job.trigger,
            pr: None,
            fork: false,
        })
        .collect();
    if !jobs.is_empty() {
        app.enqueue(&jobs)?;
    }
    Ok(state)
}
