//! The one outbox poster: posts the commit statuses and PR comments the queue holds, in
//! the order they were recorded. A failure is retried with backoff, and the row stays in
//! the queue until GitHub has it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::github::{GitHub, StatusPost};
use crate::queue::{PendingComment, PendingStatus, Queue, blocking};

/// Statuses read from the queue at a time.
pub const STATUS_BATCH: usize = 100;
/// Comments read at a time: a comment is one per pull request push, and large.
const COMMENT_BATCH: usize = 20;
/// A row GitHub keeps refusing with a retryable error is given up on after this many tries.
const MAX_TRIES: i64 = 20;
/// How long the poster lets a burst of wake-ups gather.
const GATHER: Duration = Duration::from_millis(10);

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub statuses: usize,
    pub comments: usize,
    /// A retryable failure stopped the round; what follows waits, in order.
    pub stalled: bool,
    /// There was more than one batch waiting.
    pub behind: bool,
}

/// Posts what is waiting, once, in order: each comment after the statuses recorded before
/// it. Every transition is posted, unless this is behind: then a status that a newer one of
/// the same commit and context replaces is skipped (a status is a state).
pub async fn post_round(queue: &Arc<dyn Queue>, github: &dyn GitHub) -> Round {
    let statuses = match blocking(queue, |q| q.unposted_statuses(STATUS_BATCH)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the statuses to post");
            return Round::default();
        }
    };
    let comments = blocking(queue, |q| q.unposted_comments(COMMENT_BATCH))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the comments to post");
            Vec::new()
        });
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
    'statuses: for (i, s) in statuses.iter().enumerate() {
        while let Some(c) = comments.next_if(|c| c.after_status < s.id) {
            if !post_comment(queue, github, &c, &mut round).await {
                round.stalled = true;
                break 'statuses;
            }
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
            break;
        }
    }
    if !round.stalled {
        for c in comments {
            if !post_comment(queue, github, &c, &mut round).await {
                round.stalled = true;
                break;
            }
        }
    }
    round.statuses = posted.len();
    // One transaction for the batch. A crash before it re-posts them: harmless, a status is
    // a state, not an event.
    if let Err(e) = blocking(queue, move |q| q.statuses_posted(&posted)).await {
        tracing::error!(error = %e, "cannot mark statuses posted");
    }
    round
}

/// Posts one status; `false` when a retryable failure must hold back what follows.
async fn post_status(
    queue: &Arc<dyn Queue>,
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

/// Posts one comment into the pull request's comment (updated, or made the first time);
/// `false` when a retryable failure must hold back what follows.
async fn post_comment(
    queue: &Arc<dyn Queue>,
    github: &dyn GitHub,
    c: &PendingComment,
    round: &mut Round,
) -> bool {
    let (repo, pr) = (c.repo.clone(), c.pr);
    let existing = match blocking(queue, move |q| q.pr_comment(&repo, pr)).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the pull request's comment id");
            return false;
        }
    };
    tracing::debug!(pr = c.pr, ?existing, "pull request comment");
    match github
        .upsert_comment(&c.repo, c.pr, existing, &c.body)
        .await
    {
        Ok(written) => {
            let (id, repo, pr) = (c.id, c.repo.clone(), c.pr);
            let saved = blocking(queue, move |q| {
                q.comment_posted(id, written.map(|w| (repo.as_str(), pr, w)))
            })
            .await;
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot mark the comment posted");
            }
            round.comments += 1;
            true
        }
        Err(e) => {
            let retry = e.retryable() && c.attempts < MAX_TRIES;
            if retry {
                tracing::warn!(error = %e, pr = c.pr, attempt = c.attempts + 1, "pull request comment not posted; retrying");
            } else {
                tracing::warn!(error = %e, pr = c.pr, "cannot post the pull request comment; giving up on it");
            }
            let (id, error) = (c.id, e.to_string());
            if let Err(e) = blocking(queue, move |q| q.comment_failed(id, &error, !retry)).await {
                tracing::error!(error = %e, "cannot record a failed comment");
            }
            !retry
        }
    }
}

/// Posts forever: at once when woken, every 2 s otherwise, backing off while GitHub fails.
pub async fn run(queue: Arc<dyn Queue>, github: Arc<dyn GitHub>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let round = post_round(&queue, github.as_ref()).await;
        if round.stalled {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
            continue;
        }
        backoff = Duration::from_millis(250);
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
    use crate::domain::{JobState, Kind, Trigger};
    use crate::github::fake::{Call, FakeGithub};
    use crate::github::{GithubError, GithubErrorKind};
    use crate::queue::{Announce, CommentUpdate, NewJob, Store};
    use crate::report::statuses::{Announcer, policy_status};

    fn queue() -> (tempfile::TempDir, Arc<dyn Queue>) {
        let dir = tempfile::tempdir().unwrap();
        let q = Store::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        (dir, Arc::new(q))
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

    fn finish_preview(q: &Arc<dyn Queue>, sha: &str) {
        let job = q.claim(1).unwrap().remove(0);
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
            job.id,
            JobState::Succeeded,
            &serde_json::json!({}),
            Some(&comment),
            &[done],
            None,
        )
        .unwrap();
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
}
