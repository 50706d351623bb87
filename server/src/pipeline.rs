//! pipeline: one job as plain steps. sync (checkout → changed stacks → policy → enqueue
//! deploys), deploy (checkout → load → policy → plan → deploy or remove), preview (a pull
//! request's policy and plans, never executed). Every step reports through statuses queued
//! in the state database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};
use tracing::Instrument;

use crate::checkout::{Mirror, Snapshot};
use crate::cloud::cfn;
use crate::config::{Config, RepoConfig};
use crate::deployer::{DeployError, Deployer, Progress};
use crate::github::Reporter;
use crate::metrics::Metrics;
use crate::policy::input::{EventInfo, PolicyInput};
use crate::policy::{PolicyHost, Report, Severity, Verdict, truncate};
use crate::queue::{Job, Kind, NewJob, StatusUpdate, Store};
use crate::render;
use crate::stack::Stack;

/// Why a job could not run to its end (as opposed to a deploy that failed).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] crate::queue::StoreError),
    #[error(transparent)]
    Checkout(#[from] crate::checkout::CheckoutError),
    #[error(transparent)]
    Aws(#[from] crate::cloud::AwsError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this job stopped its worker (a crash or its deadline) at attempt {0}; it is not run again"
    )]
    Poisoned(i64),
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError::Invalid(s.to_string())
    }
}

/// Everything a job needs.
pub struct App {
    pub cfg: Config,
    pub store: Arc<Store>,
    /// Records webhook deliveries with group commit.
    pub recorder: crate::intake::recorder::Recorder,
    pub policies: PolicyHost,
    pub deployer: Deployer,
    pub reporter: Reporter,
    pub mirrors: HashMap<String, Arc<Mutex<Mirror>>>,
    /// (repo, webhook secret) for each repository that takes webhooks.
    pub webhook_secrets: Vec<(String, secrecy::SecretString)>,
    pub metrics: Metrics,
    /// Woken when there is new work or a job ends.
    pub wake: Notify,
    /// Woken when statuses are queued.
    pub report_wake: Notify,
}

pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn status(
    cfg: &Config,
    repo: &str,
    sha: &str,
    context: String,
    state: &'static str,
    description: String,
    job: i64,
) -> StatusUpdate {
    StatusUpdate {
        repo: repo.to_string(),
        sha: sha.to_string(),
        context,
        state,
        description: truncate(&description, 140),
        target_url: cfg.run_url(job),
    }
}

/// Statuses posted when a job is enqueued.
pub fn queued_statuses(cfg: &Config, job: &NewJob, id: i64) -> Vec<StatusUpdate> {
    match (job.kind, &job.stack) {
        (Some(Kind::Deploy), Some(stack)) => vec![status(
            cfg,
            &job.repo,
            &job.sha,
            format!("stackgate/{stack}"),
            "pending",
            "queued".into(),
            id,
        )],
        (Some(Kind::Preview), _) | (None | Some(Kind::Sync), _) => {
            vec![status(
                cfg,
                &job.repo,
                &job.sha,
                "stackgate/policy".into(),
                "pending",
                "queued".into(),
                id,
            )]
        }
        _ => Vec::new(),
    }
}

/// The superseded commit's status says so.
pub fn superseded_statuses(cfg: &Config, old: &Job, new: &NewJob) -> Vec<StatusUpdate> {
    let context = match (&old.kind, &old.stack) {
        (Kind::Deploy, Some(stack)) => format!("stackgate/{stack}"),
        _ => "stackgate/policy".into(),
    };
    vec![status(
        cfg,
        &old.repo,
        &old.sha,
        context,
        "error",
        format!(
            "superseded by {} before it ran; not deployed",
            short(&new.sha)
        ),
        old.id,
    )]
}

impl App {
    pub fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<i64>, crate::queue::StoreError> {
        let ids =
            self.store
                .enqueue(jobs, &|j, id| queued_statuses(&self.cfg, j, id), &|o, n| {
                    superseded_statuses(&self.cfg, o, n)
                })?;
        self.wake.notify_one();
        self.report_wake.notify_one();
        Ok(ids)
    }

    fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.cfg.repo(name)
    }

    async fn fetch(&self, repo: &RepoConfig) -> Result<Option<String>, JobError> {
        let mirror = self
            .mirrors
            .get(&repo.name)
            .ok_or("no mirror for this repository")?
            .clone();
        let branch = repo.branch.clone();
        tokio::task::spawn_blocking(move || mirror.blocking_lock().fetch(&branch))
            .await?
            .map_err(JobError::from)
    }

    async fn snapshot(&self, repo: &RepoConfig, sha: &str) -> Result<Snapshot, JobError> {
        let mirror = self
            .mirrors
            .get(&repo.name)
            .ok_or("no mirror for this repository")?
            .clone();
        let (sha, dir) = (sha.to_string(), repo.stacks_dir.clone());
        let try_read = |m: Arc<Mutex<Mirror>>, sha: String, dir: String| {
            tokio::task::spawn_blocking(move || m.blocking_lock().snapshot(&sha, &dir))
        };
        match try_read(mirror.clone(), sha.clone(), dir.clone()).await? {
            Ok(s) => Ok(s),
            Err(_) => {
                // Not fetched yet (a manual redeploy, a missed webhook): fetch and retry once.
                self.fetch(repo).await?;
                try_read(mirror, sha, dir).await?.map_err(JobError::from)
            }
        }
    }

    /// The stacks whose folders differ from the last deployed commit, and the deployed
    /// stacks whose folders are gone. Compared with state, not the push's `before`, so
    /// force-pushes and missed webhooks still do the right thing.
    async fn changed_stacks(
        &self,
        repo: &RepoConfig,
        snap: &Snapshot,
        deployed: &[(String, String, bool)],
    ) -> Result<(Vec<String>, Vec<String>), JobError> {
        let mirror = self.mirrors.get(&repo.name).ok_or("no mirror")?.clone();
        let mut old_trees: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (_, sha, _) in deployed {
            if !old_trees.contains_key(sha) {
                let (m, s, d) = (mirror.clone(), sha.clone(), repo.stacks_dir.clone());
                let trees =
                    tokio::task::spawn_blocking(move || m.blocking_lock().stack_trees(&s, &d))
                        .await??;
                old_trees.insert(sha.clone(), trees);
            }
        }
        let mut changed = Vec::new();
        for (name, tree) in &snap.stacks {
            let before = deployed
                .iter()
                .find(|(s, _, _)| s == name)
                .and_then(|(_, sha, _)| old_trees.get(sha).and_then(|t| t.get(name)));
            if before != Some(&tree.tree_id) {
                changed.push(name.clone());
            }
        }
        let gone = deployed
            .iter()
            .filter(|(s, _, removed)| !removed && !snap.stacks.contains_key(s))
            .map(|(s, _, _)| s.clone())
            .collect();
        Ok((changed, gone))
    }

    /// Unchanged stacks that state calls deployed but CloudFormation no longer has. Someone
    /// deleted them by hand, or the emulator restarted. Git says they exist, so they deploy
    /// again. A stack left empty by an interrupted create (REVIEW_IN_PROGRESS) counts as
    /// missing too. A failed check is logged and skipped; it never fails the sync.
    async fn missing_stacks(
        &self,
        snap: &Snapshot,
        deployed: &[(String, String, bool)],
        changed: &[String],
    ) -> Vec<String> {
        // Folder → CloudFormation name, for the stacks that should exist.
        let expected: Vec<(&String, String)> = deployed
            .iter()
            .filter(|(name, _, removed)| !removed && !changed.contains(name))
            .filter_map(|(name, _, _)| {
                let stack = Stack::load(&snap.files(name)?).ok()?;
                (!stack.deployment.remove).then_some((name, stack.name))
            })
            .collect();
        if expected.is_empty() {
            return Vec::new();
        }
        let live = match cfn::live_stacks(&self.deployer.aws.cfn).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check that the deployed stacks still exist");
                return Vec::new();
            }
        };
        let missing: Vec<String> = expected
            .into_iter()
            .filter(|(_, cfn_name)| {
                live.get(cfn_name)
                    .is_none_or(|status| status == "REVIEW_IN_PROGRESS")
            })
            .map(|(name, _)| name.clone())
            .collect();
        if !missing.is_empty() {
            tracing::warn!(stacks = ?missing, "deployed stacks are missing from CloudFormation; deploying them again");
        }
        missing
    }

    async fn gate(&self, stack: &Stack, kind: &str, sha: &str) -> Report {
        let input = PolicyInput::for_stack(
            stack,
            &self.deployer.aws.region,
            EventInfo {
                kind: kind.into(),
                sha: Some(sha.into()),
            },
        );
        let report = self
            .policies
            .evaluate(&input, Some(&stack.template.doc))
            .await;
        let v = match report.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        };
        self.metrics.verdict(v);
        report
    }
}

