//! pipeline: one job as plain steps, one file per job kind. sync (checkout → changed
//! stacks → policy → enqueue deploys), deploy (checkout → load → policy → plan → deploy or
//! remove), preview (a pull request's policy and plans, never executed), resume (a deploy
//! in flight when the process died). This file holds what jobs need and the supervisor:
//! the deadline, the attempts, the end in error. Every step reports through the outbox.

mod approval;
mod changes;
mod deploy;
mod drift;
mod gate;
pub mod lease;
mod preview;
mod resume;
mod review;
mod sync;

use std::sync::Arc;
use std::time::Instant;

use lease::Leases;

use serde_json::json;
use tracing::Instrument;

use crate::cloud::deployer::Deployer;
use crate::cloud::guard::{Guard, LeaseLapsed};
use crate::config::{Config, RepoConfig};
use crate::domain::{CheckState, Context, JobId, JobState, Kind, StatusState, short};
use crate::git::{CheckoutError, Heads, MirrorError, Mirrors, Snapshot};
use crate::policy::PolicyHost;
use crate::queue::{Announce, Job, NewJob, Outbound, Queue, StoreError, Wake};
use crate::report::check_runs;
use crate::report::metrics::Metrics;
use crate::report::statuses::{Announcer, job_status};

pub use resume::recover;

/// Why a job could not run to its end (as opposed to a deploy that failed).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(crate::queue::StoreError),
    /// This replica no longer holds the job (a write was fenced off, or an AWS call was
    /// not sent): the worker stops at once, posting nothing; the job's holder ends it.
    #[error("{0}")]
    LeaseLost(String),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error(transparent)]
    Aws(#[from] crate::cloud::AwsError),
    #[error(transparent)]
    Github(#[from] crate::github::GithubError),
    #[error(transparent)]
    Region(#[from] crate::cloud::regions::RegionError),
    #[error(transparent)]
    Target(#[from] crate::cloud::targets::TargetError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error("{0}")]
    Invalid(String),
    #[error(
        "this job stopped its worker (a crash or its deadline) at attempt {0}; it is not run again"
    )]
    Poisoned(i64),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost(_) => JobError::LeaseLost(e.to_string()),
            e => JobError::Store(e),
        }
    }
}

impl From<crate::config::targets::TargetRefusal> for JobError {
    fn from(e: crate::config::targets::TargetRefusal) -> Self {
        JobError::Target(e.into())
    }
}

impl From<LeaseLapsed> for JobError {
    fn from(e: LeaseLapsed) -> Self {
        JobError::LeaseLost(e.to_string())
    }
}

impl JobError {
    /// What a commit status says: no git or AWS error text (it may name accounts, ARNs or
    /// URLs); the run page has the whole error.
    fn public(&self) -> String {
        let what = match self {
            JobError::Store(_) => "cannot read or write the state database",
            JobError::LeaseLost(_) => "this replica lost the job's lease",
            JobError::Checkout(CheckoutError::Timeout { seconds, .. }) => {
                return format!("stackgate error: git fetch cut off after {seconds} s");
            }
            JobError::Checkout(CheckoutError::Refused { .. }) => {
                "the git server refused the credentials"
            }
            JobError::Checkout(CheckoutError::MissingCommit { .. }) => {
                "the commit is not in the repository; was it force-pushed away?"
            }
            JobError::Checkout(CheckoutError::Git(_)) => "cannot read the commit from git",
            JobError::Aws(_) => "an AWS call failed",
            JobError::Github(_) => "a GitHub call failed",
            JobError::Region(e) => return format!("stackgate error: {e}"),
            JobError::Target(crate::cloud::targets::TargetError::Refused(e)) => {
                return format!("stackgate error: {e}");
            }
            // Accounts and role ARNs stay on the run page.
            JobError::Target(_) => "cannot act in the stack's target account",
            JobError::Poisoned(_) => return format!("stackgate error: {self}"),
            JobError::Task(_) => "an internal task failed",
            JobError::Invalid(m) => m.as_str(),
        };
        format!("stackgate error: {what}; see the run page")
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError::Invalid(s.to_string())
    }
}

impl From<MirrorError> for JobError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::NoMirror(_) => JobError::Invalid("no mirror for this repository".into()),
            MirrorError::Credential(e) => JobError::Github(e),
            MirrorError::Checkout(e) => JobError::Checkout(e),
            MirrorError::Task(e) => JobError::Task(e),
        }
    }
}

