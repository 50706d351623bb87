//! The manual redeploy: `POST /api/v1/stacks/<owner>/<repo>/<stack>/redeploy` for API
//! clients (a bearer token, or a session with its CSRF header), and the console's form,
//! `POST /stacks/<owner>/<repo>/<stack…>/redeploy` (a session or the local user, with the
//! form's CSRF token; `…/drift` asks for a drift check). Both need the operator role on the repository, and both queue the
//! job through [`queue_redeploy`].

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, HttpState};
use crate::auth::{CSRF_FIELD, Viewer};
use crate::domain::{JobId, Kind, Role, Trigger};
use crate::queue::NewJob;

pub(super) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(code, message).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedeployBody {
    sha: Option<String>,
}

/// `POST /api/v1/stacks/<owner>/<repo>/<stack>/redeploy`, routed through the stacks'
/// catch-all (`<stack>/redeploy` is its tail): any other POST there is not found.
/// `POST /api/v1/stacks/{owner}/{repo}/{stack…}/{action}`: a stack folder may hold `/`, so
/// the action is the path's last segment (`redeploy` or `drift`).
pub async fn stack_action(
    state: State<Arc<HttpState>>,
    viewer: Viewer,
    Path((owner, repo, tail)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match tail.rsplit_once('/') {
        Some((stack, "redeploy")) if !stack.is_empty() => {
            let path = Path((owner, repo, stack.to_string()));
            redeploy(state, viewer, path, headers, body).await
        }
        Some((stack, "drift")) if !stack.is_empty() => {
            let path = Path((owner, repo, stack.to_string()));
            super::drift::check(state, viewer, path, headers).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such action: POST {tail}"),
        ),
    }
}

pub async fn redeploy(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((owner, repo, stack)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = viewer.check_api_call(&headers) {
        return r.json().into_response();
    }
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
    match queue_redeploy(&app, &viewer, &format!("{owner}/{repo}"), &stack, req.sha).await {
        Ok((id, sha)) => (
            StatusCode::ACCEPTED,
            Json(json!({"job": id, "sha": sha, "url": app.cfg.run_url(id), "api": format!("/api/v1/jobs/{id}")})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /stacks/{owner}/{repo}/{stack…}/redeploy` from the console: a form with the CSRF
/// token (`csrf`) and, optionally, the commit (`sha`). 303 to the run page.
pub async fn redeploy_form(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((owner, repo, rest)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    // The stack folder may hold `/`: the action is the last segment.
    let (stack, action) = match rest.rsplit_once('/') {
        Some((stack, a @ ("redeploy" | "drift"))) if !stack.is_empty() => (stack, a),
        _ => {
            return ApiError::new(StatusCode::NOT_FOUND, "no such form")
                .plain()
                .into_response();
        }
    };
    let mut csrf = None;
    let mut sha = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            CSRF_FIELD => csrf = Some(v.into_owned()),
            "sha" if !v.trim().is_empty() => sha = Some(v.trim().to_string()),
            _ => {}
        }
    }
    if let Err(r) = viewer.check_csrf(csrf.as_deref()) {
        return r.into_response();
    }
    let name = format!("{owner}/{repo}");
    if action == "drift" {
        return match super::drift::queue_check(&app, &viewer, &name, stack) {
            Ok((id, _)) => Redirect::to(&format!("/runs/{id}")).into_response(),
            Err(e) => e.plain().into_response(),
        };
    }
    match queue_redeploy(&app, &viewer, &name, stack, sha).await {
        Ok((id, _)) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => e.plain().into_response(),
    }
}

/// Checks that `viewer` is an operator on `repo`, resolves `sha` (default: the branch head)
/// and that `stack` is a folder there, and queues its deploy: the job id and the commit.
pub(crate) async fn queue_redeploy(
    app: &HttpState,
    viewer: &Viewer,
    name: &str,
    stack: &str,
    wanted: Option<String>,
) -> Result<(JobId, String), ApiError> {
    let Some(repo_cfg) = app.cfg.repo(name).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository {name} is not configured"),
        ));
    };
    viewer.require(&repo_cfg.name, Role::Operator)?;
    tracing::info!(who = %viewer.name(), repo = %repo_cfg.name, %stack, "redeploy asked for");
    let (branch, dir, stack_name) = (
        repo_cfg.branch.clone(),
        repo_cfg.stacks_dir.clone(),
        stack.to_string(),
    );
    let head = match app.mirrors.fetch(&repo_cfg, None).await {
        Ok(h) => h.branch,
        Err(crate::git::MirrorError::NoMirror(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no mirror for this repository",
            ));
        }
        Err(e) => return Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())),
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
        Ok(Err((code, msg))) => return Err(ApiError::new(code, msg)),
        Err(crate::git::MirrorError::NoMirror(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no mirror for this repository",
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ));
        }
    };
    let job = NewJob {
        kind: Kind::Deploy,
        repo: repo_cfg.name.clone(),
        stack: Some(stack.to_string()),
        sha: sha.clone(),
        trigger: Trigger::Manual,
        pr: None,
        fork: false,
    };
    match crate::pipeline::enqueue(app.queue.as_ref(), &app.cfg, &app.wake, &[job]) {
        Ok(ids) => Ok((ids.first().copied().unwrap_or_default(), sha)),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}
