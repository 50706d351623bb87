//! Posts the check run writes the outbox holds, in order: a job's first write of a check
//! run creates it, the next ones update it by the id GitHub gave, which the queue keeps.
//! Annotations go 50 a request, each update adding its own. A write GitHub refuses for now
//! is retried with backoff (as long as GitHub asks, when it says), and holds back only the
//! later writes of its own check run: the others, and statuses and comments, go on. An
//! ending write is tried for hours, since a check run left in progress blocks a merge;
//! one GitHub refuses for good is sent once more, short and without annotations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::JobId;
use crate::github::{ANNOTATIONS_PER_REQUEST, CheckRunPost, GitHub, GithubError, GithubErrorKind};
use crate::policy::truncate;
use crate::queue::{Outbox, PendingCheck, blocking, now};

/// Check run writes read at a time.
const CHECK_BATCH: usize = 20;
/// An `in_progress` write GitHub keeps refusing for now is given up on after this many
/// tries: the ending write that follows says more.
const START_TRIES: i64 = 6;
/// An ending write GitHub keeps refusing for now is given up on this long after it was
/// recorded.
const ENDING_FOR: Duration = Duration::from_secs(6 * 3600);
/// The longest wait between two tries of a write, unless GitHub asks for longer.
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// What one round of check runs did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckRound {
    pub posted: usize,
    /// The queue could not read or keep what it must: nothing more went. (A write waiting
    /// on its own retry does not stall the poster.)
    pub stalled: bool,
    pub behind: bool,
}

/// A write part-way: the check run GitHub made, whether the queue keeps its id yet, and
/// how many annotation batches went.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    run: Option<u64>,
    saved: bool,
    sent: usize,
}

/// How one write went.
enum Outcome {
    Posted,
    /// Refused for now; its check run's later writes wait.
    Retry,
    GaveUp,
    /// The queue could not read or keep what it must: nothing more goes this round.
    QueueDown,
}

/// Why a write did not go.
struct Failure {
    error: String,
    retryable: bool,
    /// GitHub refused it as it is (403, 422): a shorter write may still go.
    refused: bool,
    retry_after: Option<Duration>,
}

impl From<GithubError> for Failure {
    fn from(e: GithubError) -> Self {
        Failure {
            retryable: e.retryable(),
            refused: matches!(
                e.kind,
                GithubErrorKind::Permission | GithubErrorKind::Other { retry: false }
            ),
            retry_after: e.retry_after,
            error: e.to_string(),
        }
    }
}

/// The check run poster, and what it remembers between rounds (lost at a restart: then a
/// write part-way sends its annotation batches again).
pub struct CheckPoster {
    progress: HashMap<i64, Progress>,
    retry_at: HashMap<i64, Instant>,
    pub(super) wait: Duration,
}

impl Default for CheckPoster {
    fn default() -> Self {
        CheckPoster {
            progress: HashMap::new(),
            retry_at: HashMap::new(),
            wait: Duration::from_millis(400),
        }
    }
}

