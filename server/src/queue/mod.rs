//! queue: the state stackgate owns (deliveries, jobs, the deployed ledger, the outbox of
//! statuses and comments still to post), behind small role traits. `sqlite/` implements
//! them in one file (WAL); `lanes` holds the pure rules of which job runs or supersedes.
//! Every change that must not be lost is one transaction.

#[cfg(test)]
pub mod conformance;
pub mod copy;
pub mod lanes;
pub mod lease;
pub mod migrations;
pub mod postgres;
pub mod recorder;
pub mod sqlite;

use serde::Serialize;

use crate::domain::{
    Annotation, CheckState, Context, Decision, DriftState, JobId, JobState, Kind, Phase,
    StackIdentity, StatusState, Trigger,
};
use lease::{Claim, Lease, Orphans};

pub use sqlite::Store;

/// The state database failed, or refused a write of a worker that no longer holds its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend's error, whatever the backend (an unreadable row says so itself).
    #[error("state database: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached (no connection, a connection that broke, the server
    /// shutting down, no answer in time): it says nothing of the work, which goes on once
    /// it answers again.
    #[error("state database: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The write named a claim whose fence is no longer the job's: another replica took the
    /// job over (or it ended). Nothing was changed; the worker must stop, posting nothing.
    #[error("{0}: lease lost; another worker took the job over, or it ended; nothing written")]
    LeaseLost(Claim),
}

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// A row holding a name this version has no value for (a kind, a state…): it was written
/// by another version of stackgate. It is left out of what is read, and ended; the rest of
/// the queue goes on.
#[derive(Debug, thiserror::Error)]
#[error(
    "{table} row {id}, column {column}: {name}; the row was written by another version of stackgate, so this one ends it: redo its work (a redeploy, a push) or run that version"
)]
pub struct UnreadableRow {
    pub table: &'static str,
    pub id: i64,
    pub column: String,
    pub name: crate::domain::UnknownName,
}

/// A job to enqueue. No `Default`: a job that forgot its kind or trigger would be a sync,
/// or a push, which changes the policy event and what it is folded into.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: Kind,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub pr: Option<u64>,
    pub fork: bool,
    pub trigger: Trigger,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: Kind,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub pr: Option<u64>,
    pub fork: bool,
    pub trigger: Trigger,
    pub state: JobState,
    pub phase: Option<Phase>,
    pub change_set_id: Option<String>,
    pub stack_id: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub superseded_by: Option<JobId>,
    /// How many times a worker took it up: claimed, or resumed after a restart.
    pub attempts: i64,
    /// The fencing token of its latest claim or takeover: grows on each.
    pub fence: i64,
    /// The replica holding its lease while it runs.
    pub owner: Option<String>,
    /// Until when (ms since the epoch) the owner's lease holds, unless renewed.
    pub lease_until: Option<i64>,
}

impl Job {
    /// What a worker names in its writes to this job.
    pub fn claim(&self) -> Claim {
        Claim {
            job: self.id,
            fence: self.fence,
        }
    }

    /// The job as the console lists it.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            id: self.id,
            kind: self.kind,
            repo: self.repo.clone(),
            stack: self.stack.clone(),
            sha: self.sha.clone(),
            pr: self.pr,
            trigger: self.trigger,
            state: self.state,
            phase: self.phase,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            verdict: self.detail["policy"]["verdict"]
                .as_str()
                .map(str::to_string),
            identity: serde_json::from_value(self.detail["identity"].clone()).ok(),
        }
    }

    /// The job as it was asked for.
    pub fn as_new(&self) -> NewJob {
        NewJob {
            kind: self.kind,
            repo: self.repo.clone(),
            stack: self.stack.clone(),
            sha: self.sha.clone(),
            pr: self.pr,
            fork: self.fork,
            trigger: self.trigger,
        }
    }

    /// A job of a batch as stored when a later job of the batch superseded it at birth.
    pub fn superseded(id: JobId, job: &NewJob, by: JobId, at: i64) -> Job {
        Job {
            id,
            kind: job.kind,
            repo: job.repo.clone(),
            stack: job.stack.clone(),
            sha: job.sha.clone(),
            pr: job.pr,
            fork: job.fork,
            trigger: job.trigger,
            state: JobState::Superseded,
            phase: None,
            change_set_id: None,
            stack_id: None,
            detail: serde_json::Value::Object(Default::default()),
            created_at: at,
            started_at: None,
            finished_at: Some(at),
            superseded_by: Some(by),
            attempts: 0,
            fence: 0,
            owner: None,
            lease_until: None,
        }
    }
}

