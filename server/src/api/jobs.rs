//! `GET /api/v1/jobs/<id>`: a job as stored.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{ApiError, HttpState};
use crate::domain::JobId;
use crate::queue::Job;

pub async fn job(
    State(app): State<Arc<HttpState>>,
    Path(id): Path<JobId>,
) -> Result<Json<Job>, ApiError> {
    match app.queue.job(id)? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}
