//! github: where statuses, PR comments and check runs go. A small client trait, with the octocrab
//! client, a log-only client (no GitHub configured) and a fake that records calls for tests.

pub mod credential;
pub mod fake;
pub mod log_only;
pub mod octocrab;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::GithubConfig;
use crate::domain::{Annotation, CheckState, StatusState};

pub use credential::GitCredential;

/// What a failed GitHub call means for trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubErrorKind {
    NotFound,
    /// Refused for the credentials: trying again will not help.
    Permission,
    RateLimited,
    /// Anything else; `retry` when trying again may help (5xx, a broken connection).
    Other {
        retry: bool,
    },
}

/// A failed GitHub call.
#[derive(Debug, thiserror::Error)]
#[error("GitHub {operation}: {message}")]
pub struct GithubError {
    pub operation: &'static str,
    pub message: String,
    pub kind: GithubErrorKind,
    /// How long GitHub asked to wait (`Retry-After`, or `x-ratelimit-reset` once the
    /// limit is spent), when the reply said.
    pub retry_after: Option<std::time::Duration>,
}

impl GithubError {
    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        match self.kind {
            GithubErrorKind::RateLimited => true,
            GithubErrorKind::Other { retry } => retry,
            GithubErrorKind::NotFound | GithubErrorKind::Permission => false,
        }
    }
}

/// One commit status to post.
#[derive(Debug, Clone, Copy)]
pub struct StatusPost<'a> {
    pub repo: &'a str,
    pub sha: &'a str,
    pub context: &'a str,
    pub state: StatusState,
    pub description: &'a str,
    pub target_url: &'a str,
}

/// One write of a check run: its whole output, and at most
/// [`ANNOTATIONS_PER_REQUEST`] of its annotations (each write adds its own).
#[derive(Debug, Clone, Copy)]
pub struct CheckRunPost<'a> {
    pub repo: &'a str,
    pub sha: &'a str,
    pub name: &'a str,
    pub state: CheckState,
    pub title: &'a str,
    pub summary: &'a str,
    pub annotations: &'a [Annotation],
    pub details_url: &'a str,
    pub external_id: &'a str,
}

/// GitHub takes at most this many annotations in one create or update of a check run.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

pub type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<T, GithubError>> + Send + 'a>>;

/// What stackgate tells GitHub.
pub trait GitHub: Send + Sync {
    fn post_status<'a>(&'a self, status: StatusPost<'a>) -> Reply<'a, ()>;

    /// Creates the PR comment, or updates the one stackgate made before (`existing`).
    /// Returns its id; `None` when nothing was posted (no GitHub).
    fn upsert_comment<'a>(
        &'a self,
        repo: &'a str,
        pr: u64,
        existing: Option<u64>,
        body: &'a str,
    ) -> Reply<'a, Option<u64>>;

    /// Creates a check run, or updates the one made before (`existing`). Returns its id;
    /// `None` when nothing was posted (no GitHub). Only a GitHub App may.
    fn upsert_check_run<'a>(
        &'a self,
        existing: Option<u64>,
        run: CheckRunPost<'a>,
    ) -> Reply<'a, Option<u64>>;
}

/// The client for the configuration, and the credential git uses with the same identity.
pub async fn from_config(
    cfg: Option<&GithubConfig>,
) -> Result<(Arc<dyn GitHub>, GitCredential), String> {
    match cfg {
        None => Ok((Arc::new(log_only::LogOnly), GitCredential::None)),
        Some(cfg) => {
            let (client, git) = octocrab::Client::from_config(cfg).await?;
            Ok((Arc::new(client), git))
        }
    }
}