/// One webhook delivery and the jobs it asks for.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery: String,
    pub event: String,
    pub repo: Option<String>,
    pub jobs: Vec<NewJob>,
}

/// A commit status waiting to be posted.
#[derive(Debug, Clone, Serialize)]
pub struct PendingStatus {
    pub id: i64,
    pub repo: String,
    pub sha: String,
    /// The context as posted (`stackgate/…`).
    pub context: String,
    pub state: StatusState,
    pub description: String,
    pub target_url: String,
    pub attempts: i64,
    /// The pull request of the job that recorded it: it waits behind that PR's comment.
    pub pr: Option<u64>,
}

/// A status to record; the outbox poster posts it later, in order.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub repo: String,
    pub sha: String,
    pub context: Context,
    pub state: StatusState,
    pub description: String,
    pub target_url: String,
}

/// A pull request comment to record; the outbox poster writes it into the PR's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentUpdate {
    pub repo: String,
    pub pr: u64,
    pub body: String,
}

/// A check run to record: created the first time its job names it, updated after. The
/// outbox poster posts it later, in order, its annotations 50 a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    pub repo: String,
    pub sha: String,
    /// The check run's name, as the status context is (`stackgate/policy`, …).
    pub context: Context,
    pub state: CheckState,
    pub title: String,
    /// Markdown, at most 65,535 characters (GitHub refuses more).
    pub summary: String,
    pub annotations: Vec<Annotation>,
    pub details_url: String,
    /// What a `check_run` `rerequested` event hands back: the pull request to preview again.
    pub external_id: String,
}

/// A check run waiting to be posted; `job` and `name` name the check run it writes.
#[derive(Debug, Clone)]
pub struct PendingCheck {
    pub id: i64,
    pub job: JobId,
    pub repo: String,
    pub sha: String,
    pub name: String,
    pub state: CheckState,
    pub title: String,
    pub summary: String,
    pub annotations: Vec<Annotation>,
    pub details_url: String,
    pub external_id: String,
    pub attempts: i64,
    /// When it was recorded (ms since the epoch): a write is given up on after a while.
    pub created_at: i64,
}

/// How a check run ends that its job started and no longer runs (its stack left the
/// pull request's changes before the job ran again).
pub const NOT_IN_RUN: &str = "not part of this dry run any more";

/// How the check runs of a queued job end when `newer` supersedes it.
pub fn superseded_checks(newer: &NewJob) -> String {
    let sha: String = newer.sha.chars().take(7).collect();
    format!("superseded by {sha}")
}

/// What a job's end tells GitHub: its statuses, and for a pull request its comment and
/// check runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outbound<'a> {
    pub comment: Option<&'a CommentUpdate>,
    pub statuses: &'a [StatusUpdate],
    pub checks: &'a [CheckUpdate],
}

/// A pull request comment waiting to be posted. It goes after the statuses up to
/// `after_status`, which were recorded before it.
#[derive(Debug, Clone)]
pub struct PendingComment {
    pub id: i64,
    pub repo: String,
    pub pr: u64,
    pub body: String,
    pub after_status: i64,
    pub attempts: i64,
}

/// A stack folder's line in the deployed ledger, written as its job ends.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEntry<'a> {
    pub repo: &'a str,
    /// The stack folder.
    pub stack: &'a str,
    pub sha: &'a str,
    pub removed: bool,
    /// The CloudFormation stack the folder deployed; `None` keeps what the ledger has.
    pub identity: Option<&'a StackIdentity>,
}

/// A folder's last deploy, as the ledger remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub sha: String,
    pub removed: bool,
    /// `None` for rows written before the ledger kept the stack's identity.
    pub identity: Option<StackIdentity>,
}

/// What [`Jobs::recover`] took over: jobs whose worker died (or lost its lease).
#[derive(Debug, Default)]
pub struct Recovered {
    /// Deploys to resume or run again.
    pub resume: Vec<Job>,
    /// Jobs that took the worker down [`MAX_ATTEMPTS`] times.
    pub poisoned: Vec<Job>,
}