fn verdict_state(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "success",
        Verdict::Fail => "failure",
        Verdict::Error => "error",
    }
}

/// `stackgate/<stack>` on the job's commit.
fn stack_status(
    app: &App,
    job: &Job,
    stack: &str,
    state: &'static str,
    description: String,
) -> StatusUpdate {
    status(
        &app.cfg,
        &job.repo,
        &job.sha,
        format!("stackgate/{stack}"),
        state,
        description,
        job.id,
    )
}

/// `stackgate/policy` on the job's commit, for a gate's verdict.
fn policy_status(app: &App, job: &Job, verdict: Verdict, description: String) -> StatusUpdate {
    status(
        &app.cfg,
        &job.repo,
        &job.sha,
        "stackgate/policy".into(),
        verdict_state(verdict),
        description,
        job.id,
    )
}

/// How long a sync or a preview may run. Deploys follow CloudFormation, which has its own.
pub const JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Runs one claimed job to its end.
pub async fn run(app: Arc<App>, job: Job) {
    let span = tracing::info_span!("job", job = job.id, kind = ?job.kind, repo = %job.repo, sha = %short(&job.sha), stack = job.stack.as_deref().unwrap_or(""));
    let started = Instant::now();
    let kind = job.kind;
    // Its own task, so that a panic ends the task and not the job's bookkeeping.
    let task = {
        let (app, job) = (app.clone(), job.clone());
        tokio::spawn(
            async move {
                match job.kind {
                    Kind::Sync => sync(&app, &job).await,
                    Kind::Deploy => deploy(&app, &job, None).await,
                    Kind::Preview => preview(&app, &job).await,
                }
            }
            .instrument(span.clone()),
        )
    };
    let abort = task.abort_handle();
    let outcome = match job.kind {
        Kind::Deploy => task.await,
        Kind::Sync | Kind::Preview => match tokio::time::timeout(JOB_DEADLINE, task).await {
            Ok(joined) => joined,
            Err(_) => {
                abort.abort();
                span.in_scope(|| tracing::error!("job ran past its deadline"));
                return stopped(&app, &job);
            }
        },
    };
    let state = match outcome {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => span.in_scope(|| end_in_error(&app, &job, &e)),
        Err(e) => {
            span.in_scope(|| tracing::error!(error = %e, "job crashed"));
            return stopped(&app, &job);
        }
    };
    app.metrics
        .job(kind.as_str(), &state, started.elapsed().as_secs_f64());
    app.wake.notify_one();
    app.report_wake.notify_one();
}

/// A job whose worker crashed or ran out of time: run again, or failed at the limit. A
/// deploy is never run again: its change set may have run.
fn stopped(app: &App, job: &Job) {
    if job.kind == Kind::Deploy || job.attempts >= crate::queue::MAX_ATTEMPTS {
        end_in_error(app, job, &JobError::Poisoned(job.attempts));
    } else if let Err(e) = app.store.requeue(job.id) {
        tracing::error!(error = %e, "cannot requeue");
    }
    app.wake.notify_one();
    app.report_wake.notify_one();
}

