//! The one outbox poster: posts the commit statuses, PR comments and check runs the queue
//! holds, in the order they were recorded. A failure is retried with backoff, and the row
//! stays in the queue until GitHub has it. A status GitHub refuses for now holds back the
//! whole stream; a comment only its pull request's later statuses and comments; a check
//! run write only its check run's later writes (`check_poster`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::check_poster::CheckPoster;
use crate::github::{GitHub, StatusPost};
use crate::policy::truncate;
use crate::queue::{Outbox, PendingComment, PendingStatus, Queue, blocking};

/// Statuses read from the queue at a time.
pub const STATUS_BATCH: usize = 100;
/// Comments read at a time: a comment is one per pull request push, and large.
const COMMENT_BATCH: usize = 20;
/// A status GitHub keeps refusing with a retryable error is given up on after this many tries.
const MAX_TRIES: i64 = 20;
/// A comment, after this many: the first and five retries, as when the preview posted it
/// itself. Its pull request's statuses wait behind it meanwhile.
const COMMENT_TRIES: i64 = 6;
/// The wait before a comment's first retry, doubled for each next one (0.4 s … 6.4 s: the
/// last try some 12 s after the first, however fast the rest of the stream goes).
const COMMENT_WAIT: Duration = Duration::from_millis(400);
/// The most characters of a failed comment's note on its job.
const NOTE_MAX: usize = 200;
/// How long the poster lets a burst of wake-ups gather.
const GATHER: Duration = Duration::from_millis(10);
/// The first wait after a stalled round; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a replica standing by asks whether it may post.
const STANDBY: Duration = Duration::from_secs(2);

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub statuses: usize,
    pub comments: usize,
    pub checks: usize,
    /// A retryable failure held something back (what follows a status, or a pull
    /// request's items after its comment); it waits, in order.
    pub stalled: bool,
    /// There was more than one batch waiting.
    pub behind: bool,
}

/// The outbox poster, and what it remembers between rounds.
pub struct Poster {
    /// Comments GitHub has, not yet marked posted in the queue. Marked before anything
    /// else goes: posted again, a PR's first comment would be a second one.
    unsaved: Vec<Unsaved>,
    /// When each comment GitHub refused for now may be tried again.
    retry_at: HashMap<i64, Instant>,
    comment_wait: Duration,
    checks: CheckPoster,
}

impl Default for Poster {
    fn default() -> Self {
        Poster {
            unsaved: Vec::new(),
            retry_at: HashMap::new(),
            comment_wait: COMMENT_WAIT,
            checks: CheckPoster::default(),
        }
    }
}

/// A comment to mark posted: its row, and the PR's comment id to remember.
struct Unsaved {
    id: i64,
    comment: Option<(String, u64, u64)>,
}

