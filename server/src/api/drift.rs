//! Drift checks now, of what a folder deployed: `POST /api/v1/stacks/<owner>/<repo>/<stack>/drift`
//! for API clients, and the console's form (`…/drift` under `/stacks/`, see
//! [`super::redeploy::redeploy_form`]). Both need the operator role on the repository.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, HttpState};
use crate::auth::Viewer;
use crate::domain::{JobId, Kind, Role, Trigger};
use crate::queue::NewJob;

pub async fn check(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((owner, repo, stack)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = viewer.check_api_call(&headers) {
        return r.json().into_response();
    }
    match queue_check(&app, &viewer, &format!("{owner}/{repo}"), &stack) {
        Ok((id, sha)) => {
            let body = json!({
                "job": id,
                "sha": sha,
                "url": app.cfg.run_url(id),
                "api": format!("/api/v1/jobs/{id}"),
            });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Checks that `viewer` is an operator on `repo` and that `stack` has something deployed,
/// and queues its drift check at the deployed commit: the job id and the commit.
pub(crate) fn queue_check(
    app: &HttpState,
    viewer: &Viewer,
    name: &str,
    stack: &str,
) -> Result<(JobId, String), ApiError> {
    let Some(repo_cfg) = app.cfg.repo(name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("repository {name} is not configured"),
        ));
    };
    viewer.require(&repo_cfg.name, Role::Operator)?;
    let row = match app.queue.ledger_row(&repo_cfg.name, stack)? {
        Some(r) if !r.removed => r,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("stack folder `{stack}` of {name} has nothing deployed to check"),
            ));
        }
    };
    tracing::info!(who = %viewer.name(), repo = %repo_cfg.name, %stack, "drift check asked for");
    let job = NewJob {
        kind: Kind::Drift,
        repo: repo_cfg.name.clone(),
        stack: Some(stack.to_string()),
        sha: row.sha.clone(),
        trigger: Trigger::Manual,
        pr: None,
        fork: false,
    };
    let ids = crate::pipeline::enqueue(app.queue.as_ref(), &app.cfg, &app.wake, &[job])?;
    Ok((ids.first().copied().unwrap_or_default(), row.sha))
}