/// Ends a job that could not run to its end: logged, recorded, and an `error` status.
fn end_in_error(app: &App, job: &Job, e: &JobError) -> String {
    tracing::error!(error = %e, "job failed");
    let statuses = vec![status(
        &app.cfg,
        &job.repo,
        &job.sha,
        job_context(job),
        "error",
        format!("stackgate error: {e}"),
        job.id,
    )];
    if let Err(err) = app.store.finish(
        job.id,
        "error",
        &json!({"error": e.to_string()}),
        &statuses,
        None,
    ) {
        tracing::error!(error = %err, "cannot record the job's end");
    }
    "error".into()
}

fn job_context(job: &Job) -> String {
    match (&job.kind, &job.stack) {
        (Kind::Deploy, Some(s)) => format!("stackgate/{s}"),
        _ => "stackgate/policy".into(),
    }
}

/// A push (or poll): find what changed, gate it, enqueue the deploys.
async fn sync(app: &App, job: &Job) -> Result<String, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    // The branch is the truth, not the webhook: deliveries arrive late and out of order.
    // A commit that is no longer the head hands over to the head, so an older push can
    // never undo a newer one.
    if let Some(head) = app.fetch(&repo).await?
        && head != job.sha
    {
        let description = format!(
            "superseded by {} on {}; not deployed",
            short(&head),
            repo.branch
        );
        let superseded = status(
            &app.cfg,
            &job.repo,
            &job.sha,
            "stackgate/policy".into(),
            "error",
            description,
            job.id,
        );
        app.store.finish(
            job.id,
            "superseded",
            &json!({"superseded_by": head}),
            &[superseded],
            None,
        )?;
        app.enqueue(&[NewJob {
            kind: Some(Kind::Sync),
            repo: job.repo.clone(),
            sha: head,
            trigger: job.trigger.clone(),
            ..Default::default()
        }])?;
        return Ok("superseded".into());
    }
    let snap = app.snapshot(&repo, &job.sha).await?;
    let deployed = app.store.deployed(&repo.name)?;
    let (mut changed, gone) = app.changed_stacks(&repo, &snap, &deployed).await?;
    let missing = app.missing_stacks(&snap, &deployed, &changed).await;
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
                    app,
                    job,
                    name,
                    "failure",
                    format!("bad input: {e}"),
                ));
            }
            Ok(stack) => {
                let report = app.gate(&stack, "push", &job.sha).await;
                errors += report.count(Severity::Error);
                warnings += report.count(Severity::Warning);
                detail["stacks"][name] = json!({"policy": report});
                if report.verdict == Verdict::Pass {
                    deploys.push(name.clone());
                } else {
                    if report.verdict == Verdict::Error || worst == Verdict::Pass {
                        worst = report.verdict;
                    }
                    first.get_or_insert(format!("{name}: {}", report.summary()));
                    statuses.push(stack_status(
                        app,
                        job,
                        name,
                        "failure",
                        format!("blocked by policy: {}", report.summary()),
                    ));
                }
            }
        }
    }
    if repo.prune {
        deploys.extend(gone.iter().cloned());
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
    statuses.insert(0, policy_status(app, job, worst, description));
    let state = if worst == Verdict::Pass {
        "succeeded"
    } else {
        "failed"
    };
    detail["deploys"] = json!(deploys);
    app.store.finish(job.id, state, &detail, &statuses, None)?;
    let jobs: Vec<NewJob> = deploys
        .into_iter()
        .map(|stack| NewJob {
            kind: Some(Kind::Deploy),
            repo: job.repo.clone(),
            stack: Some(stack),
            sha: job.sha.clone(),
            trigger: job.trigger.clone(),
            ..Default::default()
        })
        .collect();
    if !jobs.is_empty() {
        app.enqueue(&jobs)?;
    }
    Ok(state.into())
}

