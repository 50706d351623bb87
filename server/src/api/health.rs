//! Health, readiness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, HttpState};

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the state database answers.
pub async fn readyz(State(app): State<Arc<HttpState>>) -> Result<impl IntoResponse, ApiError> {
    app.queue.depth()?;
    Ok((StatusCode::OK, "ready\n"))
}

pub async fn metrics(State(app): State<Arc<HttpState>>) -> impl IntoResponse {
    let (queued, running) = app.queue.depth().unwrap_or((-1, -1));
    // A database that does not answer leaves the gauges out rather than report "in sync".
    let drifts = app.queue.drifts().unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(queued, running, &drifts),
    )
}
