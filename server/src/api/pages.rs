//! The run pages' handlers; `report::pages` writes the HTML.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;

use super::{ApiError, HttpState};
use crate::auth::Viewer;
use crate::domain::JobId;
use crate::report::pages;

pub async fn index(
    State(app): State<Arc<HttpState>>,
    _viewer: Viewer,
) -> Result<Html<String>, ApiError> {
    let jobs = app
        .queue
        .recent_jobs(100)
        .map_err(|e| ApiError::from(e).plain())?;
    Ok(Html(pages::index(&jobs)))
}

pub async fn run_page(
    State(app): State<Arc<HttpState>>,
    _viewer: Viewer,
    Path(id): Path<JobId>,
) -> Result<Html<String>, ApiError> {
    match app.queue.job(id).map_err(|e| ApiError::from(e).plain())? {
        Some(job) => Ok(Html(pages::run_page(&job))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")).plain()),
    }
}
