//! A drift check of one deployed stack folder: ask CloudFormation what changed outside
//! stackgate, judge the live state with the policies, and say so on the deployed commit.
//! Compare only; a `drift: revert` stack gets a redeploy through the normal gate.

use serde_json::{Value, json};

use crate::cloud::drift::{self, Detection, ResourceDrift};
use crate::domain::{Context, DriftState, JobState, Kind, StatusState, Trigger, short};
use crate::policy::{Finding, Verdict, live};
use crate::queue::{DriftRow, Job, NewJob, StatusUpdate, now};
use crate::report::redact::Redactor;
use crate::report::statuses::on_job;
use crate::stack::Stack;
use crate::stack::deployment::DriftAction;

use super::deploy::owner_of;
use super::{JobError, Pipeline};

/// Why a check did not run: it ends superseded, saying so, and posts nothing.
fn skipped(app: &Pipeline, job: &Job, why: &str) -> Result<JobState, JobError> {
    tracing::info!(reason = why, "drift check skipped");
    app.queue.finish(
        job.claim(),
        JobState::Superseded,
        &json!({"skipped": why}),
        &[],
        None,
    )?;
    Ok(JobState::Superseded)
}

pub async fn drift(app: &Pipeline, job: &Job) -> Result<JobState, JobError> {
    let repo = app.repo_of(job)?;
    let folder = job.stack.clone().ok_or("a drift check without a stack")?;
    // Only what this folder deployed, at the commit it deployed.
    let Some(row) = app.queue.ledger_row(&job.repo, &folder)? else {
        return skipped(app, job, "not deployed");
    };
    if row.removed {
        return skipped(app, job, "removed");
    }
    if row.sha != job.sha {
        return skipped(app, job, "a newer commit is deployed");
    }
    if app
        .queue
        .pending_deploys(&job.repo)?
        .iter()
        .any(|(s, _)| *s == folder)
    {
        return skipped(app, job, "a deploy is queued or running");
    }
    let identity = match row.identity {
        Some(id) => Some(id),
        None => app.identity_at(&repo, &row.sha, &folder).await,
    }
    .ok_or("cannot tell which CloudFormation stack this folder deployed")?;
    let target = app.target_of_deployed(&repo, &folder, &identity).await?;
    let deployer = app
        .deployer_for(job.id, target, Some(identity.region.as_str()))
        .await?;
    let cfn = &deployer.aws.cfn;
    let Some(info) = crate::cloud::cfn::describe_stack(cfn, &identity.name).await? else {
        return end(
            app,
            job,
            json!({"error": format!("stack {} is gone", identity.name)}),
            StatusState::Failure,
            format!("stack {} was deleted outside stackgate", identity.name),
        );
    };
    if info.in_progress() {
        return skipped(app, job, "the stack has an operation in progress");
    }
    // stackgate touches only stacks it owns, even to ask.
    if let Err(e) = owner_of(job, &repo, &folder).check(&identity.name, &info.tags, false) {
        return end(
            app,
            job,
            json!({"error": e.to_string()}),
            StatusState::Error,
            format!(
                "stack `{}` is not this folder's; not checked",
                identity.name
            ),
        );
    }

    let detection = match drift::detect(cfn, &identity.name, deployer.poll).await {
        Ok(d) => d,
        Err(e) => {
            return end(
                app,
                job,
                json!({"error": e.to_string()}),
                StatusState::Error,
                "drift detection gave no answer; see the run page".into(),
            );
        }
    };

    // The policies on the live state: the deployed template with the live values laid over.
    let snap = app.snapshot(&repo, &job.sha, None).await?;
    let files = snap
        .files(&folder)
        .ok_or("the stack folder is not in the deployed commit")?;
    let stack = Stack::load(&files).map_err(|e| JobError::Invalid(e.to_string()))?;
    let deployed = app
        .gate((&stack, &files), Kind::Drift.as_str(), (job, &folder), true)
        .await;
    let mut live_stack = stack.clone();
    let unseen = live::overlay(&mut live_stack.template.doc.value, &detection.resources);
    let live_report = app
        .gate(
            (&live_stack, &files),
            Kind::Drift.as_str(),
            (job, &folder),
            true,
        )
        .await;
    let new: Vec<Finding> = live::new_findings(&live_report, &deployed)
        .into_iter()
        .cloned()
        .collect();
    let verdict = Judged {
        detection: &detection,
        new: &new,
        unseen: &unseen,
        live: live_report.verdict,
    };
    let (state, description) = verdict.status();
    let drifted: Vec<&ResourceDrift> = detection.resources.iter().filter(|r| r.drifted()).collect();
    let drift_state = if drifted.is_empty() {
        DriftState::InSync
    } else {
        DriftState::Drifted
    };
    let mut detail = json!({
        "drift": {
            "state": drift_state,
            "stack_status": detection.stack_status,
            "detection_id": detection.detection_id,
            "stack": identity,
            "resources": shown(&detection.resources),
            "live_findings": new,
            "unseen": unseen,
        },
        "policy": live_report,
    });
    Redactor::for_stack(&stack)
        .and(&live_report.hidden)
        .and(&deployed.hidden)
        .json(&mut detail);
    let before = app.queue.record_drift(
        job.claim(),
        &DriftRow {
            repo: job.repo.clone(),
            stack: folder.clone(),
            sha: job.sha.clone(),
            job: job.id,
            state: drift_state,
            drifted: drifted.len() as i64,
            live_findings: new.len() as i64,
            checked_at: now(),
        },
    )?;
    let was = before.as_ref().map(|b| b.state);
    let newly = drift_state == DriftState::Drifted && was != Some(DriftState::Drifted);
    // One status per change: GitHub keeps at most 1000 per commit and context, and an
    // hourly check would use them up in six weeks.
    let same = before.as_ref().is_some_and(|b| {
        b.sha == job.sha
            && b.state == drift_state
            && b.drifted == drifted.len() as i64
            && b.live_findings == new.len() as i64
    }) && unseen.is_empty();
    let statuses = if same {
        Vec::new()
    } else {
        vec![drift_status(app, job, &folder, state, description.clone())]
    };
    app.queue
        .finish(job.claim(), JobState::Succeeded, &detail, &statuses, None)?;
    if newly {
        app.notify
            .send(&format!(
                "stackgate: {} {} drifted ({} resource(s) changed outside stackgate) at {}: {description} {}",
                job.repo,
                folder,
                drifted.len(),
                short(&job.sha),
                app.cfg.run_url(job.id)
            ))
            .await;
    }
    if drift_state == DriftState::Drifted && stack.deployment.drift == DriftAction::Revert {
        // Through the gate like any deploy; a REVERT_DRIFT change set puts resources back.
        tracing::info!("drift: revert; redeploying the deployed commit");
        app.enqueue(&[NewJob {
            kind: Kind::Deploy,
            repo: job.repo.clone(),
            stack: Some(folder),
            sha: job.sha.clone(),
            pr: None,
            fork: false,
            trigger: Trigger::Drift,
        }])?;
    }
    Ok(JobState::Succeeded)
}