/// What [`History::prune`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: usize,
    pub statuses: usize,
    /// PR comments posted or given up on.
    pub comments: usize,
    /// Check run writes posted or given up on, and the ids of old check runs.
    pub checks: usize,
    pub deliveries: usize,
}

/// Who to wake when the queue changes.
#[derive(Default)]
pub struct Wake {
    /// The dispatcher: new work, or a job ended.
    pub jobs: tokio::sync::Notify,
    /// The outbox poster: statuses or comments were queued.
    pub outbox: std::sync::Arc<tokio::sync::Notify>,
    /// The drift scheduler: a drift check ended, so there may be room for the next one.
    pub drift: tokio::sync::Notify,
}

/// How long a queued sync waits for newer pushes before it runs.
pub const SYNC_DEBOUNCE_MS: i64 = 200;

/// A job that took its worker down (a crash, or a deadline) this many times is failed, not
/// retried: one that kills the process would otherwise kill it at every restart.
pub const MAX_ATTEMPTS: i64 = 2;

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs queue work off the async workers (a commit may wait on fsync), in the caller's
/// span.
pub async fn blocking<Q: ?Sized + Send + Sync + 'static, T: Send + 'static>(
    queue: &std::sync::Arc<Q>,
    f: impl FnOnce(&Q) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (queue, span) = (queue.clone(), tracing::Span::current());
    tokio::task::spawn_blocking(move || span.in_scope(|| f(queue.as_ref())))
        .await
        .map_err(StoreError::backend)?
}

/// The statuses a job gets when it is queued.
pub type QueuedStatuses<'a> = &'a dyn Fn(&NewJob, JobId) -> Vec<StatusUpdate>;
/// The statuses a queued job gets when a newer one supersedes it.
pub type SupersededStatuses<'a> = &'a dyn Fn(&Job, &NewJob) -> Vec<StatusUpdate>;

/// The statuses jobs get as they are queued or superseded: `report` words them.
pub trait Announce: Send + Sync {
    fn queued(&self, job: &NewJob, id: JobId) -> Vec<StatusUpdate>;
    fn superseded(&self, old: &Job, new: &NewJob) -> Vec<StatusUpdate>;
}

/// Webhook deliveries, each recorded once with its jobs.
pub trait Deliveries {
    /// Records a batch of deliveries in one transaction (group commit). For each, `None`
    /// when its delivery id was seen before.
    fn record_deliveries(
        &self,
        batch: &[DeliveryRecord],
        status_for: QueuedStatuses<'_>,
        superseded_status: SupersededStatuses<'_>,
    ) -> Result<Vec<Option<Vec<JobId>>>, StoreError>;

    fn delivery_count(&self) -> Result<i64, StoreError>;
}

/// Jobs: enqueued by lane, claimed one per lane under a lease, ended once. Every write a
/// worker makes to its job names its [`Claim`] and fails with [`StoreError::LeaseLost`],
/// changing nothing, when the claim's fence is no longer the job's.
pub trait Jobs {
    /// Enqueues jobs (manual, poll, or a sync's expansion), superseding queued ones.
    fn enqueue(
        &self,
        jobs: &[NewJob],
        status_for: QueuedStatuses<'_>,
        superseded_status: SupersededStatuses<'_>,
    ) -> Result<Vec<JobId>, StoreError>;