/// Where a deploy resumes after a restart.
pub struct Resume {
    pub phase: String,
}

/// Deploy (or remove) one stack. `resume` re-attaches to an operation already in AWS.
pub async fn deploy(app: &App, job: &Job, resume: Option<Resume>) -> Result<String, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    let stack_name = job.stack.clone().ok_or("a deploy job without a stack")?;
    let context = format!("stackgate/{stack_name}");
    let mut detail = if job.detail.is_object() {
        job.detail.clone()
    } else {
        json!({})
    };
    let events: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let say = |state: &'static str, d: String| {
        status(
            &app.cfg,
            &job.repo,
            &job.sha,
            context.clone(),
            state,
            d,
            job.id,
        )
    };

    if let Some(r) = resume {
        return resume_deploy(app, job, &stack_name, r, detail).await;
    }
    app.store.set_phase(job.id, "checkout", None, None)?;
    let snap = app.snapshot(&repo, &job.sha).await?;
    let Some(files) = snap.files(&stack_name) else {
        // The folder is gone: remove only with prune, and only what stackgate deployed.
        if !repo.prune {
            let d = format!(
                "folder {}/{stack_name} is gone; prune is off, nothing removed",
                repo.stacks_dir
            );
            app.store.finish(
                job.id,
                "succeeded",
                &json!({"message": d}),
                &[say("success", d.clone())],
                None,
            )?;
            return Ok("succeeded".into());
        }
        return remove(app, job, &stack_name, &stack_name, detail, events).await;
    };
    let stack = match Stack::load(&files) {
        Ok(s) => s,
        Err(e) => {
            app.store.finish(
                job.id,
                "failed",
                &json!({"error": e.to_string()}),
                &[say("failure", format!("bad input: {e}"))],
                None,
            )?;
            return Ok("failed".into());
        }
    };

    // The gate, every time: a manual redeploy must pass it as a push does.
    app.store.set_phase(job.id, "policy", None, None)?;
    let report = app.gate(&stack, &job.trigger, &job.sha).await;
    detail["policy"] = json!(report);
    if job.trigger == "manual" {
        app.store.add_statuses(
            Some(job.id),
            &[policy_status(app, job, report.verdict, report.summary())],
        )?;
    }
    if report.verdict != Verdict::Pass {
        app.store.finish(
            job.id,
            "failed",
            &detail,
            &[say(
                "failure",
                format!("blocked by policy: {}", report.summary()),
            )],
            None,
        )?;
        return Ok("failed".into());
    }

    if stack.deployment.remove {
        return remove(app, job, &stack_name, &stack.name, detail, events).await;
    }

    app.store
        .add_statuses(Some(job.id), &[say("pending", "deploying…".into())])?;
    app.report_wake.notify_one();
    app.store.set_phase(job.id, "planning", None, None)?;
    let origin = crate::deployer::Origin {
        repo: Some(job.repo.clone()),
        sha: Some(job.sha.clone()),
    };
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let planned = match app
        .deployer
        .prepare(&files, &stack, &origin, &mut sink)
        .await
    {
        Ok(p) => p,
        Err(e) => return fail(app, job, detail, events, &say, e),
    };
    detail["changes"] = json!(planned.changes);
    let Some(_) = &planned.changes else {
        app.deployer
            .discard(&planned.change_set_id, &planned.stack_id, planned.create)
            .await;
        app.store.finish(
            job.id,
            "succeeded",
            &detail,
            &[say("success", "no changes".into())],
            Some((&job.repo, &stack_name, &job.sha, false)),
        )?;
        return Ok("succeeded".into());
    };
    // Written before the call: after a crash, resume asks AWS whether it ran.
    app.store.set_phase(
        job.id,
        "executing",
        Some(&planned.change_set_id),
        Some(&planned.stack_id),
    )?;
    app.store.set_detail(job.id, &detail)?;
    let total = stack.template.resources().len();
    let result = app.deployer.execute(&planned, total, &mut sink).await;
    finish_deploy(app, job, &stack_name, detail, events, result)
}