impl Poster {
    /// Posts what is waiting, once, in order: each comment after the statuses recorded
    /// before it. Every transition is posted, unless this is behind: then a status that a
    /// newer one of the same commit and context replaces is skipped (a status is a state).
    pub async fn round<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        github: &dyn GitHub,
    ) -> Round {
        if !self.mark_unsaved(queue).await {
            return Round {
                stalled: true,
                ..Round::default()
            };
        }
        // Comments first: every status recorded before a comment read here is then in the
        // statuses read next (or past the horizon), even if a job ends between the reads.
        let comments = blocking(queue, |q| q.unposted_comments(COMMENT_BATCH))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the comments to post");
                Vec::new()
            });
        let statuses = match blocking(queue, |q| q.unposted_statuses(STATUS_BATCH)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the statuses to post");
                return Round::default();
            }
        };
        let behind = statuses.len() >= STATUS_BATCH;
        let more_comments = comments.len() >= COMMENT_BATCH;
        // A comment whose earlier statuses are not all in this batch waits for the next round.
        let horizon = match statuses.last() {
            Some(last) if behind => last.id,
            _ => i64::MAX,
        };
        let mut comments = comments
            .into_iter()
            .filter(|c| c.after_status <= horizon)
            .peekable();
        let mut round = Round {
            behind: behind || more_comments,
            ..Round::default()
        };
        let mut posted = Vec::new();
        // The pull requests whose comment waits on a retry: their later items wait with it.
        let mut held = HashSet::new();
        let mut stopped = false;
        'statuses: for (i, s) in statuses.iter().enumerate() {
            while let Some(c) = comments.next_if(|c| c.after_status < s.id) {
                self.post_comment(queue, github, &c, &mut held, &mut round)
                    .await;
                if !self.mark_unsaved(queue).await {
                    round.stalled = true;
                    stopped = true;
                    break 'statuses;
                }
            }
            if s.pr.is_some_and(|pr| held.contains(&(s.repo.clone(), pr))) {
                continue 'statuses;
            }
            let replaced = behind
                && statuses[i + 1..]
                    .iter()
                    .any(|n| n.context == s.context && n.sha == s.sha && n.repo == s.repo);
            if replaced {
                posted.push(s.id);
                continue;
            }
            if !post_status(queue, github, s, &mut posted).await {
                round.stalled = true;
                stopped = true;
                break;
            }
        }
        if !stopped {
            for c in comments {
                self.post_comment(queue, github, &c, &mut held, &mut round)
                    .await;
                if !self.mark_unsaved(queue).await {
                    round.stalled = true;
                    stopped = true;
                    break;
                }
            }
        }
        if !stopped {
            let checks = self.checks.round(queue, github).await;
            round.checks = checks.posted;
            round.stalled |= checks.stalled;
            round.behind |= checks.behind;
        }
        round.statuses = posted.len();
        // One transaction for the batch. A crash before it re-posts them: harmless, a status
        // is a state, not an event.
        if let Err(e) = blocking(queue, move |q| q.statuses_posted(&posted)).await {
            tracing::error!(error = %e, "cannot mark statuses posted");
        }
        round
    }

    /// Posts one comment into the pull request's comment (updated, or made the first time),
    /// unless an earlier one of its pull request waits; a retryable failure adds its pull
    /// request to `held` until its next try; one GitHub has goes to `unsaved`, to mark.
    async fn post_comment<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        github: &dyn GitHub,
        c: &PendingComment,
        held: &mut HashSet<(String, u64)>,
        round: &mut Round,
    ) {
        if held.contains(&(c.repo.clone(), c.pr)) {
            return;
        }
        if self
            .retry_at
            .get(&c.id)
            .is_some_and(|at| Instant::now() < *at)
        {
            held.insert((c.repo.clone(), c.pr));
            round.stalled = true;
            return;
        }
        let (repo, pr) = (c.repo.clone(), c.pr);
        let existing = match blocking(queue, move |q| q.pr_comment(&repo, pr)).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the pull request's comment id");
                // Counted as a try, so that a lasting failure gives up like GitHub's would.
                self.comment_failed(queue, c, e.to_string(), true, held, round)
                    .await;
                return;
            }
        };
        tracing::debug!(pr = c.pr, ?existing, "pull request comment");
        match github
            .upsert_comment(&c.repo, c.pr, existing, &c.body)
            .await
        {
            Ok(written) => {
                round.comments += 1;
                self.retry_at.remove(&c.id);
                self.unsaved.push(Unsaved {
                    id: c.id,
                    comment: written.map(|w| (c.repo.clone(), c.pr, w)),
                });
            }
            Err(e) => {
                let retryable = e.retryable();
                self.comment_failed(queue, c, e.to_string(), retryable, held, round)
                    .await;
            }
        }
    }

    /// Counts a failed try of a comment: retried (its pull request held back) or given up on.
    async fn comment_failed<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
        c: &PendingComment,
        error: String,
        retryable: bool,
        held: &mut HashSet<(String, u64)>,
        round: &mut Round,
    ) {
        let retry = retryable && c.attempts + 1 < COMMENT_TRIES;
        if retry {
            tracing::warn!(%error, pr = c.pr, attempt = c.attempts + 1, "pull request comment not posted; retrying");
        } else {
            tracing::warn!(%error, pr = c.pr, "cannot post the pull request comment; giving up on it");
        }
        // The job's run page shows it: GitHub's words are not secret, but may be a whole page.
        let note = if retry {
            format!(
                "not posted yet (try {} of {COMMENT_TRIES}, retrying): {error}",
                c.attempts + 1
            )
        } else {
            format!("not posted: {error}")
        };
        let (id, note) = (c.id, truncate(&note, NOTE_MAX));
        if let Err(e) = blocking(queue, move |q| q.comment_failed(id, &note, !retry)).await {
            tracing::error!(error = %e, "cannot record a failed comment");
        }
        if retry {
            let wait = self.comment_wait * 2u32.pow(c.attempts.clamp(0, 8) as u32);
            self.retry_at.insert(c.id, Instant::now() + wait);
            held.insert((c.repo.clone(), c.pr));
            round.stalled = true;
        } else {
            self.retry_at.remove(&c.id);
        }
    }

    /// Marks the comments GitHub has; `false` while the queue cannot, and nothing may go.
    async fn mark_unsaved<Q: Outbox + Send + Sync + ?Sized + 'static>(
        &mut self,
        queue: &Arc<Q>,
    ) -> bool {
        while let Some(u) = self.unsaved.first() {
            let (id, comment) = (u.id, u.comment.clone());
            let saved = blocking(queue, move |q| {
                q.comment_posted(id, comment.as_ref().map(|(r, p, w)| (r.as_str(), *p, *w)))
            })
            .await;
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot mark the comment posted; nothing more goes until it is");
                return false;
            }
            self.unsaved.remove(0);
        }
        true
    }
}