    /// Claims up to `limit` queued jobs whose lane has nothing running, oldest first, each
    /// into a lease of `lease.owner` for `lease.length`, under a new fence.
    fn claim(&self, lease: &Lease, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Extends the leases of `claims` that `lease.owner` still holds by `lease.length` from
    /// now; those claims (a job taken over, or ended, is not among them). Only the claims a
    /// worker here runs: a job no worker runs any more (it stopped, its guard lapsed) must
    /// expire, for a takeover to pick it up.
    fn renew(&self, lease: &Lease, claims: &[Claim]) -> Result<Vec<Claim>, StoreError>;

    /// Takes over running jobs (`orphans`: those whose lease expired, this owner's too, or
    /// all): owner set, a new fence, a fresh lease. The jobs as now held; their attempt is
    /// counted where work resumes ([`Jobs::attempt`]) or by the next claim.
    fn take_over(&self, lease: &Lease, orphans: Orphans) -> Result<Vec<Job>, StoreError>;

    /// Which running jobs a starting replica takes over: [`Orphans::All`] on a backend one
    /// process owns (whatever ran before it is dead), [`Orphans::Expired`] on one shared by
    /// replicas (a live lease is another replica's work).
    fn orphans_at_start(&self) -> Orphans;

    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    fn jobs_in_state(&self, state: JobState) -> Result<Vec<Job>, StoreError>;

    fn recent_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Hands back the leases of `lease.owner` when the service stops cleanly: expired at
    /// once, for the next start or another replica to take over, and the attempt taken
    /// back (only a crash counts towards [`MAX_ATTEMPTS`]). How many jobs were running.
    fn release(&self, lease: &Lease) -> Result<usize, StoreError>;

    /// Counts one more attempt of a running job (a deploy resumed after a takeover).
    fn attempt(&self, claim: Claim) -> Result<(), StoreError>;

    /// Puts a running job back in the queue; its lease ends.
    fn requeue(&self, claim: Claim) -> Result<(), StoreError>;

    /// Records where a deploy stands; written before each step that AWS cannot undo.
    fn set_phase(
        &self,
        claim: Claim,
        phase: Phase,
        change_set_id: Option<&str>,
        stack_id: Option<&str>,
    ) -> Result<(), StoreError>;

    fn set_detail(&self, claim: Claim, detail: &serde_json::Value) -> Result<(), StoreError>;

    /// Ends a job, queues its statuses, comment and check runs, and writes its ledger line,
    /// in one transaction. The comment goes before the statuses.
    fn finish_with(
        &self,
        claim: Claim,
        state: JobState,
        detail: &serde_json::Value,
        out: Outbound<'_>,
        deployed: Option<LedgerEntry<'_>>,
    ) -> Result<(), StoreError>;

    /// Ends a job and queues its statuses in one transaction.
    fn finish(
        &self,
        claim: Claim,
        state: JobState,
        detail: &serde_json::Value,
        statuses: &[StatusUpdate],
        deployed: Option<LedgerEntry<'_>>,
    ) -> Result<(), StoreError> {
        let out = Outbound {
            statuses,
            ..Outbound::default()
        };
        self.finish_with(claim, state, detail, out, deployed)
    }

    /// The commit of each stack's newest queued or running deploy: what the stack will be
    /// once the queue drains.
    fn pending_deploys(&self, repo: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// (queued, running) job counts.
    fn depth(&self) -> Result<(i64, i64), StoreError>;

    /// Takes over the running jobs whose worker is gone ([`Jobs::take_over`]), puts the
    /// sync and preview jobs among them back in the queue (they are idempotent) and returns
    /// the deploys to resume. Jobs that were running at [`MAX_ATTEMPTS`] crashes are not:
    /// they come back in `poisoned`, to end.
    fn recover(&self, lease: &Lease, orphans: Orphans) -> Result<Recovered, StoreError> {
        let mut out = Recovered::default();
        for job in self.take_over(lease, orphans)? {
            if job.attempts >= MAX_ATTEMPTS {
                out.poisoned.push(job);
            } else if job.kind == Kind::Deploy {
                out.resume.push(job);
            } else {
                self.requeue(job.claim())?;
            }
        }
        Ok(out)
    }
}

/// What is still to tell GitHub: commit statuses and PR comments, posted in order.
pub trait Outbox {
    /// Whether this process is the one poster now. With several replicas on one database
    /// one of them posts at a time, so that each status and comment goes once and in order;
    /// the others stand by and ask again. A backend of one process always is.
    fn may_post(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Queues statuses outside a job's end (e.g. "pending" as a step starts). With a
    /// claim, only while it holds the job ([`StoreError::LeaseLost`] otherwise).
    fn add_statuses(&self, job: Option<Claim>, statuses: &[StatusUpdate])
    -> Result<(), StoreError>;

    fn unposted_statuses(&self, limit: usize) -> Result<Vec<PendingStatus>, StoreError>;

    /// Marks several statuses posted in one transaction.
    fn statuses_posted(&self, ids: &[i64]) -> Result<(), StoreError>;

    fn status_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError>;

    fn unposted_comments(&self, limit: usize) -> Result<Vec<PendingComment>, StoreError>;

    /// Marks a comment posted, and remembers the PR's comment id (`None`: nothing posted,
    /// as without GitHub).
    fn comment_posted(&self, id: i64, comment: Option<(&str, u64, u64)>) -> Result<(), StoreError>;

    /// Counts a failed post of a comment; `error` also goes on its job's detail as
    /// `comment_error`, for the run page, until the comment is posted.
    fn comment_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError>;

    /// The id of the comment stackgate wrote on a pull request.
    fn pr_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>, StoreError>;

    /// Queues check run writes while `job` holds its job (e.g. "in progress" as it starts).
    fn add_checks(&self, job: Claim, checks: &[CheckUpdate]) -> Result<(), StoreError>;

    /// Check run writes still to post, oldest first, less the check runs whose write
    /// `held` (ids) waits on a retry: one stuck check run does not fill the batch. One whose
    /// state this version cannot read is given up on.
    fn unposted_checks(&self, limit: usize, held: &[i64]) -> Result<Vec<PendingCheck>, StoreError>;

    /// Remembers the id GitHub gave job `job`'s check run `name`, so that its later writes
    /// update it.
    fn keep_check_run(&self, job: JobId, name: &str, check_run: u64) -> Result<(), StoreError>;

    /// The id of job `job`'s check run `name`, once GitHub made it.
    fn check_run(&self, job: JobId, name: &str) -> Result<Option<u64>, StoreError>;

    /// Ends, with `state`, every check run job `job` started and has not ended, while its
    /// claim holds it (a job that stops before its verdict: an error, a newer head). Says
    /// how many it ended.
    fn end_checks(
        &self,
        job: Claim,
        state: CheckState,
        title: &str,
        summary: &str,
    ) -> Result<usize, StoreError>;

    fn check_posted(&self, id: i64) -> Result<(), StoreError>;

    fn check_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError>;
}

/// The deployed ledger: the last deployed sha and stack of each folder.
pub trait Ledger {
    /// The last deployed sha of each stack of a repo, and whether it was a removal.
    fn deployed(&self, repo: &str) -> Result<Vec<(String, String, bool)>, StoreError>;

    /// Marks a folder's stack as no longer its own (it moved to another folder) without
    /// any AWS call.
    fn retire(&self, repo: &str, stack: &str) -> Result<(), StoreError>;

    /// What the ledger remembers of one stack folder's last deploy.
    fn ledger_row(&self, repo: &str, stack: &str) -> Result<Option<LedgerRow>, StoreError>;

    /// The (repo, stack folder, sha) of every live row from before the ledger kept
    /// identities.
    fn live_unidentified(&self) -> Result<Vec<(String, String, String)>, StoreError>;

    /// Fills in the identity of a row from before the ledger kept identities.
    fn fill_identity(&self, repo: &str, stack: &str, id: &StackIdentity) -> Result<(), StoreError>;

    /// The (repo, stack folder) of every live stack of the ledger, by its identity.
    fn live_identities(&self) -> Result<Vec<(StackIdentity, String, String)>, StoreError>;
}

/// A stack folder's latest drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftRow {
    pub repo: String,
    pub stack: String,
    /// The deployed commit it was checked against.
    pub sha: String,
    /// The drift job: its detail has every resource's drift.
    pub job: JobId,
    pub state: DriftState,
    /// Resources changed or deleted outside stackgate.
    pub drifted: i64,
    /// Findings on the live state that the deployed template does not have.
    pub live_findings: i64,
    pub checked_at: i64,
}

/// Drift checks: each stack's latest (the drift jobs keep the history).
pub trait Drifts {
    /// Records a check as the latest of its stack, while `claim` holds its job; the check
    /// it replaces, if any (a new drift is the one whose previous check was in sync).
    fn record_drift(&self, claim: Claim, row: &DriftRow) -> Result<Option<DriftRow>, StoreError>;

    /// Every stack's latest check.
    fn drifts(&self) -> Result<Vec<DriftRow>, StoreError>;
}

/// A decision on a held change set, as its job records it (`detail.decision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Decided {
    pub decision: Decision,
    /// Who decided: the operator's name, or `stackgate` when the approval expired.
    pub by: String,
    /// When (ms since the epoch).
    pub at: i64,
}

/// Why a decision on a run was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecidable {
    #[error("run {0} does not exist")]
    NotFound(JobId),
    #[error("run {id} is {state}, not awaiting approval")]
    NotHeld { id: JobId, state: JobState },
    #[error("run {id} is superseded by run {newer} of the same stack; decide on that one")]
    Newer { id: JobId, newer: JobId },
}

