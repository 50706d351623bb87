//! intake: the HTTP surface. Webhooks and the manual API become queued jobs; nothing here
//! waits on git or AWS.

pub mod events;
pub mod listener;
pub mod signature;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::api::{self, HttpState};

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(
            "/webhooks/github",
            post(webhook::receive).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        // One catch-all for a stack's JSON and its actions (redeploy, drift): a folder may
        // hold `/`, and a catch-all cannot sit beside a `{stack}/redeploy` route.
        .route(
            "/api/v1/stacks/{owner}/{repo}/{*stack}",
            get(api::pages::stack_json).post(api::redeploy::stack_action),
        )
        .route("/api/v1/stacks", get(api::pages::stacks_json))
        .route("/api/v1/openapi.json", get(api::pages::openapi))
        .route("/api/v1/runs/{id}", get(api::pages::run_json))
        .route("/api/v1/runs/{id}/{action}", post(api::approve::decide_api))
        .route("/api/v1/jobs/{id}", get(api::jobs::job))
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .route("/metrics", get(api::health::metrics))
        .route("/runs/{id}", get(api::pages::run_page))
        .route("/runs/{id}/events", get(api::live::run_events))
        .route("/runs/{id}/{action}", post(api::approve::decide_form))
        .route(
            "/stacks/{owner}/{repo}/{*stack}",
            get(api::pages::stack_page).post(api::redeploy::redeploy_form),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pr}",
            get(api::pages::pull_page),
        )
        .route("/login", get(api::login::login))
        .route("/auth/callback", get(api::login::callback))
        .route("/auth/session", get(api::login::session))
        .route("/logout", post(api::login::logout))
        .route("/", get(api::pages::index))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}