impl CheckPoster {
    /// Posts the check run writes waiting, once, oldest first.
    pub async fn round<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        github: &dyn GitHub,
    ) -> CheckRound {
        // The writes not yet due again: their check runs are left out of the read.
        let now = Instant::now();
        let waiting: Vec<i64> = self
            .retry_at
            .iter()
            .filter(|(_, at)| now < **at)
            .map(|(id, _)| *id)
            .collect();
        let checks = match blocking(queue, move |q| q.unposted_checks(CHECK_BATCH, &waiting)).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the check runs to post");
                return CheckRound {
                    stalled: true,
                    ..CheckRound::default()
                };
            }
        };
        let mut round = CheckRound {
            behind: checks.len() >= CHECK_BATCH,
            ..CheckRound::default()
        };
        // The check runs whose write waits on a retry: their later writes wait with it.
        let mut held: HashSet<(JobId, String)> = HashSet::new();
        for c in &checks {
            let key = (c.job, c.name.clone());
            if held.contains(&key) {
                continue;
            }
            match self.post(queue, github, c).await {
                Outcome::Posted => round.posted += 1,
                Outcome::GaveUp => {}
                Outcome::Retry => {
                    held.insert(key);
                }
                Outcome::QueueDown => {
                    round.stalled = true;
                    break;
                }
            }
        }
        round
    }

    async fn post<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        github: &dyn GitHub,
        c: &PendingCheck,
    ) -> Outcome {
        let mut p = self.progress.remove(&c.id).unwrap_or_default();
        if p.run.is_none() {
            let (job, name) = (c.job, c.name.clone());
            match blocking(queue, move |q| q.check_run(job, &name)).await {
                Ok(run) => (p.run, p.saved) = (run, true),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the check run's id");
                    let failure = Failure {
                        error: e.to_string(),
                        retryable: true,
                        refused: false,
                        retry_after: None,
                    };
                    return self.failed(queue, github, c, p, failure).await;
                }
            }
        }
        let batches = c.annotations.len().div_ceil(ANNOTATIONS_PER_REQUEST).max(1);
        loop {
            if !self.keep(queue, c, &mut p).await {
                self.progress.insert(c.id, p);
                return Outcome::QueueDown;
            }
            if p.sent >= batches {
                break;
            }
            let from = p.sent * ANNOTATIONS_PER_REQUEST;
            let to = (from + ANNOTATIONS_PER_REQUEST).min(c.annotations.len());
            let post = CheckRunPost {
                repo: &c.repo,
                sha: &c.sha,
                name: &c.name,
                state: c.state,
                title: &c.title,
                summary: &c.summary,
                annotations: &c.annotations[from.min(to)..to],
                details_url: &c.details_url,
                external_id: &c.external_id,
            };
            match github.upsert_check_run(p.run, post).await {
                Ok(written) => {
                    p.wrote(written);
                    p.sent += 1;
                }
                Err(e) => return self.failed(queue, github, c, p, e.into()).await,
            }
        }
        let id = c.id;
        if let Err(e) = blocking(queue, move |q| q.check_posted(id)).await {
            tracing::error!(error = %e, "cannot mark the check run posted");
            self.progress.insert(c.id, p);
            return Outcome::QueueDown;
        }
        self.retry_at.remove(&c.id);
        Outcome::Posted
    }

    /// Has the queue keep the id of the check run GitHub made, if it is new; false when it
    /// cannot.
    async fn keep<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &self,
        queue: &Arc<Q>,
        c: &PendingCheck,
        p: &mut Progress,
    ) -> bool {
        if let (Some(run), false) = (p.run, p.saved) {
            let (job, name) = (c.job, c.name.clone());
            if let Err(e) = blocking(queue, move |q| q.keep_check_run(job, &name, run)).await {
                tracing::error!(error = %e, "cannot keep the check run's id; nothing more goes until it is");
                return false;
            }
            p.saved = true;
        }
        true
    }

    /// Counts a failed try: retried later from where it stopped, or given up on (an
    /// ending write refused for good first goes once more, short).
    async fn failed<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        github: &dyn GitHub,
        c: &PendingCheck,
        mut p: Progress,
        f: Failure,
    ) -> Outcome {
        let ending = c.state.conclusion().is_some();
        let age = Duration::from_millis(now().saturating_sub(c.created_at).max(0) as u64);
        let retry = f.retryable
            && if ending {
                age < ENDING_FOR
            } else {
                c.attempts + 1 < START_TRIES
            };
        let error = f.error;
        if retry {
            tracing::warn!(%error, job = %c.job, name = %c.name, attempt = c.attempts + 1, "check run not posted; retrying");
        } else {
            tracing::warn!(%error, job = %c.job, name = %c.name, "cannot post the check run; giving up on this write");
        }
        let id = c.id;
        let said = error.clone();
        if let Err(e) = blocking(queue, move |q| q.check_failed(id, &said, !retry)).await {
            tracing::error!(error = %e, "cannot record a failed check run");
        }
        if retry {
            let backoff = self
                .wait
                .saturating_mul(2u32.pow(c.attempts.clamp(0, 16) as u32))
                .min(MAX_WAIT);
            let wait = f.retry_after.map_or(backoff, |asked| asked.max(backoff));
            self.retry_at.insert(c.id, Instant::now() + wait);
            self.progress.insert(c.id, p);
            return Outcome::Retry;
        }
        self.retry_at.remove(&c.id);
        if ending && f.refused {
            self.fall_back(github, c, &mut p, &error).await;
        }
        // Its check run's later writes still go, updating the run GitHub made, if any.
        if !self.keep(queue, c, &mut p).await {
            tracing::error!("cannot keep the check run's id");
        }
        Outcome::GaveUp
    }

    /// The one short write after an ending write refused for good: its conclusion, and
    /// a summary saying why the rest is missing, without annotations.
    async fn fall_back(
        &self,
        github: &dyn GitHub,
        c: &PendingCheck,
        p: &mut Progress,
        error: &str,
    ) {
        let summary = format!(
            "stackgate could not post this check run's full report; GitHub said: {}",
            truncate(error, 1000)
        );
        let post = CheckRunPost {
            repo: &c.repo,
            sha: &c.sha,
            name: &c.name,
            state: c.state,
            title: &c.title,
            summary: &summary,
            annotations: &[],
            details_url: &c.details_url,
            external_id: &c.external_id,
        };
        match github.upsert_check_run(p.run, post).await {
            Ok(written) => p.wrote(written),
            Err(e) => {
                tracing::warn!(error = %e, job = %c.job, name = %c.name, "cannot post the short ending either")
            }
        }
    }
}

