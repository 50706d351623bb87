//! Approvals: a passing change set that must wait for an operator is held (its job ends
//! `held`, the change set kept); a decision queues the job again, and this runs it: an
//! approval executes exactly that change set, only if the stack has not changed since; a
//! rejection or an expiry deletes it. A newer deploy of the stack deletes older holds.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cloud::cfn::{self, Change};
use crate::cloud::deployer::{Deployer, Planned};
use crate::domain::{Approval, Decision, JobState, StatusState, short};
use crate::policy::Verdict;
use crate::queue::{Decided, Job, now};
use crate::report::redact::Redactor;
use crate::report::statuses::stack_status;
use crate::stack::Stack;

use super::{JobError, Pipeline};

/// What a held job keeps of its change set (`detail.hold`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub change_set_id: String,
    pub stack_id: String,
    pub stack_name: String,
    /// The stack was created only to hold the change set (REVIEW_IN_PROGRESS).
    pub create: bool,
    pub changes: Vec<Change>,
    /// A folder of this repository, gone at this commit, whose stack this one now is.
    #[serde(default)]
    pub moved_from: Option<String>,
    /// Why it waits: the approval that applied.
    pub approval: Approval,
    /// The stack as it was when the change set was made: it executes only on that.
    pub stack_status: String,
    pub stack_updated: Option<String>,
    pub held_at: i64,
    /// After this (ms since the epoch) nobody may approve it; it is deleted.
    pub expires_at: i64,
}

impl Hold {
    pub fn of(detail: &Value) -> Option<Hold> {
        serde_json::from_value(detail.get("hold")?.clone()).ok()
    }

    /// "3 changes, 1 replacement": what a status says is waiting.
    pub fn summary(&self) -> String {
        summary(&self.changes)
    }
}

/// What a run does after its decision.
pub(super) enum Next {
    Ended(JobState),
    /// Execute the held change set; the folder the stack moved from, if it did.
    Execute(Planned, Option<String>),
}

/// The decision recorded on a job queued again after its hold.
pub fn decided(detail: &Value) -> Option<Decided> {
    serde_json::from_value(detail.get("decision")?.clone()).ok()
}

/// "3 changes, 1 replacement" (and conditional replacements, when there are any).
pub fn summary(changes: &[Change]) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let replaced = changes.iter().filter(|c| c.replacement == "True").count();
    let maybe = changes
        .iter()
        .filter(|c| c.replacement == "Conditional")
        .count();
    let mut s = plural(changes.len(), "change", "changes");
    if replaced > 0 {
        s.push_str(&format!(
            ", {}",
            plural(replaced, "replacement", "replacements")
        ));
    }
    if maybe > 0 {
        s.push_str(&format!(", {maybe} may replace"));
    }
    s
}

/// The approval a stack's change sets need: the server's, made stricter by the stack's
/// deployment file (never looser).
pub fn required(server: Approval, stack: &Stack) -> Approval {
    server.max(stack.deployment.approval.unwrap_or(Approval::None))
}

/// Whether a change set waits. `widens`: whether the change widens access, `None` when
/// that could not be told: doubt holds it, as the gate fails closed.
pub fn holds(approval: Approval, widens: Option<bool>) -> bool {
    match approval {
        Approval::None => false,
        Approval::Required => true,
        Approval::OnBroadening => widens.unwrap_or(true),
    }
}

impl Pipeline {
    /// Ends a deploy whose change set must wait: it is kept, the stack's status says what
    /// waits, and the job is `held` until someone decides.
    pub(super) async fn hold(
        &self,
        job: &Job,
        deployer: &Deployer,
        (planned, approval, moved_from): (&Planned, Approval, Option<&str>),
        mut detail: Value,
        stack_folder: &str,
    ) -> Result<JobState, JobError> {
        let info = cfn::describe_stack(&deployer.aws.cfn, &planned.stack_id).await?;
        let held_at = now();
        let hold = Hold {
            change_set_id: planned.change_set_id.clone(),
            stack_id: planned.stack_id.clone(),
            stack_name: planned.stack_name.clone(),
            create: planned.create,
            changes: planned.changes.clone().unwrap_or_default(),
            moved_from: moved_from.map(str::to_string),
            approval,
            stack_status: info.as_ref().map(|i| i.status.clone()).unwrap_or_default(),
            stack_updated: info.and_then(|i| i.updated),
            held_at,
            expires_at: held_at
                + (self.cfg.approvals.expire_after_seconds as i64).saturating_mul(1000),
        };
        let waiting = format!("awaiting approval: {}", hold.summary());
        tracing::info!(change_set = %hold.change_set_id, "{waiting}");
        detail["hold"] = json!(hold);
        let said = stack_status(&self.cfg, job, stack_folder, StatusState::Pending, waiting);
        self.queue
            .finish(job.claim(), JobState::Held, &detail, &[said], None)?;
        Ok(JobState::Held)
    }