/// Ends a check that could not judge the stack, with a status that says why.
fn end(
    app: &Pipeline,
    job: &Job,
    detail: Value,
    state: StatusState,
    description: String,
) -> Result<JobState, JobError> {
    let folder = job.stack.as_deref().unwrap_or_default();
    let status = drift_status(app, job, folder, state, description);
    app.queue
        .finish(job.claim(), JobState::Failed, &detail, &[status], None)?;
    Ok(JobState::Failed)
}

fn drift_status(
    app: &Pipeline,
    job: &Job,
    folder: &str,
    state: StatusState,
    description: String,
) -> StatusUpdate {
    on_job(
        &app.cfg,
        job,
        Context::Drift(folder.to_string()),
        state,
        description,
    )
}

/// What a detection and the live verdict amount to.
struct Judged<'a> {
    detection: &'a Detection,
    new: &'a [Finding],
    unseen: &'a [String],
    live: Verdict,
}

impl Judged<'_> {
    /// The status of `stackgate/drift/<stack>`: a live finding first, then doubt, then
    /// drift; in sync only when nothing drifted and the live state passes.
    fn status(&self) -> (StatusState, String) {
        let drifted = self.detection.resources.iter().filter(|r| r.drifted());
        let n = drifted.clone().count();
        if let Some(f) = self.new.first() {
            let more = match self.new.len() {
                1 => String::new(),
                k => format!(" (+{} more)", k - 1),
            };
            return (
                StatusState::Failure,
                // The policy's message names the resource; the cause goes first, before
                // GitHub's 140 characters cut it.
                format!(
                    "live finding, changed outside stackgate{more}: {}",
                    f.message
                ),
            );
        }
        if let Some(id) = self.unseen.first() {
            return (
                StatusState::Error,
                format!("drifted: cannot see the live values of {id}; not judged"),
            );
        }
        if self.live == Verdict::Error {
            return (
                StatusState::Error,
                "the policies could not judge the live state; see the run page".into(),
            );
        }
        if n > 0 {
            let names: Vec<&str> = drifted.map(|r| r.logical_id.as_str()).collect();
            return (
                StatusState::Failure,
                format!(
                    "drifted: {n} resource(s) changed outside stackgate: {}",
                    names.join(", ")
                ),
            );
        }
        (StatusState::Success, "in sync with this commit".into())
    }
}

/// Resource drifts as the run page shows them: ids, status and which properties differ,
/// never the values (a live property may hold a secret the template took from a `NoEcho`
/// parameter).
fn shown(resources: &[ResourceDrift]) -> Value {
    Value::Array(
        resources
            .iter()
            .map(|r| {
                json!({
                    "logical_id": r.logical_id,
                    "physical_id": r.physical_id,
                    "resource_type": r.resource_type,
                    "status": r.status,
                    "differences": r.differences.iter().map(|d| json!({
                        "path": d.path,
                        "kind": d.kind,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}
