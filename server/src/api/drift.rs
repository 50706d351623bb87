//! `POST /api/v1/stacks/<owner>/<repo>/<stack>/drift`: a drift check now, of what the
//! folder deployed, for the same bearer tokens as the redeploy.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;
use super::redeploy::{authorized, error};
use crate::domain::{Kind, Trigger};
use crate::queue::NewJob;

pub async fn check(
    State(app): State<Arc<HttpState>>,
    Path((owner, repo, stack)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&app, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` is required",
        );
    }
    let name = format!("{owner}/{repo}");
    let Some(repo_cfg) = app.cfg.repo(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("repository {name} is not configured"),
        );
    };
    let row = match app.queue.ledger_row(&repo_cfg.name, &stack) {
        Ok(Some(r)) if !r.removed => r,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("stack folder `{stack}` of {name} has nothing deployed to check"),
            );
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let job = NewJob {
        kind: Kind::Drift,
        repo: repo_cfg.name.clone(),
        stack: Some(stack),
        sha: row.sha.clone(),
        trigger: Trigger::Manual,
        pr: None,
        fork: false,
    };
    match crate::pipeline::enqueue(app.queue.as_ref(), &app.cfg, &app.wake, &[job]) {
        Ok(ids) => {
            let id = ids.first().copied().unwrap_or_default();
            let body = json!({
                "job": id,
                "sha": row.sha,
                "url": app.cfg.run_url(id),
                "api": format!("/api/v1/jobs/{id}"),
            });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
