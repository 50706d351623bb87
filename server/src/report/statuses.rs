//! Commit statuses: what each step says, on which context, in at most 140 characters,
//! linking to the run page.

use std::borrow::Borrow;

use crate::config::Config;
use crate::domain::{Context, JobId, Kind, StatusState, short};
use crate::policy::{Verdict, truncate};
use crate::queue::{Announce, Job, NewJob, StatusUpdate};

/// GitHub refuses a longer status description.
pub const MAX_DESCRIPTION: usize = 140;

/// A status on a commit, linking to job `job`'s run page.
pub fn status(
    cfg: &Config,
    repo: &str,
    sha: &str,
    context: Context,
    state: StatusState,
    description: String,
    job: JobId,
) -> StatusUpdate {
    StatusUpdate {
        repo: repo.to_string(),
        sha: sha.to_string(),
        context,
        state,
        description: truncate(&description, MAX_DESCRIPTION),
        target_url: cfg.run_url(job),
    }
}

/// The context a job reports on: its stack's, or the policy's.
pub fn job_context(job: &Job) -> Context {
    match (&job.kind, &job.stack) {
        (Kind::Deploy, Some(s)) => Context::Stack(s.clone()),
        (Kind::Drift, Some(s)) => Context::Drift(s.clone()),
        _ => Context::Policy,
    }
}

/// A gate's verdict as a status state.
pub fn verdict_state(v: Verdict) -> StatusState {
    match v {
        Verdict::Pass => StatusState::Success,
        Verdict::Fail => StatusState::Failure,
        Verdict::Error => StatusState::Error,
    }
}

/// A status on the job's commit, linking to its run page.
pub fn on_job(
    cfg: &Config,
    job: &Job,
    context: Context,
    state: StatusState,
    description: String,
) -> StatusUpdate {
    status(
        cfg,
        &job.repo,
        &job.sha,
        context,
        state,
        description,
        job.id,
    )
}

/// `stackgate/<stack>` on the job's commit.
pub fn stack_status(
    cfg: &Config,
    job: &Job,
    stack: &str,
    state: StatusState,
    description: String,
) -> StatusUpdate {
    on_job(
        cfg,
        job,
        Context::Stack(stack.to_string()),
        state,
        description,
    )
}

/// `stackgate/policy` on the job's commit, for a gate's verdict.
pub fn policy_status(
    cfg: &Config,
    job: &Job,
    verdict: Verdict,
    description: String,
) -> StatusUpdate {
    on_job(
        cfg,
        job,
        Context::Policy,
        verdict_state(verdict),
        description,
    )
}

/// A status on the job's own context and commit.
pub fn job_status(
    cfg: &Config,
    job: &Job,
    state: StatusState,
    description: String,
) -> StatusUpdate {
    on_job(cfg, job, job_context(job), state, description)
}

/// Statuses posted when a job is enqueued.
fn queued_statuses(cfg: &Config, job: &NewJob, id: JobId) -> Vec<StatusUpdate> {
    let context = match (job.kind, &job.stack) {
        (Kind::Deploy, Some(stack)) => Context::Stack(stack.to_string()),
        // A check says only what it found (a status per scheduled check would be noise,
        // and GitHub keeps at most 1000 per commit and context).
        (Kind::Deploy, None) | (Kind::Drift, _) => return Vec::new(),
        // Check runs without statuses: none, or "queued" would wait forever.
        (Kind::Preview, _) if !cfg.pr_statuses() => return Vec::new(),
        (Kind::Preview | Kind::Sync, _) => Context::Policy,
    };
    vec![status(
        cfg,
        &job.repo,
        &job.sha,
        context,
        StatusState::Pending,
        "queued".into(),
        id,
    )]
}

/// The superseded commit's status says so.
fn superseded_statuses(cfg: &Config, old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
    if old.kind == Kind::Drift || (old.kind == Kind::Preview && !cfg.pr_statuses()) {
        return Vec::new();
    }
    vec![job_status(
        cfg,
        old,
        StatusState::Error,
        format!(
            "superseded by {} before it ran; not deployed",
            short(&new.sha)
        ),
    )]
}

/// The statuses of queued and superseded jobs, worded for this server's run pages: owning
/// its configuration (the recorder's) or borrowing it (an enqueue's).
pub struct Announcer<C = Config>(pub C);

impl<C: Borrow<Config> + Send + Sync> Announce for Announcer<C> {
    fn queued(&self, job: &NewJob, id: JobId) -> Vec<StatusUpdate> {
        queued_statuses(self.0.borrow(), job, id)
    }

    fn superseded(&self, old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
        superseded_statuses(self.0.borrow(), old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Trigger;

    #[test]
    fn a_long_description_is_cut_to_what_github_takes() {
        let cfg = Config::default();
        let s = status(
            &cfg,
            "acme/infra",
            "abc",
            Context::Policy,
            StatusState::Failure,
            "x".repeat(500),
            JobId(1),
        );
        assert!(
            s.description.chars().count() <= MAX_DESCRIPTION,
            "{}",
            s.description
        );
    }

    #[test]
    fn a_deploy_is_queued_on_its_stack_and_a_sync_on_the_policy() {
        let cfg = Config::default();
        let deploy = NewJob {
            kind: Kind::Deploy,
            repo: "acme/infra".into(),
            stack: Some("web".into()),
            sha: "a".into(),
            trigger: Trigger::Push,
            pr: None,
            fork: false,
        };
        let sync = NewJob {
            kind: Kind::Sync,
            stack: None,
            ..deploy.clone()
        };
        let ctx = |j: &NewJob| queued_statuses(&cfg, j, JobId(1))[0].context.to_string();
        assert_eq!(ctx(&deploy), "stackgate/web");
        assert_eq!(ctx(&sync), "stackgate/policy");
    }
}