/// Posts one status; `false` when a retryable failure must hold back what follows.
async fn post_status<Q: Outbox + Send + Sync + ?Sized + 'static>(
    queue: &Arc<Q>,
    github: &dyn GitHub,
    s: &PendingStatus,
    posted: &mut Vec<i64>,
) -> bool {
    let post = StatusPost {
        repo: &s.repo,
        sha: &s.sha,
        context: &s.context,
        state: s.state,
        description: &s.description,
        target_url: &s.target_url,
    };
    match github.post_status(post).await {
        Ok(()) => {
            posted.push(s.id);
            true
        }
        Err(e) => {
            let retry = e.retryable() && s.attempts < MAX_TRIES;
            if retry {
                tracing::warn!(error = %e, context = %s.context, attempt = s.attempts + 1, "status not posted; retrying");
            } else {
                tracing::error!(error = %e, context = %s.context, "status refused by GitHub; giving up on it");
            }
            let (id, error) = (s.id, e.to_string());
            if let Err(e) = blocking(queue, move |q| q.status_failed(id, &error, !retry)).await {
                tracing::error!(error = %e, "cannot record a failed status");
            }
            !retry
        }
    }
}

/// The wait after each stalled round: it starts again after a round that posted something,
/// so intermittent failures in a long queue do not grow it to a minute.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// How long to wait before the next round; `None` when this one did not stall.
    fn after(&mut self, round: &Round) -> Option<Duration> {
        if !round.stalled {
            self.next = FIRST_BACKOFF;
            return None;
        }
        let progress = round.statuses + round.comments + round.checks > 0;
        let wait = if progress { FIRST_BACKOFF } else { self.next };
        self.next = (wait * 2).min(MAX_BACKOFF);
        Some(wait)
    }
}

