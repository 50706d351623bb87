//! Decisions on held change sets: `POST /api/v1/runs/{id}/approve|reject` for API clients
//! (a bearer token, or a session with its CSRF header), and the run page's forms,
//! `POST /runs/{id}/approve|reject` (with the form's CSRF token). Both need the operator
//! role on the run's repository; the decision, who took it and when go on the run.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::{ApiError, HttpState};
use crate::auth::{CSRF_FIELD, Credential, Viewer};
use crate::domain::{Decision, JobId, Kind, Role};
use crate::queue::{Decided, Job, Undecidable, now};

/// `approve` or `reject`, the path's last segment.
fn decision_of(action: &str) -> Option<Decision> {
    match action {
        "approve" => Some(Decision::Approved),
        "reject" => Some(Decision::Rejected),
        _ => None,
    }
}

/// `POST /api/v1/runs/{id}/{action}`.
pub async fn decide_api(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = viewer.check_api_call(&headers) {
        return r.json().into_response();
    }
    let Some(decision) = decision_of(&action) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no such action: {action}"))
            .into_response();
    };
    match decide(&app, &viewer, JobId(id), decision) {
        Ok((job, decided)) => (
            StatusCode::ACCEPTED,
            Json(json!({
                "job": job.id,
                "decision": decided.decision,
                "by": decided.by,
                "at": decided.at,
                "url": app.cfg.run_url(job.id),
            })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /runs/{id}/{action}` from the run page: 303 back to it.
pub async fn decide_form(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path((id, action)): Path<(i64, String)>,
    body: Bytes,
) -> Response {
    let Some(decision) = decision_of(&action) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such form")
            .plain()
            .into_response();
    };
    let csrf = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    if let Err(r) = viewer.check_csrf(csrf.as_deref()) {
        return r.into_response();
    }
    match decide(&app, &viewer, JobId(id), decision) {
        Ok((job, _)) => Redirect::to(&format!("/runs/{}", job.id)).into_response(),
        Err(e) => e.plain().into_response(),
    }
}

/// How a decision names who took it.
fn decider(viewer: &Viewer) -> String {
    match (&viewer.email, viewer.credential) {
        (Some(e), _) => e.clone(),
        (None, Credential::Token) => "an API token".into(),
        _ => viewer.name(),
    }
}

/// Checks that `viewer` is an operator on the run's repository and records the decision:
/// the held job goes back in the queue, for a worker to execute or delete its change set.
fn decide(
    app: &HttpState,
    viewer: &Viewer,
    id: JobId,
    decision: Decision,
) -> Result<(Job, Decided), ApiError> {
    let job = app.queue.job(id)?;
    // A run of a repository the viewer may not see is not found, as on the run page.
    let job = job
        .filter(|j| j.kind == Kind::Deploy && viewer.may(&j.repo, Role::Viewer))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no deploy run {id}")))?;
    viewer.require(&job.repo, Role::Operator)?;
    let decided = Decided {
        decision,
        by: decider(viewer),
        at: now(),
    };
    let expired = job.detail["hold"]["expires_at"]
        .as_i64()
        .is_some_and(|at| at <= decided.at);
    if expired {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {id}: its approval expired; push or redeploy to plan again"),
        ));
    }
    tracing::info!(who = %decided.by, job = %id, decision = %decision, "decision on a held change set");
    match app.queue.decide(id, &decided)? {
        Ok(job) => {
            app.wake.jobs.notify_one();
            Ok((job, decided))
        }
        Err(e @ Undecidable::NotFound(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}
