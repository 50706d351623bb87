//! `POST /webhooks/github`: verify the signature on the raw bytes, then parse, record the
//! delivery and its jobs in one transaction, and answer 202 at once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::pipeline::App;
use crate::queue::{DeliveryRecord, Kind, NewJob};

fn reply(
    app: &App,
    result: &'static str,
    code: StatusCode,
    message: impl Into<String>,
) -> Response {
    app.metrics.delivery(result);
    (
        code,
        Json(json!({"result": result, "message": message.into()})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct Push {
    repository: Repository,
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
struct PullRequestEvent {
    repository: Repository,
    action: String,
    pull_request: PullRequest,
}

enum Payload {
    Push(Push),
    PullRequest(PullRequestEvent),
    Other,
}

impl Payload {
    fn repository(&self) -> Option<&str> {
        match self {
            Payload::Push(p) => Some(&p.repository.full_name),
            Payload::PullRequest(p) => Some(&p.repository.full_name),
            Payload::Other => None,
        }
    }
}

pub async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // 1. The signature, on the raw bytes, before anything is parsed.
    let sig = header("x-hub-signature-256");
    if sig.is_empty() {
        return reply(
            &app,
            "unsigned",
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256",
        );
    }
    let verified: Vec<&str> = app
        .webhook_secrets
        .iter()
        .filter(|(_, secret)| {
            super::signature::verify(secret.expose_secret().as_bytes(), &body, sig)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if verified.is_empty() {
        return reply(
            &app,
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match any configured repository's secret",
        );
    }

    // 2. Then the event.
    let event = header("x-github-event").to_string();
    let delivery = header("x-github-delivery").to_string();
    if delivery.is_empty() {
        return reply(
            &app,
            "malformed",
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery",
        );
    }
    let malformed = |e: serde_json::Error| {
        reply(
            &app,
            "malformed",
            StatusCode::BAD_REQUEST,
            format!("malformed {event} payload: {e}"),
        )
    };
    // Parsed once; only the events that enqueue work are parsed at all.
    let payload = match event.as_str() {
        "push" => serde_json::from_slice(&body).map(Payload::Push),
        "pull_request" => serde_json::from_slice(&body).map(Payload::PullRequest),
        _ => Ok(Payload::Other),
    };
    let payload = match payload {
        Ok(p) => p,
        Err(e) => return malformed(e),
    };
    // The repository: one whose secret signed these bytes and whose name the payload
    // carries (several repositories may share a secret).
    let chosen = match payload.repository() {
        Some(n) => verified.iter().find(|v| v.eq_ignore_ascii_case(n)),
        None => verified.first(),
    };
    let Some(repo_cfg) = chosen.and_then(|n| app.cfg.repo(n)) else {
        return reply(
            &app,
            "unknown_repo",
            StatusCode::FORBIDDEN,
            "the payload's repository is not configured, or its secret did not sign this delivery",
        );
    };
    let jobs = match (event.as_str(), payload) {
        ("ping", _) => return reply(&app, "ping", StatusCode::OK, "pong"),
        (_, Payload::Push(push)) => {
            if push.git_ref != format!("refs/heads/{}", repo_cfg.branch) || push.deleted {
                return reply(
                    &app,
                    "ignored",
                    StatusCode::ACCEPTED,
                    format!("not a push to {}", repo_cfg.branch),
                );
            }
            // Every push reaches a (debounced) sync, which compares trees. The payload's
            // file lists are no guide: `commits` is capped at 20 and its lists are a hint.
            vec![NewJob {
                kind: Some(Kind::Sync),
                repo: repo_cfg.name.clone(),
                sha: push.after,
                trigger: "push".into(),
                ..Default::default()
            }]
        }
        (_, Payload::PullRequest(ev)) => {
            if !matches!(ev.action.as_str(), "opened" | "reopened" | "synchronize") {
                return reply(
                    &app,
                    "ignored",
                    StatusCode::ACCEPTED,
                    format!("pull_request {} needs no dry run", ev.action),
                );
            }
            if ev.pull_request.base.git_ref != repo_cfg.branch {
                return reply(
                    &app,
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
                kind: Some(Kind::Preview),
                repo: repo_cfg.name.clone(),
                sha: ev.pull_request.head.sha,
                pr: Some(ev.pull_request.number),
                fork,
                trigger: "pull_request".into(),
                ..Default::default()
            }]
        }
        ("", _) => {
            return reply(
                &app,
                "malformed",
                StatusCode::BAD_REQUEST,
                "missing X-GitHub-Event",
            );
        }
        (other, Payload::Other) => {
            return reply(
                &app,
                "ignored",
                StatusCode::ACCEPTED,
                format!("event `{other}` is not handled"),
            );
        }
    };

    // 3. Delivery and jobs, one transaction.
    let recorded = app
        .recorder
        .record(DeliveryRecord {
            delivery: delivery.clone(),
            event: event.clone(),
            repo: Some(repo_cfg.name.clone()),
            jobs,
        })
        .await;
    match recorded {
        Ok(Some(ids)) => {
            app.wake.notify_one();
            app.report_wake.notify_one();
            app.metrics.delivery("accepted");
            let urls: Vec<String> = ids.iter().map(|id| app.cfg.run_url(*id)).collect();
            (
                StatusCode::ACCEPTED,
                Json(json!({"result": "accepted", "jobs": ids, "urls": urls})),
            )
                .into_response()
        }
        Ok(None) => reply(
            &app,
            "duplicate",
            StatusCode::OK,
            format!("delivery {delivery} was already received"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a delivery");
            // Not recorded: GitHub's redelivery of it will be new.
            reply(
                &app,
                "error",
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record the delivery; redeliver it",
            )
        }
    }
}