/// What jobs need: the queue, the tools of each step, and who to wake.
pub struct Pipeline {
    pub cfg: Config,
    pub queue: Arc<dyn Queue>,
    pub policies: PolicyHost,
    /// The server's own region's deployer; `regions` has the others.
    pub deployer: Arc<Deployer>,
    pub regions: crate::cloud::regions::Regions,
    /// The `[[targets]]` accounts, through their assumed roles.
    pub targets: crate::cloud::targets::Targets,
    pub mirrors: Arc<Mirrors>,
    pub metrics: Arc<Metrics>,
    /// Hears of new drift and failed deploys.
    pub notify: Arc<crate::report::notify::Notifier>,
    pub wake: Arc<Wake>,
    /// This replica's leases on the jobs it runs.
    pub leases: Arc<Leases>,
}

/// Enqueues jobs with their "queued" statuses (and the superseded ones' statuses), then
/// wakes the dispatcher and the outbox.
pub fn enqueue(
    queue: &dyn Queue,
    cfg: &Config,
    wake: &Wake,
    jobs: &[NewJob],
) -> Result<Vec<JobId>, StoreError> {
    // Worded as the recorder words a webhook's jobs.
    let announce = Announcer(cfg);
    let ids = queue.enqueue(jobs, &|j, id| announce.queued(j, id), &|o, n| {
        announce.superseded(o, n)
    })?;
    wake.jobs.notify_one();
    wake.outbox.notify_one();
    Ok(ids)
}

impl Pipeline {
    /// Claims up to `limit` runnable jobs into this replica's leases.
    pub fn claim(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        if self.leases.stopping() {
            return Ok(Vec::new());
        }
        let asked = Instant::now();
        let jobs = self.queue.claim(&self.leases.lease, limit)?;
        for j in &jobs {
            self.leases.hold(j.claim(), asked);
        }
        Ok(jobs)
    }

    /// The guard of a job's AWS writes.
    pub(crate) fn guard(&self, job: &Job) -> Guard {
        self.leases.guard(job.claim())
    }

    pub fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<JobId>, StoreError> {
        enqueue(self.queue.as_ref(), &self.cfg, &self.wake, jobs)
    }

    fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.cfg.repo(name)
    }

    /// The configuration of a job's repository.
    fn repo_of(&self, job: &Job) -> Result<RepoConfig, JobError> {
        Ok(self
            .repo(&job.repo)
            .ok_or("repository is no longer configured")?
            .clone())
    }

    /// Fetches the branch (and pull request `pr`'s head) into the mirror.
    pub async fn fetch(&self, repo: &RepoConfig, pr: Option<u64>) -> Result<Heads, JobError> {
        Ok(self.mirrors.fetch(repo, pr).await?)
    }

    async fn snapshot(
        &self,
        repo: &RepoConfig,
        sha: &str,
        pr: Option<u64>,
    ) -> Result<Snapshot, JobError> {
        Ok(self.mirrors.snapshot(repo, sha, pr).await?)
    }

    /// A stack folder of a repository, from its root: `stacks/web`.
    pub(super) fn stacks_path(&self, repo: &str, folder: &str) -> String {
        let dir = self.repo(repo).map_or("stacks", |c| c.stacks_dir.as_str());
        format!("{dir}/{folder}")
    }
}

/// How long a sync or a preview may run. Deploys follow CloudFormation, which has its own.
pub const JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Runs one claimed job to its end.
pub async fn run(app: Arc<Pipeline>, job: Job) {
    supervise(app, job, None).await
}

/// Runs a job (or resumes a deploy) to its end, and records its end whatever it was.
pub(super) async fn supervise(app: Arc<Pipeline>, job: Job, resume: Option<resume::Resume>) {
    let span = tracing::info_span!("job", job = job.id.0, kind = ?job.kind, repo = %job.repo, sha = %short(&job.sha), stack = job.stack.as_deref().unwrap_or(""), resumed = resume.is_some());
    let started = Instant::now();
    let kind = job.kind;
    // Its own task, so that a panic ends the task and not the job's bookkeeping.
    let task = {
        let (app, job) = (app.clone(), job.clone());
        tokio::spawn(
            async move {
                match job.kind {
                    Kind::Sync => sync::sync(&app, &job).await,
                    Kind::Deploy => match resume {
                        Some(r) => resume::resume_deploy(&app, &job, r).await,
                        None => deploy::deploy(&app, &job).await,
                    },
                    Kind::Preview => preview::preview(&app, &job).await,
                    Kind::Drift => drift::drift(&app, &job).await,
                }
            }
            .instrument(span.clone()),
        )
    };
    let abort = task.abort_handle();
    let outcome = match job.kind {
        Kind::Deploy => task.await,
        Kind::Sync | Kind::Preview | Kind::Drift => {
            match tokio::time::timeout(JOB_DEADLINE, task).await {
                Ok(joined) => joined,
                Err(_) => {
                    abort.abort();
                    span.in_scope(|| tracing::error!("job ran past its deadline"));
                    return stopped(&app, &job);
                }
            }
        }
    };
    let state = match outcome {
        Ok(Ok(s)) => s,
        Ok(Err(JobError::LeaseLost(why))) => {
            // Not ended, nothing posted: whoever holds the job now finishes it.
            span.in_scope(|| tracing::warn!(reason = %why, "stopped: the job's lease is lost"));
            app.leases.end(job.claim());
            app.wake.jobs.notify_one();
            return;
        }
        Ok(Err(JobError::Store(e @ StoreError::Unavailable(_)))) => {
            // Not ended in error: the state database being away says nothing of the job,
            // and its end could not be recorded anyway (any other store error ends it). The lease stays held (the heartbeat
            // renews it once the database answers), and the job is picked up again then.
            span.in_scope(|| {
                tracing::warn!(error = %e, "stopped: the state database failed; picking the job up again once it answers")
            });
            tokio::spawn(resume::pick_up_when_back(app.clone(), job.claim()).instrument(span));
            return;
        }
        Ok(Err(e)) => span.in_scope(|| end_in_error(&app, &job, &e)),
        Err(e) => {
            span.in_scope(|| tracing::error!(error = %e, "job crashed"));
            return stopped(&app, &job);
        }
    };
    app.leases.end(job.claim());
    app.metrics.job(
        kind.as_str(),
        state.as_str(),
        started.elapsed().as_secs_f64(),
    );
    app.wake.jobs.notify_one();
    app.wake.outbox.notify_one();
    if kind == Kind::Drift {
        app.wake.drift.notify_one();
    }
}

