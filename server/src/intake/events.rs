//! Events, pure: a verified GitHub event becomes the jobs it asks for, or the answer that
//! says why it asks for none.

use axum::http::StatusCode;
use serde::Deserialize;

use crate::config::RepoConfig;
use crate::domain::{CheckRef, Kind, Trigger};
use crate::queue::NewJob;

#[derive(Deserialize)]
pub(super) struct Repository {
    pub(super) full_name: String,
}

#[derive(Deserialize)]
pub struct Push {
    repository: Option<Repository>,
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
}

#[derive(Deserialize)]
struct PrRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    repo: Option<Repository>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    head: PrRef,
    base: PrRef,
}

#[derive(Deserialize)]
pub struct PullRequestEvent {
    repository: Option<Repository>,
    action: String,
    pull_request: PullRequest,
}

#[derive(Deserialize)]
struct App {
    id: u64,
}

#[derive(Deserialize)]
struct CheckRun {
    head_sha: String,
    #[serde(default)]
    external_id: Option<String>,
    app: App,
}

#[derive(Deserialize)]
pub struct CheckRunEvent {
    repository: Option<Repository>,
    action: String,
    check_run: CheckRun,
}

/// An event's payload, as far as stackgate reads it.
pub enum Payload {
    Push(Push),
    PullRequest(PullRequestEvent),
    CheckRun(CheckRunEvent),
    Other,
}

impl Payload {
    /// The repository the event names (whose secret must sign it), when parsed.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Payload::Push(p) => p.repository.as_ref(),
            Payload::PullRequest(p) => p.repository.as_ref(),
            Payload::CheckRun(p) => p.repository.as_ref(),
            Payload::Other => None,
        }
        .map(|r| r.full_name.as_str())
    }
}

/// Parsed once; only the events that enqueue work are parsed at all.
pub fn parse(event: &str, body: &[u8]) -> Result<Payload, serde_json::Error> {
    match event {
        "push" => serde_json::from_slice(body).map(Payload::Push),
        "pull_request" => serde_json::from_slice(body).map(Payload::PullRequest),
        "check_run" => serde_json::from_slice(body).map(Payload::CheckRun),
        _ => Ok(Payload::Other),
    }
}

/// Why an event asks for no job: the delivery's result, its HTTP status and a message.
#[derive(Debug)]
pub struct Answer {
    pub result: &'static str,
    pub code: StatusCode,
    pub message: String,
}

fn answer(
    result: &'static str,
    code: StatusCode,
    message: impl Into<String>,
) -> Result<Vec<NewJob>, Answer> {
    Err(Answer {
        result,
        code,
        message: message.into(),
    })
}

/// The jobs a verified event of `repo_cfg` asks for. `checks_app`: the GitHub App whose
/// check runs stackgate writes, if it does; a "Re-run" of one of them previews again.
pub fn jobs(
    event: &str,
    payload: Payload,
    repo_cfg: &RepoConfig,
    checks_app: Option<u64>,
) -> Result<Vec<NewJob>, Answer> {
    let jobs = match (event, payload) {
        ("ping", _) => return answer("ping", StatusCode::OK, "pong"),
        (_, Payload::Push(push)) => {
            if push.git_ref != format!("refs/heads/{}", repo_cfg.branch) || push.deleted {
                return answer(
                    "ignored",
                    StatusCode::ACCEPTED,
                    format!("not a push to {}", repo_cfg.branch),
                );
            }
            // Every push reaches a (debounced) sync, which compares trees. The payload's
            // file lists are no guide: `commits` is capped at 20 and its lists are a hint.
            vec![NewJob {
                kind: Kind::Sync,
                repo: repo_cfg.name.clone(),
                sha: push.after,
                trigger: Trigger::Push,
                stack: None,
                pr: None,
                fork: false,
            }]
        }
        (_, Payload::PullRequest(ev)) => {
            if !matches!(ev.action.as_str(), "opened" | "reopened" | "synchronize") {
                return answer(
                    "ignored",
                    StatusCode::ACCEPTED,
                    format!("pull_request {} needs no dry run", ev.action),
                );
            }
            if ev.pull_request.base.git_ref != repo_cfg.branch {
                return answer(
                    "ignored",
                    StatusCode::ACCEPTED,
                    format!(
                        "pull request targets {}, not {}",
                        ev.pull_request.base.git_ref, repo_cfg.branch
                    ),
                );
            }
            let fork = ev
                .pull_request
                .head
                .repo
                .as_ref()
                .is_none_or(|r| !r.full_name.eq_ignore_ascii_case(&repo_cfg.name));
            vec![NewJob {
                kind: Kind::Preview,
                repo: repo_cfg.name.clone(),
                sha: ev.pull_request.head.sha,
                pr: Some(ev.pull_request.number),
                fork,
                trigger: Trigger::PullRequest,
                stack: None,
            }]
        }
        (_, Payload::CheckRun(ev)) => return rerun(ev, repo_cfg, checks_app),
        ("", _) => {
            return answer(
                "malformed",
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Event",
            );
        }
        (other, Payload::Other) => {
            return answer(
                "ignored",
                StatusCode::ACCEPTED,
                format!("event `{other}` is not handled"),
            );
        }
    };
    Ok(jobs)
}

