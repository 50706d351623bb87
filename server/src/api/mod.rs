//! api: the HTTP handlers besides the webhook (the manual redeploy, job state, health,
//! metrics, run pages), the state they share with it, and their one error type.

pub mod approve;
pub mod drift;
pub mod health;
pub mod jobs;
pub mod live;
pub mod login;
pub mod pages;
pub mod redeploy;

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Auth, AuthState, Refusal};
use crate::config::Config;
use crate::git::Mirrors;
use crate::queue::recorder::Recorder;
use crate::queue::{Queue, StoreError, Wake};
use crate::report::console::view::Clock;
use crate::report::metrics::Metrics;

/// What the HTTP handlers need, and nothing more.
pub struct HttpState {
    pub cfg: Config,
    pub queue: Arc<dyn Queue>,
    /// Records webhook deliveries with group commit.
    pub recorder: Recorder,
    pub mirrors: Arc<Mirrors>,
    /// (repo, webhook secret) for each repository that takes webhooks.
    pub webhook_secrets: Vec<(String, secrecy::SecretString)>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Wake>,
    /// Who may do what: tokens, sessions, the login.
    pub auth: Auth,
    /// The time the console's pages tell ages by.
    pub clock: Clock,
    /// Permits of the live run pages' event streams.
    pub live_streams: Arc<tokio::sync::Semaphore>,
}

impl AuthState for HttpState {
    fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// A refused or failed request: its status and what to say. The API answers in JSON
/// (`{"error": …}`), the pages in plain text.
#[derive(Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub message: String,
    plain: bool,
}

impl ApiError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            plain: false,
        }
    }

    /// The same error, for a page.
    pub fn plain(self) -> Self {
        Self {
            plain: true,
            ..self
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::new(r.code, r.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.plain {
            (self.code, self.message).into_response()
        } else {
            (self.code, Json(json!({"error": self.message}))).into_response()
        }
    }
}