/// A job whose worker crashed or ran out of time: run again, or failed at the limit. A
/// deploy is never run again: its change set may have run.
fn stopped(app: &Pipeline, job: &Job) {
    if job.kind == Kind::Deploy || job.attempts >= crate::queue::MAX_ATTEMPTS {
        end_in_error(app, job, &JobError::Poisoned(job.attempts));
    } else if let Err(e) = app.queue.requeue(job.claim()) {
        tracing::error!(error = %e, "cannot requeue");
    }
    app.leases.end(job.claim());
    app.wake.jobs.notify_one();
    app.wake.outbox.notify_one();
}

/// Ends a job that could not run to its end: logged, recorded, and an `error` status (a
/// dry run's: as its check runs and statuses are configured).
pub(super) fn end_in_error(app: &Pipeline, job: &Job, e: &JobError) -> JobState {
    tracing::error!(error = %e, "job failed");
    let mut checks = Vec::new();
    // A dry run's check runs end too: a run left in progress would hold the pull request.
    if job.kind == Kind::Preview {
        let why = e.public();
        let (title, summary) = check_runs::ending(
            &app.cfg,
            job,
            &format!("error: {why}"),
            &format!("stackgate could not finish this dry run: {why}"),
        );
        match app
            .queue
            .end_checks(job.claim(), CheckState::Failure, &title, &summary)
        {
            // It stopped before its first check run: the gate's is still owed, or a branch
            // protection rule requiring it would wait forever.
            Ok(0) if app.cfg.check_runs() => checks.push(check_runs::check(
                &app.cfg,
                job,
                Context::Policy,
                CheckState::Failure,
                &title,
                summary,
                Vec::new(),
            )),
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "cannot end the job's check runs"),
        }
    }
    let statuses = if job.kind == Kind::Preview && !app.cfg.pr_statuses() {
        Vec::new()
    } else {
        vec![job_status(&app.cfg, job, StatusState::Error, e.public())]
    };
    let out = Outbound {
        statuses: &statuses,
        checks: &checks,
        ..Outbound::default()
    };
    if let Err(err) = app.queue.finish_with(
        job.claim(),
        JobState::Error,
        &json!({"error": e.to_string()}),
        out,
        None,
    ) {
        tracing::error!(error = %err, "cannot record the job's end");
    }
    JobState::Error
}

/// Ends a job whose commit is no longer what the branch says, and enqueues the head's sync,
/// which compares with what is deployed and deploys what differs.
pub(super) fn hand_over(
    app: &Pipeline,
    repo: &RepoConfig,
    job: &Job,
    head: String,
) -> Result<JobState, JobError> {
    let description = format!(
        "superseded by {} on {}; not deployed",
        short(&head),
        repo.branch
    );
    let superseded = job_status(&app.cfg, job, StatusState::Error, description);
    app.queue.finish(
        job.claim(),
        JobState::Superseded,
        &json!({"superseded_by": head}),
        &[superseded],
        None,
    )?;
    app.enqueue(&[NewJob {
        kind: Kind::Sync,
        repo: job.repo.clone(),
        sha: head,
        trigger: job.trigger,
        stack: None,
        pr: None,
        fork: false,
    }])?;
    Ok(JobState::Superseded)
}