/// A check run's "Re-run": the preview of its pull request again, for its commit. Only for
/// check runs stackgate's own App wrote, which name their pull request in `external_id`.
fn rerun(
    ev: CheckRunEvent,
    repo_cfg: &RepoConfig,
    checks_app: Option<u64>,
) -> Result<Vec<NewJob>, Answer> {
    if ev.action != "rerequested" {
        return answer(
            "ignored",
            StatusCode::ACCEPTED,
            format!("check_run {} needs no dry run", ev.action),
        );
    }
    let run = ev.check_run;
    let Some(app) = checks_app.filter(|a| *a == run.app.id) else {
        return answer(
            "ignored",
            StatusCode::ACCEPTED,
            format!("check run of App {}, not stackgate's", run.app.id),
        );
    };
    // Every check run stackgate writes names its pull request; GitHub's own list of a
    // check run's pull requests leaves out forks', so it is not read.
    let Some(target) = run
        .external_id
        .as_deref()
        .and_then(|e| e.parse::<CheckRef>().ok())
    else {
        return answer(
            "ignored",
            StatusCode::ACCEPTED,
            format!("check run of App {app} names no pull request"),
        );
    };
    Ok(vec![NewJob {
        kind: Kind::Preview,
        repo: repo_cfg.name.clone(),
        sha: run.head_sha,
        pr: Some(target.pr),
        fork: target.fork,
        trigger: Trigger::PullRequest,
        stack: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoConfig {
        serde_json::from_value(serde_json::json!({
            "name": "acme/infra", "url": "/tmp/x", "branch": "main"
        }))
        .unwrap()
    }

    /// The fields of GitHub's `check_run` `rerequested` payload stackgate reads, and the
    /// pull requests GitHub lists, which it does not.
    fn rerequested(app: u64, external_id: &str, prs: serde_json::Value) -> Payload {
        let body = serde_json::json!({
            "action": "rerequested",
            "repository": {"full_name": "acme/infra"},
            "check_run": {
                "head_sha": "d6fde92930d4715a2b49857d24b940956b26d2d3",
                "external_id": external_id,
                "app": {"id": app},
                "pull_requests": prs,
            }
        });
        parse("check_run", body.to_string().as_bytes()).unwrap()
    }

    fn pr(number: u64, base: &str, head_repo: u64) -> serde_json::Value {
        serde_json::json!({
            "number": number,
            "head": {"ref": "x", "repo": {"id": head_repo}},
            "base": {"ref": base, "repo": {"id": 1}},
        })
    }

    #[test]
    fn a_rerun_of_stackgates_check_run_previews_its_pull_request_again() {
        let jobs = jobs(
            "check_run",
            rerequested(42, "pr/7/fork", serde_json::json!([])),
            &repo(),
            Some(42),
        )
        .unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!((j.kind, j.pr, j.fork), (Kind::Preview, Some(7), true));
        assert_eq!(j.sha, "d6fde92930d4715a2b49857d24b940956b26d2d3");
    }

    #[test]
    fn a_rerun_of_another_apps_check_run_or_without_check_runs_asks_for_nothing() {
        let none = |p, app| jobs("check_run", p, &repo(), app).unwrap_err().result;
        assert_eq!(
            none(rerequested(7, "pr/7", serde_json::json!([])), Some(42)),
            "ignored"
        );
        assert_eq!(
            none(rerequested(42, "pr/7", serde_json::json!([])), None),
            "ignored"
        );
        assert_eq!(
            none(
                rerequested(42, "nonsense", serde_json::json!([pr(9, "main", 1)])),
                Some(42)
            ),
            "ignored",
            "names no pull request of its own"
        );
        let created = serde_json::json!({
            "action": "created",
            "repository": {"full_name": "acme/infra"},
            "check_run": {"head_sha": "a", "app": {"id": 42}}
        });
        let p = parse("check_run", created.to_string().as_bytes()).unwrap();
        assert_eq!(none(p, Some(42)), "ignored");
    }
}
