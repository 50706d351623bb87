//! report: every outbound word. Commit statuses and their contexts, the PR comment, check
//! runs, check output (text, JSON, SARIF), change tables, run pages, metrics, and the one
//! outbox poster that tells GitHub.

pub mod check;
pub mod check_poster;
pub mod check_runs;
pub mod comment;
pub mod console;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod redact;
pub mod render;
pub mod review;
pub mod statuses;
