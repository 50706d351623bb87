//! `GET /api/v1/jobs/<id>`: a job as stored.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, HttpState};
use crate::auth::Viewer;
use crate::domain::{JobId, Role};
use crate::queue::Job;

pub async fn job(
    State(app): State<Arc<HttpState>>,
    viewer: Viewer,
    Path(id): Path<JobId>,
) -> Result<Json<Job>, ApiError> {
    match app.queue.job(id)? {
        // A viewer of other repositories only learns that there is no such job for them.
        Some(job) if viewer.may(&job.repo, Role::Viewer) => Ok(Json(job)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}