/// Held change sets: deploys that wait for an operator. A job is held by ending it in
/// [`JobState::Held`] ([`Jobs::finish_with`], which leaves its phase [`Phase::Held`]).
pub trait Holds {
    /// Records a decision on a held job and queues it again, for a worker to execute or
    /// delete its change set. Not taken when the job is not held, or when a newer job of
    /// its lane is queued, running or held: that one has the stack's next change.
    fn decide(&self, id: JobId, decided: &Decided) -> Result<Result<Job, Undecidable>, StoreError>;

    /// The deploys of a stack folder older than `before` whose held change set is still
    /// there: held, or superseded before it ran. The job `before` runs in their lane.
    fn stale_holds(&self, repo: &str, stack: &str, before: JobId) -> Result<Vec<Job>, StoreError>;

    /// Marks a stale hold's change set as gone, superseded by `by` if it was still held,
    /// and queues its statuses. False when it was no longer a hold.
    fn close_hold(
        &self,
        id: JobId,
        by: JobId,
        statuses: &[StatusUpdate],
    ) -> Result<bool, StoreError>;
}

/// Forgetting old history.
pub trait History {
    /// Forgets history older than `before` (ms since the epoch): finished jobs (except the
    /// last one that ran in each lane, which the stack pages show), statuses GitHub has or
    /// that were given up on, and delivery ids. Live jobs and unposted statuses stay.
    fn prune(&self, before: i64, batch: usize) -> Result<Pruned, StoreError>;
}

