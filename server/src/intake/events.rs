//! Events, pure: a verified GitHub event becomes the jobs it asks for, or the answer that
//! says why it asks for none.

use axum::http::StatusCode;
use serde::Deserialize;

use crate::config::RepoConfig;
use crate::domain::{Kind, Trigger};
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

/// An event's payload, as far as stackgate reads it.
pub enum Payload {
    Push(Push),
    PullRequest(PullRequestEvent),
    Other,
}

impl Payload {
    /// The repository the event names (whose secret must sign it), when parsed.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Payload::Push(p) => p.repository.as_ref(),
            Payload::PullRequest(p) => p.repository.as_ref(),
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

/// The jobs a verified event of `repo_cfg` asks for.
pub fn jobs(event: &str, payload: Payload, repo_cfg: &RepoConfig) -> Result<Vec<NewJob>, Answer> {
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
