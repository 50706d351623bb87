//! intake: the HTTP surface. Webhooks and the manual API become queued jobs; nothing here
//! waits on git or AWS.

pub mod api;
pub mod signature;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::pipeline::App;

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/webhooks/github",
            post(webhook::receive).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route(
            "/api/v1/stacks/{owner}/{repo}/{stack}/redeploy",
            post(api::redeploy),
        )
        .route("/api/v1/jobs/{id}", get(api::job))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/runs/{id}", get(crate::ui::run_page))
        .route("/", get(crate::ui::index))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(app)
}