/// Posts forever: at once when woken, every 2 s otherwise, backing off while GitHub fails.
pub async fn run(queue: Arc<dyn Queue>, github: Arc<dyn GitHub>, wake: Arc<Notify>) {
    let (mut poster, mut backoff) = (Poster::default(), Backoff::default());
    let mut standby = FIRST_BACKOFF;
    loop {
        // With several replicas, one posts; the others ask again now and then.
        match blocking(&queue, |q| q.may_post()).await {
            Ok(true) => standby = FIRST_BACKOFF,
            Ok(false) => {
                tokio::time::sleep(STANDBY).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot tell whether this replica posts; waiting");
                tokio::time::sleep(standby).await;
                standby = (standby * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        let round = poster.round(&queue, github.as_ref()).await;
        if let Some(wait) = backoff.after(&round) {
            tokio::time::sleep(wait).await;
            continue;
        }
        if !round.behind
            && tokio::time::timeout(Duration::from_secs(2), wake.notified())
                .await
                .is_ok()
        {
            tokio::time::sleep(GATHER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Synchronous};
    use crate::domain::{JobId, JobState, Kind, Trigger};
    use crate::github::fake::{Call, FakeGithub};
    use crate::github::{GithubError, GithubErrorKind};
    use crate::queue::{Announce, CommentUpdate, NewJob, StatusUpdate, Store, StoreError};
    use crate::report::statuses::{Announcer, policy_status};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn queue() -> (tempfile::TempDir, Arc<dyn Queue>) {
        let dir = tempfile::tempdir().unwrap();
        let q = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        (dir, Arc::new(q))
    }

    /// One round of a poster that starts afresh.
    async fn post_round<Q: Outbox + Send + Sync + ?Sized + 'static>(
        q: &Arc<Q>,
        gh: &dyn GitHub,
    ) -> Round {
        Poster::default().round(q, gh).await
    }

    /// A poster that tries a refused comment again in the very next round.
    fn eager() -> Poster {
        let mut p = Poster {
            comment_wait: Duration::ZERO,
            ..Poster::default()
        };
        p.checks.wait = Duration::ZERO;
        p
    }

    fn rate_limited() -> GithubError {
        GithubError {
            operation: "create comment",
            message: "429 too many requests".into(),
            kind: GithubErrorKind::RateLimited,
            retry_after: None,
        }
    }

    /// The outbox of a real queue, misbehaving on request.
    struct Faulty {
        inner: Arc<dyn Queue>,
        /// Runs as the comments are next read, before the read.
        before_comments: Mutex<Option<Box<dyn FnOnce() + Send>>>,
        /// How many of the next marks of a comment as posted fail.
        failing_marks: AtomicUsize,
        /// Every read of a PR's comment id fails.
        failing_pr_comment: AtomicBool,
        /// Every keep of a check run's id fails.
        failing_keeps: AtomicBool,
    }

    impl Faulty {
        fn new(inner: &Arc<dyn Queue>) -> Arc<Faulty> {
            Arc::new(Faulty {
                inner: inner.clone(),
                before_comments: Mutex::new(None),
                failing_marks: AtomicUsize::new(0),
                failing_pr_comment: AtomicBool::new(false),
                failing_keeps: AtomicBool::new(false),
            })
        }
    }

    fn broken() -> StoreError {
        StoreError::backend(std::io::Error::other("disk I/O error"))
    }

    impl Outbox for Faulty {
        fn add_statuses(
            &self,
            job: Option<crate::queue::lease::Claim>,
            s: &[StatusUpdate],
        ) -> Result<(), StoreError> {
            self.inner.add_statuses(job, s)
        }
        fn unposted_statuses(&self, limit: usize) -> Result<Vec<PendingStatus>, StoreError> {
            self.inner.unposted_statuses(limit)
        }
        fn statuses_posted(&self, ids: &[i64]) -> Result<(), StoreError> {
            self.inner.statuses_posted(ids)
        }
        fn status_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
            self.inner.status_failed(id, error, give_up)
        }
        fn unposted_comments(&self, limit: usize) -> Result<Vec<PendingComment>, StoreError> {
            if let Some(hook) = self.before_comments.lock().unwrap().take() {
                hook();
            }
            self.inner.unposted_comments(limit)
        }
        fn comment_posted(
            &self,
            id: i64,
            comment: Option<(&str, u64, u64)>,
        ) -> Result<(), StoreError> {
            let fail = self
                .failing_marks
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if fail.is_ok() {
                return Err(broken());
            }
            self.inner.comment_posted(id, comment)
        }
        fn comment_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
            self.inner.comment_failed(id, error, give_up)
        }
        fn pr_comment(&self, repo: &str, pr: u64) -> Result<Option<u64>, StoreError> {
            if self.failing_pr_comment.load(Ordering::SeqCst) {
                return Err(broken());
            }
            self.inner.pr_comment(repo, pr)
        }
        fn add_checks(
            &self,
            job: crate::queue::lease::Claim,
            checks: &[crate::queue::CheckUpdate],
        ) -> Result<(), StoreError> {
            self.inner.add_checks(job, checks)
        }
        fn unposted_checks(
            &self,
            limit: usize,
            held: &[i64],
        ) -> Result<Vec<crate::queue::PendingCheck>, StoreError> {
            self.inner.unposted_checks(limit, held)
        }
        fn keep_check_run(&self, job: JobId, name: &str, run: u64) -> Result<(), StoreError> {
            if self.failing_keeps.load(Ordering::SeqCst) {
                return Err(broken());
            }
            self.inner.keep_check_run(job, name, run)
        }
        fn check_run(&self, job: JobId, name: &str) -> Result<Option<u64>, StoreError> {
            self.inner.check_run(job, name)
        }
        fn check_posted(&self, id: i64) -> Result<(), StoreError> {
            self.inner.check_posted(id)
        }
        fn end_checks(
            &self,
            job: crate::queue::lease::Claim,
            state: crate::domain::CheckState,
            title: &str,
            summary: &str,
        ) -> Result<usize, StoreError> {
            self.inner.end_checks(job, state, title, summary)
        }
        fn check_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
            self.inner.check_failed(id, error, give_up)
        }
    }

    /// Queues a deploy in another repository: its "queued" status.
    fn enqueue_deploy(q: &Arc<dyn Queue>, repo: &str, sha: &str) -> JobId {
        let announce = Announcer(Config::default());
        let job = NewJob {
            kind: Kind::Deploy,
            repo: repo.into(),
            stack: Some("web".into()),
            sha: sha.into(),
            pr: None,
            fork: false,
            trigger: Trigger::Push,
        };
        q.enqueue(&[job], &|j, id| announce.queued(j, id), &|o, n| {
            announce.superseded(o, n)
        })
        .unwrap()[0]
    }

    fn preview(sha: &str) -> NewJob {
        NewJob {
            kind: Kind::Preview,
            repo: "acme/infra".into(),
            sha: sha.into(),
            pr: Some(7),
            trigger: Trigger::PullRequest,
            stack: None,
            fork: false,
        }
    }

    /// Enqueues and runs a preview to its end, with its comment and its policy status.
    fn run_preview(q: &Arc<dyn Queue>, sha: &str) {
        enqueue_preview(q, sha);
        finish_preview(q, sha);
    }

    fn enqueue_preview(q: &Arc<dyn Queue>, sha: &str) {
        let announce = Announcer(Config::default());
        q.enqueue(&[preview(sha)], &|j, id| announce.queued(j, id), &|o, n| {
            announce.superseded(o, n)
        })
        .unwrap();
    }

    fn finish_preview(q: &Arc<dyn Queue>, sha: &str) -> JobId {
        let lease = crate::queue::lease::Lease {
            owner: crate::queue::lease::Replica::new(),
            length: std::time::Duration::from_secs(60),
        };
        let job = q.claim(&lease, 1).unwrap().remove(0);
        let comment = CommentUpdate {
            repo: job.repo.clone(),
            pr: 7,
            body: format!("dry run for {sha}"),
        };
        let done = policy_status(
            &Config::default(),
            &job,
            crate::policy::Verdict::Pass,
            "1 stack(s) checked".into(),
        );
        q.finish_with(
            job.claim(),
            JobState::Succeeded,
            &serde_json::json!({}),
            crate::queue::Outbound {
                comment: Some(&comment),
                statuses: &[done],
                checks: &[],
            },
            None,
        )
        .unwrap();
        job.id
    }

    fn said(call: &Call) -> String {
        match call {
            Call::Status {
                sha,
                state,
                description,
                ..
            } => format!("{sha} {state}: {description}"),
            Call::Comment {
                existing, id, body, ..
            } => format!("comment {id} (was {existing:?}): {body}"),
            Call::CheckRun {
                name, state, id, ..
            } => format!("check run {id} {name} {state}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn statuses_and_the_pr_comment_are_posted_once_in_order_into_one_comment() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();

        run_preview(&q, "aaaaaaa1");
        let round = post_round(&q, &gh).await;
        assert_eq!(
            (round.statuses, round.comments, round.stalled),
            (2, 1, false)
        );
        assert_eq!(post_round(&q, &gh).await, Round::default(), "posted once");

        // The next push to the pull request: the same comment, updated.
        run_preview(&q, "bbbbbbb2");
        post_round(&q, &gh).await;
        let calls: Vec<String> = gh.calls().iter().map(said).collect();
        assert_eq!(
            calls,
            [
                "aaaaaaa1 pending: queued",
                "comment 1001 (was None): dry run for aaaaaaa1",
                "aaaaaaa1 success: 1 stack(s) checked",
                "bbbbbbb2 pending: queued",
                "comment 1001 (was Some(1001)): dry run for bbbbbbb2",
                "bbbbbbb2 success: 1 stack(s) checked",
            ]
        );
        assert_eq!(q.pr_comment("acme/infra", 7).unwrap(), Some(1001));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_github_refuses_for_now_holds_back_what_follows() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        post_round(&q, &gh).await;
        finish_preview(&q, "aaaaaaa1");
        gh.fail_next(GithubError {
            operation: "create comment",
            message: "429 too many requests".into(),
            kind: GithubErrorKind::RateLimited,
            retry_after: None,
        });
        let round = post_round(&q, &gh).await;
        assert!(round.stalled);
        assert_eq!(
            gh.calls().len(),
            1,
            "the final status waits behind the comment"
        );
        post_round(&q, &gh).await;
        let calls: Vec<String> = gh.calls().iter().map(said).collect();
        assert_eq!(
            calls,
            [
                "aaaaaaa1 pending: queued",
                "comment 1001 (was None): dry run for aaaaaaa1",
                "aaaaaaa1 success: 1 stack(s) checked"
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_status_github_refuses_for_good_is_given_up_on() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        run_preview(&q, "aaaaaaa1");
        gh.fail_next(GithubError {
            operation: "create status",
            message: "422 invalid".into(),
            kind: GithubErrorKind::Other { retry: false },
            retry_after: None,
        });
        let round = post_round(&q, &gh).await;
        assert!(!round.stalled);
        let calls: Vec<String> = gh.calls().iter().map(said).collect();
        assert_eq!(
            calls,
            [
                "comment 1001 (was None): dry run for aaaaaaa1",
                "aaaaaaa1 success: 1 stack(s) checked"
            ]
        );
        assert_eq!(post_round(&q, &gh).await, Round::default());
    }

    /// A deploy's status in another repository, then the preview's comment and status.
    const OTHER_REPO_FIRST: [&str; 4] = [
        "aaaaaaa1 pending: queued",
        "ccccccc3 pending: queued",
        "comment 1001 (was None): dry run for aaaaaaa1",
        "aaaaaaa1 success: 1 stack(s) checked",
    ];

    fn says(gh: &FakeGithub) -> Vec<String> {
        gh.calls().iter().map(said).collect()
    }

    #[test]
    fn the_backoff_starts_again_after_a_round_that_posted_something() {
        let mut b = Backoff::default();
        let nothing = Round {
            stalled: true,
            ..Round::default()
        };
        let some = Round {
            statuses: 99,
            stalled: true,
            ..Round::default()
        };
        let ms = Duration::from_millis;
        let waits: Vec<_> = [&nothing, &nothing, &some, &some, &nothing]
            .map(|r| b.after(r))
            .to_vec();
        assert_eq!(
            waits,
            [
                Some(ms(250)),
                Some(ms(500)),
                Some(ms(250)),
                Some(ms(250)),
                Some(ms(500))
            ]
        );
        assert_eq!(b.after(&Round::default()), None);
        assert_eq!(b.after(&nothing), Some(ms(250)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_github_the_comment_is_marked_posted_and_no_comment_id_kept() {
        let (_dir, q) = queue();
        run_preview(&q, "aaaaaaa1");
        let round = post_round(&q, &crate::github::log_only::LogOnly).await;
        assert_eq!((round.statuses, round.comments), (2, 1));
        assert!(q.unposted_comments(20).unwrap().is_empty());
        assert_eq!(q.pr_comment("acme/infra", 7).unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_queued_comment_is_posted_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let q: Arc<dyn Queue> = Arc::new(Store::open(&path, Synchronous::Full).unwrap());
        run_preview(&q, "aaaaaaa1");
        drop(q);
        let q: Arc<dyn Queue> = Arc::new(Store::open(&path, Synchronous::Full).unwrap());
        let gh = FakeGithub::default();
        post_round(&q, &gh).await;
        assert_eq!(
            says(&gh),
            [
                "aaaaaaa1 pending: queued",
                "comment 1001 (was None): dry run for aaaaaaa1",
                "aaaaaaa1 success: 1 stack(s) checked",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn pruning_forgets_comments_posted_or_given_up_on_and_keeps_the_waiting_one() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        run_preview(&q, "aaaaaaa1");
        post_round(&q, &gh).await;
        run_preview(&q, "bbbbbbb2");
        gh.fail_next_comment(GithubError {
            operation: "update comment",
            message: "403 forbidden".into(),
            kind: GithubErrorKind::Permission,
            retry_after: None,
        });
        post_round(&q, &gh).await;
        run_preview(&q, "ccccccc3");
        let pruned = q.prune(crate::queue::now() + 60_000, 100).unwrap();
        assert_eq!(pruned.comments, 2);
        let left: Vec<String> = q
            .unposted_comments(20)
            .unwrap()
            .into_iter()
            .map(|c| c.body)
            .collect();
        assert_eq!(left, ["dry run for ccccccc3"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_status_recorded_while_the_round_reads_goes_before_the_comment_after_it() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        post_round(&q, &gh).await;
        let faulty = Faulty::new(&q);
        let inner = q.clone();
        *faulty.before_comments.lock().unwrap() = Some(Box::new(move || {
            enqueue_deploy(&inner, "acme/other", "ccccccc3");
            finish_preview(&inner, "aaaaaaa1");
        }));
        post_round(&faulty, &gh).await;
        post_round(&faulty, &gh).await;
        assert_eq!(says(&gh), OTHER_REPO_FIRST);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_github_refuses_for_now_holds_back_only_its_pull_request() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        post_round(&q, &gh).await;
        finish_preview(&q, "aaaaaaa1");
        enqueue_deploy(&q, "acme/other", "ccccccc3");
        for _ in 0..3 {
            gh.fail_next_comment(rate_limited());
        }
        let mut poster = eager();
        let round = poster.round(&q, &gh).await;
        assert!(round.stalled);
        assert_eq!(
            says(&gh),
            ["aaaaaaa1 pending: queued", "ccccccc3 pending: queued"],
            "the other repository's status goes in the first round"
        );
        for _ in 0..3 {
            poster.round(&q, &gh).await;
        }
        assert_eq!(says(&gh), OTHER_REPO_FIRST);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_github_keeps_refusing_for_now_is_given_up_on_after_a_few_tries() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        run_preview(&q, "aaaaaaa1");
        for _ in 0..COMMENT_TRIES {
            gh.fail_next_comment(rate_limited());
        }
        let mut poster = eager();
        for _ in 0..COMMENT_TRIES {
            poster.round(&q, &gh).await;
        }
        assert_eq!(
            says(&gh),
            [
                "aaaaaaa1 pending: queued",
                "aaaaaaa1 success: 1 stack(s) checked"
            ],
            "given up on after {COMMENT_TRIES} tries, and what followed it goes"
        );
        assert_eq!(poster.round(&q, &gh).await, Round::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_github_has_but_the_queue_could_not_mark_is_not_posted_again() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        post_round(&q, &gh).await;
        finish_preview(&q, "aaaaaaa1");
        let faulty = Faulty::new(&q);
        faulty.failing_marks.store(1, Ordering::SeqCst);
        let mut poster = Poster::default();
        let round = poster.round(&faulty, &gh).await;
        assert!(round.stalled);
        assert_eq!(
            says(&gh).len(),
            2,
            "nothing after the comment goes while it is not marked"
        );
        poster.round(&faulty, &gh).await;
        assert_eq!(
            says(&gh),
            [
                "aaaaaaa1 pending: queued",
                "comment 1001 (was None): dry run for aaaaaaa1",
                "aaaaaaa1 success: 1 stack(s) checked",
            ]
        );
        assert_eq!(q.pr_comment("acme/infra", 7).unwrap(), Some(1001));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_whose_pr_comment_id_cannot_be_read_counts_its_tries() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        run_preview(&q, "aaaaaaa1");
        let faulty = Faulty::new(&q);
        faulty.failing_pr_comment.store(true, Ordering::SeqCst);
        let mut poster = eager();
        for _ in 0..COMMENT_TRIES {
            poster.round(&faulty, &gh).await;
        }
        assert_eq!(
            says(&gh),
            [
                "aaaaaaa1 pending: queued",
                "aaaaaaa1 success: 1 stack(s) checked"
            ],
            "given up on, and what followed it goes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_not_posted_shows_on_the_run_page_and_in_the_job() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        let id = finish_preview(&q, "aaaaaaa1");
        gh.fail_next_comment(rate_limited());
        post_round(&q, &gh).await;
        let job = q.job(id).unwrap().unwrap();
        let json = serde_json::to_value(&job).unwrap();
        let error = json["detail"]["comment_error"].as_str().unwrap_or_default();
        assert!(error.contains("429 too many requests"), "{json}");
        assert!(error.contains("retrying"), "{error}");
        post_round(&q, &gh).await;
        let job = q.job(id).unwrap().unwrap();
        assert!(job.detail.get("comment_error").is_none(), "posted since");
        assert!(
            !crate::report::console::run::html(&job)
                .unwrap()
                .contains("PR comment")
        );

        run_preview(&q, "bbbbbbb2");
        gh.fail_next_comment(GithubError {
            operation: "update comment",
            message: format!(
                "403 Resource not accessible by integration {}",
                "x".repeat(500)
            ),
            kind: GithubErrorKind::Permission,
            retry_after: None,
        });
        post_round(&q, &gh).await;
        let job = q.job(JobId(2)).unwrap().unwrap();
        let page = crate::report::console::run::html(&job).unwrap();
        assert!(
            page.contains("PR comment not posted: GitHub update comment: 403 Resource not accessible by integration"),
            "{page}"
        );
        let error = job.detail["comment_error"].as_str().unwrap_or_default();
        assert!(error.chars().count() <= 200, "kept short: {error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_comment_github_refuses_for_now_is_not_tried_again_before_its_wait() {
        let (_dir, q) = queue();
        let gh = FakeGithub::default();
        enqueue_preview(&q, "aaaaaaa1");
        let id = finish_preview(&q, "aaaaaaa1");
        gh.fail_next_comment(rate_limited());
        gh.fail_next_comment(rate_limited());
        let mut poster = Poster::default();
        poster.round(&q, &gh).await;
        let round = poster.round(&q, &gh).await;
        assert!(round.stalled, "its pull request still waits");
        assert_eq!(says(&gh), ["aaaaaaa1 pending: queued"]);
        let job = q.job(id).unwrap().unwrap();
        assert!(
            job.detail["comment_error"]
                .as_str()
                .is_some_and(|e| e.contains("try 1 of 6")),
            "one try so far: {}",
            job.detail
        );
    }
}
