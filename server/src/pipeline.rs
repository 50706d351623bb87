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

use crate::checkout::{CheckoutError, Heads, Mirror, Snapshot};
use crate::claims::{self, Claims};
use crate::cloud::cfn;
use crate::config::{Config, RepoConfig};
use crate::deployer::{DeployError, Deployer, Origin, Progress};
use crate::domain::{Context, JobState, Kind, Phase, StatusState, Trigger, short};
use crate::github::{GitCredential, GitHub};
use crate::ownership::{Owner, StackIdentity};
use crate::policy::input::EventInfo;
use crate::policy::{PolicyHost, Report, Severity, Verdict};
use crate::queue::{CommentUpdate, Job, LedgerEntry, NewJob, Queue, StatusUpdate};
use crate::redact::Redactor;
use crate::report::comment;
use crate::report::metrics::Metrics;
use crate::report::statuses::{
    job_context, policy_status, queued_statuses, stack_status, status, superseded_statuses,
};
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
    #[error(transparent)]
    Github(#[from] crate::github::GithubError),
    #[error(transparent)]
    Region(#[from] crate::regions::RegionError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this job stopped its worker (a crash or its deadline) at attempt {0}; it is not run again"
    )]
    Poisoned(i64),
}

impl JobError {
    /// What a commit status says: no git or AWS error text (it may name accounts, ARNs or
    /// URLs); the run page has the whole error.
    fn public(&self) -> String {
        let what = match self {
            JobError::Store(_) => "cannot read or write the state database",
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

/// Everything a job needs.
pub struct App {
    pub cfg: Config,
    pub store: Arc<dyn Queue>,
    /// Records webhook deliveries with group commit.
    pub recorder: crate::queue::recorder::Recorder,
    pub policies: PolicyHost,
    /// The server's own region's deployer; `regions` has the others.
    pub deployer: Arc<Deployer>,
    pub regions: crate::regions::Regions,
    pub github: Arc<dyn GitHub>,
    pub mirrors: HashMap<String, Arc<Mutex<Mirror>>>,
    /// What git offers as the password of an https fetch.
    pub git: GitCredential,
    /// (repo, webhook secret) for each repository that takes webhooks.
    pub webhook_secrets: Vec<(String, secrecy::SecretString)>,
    pub metrics: Metrics,
    /// Woken when there is new work or a job ends.
    pub wake: Notify,
    /// Woken when statuses are queued.
    pub report_wake: Arc<Notify>,
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

    /// Fetches the branch (and pull request `pr`'s head) into the mirror.
    pub async fn fetch(&self, repo: &RepoConfig, pr: Option<u64>) -> Result<Heads, JobError> {
        let mirror = self
            .mirrors
            .get(&repo.name)
            .ok_or("no mirror for this repository")?
            .clone();
        // Asked for before the lock: an App token may need minting.
        let password = self.git.password().await?;
        let branch = repo.branch.clone();
        tokio::task::spawn_blocking(move || {
            mirror.blocking_lock().fetch(&branch, pr, password.as_ref())
        })
        .await?
        .map_err(JobError::from)
    }

    async fn snapshot(
        &self,
        repo: &RepoConfig,
        sha: &str,
        pr: Option<u64>,
    ) -> Result<Snapshot, JobError> {
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
                self.fetch(repo, pr).await?;
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
        // A stack whose newest deploy is at a commit without its folder is being removed
        // already (a queued or running prune): not gone again.
        let gone = deployed
            .iter()
            .filter(|(s, sha, removed)| {
                !removed
                    && !snap.stacks.contains_key(s)
                    && old_trees.get(sha).is_some_and(|t| t.contains_key(s))
            })
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
        // Region → (folder, CloudFormation name), for the stacks that should exist.
        let mut expected: BTreeMap<Option<String>, Vec<(&String, String)>> = BTreeMap::new();
        for (name, _, _) in deployed
            .iter()
            .filter(|(name, _, removed)| !removed && !changed.contains(name))
        {
            if let Some(stack) = snap.files(name).and_then(|f| Stack::load(&f).ok())
                && !stack.deployment.remove
            {
                expected
                    .entry(stack.deployment.region.clone())
                    .or_default()
                    .push((name, stack.name));
            }
        }
        let mut missing = Vec::new();
        for (region, stacks) in expected {
            let live = async {
                let d = self.regions.get(region.as_deref()).await?;
                Ok::<_, JobError>(cfn::live_stacks(&d.aws.cfn).await?)
            };
            let live = match live.await {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check that the deployed stacks still exist");
                    continue;
                }
            };
            missing.extend(
                stacks
                    .into_iter()
                    .filter(|(_, cfn_name)| {
                        live.get(cfn_name)
                            .is_none_or(|status| status == "REVIEW_IN_PROGRESS")
                    })
                    .map(|(name, _)| name.clone()),
            );
        }
        if !missing.is_empty() {
            tracing::warn!(stacks = ?missing, "deployed stacks are missing from CloudFormation; deploying them again");
        }
        missing
    }

    /// What each folder of the commit claims, against the live stacks of every repository.
    async fn claims(&self, repo: &RepoConfig, snap: &Snapshot) -> Result<Claims, JobError> {
        let account = self.deployer.aws.account().await?.to_string();
        let region = &self.deployer.aws.region;
        let current: Vec<(String, StackIdentity)> = snap
            .stacks
            .keys()
            .filter_map(|f| {
                let stack = Stack::load(&snap.files(f)?).ok()?;
                Some((f.clone(), claims::identity(&account, region, &stack)))
            })
            .collect();
        let ledger = self.ledger().await?;
        Ok(Claims::find(
            &repo.name,
            &current,
            &|f| snap.stacks.contains_key(f),
            &ledger,
            &|r, f| self.stacks_path(r, f),
        ))
    }

    /// Every live stack of the ledger, by identity. A row from before the ledger kept
    /// identities is read from its commit once: unseen, its stack would have no claimant.
    async fn ledger(&self) -> Result<Vec<(StackIdentity, String, String)>, JobError> {
        for (repo, folder, sha) in self.store.live_unidentified()? {
            let Some(cfg) = self.repo(&repo).cloned() else {
                continue;
            };
            if let Some(id) = self.identity_at(&cfg, &sha, &folder).await {
                self.store.fill_identity(&repo, &folder, &id)?;
            }
        }
        Ok(self.store.live_identities()?)
    }

    /// A stack folder of a repository, from its root: `stacks/web`.
    fn stacks_path(&self, repo: &str, folder: &str) -> String {
        let dir = self.repo(repo).map_or("stacks", |c| c.stacks_dir.as_str());
        format!("{dir}/{folder}")
    }

    /// The stack `folder` deployed at `sha`, read from its deployment file there: for
    /// ledger rows from before the ledger kept identities.
    async fn identity_at(
        &self,
        repo: &RepoConfig,
        sha: &str,
        folder: &str,
    ) -> Option<StackIdentity> {
        let snap = self.snapshot(repo, sha, None).await.ok()?;
        let stack = Stack::load(&snap.files(folder)?).ok()?;
        let account = self.deployer.aws.account().await.ok()?;
        Some(claims::identity(account, &self.deployer.aws.region, &stack))
    }

    /// The policy gate; `aws` lets it look up what CloudFormation would fetch at deploy
    /// time (never for a fork's pull request, which gets no AWS calls).
    async fn gate(
        &self,
        (stack, files): (&Stack, &dyn crate::stack::StackFiles),
        kind: &str,
        sha: &str,
        aws: bool,
    ) -> Report {
        let event = EventInfo {
            kind: kind.into(),
            sha: Some(sha.into()),
        };
        // The stack's own region: its exports and parameters are the ones CloudFormation
        // reads. A region with no client looks nothing up, so its doubt stays an error.
        let regional = self.regions.get(stack.deployment.region.as_deref()).await;
        let region = stack
            .deployment
            .region
            .as_deref()
            .unwrap_or(&self.deployer.aws.region);
        let aws = match &regional {
            Ok(d) if aws => Some(&d.aws),
            _ => None,
        };
        let report =
            crate::policy::gate::judge(&self.policies, stack, files, region, event, aws).await;
        let v = match report.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        };
        self.metrics.verdict(v);
        report
    }
}

/// How long a sync or a preview may run. Deploys follow CloudFormation, which has its own.
pub const JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Runs one claimed job to its end.
pub async fn run(app: Arc<App>, job: Job) {
    supervise(app, job, None).await
}

/// Runs a job (or resumes a deploy) to its end, and records its end whatever it was.
async fn supervise(app: Arc<App>, job: Job, resume: Option<Resume>) {
    let span = tracing::info_span!("job", job = job.id, kind = ?job.kind, repo = %job.repo, sha = %short(&job.sha), stack = job.stack.as_deref().unwrap_or(""), resumed = resume.is_some());
    let started = Instant::now();
    let kind = job.kind;
    // Its own task, so that a panic ends the task and not the job's bookkeeping.
    let task = {
        let (app, job) = (app.clone(), job.clone());
        tokio::spawn(
            async move {
                match job.kind {
                    Kind::Sync => sync(&app, &job).await,
                    Kind::Deploy => deploy(&app, &job, resume).await,
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
    app.metrics.job(
        kind.as_str(),
        state.as_str(),
        started.elapsed().as_secs_f64(),
    );
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
fn end_in_error(app: &App, job: &Job, e: &JobError) -> JobState {
    tracing::error!(error = %e, "job failed");
    let statuses = vec![status(
        &app.cfg,
        &job.repo,
        &job.sha,
        job_context(job),
        StatusState::Error,
        e.public(),
        job.id,
    )];
    if let Err(err) = app.store.finish(
        job.id,
        JobState::Error,
        &json!({"error": e.to_string()}),
        &statuses,
        None,
    ) {
        tracing::error!(error = %err, "cannot record the job's end");
    }
    JobState::Error
}

/// Ends a job whose commit is no longer what the branch says, and enqueues the head's sync,
/// which compares with what is deployed and deploys what differs.
fn hand_over(app: &App, repo: &RepoConfig, job: &Job, head: String) -> Result<JobState, JobError> {
    let description = format!(
        "superseded by {} on {}; not deployed",
        short(&head),
        repo.branch
    );
    let superseded = status(
        &app.cfg,
        &job.repo,
        &job.sha,
        job_context(job),
        StatusState::Error,
        description,
        job.id,
    );
    app.store.finish(
        job.id,
        JobState::Superseded,
        &json!({"superseded_by": head}),
        &[superseded],
        None,
    )?;
    app.enqueue(&[NewJob {
        kind: Some(Kind::Sync),
        repo: job.repo.clone(),
        sha: head,
        trigger: job.trigger,
        ..Default::default()
    }])?;
    Ok(JobState::Superseded)
}

/// The branch head, when the stack's folder there differs from the job's commit. A push may
/// have changed it again, or back to what is deployed, while this deploy waited; that push's
/// sync saw nothing to supersede. A manual redeploy of an older commit is meant.
async fn stale_against_head(
    app: &App,
    repo: &RepoConfig,
    job: &Job,
    stack: &str,
) -> Result<Option<String>, JobError> {
    if job.trigger == Trigger::Manual {
        return Ok(None);
    }
    let Some(head) = app.fetch(repo, None).await?.branch else {
        return Ok(None);
    };
    if head == job.sha {
        return Ok(None);
    }
    let mirror = app.mirrors.get(&repo.name).ok_or("no mirror")?.clone();
    let (ours, theirs, dir) = (job.sha.clone(), head.clone(), repo.stacks_dir.clone());
    let (ours, theirs) = tokio::task::spawn_blocking(move || {
        let m = mirror.blocking_lock();
        Ok::<_, crate::checkout::CheckoutError>((
            m.stack_trees(&ours, &dir)?,
            m.stack_trees(&theirs, &dir)?,
        ))
    })
    .await??;
    Ok((ours.get(stack) != theirs.get(stack)).then_some(head))
}

/// Each stack's commit once the queue drains: its newest queued or running deploy's, else
/// the last finished one's.
fn after_the_queue(
    deployed: &[(String, String, bool)],
    pending: &[(String, String)],
) -> Vec<(String, String, bool)> {
    let mut out: Vec<_> = deployed
        .iter()
        .filter(|(s, _, _)| !pending.iter().any(|(p, _)| p == s))
        .cloned()
        .collect();
    out.extend(
        pending
            .iter()
            .map(|(s, sha)| (s.clone(), sha.clone(), false)),
    );
    out
}

/// A push (or poll): find what changed, gate it, enqueue the deploys.
async fn sync(app: &App, job: &Job) -> Result<JobState, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    // The branch is the truth, not the webhook: deliveries arrive late and out of order.
    // A commit that is no longer the head hands over to the head, so an older push can
    // never undo a newer one.
    if let Some(head) = app.fetch(&repo, None).await?.branch
        && head != job.sha
    {
        return hand_over(app, &repo, job, head);
    }
    let snap = app.snapshot(&repo, &job.sha, None).await?;
    let deployed = app.store.deployed(&repo.name)?;
    // Compared with what each stack will be once the queue drains, not only with the last
    // finished deploy: a push that restores the deployed content while another deploy runs
    // or waits must still win.
    let pending = app.store.pending_deploys(&repo.name)?;
    let base = after_the_queue(&deployed, &pending);
    // A gone stack's prune supersedes a queued deploy of it, and waits behind a running
    // one: that one passed its head check already, and nothing else would prune it.
    let (mut changed, gone) = app.changed_stacks(&repo, &snap, &base).await?;
    let busy: Vec<String> = changed
        .iter()
        .cloned()
        .chain(pending.iter().map(|(s, _)| s.clone()))
        .collect();
    let missing = app.missing_stacks(&snap, &deployed, &busy).await;
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
                let report = app.gate((&stack, &files), "push", &job.sha, true).await;
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
    app.store.finish(job.id, state, &detail, &statuses, None)?;
    let jobs: Vec<NewJob> = deploys
        .into_iter()
        .map(|stack| NewJob {
            kind: Some(Kind::Deploy),
            repo: job.repo.clone(),
            stack: Some(stack),
            sha: job.sha.clone(),
            trigger: job.trigger,
            ..Default::default()
        })
        .collect();
    if !jobs.is_empty() {
        app.enqueue(&jobs)?;
    }
    Ok(state)
}

/// Where a deploy resumes after a restart.
pub struct Resume {
    pub phase: Phase,
}

/// Deploy (or remove) one stack. `resume` re-attaches to an operation already in AWS.
pub async fn deploy(app: &App, job: &Job, resume: Option<Resume>) -> Result<JobState, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    let stack_name = job.stack.clone().ok_or("a deploy job without a stack")?;
    let context = Context::Stack(stack_name.clone());
    let mut detail = if job.detail.is_object() {
        job.detail.clone()
    } else {
        json!({})
    };
    let events: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let say = |state: StatusState, d: String| {
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
        // Fault injection for the tests (debug builds only): a resumed deploy that panics.
        #[cfg(debug_assertions)]
        if std::env::var_os("STACKGATE_TEST_PANIC_ON_RESUME").is_some() {
            panic!("injected fault: a resumed deploy panics");
        }
        return resume_deploy(app, job, &stack_name, r, detail).await;
    }
    app.store.set_phase(job.id, Phase::Checkout, None, None)?;
    if let Some(head) = stale_against_head(app, &repo, job, &stack_name).await? {
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
            app.store.finish(
                job.id,
                JobState::Succeeded,
                &json!({"message": d}),
                &[say(StatusState::Success, d.clone())],
                None,
            )?;
            return Ok(JobState::Succeeded);
        }
        // The stack the folder deployed, as the ledger remembers it: never the folder name.
        let row = app.store.ledger_row(&job.repo, &stack_name)?;
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
            app.store.finish(
                job.id,
                JobState::Failed,
                &json!({"error": d}),
                &[say(StatusState::Failure, d.clone())],
                None,
            )?;
            return Ok(JobState::Failed);
        };
        return remove(app, job, &repo, &stack_name, &identity, detail, events).await;
    };
    let stack = match Stack::load(&files) {
        Ok(s) => s,
        Err(e) => {
            app.store.finish(
                job.id,
                JobState::Failed,
                &json!({"error": e.to_string()}),
                &[say(StatusState::Failure, format!("bad input: {e}"))],
                None,
            )?;
            return Ok(JobState::Failed);
        }
    };

    // The gate, every time: a manual redeploy must pass it as a push does.
    app.store.set_phase(job.id, Phase::Policy, None, None)?;
    let report = app
        .gate((&stack, &files), job.trigger.as_str(), &job.sha, true)
        .await;
    let redact = Redactor::for_stack(&stack).and(&report.hidden);
    detail["policy"] = json!(report);
    if job.trigger == Trigger::Manual {
        app.store.add_statuses(
            Some(job.id),
            &[policy_status(
                &app.cfg,
                job,
                report.verdict,
                report.summary(),
            )],
        )?;
    }
    if report.verdict != Verdict::Pass {
        redact.json(&mut detail);
        app.store.finish(
            job.id,
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

    let region = stack.deployment.region.clone();
    let deployer = app.regions.get(region.as_deref()).await?;
    // Where to resume after a restart.
    detail["region"] = json!(region);
    app.store.set_detail(job.id, &detail)?;
    // One stack, one folder: a manual redeploy is checked as a sync is.
    let account = app.deployer.aws.account().await?.to_string();
    let identity = claims::identity(&account, &app.deployer.aws.region, &stack);
    let claims = app.claims(&repo, &snap).await?;
    if let Some(refusal) = claims.refusal(&stack_name) {
        detail["error"] = json!(refusal.detail);
        let d = refusal.status;
        app.store.finish(
            job.id,
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
        return remove(app, job, &repo, &stack_name, &identity, detail, events).await;
    }

    app.store.add_statuses(
        Some(job.id),
        &[say(StatusState::Pending, "deploying…".into())],
    )?;
    app.report_wake.notify_one();
    app.store.set_phase(job.id, Phase::Planning, None, None)?;
    let mut origin = origin_of(job, &repo, &stack_name);
    origin.moved_from = moved.as_ref().map(|f| app.stacks_path(&job.repo, f));
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let planned = match deployer.prepare(&files, &stack, &origin, &mut sink).await {
        Ok(p) => p,
        Err(e) => return fail(app, job, detail, events, &say, e, &redact),
    };
    detail["changes"] = json!(planned.changes);
    let Some(_) = &planned.changes else {
        deployer
            .discard(&planned.change_set_id, &planned.stack_id, planned.create)
            .await;
        app.store.finish(
            job.id,
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
    // Written before the call: after a crash, resume asks AWS whether it ran.
    app.store.set_phase(
        job.id,
        Phase::Executing,
        Some(&planned.change_set_id),
        Some(&planned.stack_id),
    )?;
    app.store.set_detail(job.id, &detail)?;
    let total = stack.template.resources().len();
    let result = deployer.execute(&planned, total, &mut sink).await;
    let state = finish_deploy(app, job, &stack_name, detail, events, result, &redact)?;
    // The executed change set retagged the stack: the old folder's claim ends. (Without
    // changes the tags stay, and so does the old claim: the move is seen again.)
    if let Some(old) = moved
        && state == JobState::Succeeded
    {
        app.store.retire(&job.repo, &old)?;
    }
    Ok(state)
}

/// The region a deploy job recorded (`None`: the server's own).
fn job_region(detail: &Value) -> Option<&str> {
    detail["region"].as_str()
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
    say: &dyn Fn(StatusState, String) -> StatusUpdate,
    e: DeployError,
    redact: &Redactor,
) -> Result<JobState, JobError> {
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    detail["error"] = json!(e.to_string());
    redact.json(&mut detail);
    app.store.finish(
        job.id,
        JobState::Failed,
        &detail,
        &[say(StatusState::Failure, public_reason(&e))],
        None,
    )?;
    Ok(JobState::Failed)
}

fn finish_deploy(
    app: &App,
    job: &Job,
    stack_name: &str,
    mut detail: Value,
    events: Arc<std::sync::Mutex<Vec<Value>>>,
    result: Result<crate::deployer::Deployed, DeployError>,
    redact: &Redactor,
) -> Result<JobState, JobError> {
    let say = |state: StatusState, d: String| stack_status(&app.cfg, job, stack_name, state, d);
    match result {
        Ok(d) => {
            // Outputs may be secrets: their names only, and values only where public.
            let names: Vec<&str> = d.outputs.iter().map(|(k, _)| k.as_str()).collect();
            tracing::info!(status = %d.status, outputs = %names.join(" "), "deployed");
            detail["outputs"] = redact.outputs(&d.outputs, &app.cfg.public_outputs);
            succeed(
                app,
                job,
                detail,
                &events,
                say(StatusState::Success, d.status),
                (stack_name, false),
                redact,
            )
        }
        Err(e) => fail(app, job, detail, events, &say, e, redact),
    }
}

/// A deploy failure as a commit status says it: public on public repositories, so no AWS
/// error text (account ids, ARNs); the run page has the detail.
fn public_reason(e: &DeployError) -> String {
    match e {
        DeployError::Stack(e) => format!("bad input: {e}"),
        DeployError::Aws(_) => "AWS refused a request; see the run page".into(),
        DeployError::S3(_) => "an artifact upload or bucket check failed; see the run page".into(),
        // The stack's name is the folder's own; who holds it instead stays on the run page.
        DeployError::NotOwned(n) => format!(
            "stack `{}` is not stackgate's to change from this folder; see the run page",
            n.stack
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
        DeployError::RollbackComplete { .. } | DeployError::Busy { .. } => e.to_string(),
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
    redact: &Redactor,
) -> Result<JobState, JobError> {
    detail["events"] = json!(*events.lock().unwrap_or_else(|p| p.into_inner()));
    redact.json(&mut detail);
    app.store.finish(
        job.id,
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
fn owner_of(job: &Job, repo: &RepoConfig, folder: &str) -> Owner {
    Owner {
        repo: Some(job.repo.clone()),
        path: format!("{}/{folder}", repo.stacks_dir),
    }
}

fn origin_of(job: &Job, repo: &RepoConfig, folder: &str) -> Origin {
    let owner = owner_of(job, repo, folder);
    Origin {
        repo: owner.repo,
        sha: Some(job.sha.clone()),
        path: Some(owner.path),
        ..Origin::default()
    }
}

/// The stack a job deploys or removes, as written in its detail before AWS was called.
fn identity_in(detail: &Value) -> Option<StackIdentity> {
    serde_json::from_value(detail.get("identity")?.clone()).ok()
}

async fn remove(
    app: &App,
    job: &Job,
    repo: &RepoConfig,
    folder: &str,
    identity: &StackIdentity,
    mut detail: Value,
    events: Arc<std::sync::Mutex<Vec<Value>>>,
) -> Result<JobState, JobError> {
    let stack_name = identity.name.as_str();
    let say = |state: StatusState, d: String| stack_status(&app.cfg, job, folder, state, d);
    app.store.add_statuses(
        Some(job.id),
        &[say(StatusState::Pending, "removing…".into())],
    )?;
    app.report_wake.notify_one();
    app.store.set_phase(job.id, Phase::Removing, None, None)?;
    detail["stack_name"] = json!(stack_name);
    detail["identity"] = json!(identity);
    // A resumed removal waits for the delete where it runs.
    detail["region"] = json!(identity.region);
    app.store.set_detail(job.id, &detail)?;
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let owner = owner_of(job, repo, folder);
    // The identity's region: a prune has no deployment file to say it.
    let deployer = app.regions.get(Some(identity.region.as_str())).await?;
    match deployer.remove(stack_name, &owner, false, &mut sink).await {
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

/// Re-attaches to a deploy that was in flight when the process died. Never executes a
/// change set twice: AWS says whether it ran.
async fn resume_deploy(
    app: &App,
    job: &Job,
    stack_name: &str,
    r: Resume,
    detail: Value,
) -> Result<JobState, JobError> {
    let events: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let ev = events.clone();
    let mut sink = move |p: Progress<'_>| record(&ev, p);
    let deployer = app.regions.get(job_region(&detail)).await?;
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
                cfn::execute_change_set(cfn_client, &cs).await?;
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
            let repo = app
                .repo(&job.repo)
                .ok_or("repository is no longer configured")?
                .clone();
            remove(app, job, &repo, stack_name, &identity, detail, events).await
        }
        _ => Err("unreachable resume phase".into()),
    }
}

/// The redactor of a resumed deploy's stack, read again from its commit.
async fn resumed_redactor(app: &App, job: &Job, stack_name: &str) -> Redactor {
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
        if let Some(phase @ (Phase::Executing | Phase::Removing)) = job.phase {
            tracing::info!(job = job.id, %phase, "resuming a deploy that was in flight");
            if let Err(e) = app.store.attempt(job.id) {
                tracing::error!(error = %e, "cannot count the attempt");
            }
            tokio::spawn(supervise(app.clone(), job, Some(Resume { phase })));
        } else {
            // Nothing reached AWS that cannot be redone: clean up and run it again.
            if let Some(cs) = &job.change_set_id {
                match app.regions.get(job_region(&job.detail)).await {
                    Ok(d) => {
                        d.discard(cs, job.stack_id.as_deref().unwrap_or(""), true)
                            .await
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot discard the change set"),
                }
            }
            if let Err(e) = app.store.requeue(job.id) {
                tracing::error!(error = %e, "cannot requeue");
            }
        }
    }
    app.wake.notify_one();
}

/// A pull request's dry run: policy and plans for the changed stacks, one comment.
async fn preview(app: &App, job: &Job) -> Result<JobState, JobError> {
    let repo = app
        .repo(&job.repo)
        .ok_or("repository is no longer configured")?
        .clone();
    let pr = job.pr.ok_or("a preview without a pull request")?;
    if let Some(head) = moved_on(app, &repo, job, pr).await? {
        return pr_superseded(app, job, pr, &head);
    }
    let snap = app.snapshot(&repo, &job.sha, Some(pr)).await?;
    let deployed = app.store.deployed(&repo.name)?;
    let (changed, _) = app.changed_stacks(&repo, &snap, &deployed).await?;
    let mut statuses = Vec::new();
    let mut worst = Verdict::Pass;
    let mut sections = Vec::new();
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
                sections.push(comment::bad_input(name, &e.to_string()));
                continue;
            }
        };
        let report = app
            .gate((&stack, &files), "pull_request", &job.sha, !job.fork)
            .await;
        // The comment is public, and policy messages quote values, NoEcho ones too.
        let redact = Redactor::for_stack(&stack).and(&report.hidden);
        if report.verdict != Verdict::Pass && worst != Verdict::Error {
            worst = report.verdict;
        }
        let context = Context::Plan(name.clone());
        let say = |state, d: String| {
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
        let planned = if report.verdict != Verdict::Pass || job.fork || stack.deployment.remove {
            None
        } else {
            let origin = origin_of(job, &repo, name);
            let mut sink = |_p: Progress<'_>| {};
            Some(
                match app.regions.get(stack.deployment.region.as_deref()).await {
                    Ok(d) => d.plan(&files, &stack, &origin, &mut sink).await,
                    Err(e) => Err(DeployError::Stack(crate::stack::StackError::Io {
                        file: stack.deployment_file.clone(),
                        message: e.to_string(),
                    })),
                },
            )
        };
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
        let section = comment::stack_section(name, &stack.template.file, &report, &redact, plan);
        detail["stacks"][name] = json!({"policy": report});
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
    statuses.insert(0, policy_status(&app.cfg, job, worst, description));
    let body = comment::body(
        &job.sha,
        &summary,
        &sections,
        job.id,
        &app.cfg.run_url(job.id),
    );
    // The head may have moved while this ran: its comment is the newer head's to write.
    if let Some(head) = moved_on(app, &repo, job, pr).await? {
        return pr_superseded(app, job, pr, &head);
    }
    detail["comment"] = json!(&body);
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
    app.store
        .finish_with(job.id, state, &detail, Some(&comment), &statuses, None)?;
    Ok(state)
}

/// The pull request's current head, when it is not the job's commit: a replayed or late
/// delivery, or a push to the pull request since. A head the remote does not have is an error.
async fn moved_on(
    app: &App,
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
fn pr_superseded(app: &App, job: &Job, pr: u64, head: &str) -> Result<JobState, JobError> {
    let said = status(
        &app.cfg,
        &job.repo,
        &job.sha,
        Context::Policy,
        StatusState::Error,
        format!(
            "superseded by {} on pull request #{pr}; not previewed",
            short(head)
        ),
        job.id,
    );
    app.store.finish(
        job.id,
        JobState::Superseded,
        &json!({"superseded_by": head}),
        &[said],
        None,
    )?;
    Ok(JobState::Superseded)
}