/// A run as the console lists it: the job without its detail, and the few facts of the
/// detail a list shows, read by the database (a list never parses whole details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub id: JobId,
    pub kind: Kind,
    pub repo: String,
    pub stack: Option<String>,
    pub sha: String,
    pub pr: Option<u64>,
    pub trigger: Trigger,
    pub state: JobState,
    pub phase: Option<Phase>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The policy verdict the job recorded (`pass`, `fail`, `error`), once it got there.
    pub verdict: Option<String>,
    /// The CloudFormation stack the job deploys, as its detail names it.
    pub identity: Option<StackIdentity>,
}

/// One line of the deployed ledger, with the folder it is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerLine {
    pub repo: String,
    pub stack: String,
    pub row: LedgerRow,
    /// When it was written (ms since the epoch).
    pub at: i64,
}

/// The operator console's reads. Each is one query, bounded by its caller.
pub trait Console {
    /// Every line of the deployed ledger, of every repository, by repository and folder.
    fn ledger_lines(&self) -> Result<Vec<LedgerLine>, StoreError>;

    /// The newest job of every stack lane (superseded ones left out), by repository and
    /// folder: one query, however many stacks.
    fn lane_heads(&self) -> Result<Vec<RunSummary>, StoreError>;

    /// A stack folder's deploys, newest first: `limit` of them after the newest `offset`.
    fn stack_runs(
        &self,
        repo: &str,
        stack: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunSummary>, StoreError>;

    /// A stack folder's newest deploy that succeeded (`with_outputs`: and recorded outputs).
    fn last_succeeded(
        &self,
        repo: &str,
        stack: &str,
        with_outputs: bool,
    ) -> Result<Option<Job>, StoreError>;

    /// A pull request's preview jobs, newest first, at most `limit`.
    fn pr_runs(&self, repo: &str, pr: u64, limit: usize) -> Result<Vec<Job>, StoreError>;
}

/// Every role: what the service holds.
pub trait Queue:
    Deliveries + Jobs + Outbox + Ledger + Drifts + Holds + History + Console + Send + Sync
{
}

impl<T> Queue for T where
    T: Deliveries + Jobs + Outbox + Ledger + Drifts + Holds + History + Console + Send + Sync
{
}