fn record(events: &std::sync::Mutex<Vec<Value>>, p: Progress<'_>) {
    let v = match p {
        Progress::Note(n) => json!({"note": n}),
        Progress::Changes(c) => json!({"changes": c.len()}),
        Progress::Event { event, done, total } => {
            json!({"event": event, "done": done, "total": total})
        }
    };
    events.lock().unwrap_or_else(|p| p.into_inner()).push(v);
}

fn fail(
    app: &App,
    job: &Job,
    mut detail: Value,
    events: Arc<std::sync::Mutex<Vec<Value>>>,
    say: &dyn Fn(&'static str, String) -> StatusUpdate,
    e: DeployError,
) -> Result<String, JobError> {
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    detail["error"] = json!(e.to_string());
    app.store.finish(
        job.id,
        "failed",
        &detail,
        &[say("failure", e.to_string())],
        None,
    )?;
    Ok("failed".into())
}

fn finish_deploy(
    app: &App,
    job: &Job,
    stack_name: &str,
    mut detail: Value,
    events: Arc<std::sync::Mutex<Vec<Value>>>,
    result: Result<crate::deployer::Deployed, DeployError>,
) -> Result<String, JobError> {
    let say = |state: &'static str, d: String| stack_status(app, job, stack_name, state, d);
    match result {
        Ok(d) => {
            let outputs: Vec<String> = d.outputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tracing::info!(status = %d.status, outputs = %outputs.join(" "), "deployed");
            detail["outputs"] = json!(d.outputs);
            succeed(
                app,
                job,
                detail,
                &events,
                say("success", d.status),
                (stack_name, false),
            )
        }
        Err(e) => fail(app, job, detail, events, &say, e),
    }
}

/// Ends a job that deployed or removed its stack: its events, the final status, and the
/// sha now deployed (`removed` when the stack is gone).
fn succeed(
    app: &App,
    job: &Job,
    mut detail: Value,
    events: &std::sync::Mutex<Vec<Value>>,
    final_status: StatusUpdate,
    (stack, removed): (&str, bool),
) -> Result<String, JobError> {
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    app.store.finish(
        job.id,
        "succeeded",
        &detail,
        &[final_status],
        Some((&job.repo, stack, &job.sha, removed)),
    )?;
    Ok("succeeded".into())
}

async fn remove(
    app: &App,
    job: &Job,
    folder: &str,
    stack_name: &str,
    mut detail: Value,
    events: Arc<std::sync::Mutex<Vec<Value>>>,
) -> Result<String, JobError> {
    let say = |state: &'static str, d: String| stack_status(app, job, folder, state, d);
    app.store
        .add_statuses(Some(job.id), &[say("pending", "removing…".into())])?;
    app.report_wake.notify_one();
    app.store.set_phase(job.id, "removing", None, None)?;
    detail["stack_name"] = json!(stack_name);
    app.store.set_detail(job.id, &detail)?;
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    match app.deployer.remove(stack_name, &mut sink).await {
        Ok(r) => {
            detail["removed"] = json!(r);
            succeed(
                app,
                job,
                detail,
                &events,
                say("success", "removed".into()),
                (folder, true),
            )
        }
        Err(e) => fail(app, job, detail, events, &say, e),
    }
}

/// Re-attaches to a deploy that was in flight when the process died. Never executes a
/// change set twice: AWS says whether it ran.
async fn resume_deploy(
    app: &App,
    job: &Job,
    stack_name: &str,
    r: Resume,
    detail: Value,
) -> Result<String, JobError> {
    let events: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let cfn_client = &app.deployer.aws.cfn;
    match r.phase.as_str() {
        "executing" => {
            let (Some(cs), Some(stack_id)) = (job.change_set_id.clone(), job.stack_id.clone())
            else {
                return Err("resumed without a change set id".into());
            };
            let exec = cfn::change_set_execution(cfn_client, &cs).await?;
            if exec == Some(aws_sdk_cloudformation::types::ExecutionStatus::Available) {
                tracing::info!("the change set never ran; executing it now");
                cfn::execute_change_set(cfn_client, &cs).await?;
            } else {
                tracing::info!(?exec, "the change set already ran; following the stack");
            }
            let total = detail["changes"].as_array().map(|a| a.len()).unwrap_or(0);
            let settled = app
                .deployer
                .follow(stack_name, &stack_id, HashSet::new(), total, &mut sink)
                .await;
            let result = settled.and_then(|s| s.into_deployed(stack_name));
            finish_deploy(app, job, stack_name, detail, events, result)
        }
        "removing" => {
            let name = detail["stack_name"]
                .as_str()
                .unwrap_or(stack_name)
                .to_string();
            // Wait for a delete in flight, then remove (a no-op if it is gone).
            if let Ok(Some(info)) = cfn::describe_stack(cfn_client, &name).await
                && info.in_progress()
            {
                let _ = app
                    .deployer
                    .follow(&name, &info.id, HashSet::new(), 0, &mut sink)
                    .await;
            }
            remove(app, job, stack_name, &name, detail, events).await
        }
        _ => Err("unreachable resume phase".into()),
    }
}

/// What to do with deploys that were running when the process died.
pub async fn recover(app: &Arc<App>) {
    let recovered = match app.store.recover() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read jobs to resume");
            return;
        }
    };
    for job in recovered.poisoned {
        tracing::error!(
            job = job.id,
            attempts = job.attempts,
            "a job stopped the worker at each attempt; failing it"
        );
        end_in_error(app, &job, &JobError::Poisoned(job.attempts));
    }
    for job in recovered.resume {
        let phase = job.phase.clone().unwrap_or_default();
        if phase == "executing" || phase == "removing" {
            tracing::info!(job = job.id, %phase, "resuming a deploy that was in flight");
            if let Err(e) = app.store.attempt(job.id) {
                tracing::error!(error = %e, "cannot count the attempt");
            }
            let app = app.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let span = tracing::info_span!("job", job = job.id, repo = %job.repo, sha = %short(&job.sha), stack = job.stack.as_deref().unwrap_or(""), resumed = true);
                let out = deploy(&app, &job, Some(Resume { phase }))
                    .instrument(span)
                    .await;
                let state = out.unwrap_or_else(|e| end_in_error(&app, &job, &e));
                app.metrics
                    .job("deploy", &state, started.elapsed().as_secs_f64());
                app.wake.notify_one();
                app.report_wake.notify_one();
            });
        } else {
            // Nothing reached AWS that cannot be redone: clean up and run it again.
            if let Some(cs) = &job.change_set_id {
                app.deployer
                    .discard(cs, job.stack_id.as_deref().unwrap_or(""), true)
                    .await;
            }
            if let Err(e) = app.store.requeue(job.id) {
                tracing::error!(error = %e, "cannot requeue");
            }
        }
    }
    app.wake.notify_one();
}

