//! The guard asked before every call that changes AWS: a worker that may have lost its
//! job's lease sends nothing. It also names the call's idempotency token, so that a retry
//! of the same claim is the same request to CloudFormation.

use std::sync::Arc;

/// Asked right before a call that changes AWS (an upload, a change set, a delete).
pub trait WriteGuard: Send + Sync {
    /// `Err` when this process can no longer be sure it holds the job.
    fn check(&self, call: &'static str) -> Result<(), LeaseLapsed>;
    /// The token of this claim's requests: `ClientToken` / `ClientRequestToken`.
    fn token(&self) -> Option<String>;
}

/// A call not sent: the lease of the job may have lapsed, so another replica may hold it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call} not sent: this replica may no longer hold the job's lease")]
pub struct LeaseLapsed {
    pub call: &'static str,
}

/// The guard of one job's AWS writes; none (the CLI) lets every call through, untokened.
#[derive(Clone, Default)]
pub struct Guard(Option<Arc<dyn WriteGuard>>);

impl Guard {
    pub fn new(g: Arc<dyn WriteGuard>) -> Self {
        Guard(Some(g))
    }

    pub fn check(&self, call: &'static str) -> Result<(), LeaseLapsed> {
        match &self.0 {
            Some(g) => g.check(call),
            None => Ok(()),
        }
    }

    pub fn token(&self) -> Option<String> {
        self.0.as_ref().and_then(|g| g.token())
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.token() {
            Some(t) => write!(f, "Guard({t})"),
            None => f.write_str("Guard(none)"),
        }
    }
}

/// CloudFormation's tokens: 1 to 128 characters of `[a-zA-Z][-a-zA-Z0-9]*`.
pub fn valid_token(t: &str) -> bool {
    let mut chars = t.chars();
    (1..=128).contains(&t.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}
