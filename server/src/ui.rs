//! The run pages' handlers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::pipeline::App;
use crate::report::pages;

pub async fn index(State(app): State<Arc<App>>) -> Response {
    match app.store.recent_jobs(100) {
        Ok(jobs) => Html(pages::index(&jobs)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

pub async fn run_page(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    match app.store.job(id) {
        Ok(Some(job)) => Html(pages::run_page(&job)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no job {id}")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