impl Progress {
    /// Notes the id a write returned: a new one is to keep.
    fn wrote(&mut self, written: Option<u64>) {
        if written.is_some() && written != self.run {
            (self.run, self.saved) = (written, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;
    use crate::domain::{
        Annotation, AnnotationLevel, CheckState, Context, JobState, Kind, Trigger,
    };
    use crate::github::fake::{Call, FakeGithub};
    use crate::github::{GithubError, GithubErrorKind};
    use crate::queue::{CheckUpdate, NewJob, Outbound, Queue, Store};

    fn queue() -> (tempfile::TempDir, Arc<dyn Queue>) {
        let dir = tempfile::tempdir().unwrap();
        let q = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        (dir, Arc::new(q))
    }

    fn update(repo: &str, context: Context, state: CheckState, findings: u32) -> CheckUpdate {
        CheckUpdate {
            repo: repo.into(),
            sha: "aaaaaaa1".into(),
            context,
            state,
            title: state.to_string(),
            summary: "summary".into(),
            annotations: (1..=findings)
                .map(|l| Annotation {
                    path: "stacks/web/template.yaml".into(),
                    start_line: l,
                    end_line: l,
                    annotation_level: AnnotationLevel::Failure,
                    title: "rule on Bucket".into(),
                    message: format!("line {l}"),
                })
                .collect(),
            details_url: "http://x/runs/1".into(),
            external_id: "pr/7".into(),
        }
    }

    /// A preview that started its two check runs and ended them, the gate's with
    /// `findings` annotations.
    fn preview_with_checks(q: &Arc<dyn Queue>, findings: u32) {
        let job = started(q, "acme/infra", &[]);
        end(q, "acme/infra", job, findings);
    }

    /// A preview of `repo` that started its two check runs, the gate's `more` times again.
    fn started(q: &Arc<dyn Queue>, repo: &str, more: &[()]) -> crate::queue::lease::Claim {
        let job = NewJob {
            kind: Kind::Preview,
            repo: repo.into(),
            sha: "aaaaaaa1".into(),
            pr: Some(7),
            fork: false,
            trigger: Trigger::PullRequest,
            stack: None,
        };
        q.enqueue(&[job], &|_, _| Vec::new(), &|_, _| Vec::new())
            .unwrap();
        let lease = crate::queue::lease::Lease {
            owner: crate::queue::lease::Replica::new(),
            length: Duration::from_secs(60),
        };
        let job = q.claim(&lease, 1).unwrap().remove(0);
        let web = Context::Plan("web".into());
        q.add_checks(
            job.claim(),
            &[
                update(repo, Context::Policy, CheckState::InProgress, 0),
                update(repo, web.clone(), CheckState::InProgress, 0),
            ],
        )
        .unwrap();
        for () in more {
            q.add_checks(
                job.claim(),
                &[update(repo, Context::Policy, CheckState::InProgress, 0)],
            )
            .unwrap();
        }
        job.claim()
    }

    /// Ends `job`: the gate's check run failed with `findings` annotations, the plan's passed.
    fn end(q: &Arc<dyn Queue>, repo: &str, job: crate::queue::lease::Claim, findings: u32) {
        let web = Context::Plan("web".into());
        let done = [
            update(repo, Context::Policy, CheckState::Failure, findings),
            update(repo, web, CheckState::Success, 0),
        ];
        q.finish_with(
            job,
            JobState::Failed,
            &serde_json::json!({}),
            Outbound {
                checks: &done,
                ..Outbound::default()
            },
            None,
        )
        .unwrap();
    }

    /// Each check run write as "name state (was existing → id): first..last annotation line".
    fn said(gh: &FakeGithub) -> Vec<String> {
        gh.calls()
            .iter()
            .filter_map(|c| match c {
                Call::CheckRun {
                    name,
                    state,
                    existing,
                    id,
                    annotations,
                    ..
                } => Some(format!(
                    "{name} {state} ({existing:?} → {id}): {}",
                    match (annotations.first(), annotations.last()) {
                        (Some(a), Some(b)) => format!("{}..{}", a.start_line, b.start_line),
                        _ => "none".into(),
                    }
                )),
                _ => None,
            })
            .collect()
    }

    fn eager() -> CheckPoster {
        CheckPoster {
            wait: Duration::ZERO,
            ..CheckPoster::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_check_run_is_created_then_updated_with_its_annotations_50_a_request() {
        let (_dir, q) = queue();
        preview_with_checks(&q, 120);
        let gh = FakeGithub::default();
        let round = eager().round(&q, &gh).await;
        assert_eq!(
            round,
            CheckRound {
                posted: 4,
                ..CheckRound::default()
            }
        );
        assert_eq!(
            said(&gh),
            [
                "stackgate/policy in_progress (None → 5001): none",
                "stackgate/plan/web in_progress (None → 5002): none",
                "stackgate/policy failure (Some(5001) → 5001): 1..50",
                "stackgate/policy failure (Some(5001) → 5001): 51..100",
                "stackgate/policy failure (Some(5001) → 5001): 101..120",
                "stackgate/plan/web success (Some(5002) → 5002): none",
            ]
        );
        assert_eq!(
            eager().round(&q, &gh).await,
            CheckRound::default(),
            "posted once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_batch_refused_for_now_is_sent_again_alone_and_holds_back_only_its_check_run() {
        let (_dir, q) = queue();
        preview_with_checks(&q, 60);
        let gh = FakeGithub::default();
        // The fourth call, the gate's second batch, is refused for now.
        gh.fail_call(
            3,
            GithubError {
                operation: "update check run",
                message: "502 bad gateway".into(),
                kind: GithubErrorKind::Other { retry: true },
                retry_after: None,
            },
        );
        let mut poster = eager();
        let first = poster.round(&q, &gh).await;
        assert!(
            !first.stalled,
            "a write waiting on its retry does not stall the poster"
        );
        assert_eq!(
            said(&gh),
            [
                "stackgate/policy in_progress (None → 5001): none",
                "stackgate/plan/web in_progress (None → 5002): none",
                "stackgate/policy failure (Some(5001) → 5001): 1..50",
                "stackgate/plan/web success (Some(5002) → 5002): none",
            ],
            "the other check run goes on"
        );
        poster.round(&q, &gh).await;
        assert_eq!(
            said(&gh)[4..],
            ["stackgate/policy failure (Some(5001) → 5001): 51..60"],
            "only the batch that did not go"
        );
        assert!(q.unposted_checks(10, &[]).unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_refused_for_good_is_given_up_on_and_the_next_creates_the_run() {
        let (_dir, q) = queue();
        preview_with_checks(&q, 1);
        let gh = FakeGithub::default();
        gh.fail_next(GithubError {
            operation: "create check run",
            message: "403 You must authenticate via a GitHub App.".into(),
            kind: GithubErrorKind::Permission,
            retry_after: None,
        });
        let round = eager().round(&q, &gh).await;
        assert!(!round.stalled);
        assert_eq!(
            said(&gh),
            [
                "stackgate/plan/web in_progress (None → 5001): none",
                "stackgate/policy failure (None → 5002): 1..1",
                "stackgate/plan/web success (Some(5001) → 5001): none",
            ]
        );
    }

    fn refused_for_now(retry_after: Option<Duration>) -> GithubError {
        GithubError {
            operation: "update check run",
            message: "403 You have exceeded a secondary rate limit".into(),
            kind: GithubErrorKind::RateLimited,
            retry_after,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_ending_write_refused_for_now_many_times_still_goes() {
        let (_dir, q) = queue();
        let job = started(&q, "acme/infra", &[]);
        let gh = FakeGithub::default();
        let mut poster = eager();
        poster.round(&q, &gh).await;
        end(&q, "acme/infra", job, 1);
        // Minutes of 5xx or rate limits: more refusals than the starting writes get.
        for _ in 0..(START_TRIES * 2 + 2) {
            gh.fail_next(refused_for_now(None));
        }
        for _ in 0..(START_TRIES + 4) {
            poster.round(&q, &gh).await;
        }
        assert_eq!(
            said(&gh)[2..],
            [
                "stackgate/policy failure (Some(5001) → 5001): 1..1",
                "stackgate/plan/web success (Some(5002) → 5002): none",
            ],
            "the conclusions are not dropped"
        );
        assert!(q.unposted_checks(10, &[]).unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_waits_as_long_as_github_asks_without_starving_other_check_runs() {
        let (_dir, q) = queue();
        // One check run with more writes waiting than a batch reads, then another repo's.
        let stuck = started(&q, "acme/stuck", &[(); CHECK_BATCH + 5]);
        end(&q, "acme/stuck", stuck, 0);
        let other = started(&q, "acme/other", &[]);
        end(&q, "acme/other", other, 0);
        let gh = FakeGithub::default();
        gh.fail_next(refused_for_now(Some(Duration::from_secs(60))));
        let mut poster = eager();
        let first = poster.round(&q, &gh).await;
        assert!(!first.stalled, "statuses and comments go on meanwhile");
        let second = poster.round(&q, &gh).await;
        assert!(!second.stalled);
        let calls = gh.calls();
        let runs: Vec<(&str, &str)> = calls
            .iter()
            .filter_map(|c| match c {
                Call::CheckRun { repo, name, .. } => Some((repo.as_str(), name.as_str())),
                _ => None,
            })
            .collect();
        assert!(
            !runs.contains(&("acme/stuck", "stackgate/policy")),
            "not tried again before the minute GitHub asked for: {runs:?}"
        );
        assert_eq!(
            runs.iter().filter(|(r, _)| *r == "acme/other").count(),
            4,
            "the other check runs all went: {runs:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_ending_write_refused_for_good_goes_once_more_short_without_annotations() {
        let (_dir, q) = queue();
        preview_with_checks(&q, 3);
        let gh = FakeGithub::default();
        // The gate's ending write: GitHub refuses its output.
        gh.fail_call(
            2,
            GithubError {
                operation: "update check run",
                message: "422 Invalid request: annotations".into(),
                kind: GithubErrorKind::Other { retry: false },
                retry_after: None,
            },
        );
        let round = eager().round(&q, &gh).await;
        assert!(!round.stalled);
        assert_eq!(
            said(&gh),
            [
                "stackgate/policy in_progress (None → 5001): none",
                "stackgate/plan/web in_progress (None → 5002): none",
                "stackgate/policy failure (Some(5001) → 5001): none",
                "stackgate/plan/web success (Some(5002) → 5002): none",
            ]
        );
        let calls = gh.calls();
        let summary = calls.iter().find_map(|c| match c {
            Call::CheckRun {
                state: CheckState::Failure,
                summary,
                ..
            } => Some(summary.clone()),
            _ => None,
        });
        assert!(
            summary.is_some_and(|s| s.contains("could not post") && s.contains("422")),
            "says why the report is missing"
        );
        assert!(q.unposted_checks(10, &[]).unwrap().is_empty());
    }
}
