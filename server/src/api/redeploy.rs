//! `POST /api/v1/stacks/<owner>/<repo>/<stack>/redeploy`: the manual redeploy, for bearer
//! tokens whose sha256 is configured (the tokens themselves are never stored).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, HttpState};
use crate::domain::{Kind, Trigger};
use crate::queue::NewJob;

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(code, message).into_response()
}

/// Whether the request carries a bearer token whose sha256 is configured. The token itself
/// is hashed at once and never logged or stored.
fn authorized(app: &HttpState, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let digest = Sha256::digest(token.trim().as_bytes());
    let mut ok = false;
    for allowed in &app.cfg.api_tokens {
        if let Ok(bytes) = hex::decode(allowed) {
            ok |= bool::from(bytes.ct_eq(digest.as_slice()));
        }
    }
    ok
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedeployBody {
    sha: Option<String>,
}

/// `POST /api/v1/stacks/<owner>/<repo>/<stack>/redeploy`, routed through the stacks'
/// catch-all (`<stack>/redeploy` is its tail): any other POST there is not found.
pub async fn redeploy_at(
    state: State<Arc<HttpState>>,
    Path((owner, repo, tail)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match tail.strip_suffix("/redeploy").filter(|s| !s.is_empty()) {
        Some(stack) => redeploy(state, Path((owner, repo, stack.to_string())), headers, body).await,
        None => error(
            StatusCode::NOT_FOUND,
            format!("no such action: POST {tail}"),
        ),
    }
}

pub async fn redeploy(
    State(app): State<Arc<HttpState>>,
    Path((owner, repo, stack)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&app, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` is required",
        );
    }
    let name = format!("{owner}/{repo}");
    let Some(repo_cfg) = app.cfg.repo(&name).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("repository {name} is not configured"),
        );
    };
    let req: RedeployBody = if body.is_empty() {
        RedeployBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body: {e}; expected {{\"sha\": \"<commit>\"}} or nothing"),
                );
            }
        }
    };
    let (branch, dir, wanted, stack_name) = (
        repo_cfg.branch.clone(),
        repo_cfg.stacks_dir.clone(),
        req.sha.clone(),
        stack.clone(),
    );
    let head = match app.mirrors.fetch(&repo_cfg, None).await {
        Ok(h) => h.branch,
        Err(crate::git::MirrorError::NoMirror(_)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no mirror for this repository",
            );
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    // git work off the async threads.
    let resolved = app
        .mirrors
        .with(&repo_cfg.name, move |m| {
            let sha = match wanted {
                Some(sha) => {
                    if !m
                        .on_branch(&sha, &branch)
                        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?
                    {
                        return Err((
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("{sha} is not a commit on {branch}"),
                        ));
                    }
                    sha
                }
                None => head.ok_or((
                    StatusCode::CONFLICT,
                    format!("branch {branch} does not exist"),
                ))?,
            };
            let trees = m
                .stack_trees(&sha, &dir)
                .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
            if !trees.contains_key(&stack_name) {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("unknown stack `{stack_name}`: no folder {dir}/{stack_name} at {sha}"),
                ));
            }
            Ok(sha)
        })
        .await;
    let sha = match resolved {
        Ok(Ok(sha)) => sha,
        Ok(Err((code, msg))) => return error(code, msg),
        Err(crate::git::MirrorError::NoMirror(_)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no mirror for this repository",
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let job = NewJob {
        kind: Kind::Deploy,
        repo: repo_cfg.name.clone(),
        stack: Some(stack),
        sha: sha.clone(),
        trigger: Trigger::Manual,
        pr: None,
        fork: false,
    };
    match crate::pipeline::enqueue(app.queue.as_ref(), &app.cfg, &app.wake, &[job]) {
        Ok(ids) => {
            let id = ids.first().copied().unwrap_or_default();
            (StatusCode::ACCEPTED, Json(json!({"job": id, "sha": sha, "url": app.cfg.run_url(id), "api": format!("/api/v1/jobs/{id}")}))).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