/// A pull request's dry run: policy and plans for the changed stacks, one comment.
async fn preview(app: &App, job: &Job) -> Result<String, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    let pr = job.pr.ok_or("a preview without a pull request")?;
    let snap = app.snapshot(&repo, &job.sha).await?;
    let deployed = app.store.deployed(&repo.name)?;
    let (changed, _) = app.changed_stacks(&repo, &snap, &deployed).await?;
    let mut statuses = Vec::new();
    let mut worst = Verdict::Pass;
    let mut sections = Vec::new();
    let mut detail = json!({"changed": changed, "stacks": {}});
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
                sections.push(format!("### `{name}`\n\n:x: bad input: {e}\n"));
                continue;
            }
        };
        let report = app.gate(&stack, "pull_request", &job.sha).await;
        if report.verdict != Verdict::Pass && worst != Verdict::Error {
            worst = report.verdict;
        }
        let mut section = format!("### `{name}`\n\n**Policy:** {}\n", report.summary());
        for f in report.findings() {
            let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            section.push_str(&format!(
                "- {} `{}` **{}** `{}{line}`: {}\n",
                if f.severity == Severity::Error {
                    ":x:"
                } else {
                    ":warning:"
                },
                f.rule,
                f.resource,
                stack.template.file,
                f.message
            ));
        }
        let context = format!("stackgate/plan/{name}");
        if job.fork {
            section
                .push_str("\n**Plan:** skipped for a pull request from a fork (no AWS calls).\n");
        } else if stack.deployment.remove {
            section.push_str("\n**Plan:** the stack will be removed.\n");
            statuses.push(status(
                &app.cfg,
                &job.repo,
                &job.sha,
                context,
                "success",
                "will remove the stack".into(),
                job.id,
            ));
        } else {
            let origin = crate::deployer::Origin {
                repo: Some(job.repo.clone()),
                sha: Some(job.sha.clone()),
            };
            let mut sink = |_p: Progress<'_>| {};
            match app.deployer.plan(&files, &stack, &origin, &mut sink).await {
                Ok(p) => match &p.changes {
                    None => {
                        section.push_str("\n**Plan:** no changes.\n");
                        statuses.push(status(
                            &app.cfg,
                            &job.repo,
                            &job.sha,
                            context,
                            "success",
                            "no changes".into(),
                            job.id,
                        ));
                    }
                    Some(c) => {
                        section.push_str(&format!(
                            "\n**Plan:** {} change(s)\n\n{}",
                            c.len(),
                            render::change_table_markdown(c)
                        ));
                        statuses.push(status(
                            &app.cfg,
                            &job.repo,
                            &job.sha,
                            context,
                            "success",
                            format!("{} change(s)", c.len()),
                            job.id,
                        ));
                    }
                },
                Err(e) => {
                    section.push_str(&format!("\n**Plan failed:** {e}\n"));
                    statuses.push(status(
                        &app.cfg,
                        &job.repo,
                        &job.sha,
                        context,
                        "failure",
                        e.to_string(),
                        job.id,
                    ));
                }
            }
        }
        detail["stacks"][name] = json!({"policy": report});
        sections.push(section);
    }
    let summary = if changed.is_empty() {
        "no stack changed".to_string()
    } else {
        format!("{} stack(s) checked", changed.len())
    };
    let description = bad_input.unwrap_or_else(|| summary.clone());
    statuses.insert(0, policy_status(app, job, worst, description));
    let body = format!(
        "<!-- stackgate:preview -->\n## stackgate dry run for {}\n\n{}\n\n{}\n\n[Run {}]({})\n",
        short(&job.sha),
        summary,
        sections.join("\n"),
        job.id,
        app.cfg.run_url(job.id)
    );
    let existing = app.store.pr_comment(&job.repo, pr)?;
    tracing::debug!(pr, ?existing, "pull request comment");
    let mut attempt = 0;
    loop {
        match app
            .reporter
            .upsert_comment(&job.repo, pr, existing, &body)
            .await
        {
            Ok(Some(id)) => {
                tracing::debug!(pr, id, "pull request comment posted");
                app.store.set_pr_comment(&job.repo, pr, id)?;
                break;
            }
            Ok(None) => break,
            Err(e) if e.retry && attempt < 5 => {
                tracing::warn!(error = %e, attempt, "pull request comment not posted; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot post the pull request comment");
                detail["comment_error"] = json!(e.to_string());
                break;
            }
        }
    }
    detail["comment"] = json!(body);
    let state = if worst == Verdict::Pass {
        "succeeded"
    } else {
        "failed"
    };
    app.store.finish(job.id, state, &detail, &statuses, None)?;
    Ok(state.into())
}
