//! Posts the check run writes the outbox holds, in order: a job's first write of a check
//! run creates it, the next ones update it by the id GitHub gave, which the queue keeps.
//! Annotations go 50 a request, each update adding its own. A write GitHub refuses for now
//! is retried with backoff, and holds back only the later writes of its own check run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::JobId;
use crate::github::{ANNOTATIONS_PER_REQUEST, CheckRunPost, GitHub};
use crate::queue::{Outbox, PendingCheck, blocking};

/// Check run writes read at a time.
const CHECK_BATCH: usize = 20;
/// A write GitHub keeps refusing for now is given up on after this many tries.
const CHECK_TRIES: i64 = 6;

/// What one round of check runs did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckRound {
    pub posted: usize,
    /// A retryable failure, or a queue that could not keep an id, held writes back.
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
        let checks = match blocking(queue, |q| q.unposted_checks(CHECK_BATCH)).await {
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
            if self
                .retry_at
                .get(&c.id)
                .is_some_and(|at| Instant::now() < *at)
            {
                held.insert(key);
                round.stalled = true;
                continue;
            }
            match self.post(queue, github, c).await {
                Outcome::Posted => round.posted += 1,
                Outcome::GaveUp => {}
                Outcome::Retry => {
                    held.insert(key);
                    round.stalled = true;
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
                    return self.failed(queue, c, p, e.to_string(), true).await;
                }
            }
        }
        let batches = c.annotations.len().div_ceil(ANNOTATIONS_PER_REQUEST).max(1);
        loop {
            if let (Some(run), false) = (p.run, p.saved) {
                let (job, name) = (c.job, c.name.clone());
                if let Err(e) = blocking(queue, move |q| q.keep_check_run(job, &name, run)).await {
                    tracing::error!(error = %e, "cannot keep the check run's id; nothing more goes until it is");
                    self.progress.insert(c.id, p);
                    return Outcome::QueueDown;
                }
                p.saved = true;
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
                    if written.is_some() && written != p.run {
                        (p.run, p.saved) = (written, false);
                    }
                    p.sent += 1;
                }
                Err(e) => {
                    let retryable = e.retryable();
                    return self.failed(queue, c, p, e.to_string(), retryable).await;
                }
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

    /// Counts a failed try: retried later from where it stopped, or given up on.
    async fn failed<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        c: &PendingCheck,
        p: Progress,
        error: String,
        retryable: bool,
    ) -> Outcome {
        let retry = retryable && c.attempts + 1 < CHECK_TRIES;
        if retry {
            tracing::warn!(%error, job = %c.job, name = %c.name, attempt = c.attempts + 1, "check run not posted; retrying");
        } else {
            tracing::warn!(%error, job = %c.job, name = %c.name, "cannot post the check run; giving up on this write");
        }
        let id = c.id;
        if let Err(e) = blocking(queue, move |q| q.check_failed(id, &error, !retry)).await {
            tracing::error!(error = %e, "cannot record a failed check run");
        }
        if retry {
            let wait = self.wait * 2u32.pow(c.attempts.clamp(0, 8) as u32);
            self.retry_at.insert(c.id, Instant::now() + wait);
            self.progress.insert(c.id, p);
            Outcome::Retry
        } else {
            self.retry_at.remove(&c.id);
            // Its check run's later writes still go, updating the run GitHub made, if any.
            if let (Some(run), false) = (p.run, p.saved) {
                let (job, name) = (c.job, c.name.clone());
                if blocking(queue, move |q| q.keep_check_run(job, &name, run))
                    .await
                    .is_err()
                {
                    tracing::error!("cannot keep the check run's id");
                }
            }
            Outcome::GaveUp
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

    fn update(context: Context, state: CheckState, findings: u32) -> CheckUpdate {
        CheckUpdate {
            repo: "acme/infra".into(),
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
        let job = NewJob {
            kind: Kind::Preview,
            repo: "acme/infra".into(),
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
                update(Context::Policy, CheckState::InProgress, 0),
                update(web.clone(), CheckState::InProgress, 0),
            ],
        )
        .unwrap();
        let done = [
            update(Context::Policy, CheckState::Failure, findings),
            update(web, CheckState::Success, 0),
        ];
        q.finish_with(
            job.claim(),
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
            },
        );
        let mut poster = eager();
        let first = poster.round(&q, &gh).await;
        assert!(first.stalled);
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
        assert!(q.unposted_checks(10).unwrap().is_empty());
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
}