    /// Deletes the change sets that older deploys of this stack still hold: this job has
    /// the stack's next change. Runs in the lane, so no decision can come in between.
    pub(super) async fn close_stale_holds(
        &self,
        job: &Job,
        deployer: &Deployer,
        stack_folder: &str,
    ) -> Result<(), JobError> {
        let guard = self.guard(job);
        for old in self.queue.stale_holds(&job.repo, stack_folder, job.id)? {
            let Some(hold) = Hold::of(&old.detail) else {
                continue;
            };
            deployer
                .discard(&hold.change_set_id, &hold.stack_id, hold.create, &guard)
                .await;
            let said = stack_status(
                &self.cfg,
                &old,
                stack_folder,
                StatusState::Error,
                format!(
                    "superseded by {}; its held change set was deleted",
                    short(&job.sha)
                ),
            );
            self.queue.close_hold(old.id, job.id, &[said])?;
        }
        Ok(())
    }

    /// Runs a held deploy again after its decision: executes the held change set if it was
    /// approved, still passes the gate and the stack is as it was; else deletes it.
    pub(super) async fn after_decision(
        &self,
        job: &Job,
        deployer: &Deployer,
        (hold, decided): (Hold, Decided),
        verdict: Verdict,
        detail: &mut Value,
        redact: &Redactor,
    ) -> Result<Next, JobError> {
        let stack_folder = job.stack.as_deref().ok_or("a deploy job without a stack")?;
        let say =
            |state: StatusState, d: String| stack_status(&self.cfg, job, stack_folder, state, d);
        let refused: Option<(JobState, String)> = match decided.decision {
            Decision::Rejected => Some((
                JobState::Rejected,
                format!("rejected by {}; change set deleted", decided.by),
            )),
            Decision::Expired => Some((
                JobState::Rejected,
                "no approval in time; change set deleted; push or redeploy to plan again".into(),
            )),
            Decision::Approved if verdict != Verdict::Pass => Some((
                JobState::Failed,
                "approved, but the policy no longer passes; change set deleted".into(),
            )),
            Decision::Approved => unchanged(deployer, &hold).await?.err().map(|why| {
                (
                    JobState::Failed,
                    format!("approved, but {why}; not executed; change set deleted"),
                )
            }),
        };
        let guard = self.guard(job);
        if let Some((state, why)) = refused {
            deployer
                .discard(&hold.change_set_id, &hold.stack_id, hold.create, &guard)
                .await;
            detail["error"] = json!(why);
            redact.json(detail);
            let said = say(StatusState::Failure, why);
            self.queue
                .finish(job.claim(), state, detail, &[said], None)?;
            return Ok(Next::Ended(state));
        }
        tracing::info!(by = %decided.by, change_set = %hold.change_set_id, "approved; executing");
        self.queue.add_statuses(
            Some(job.claim()),
            &[say(
                StatusState::Pending,
                format!("approved by {}; deploying…", decided.by),
            )],
        )?;
        self.wake.outbox.notify_one();
        detail["changes"] = json!(hold.changes);
        let planned = Planned {
            stack_name: hold.stack_name,
            change_set_id: hold.change_set_id,
            stack_id: hold.stack_id,
            create: hold.create,
            changes: Some(hold.changes),
            guard,
        };
        Ok(Next::Execute(planned, hold.moved_from))
    }
}

/// Whether the stack and the change set are as they were at the hold: `Err` says what
/// changed. CloudFormation marks a change set OBSOLETE once its stack moved on.
async fn unchanged(deployer: &Deployer, hold: &Hold) -> Result<Result<(), String>, JobError> {
    let cfn = &deployer.aws.cfn;
    let now = cfn::describe_stack(cfn, &hold.stack_id).await?;
    let Some(now) = now else {
        return Ok(Err("the stack is gone".into()));
    };
    if now.status != hold.stack_status || now.updated != hold.stack_updated {
        return Ok(Err(format!(
            "the stack changed since the hold ({} at {}, now {} at {})",
            hold.stack_status,
            hold.stack_updated.as_deref().unwrap_or("-"),
            now.status,
            now.updated.as_deref().unwrap_or("-")
        )));
    }
    match cfn::change_set_execution(cfn, &hold.change_set_id).await? {
        Some(aws_sdk_cloudformation::types::ExecutionStatus::Available) => Ok(Ok(())),
        Some(other) => Ok(Err(format!(
            "the change set is {} now, not AVAILABLE",
            other.as_str()
        ))),
        None => Ok(Err("the change set is gone".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(replacement: &str) -> Change {
        Change {
            action: "Modify".into(),
            logical_id: "Sg".into(),
            resource_type: "AWS::EC2::SecurityGroup".into(),
            replacement: replacement.into(),
            scope: vec![],
        }
    }

    #[test]
    fn a_summary_counts_changes_and_replacements() {
        assert_eq!(summary(&[change("False")]), "1 change");
        assert_eq!(
            summary(&[change("True"), change("False"), change("-")]),
            "3 changes, 1 replacement"
        );
        assert_eq!(
            summary(&[change("True"), change("True"), change("Conditional")]),
            "3 changes, 2 replacements, 1 may replace"
        );
    }

    #[test]
    fn on_broadening_holds_what_widens_and_what_cannot_be_told() {
        assert!(!holds(Approval::None, Some(true)));
        assert!(holds(Approval::Required, Some(false)));
        assert!(holds(Approval::OnBroadening, Some(true)));
        assert!(!holds(Approval::OnBroadening, Some(false)));
        assert!(holds(Approval::OnBroadening, None));
    }
}
