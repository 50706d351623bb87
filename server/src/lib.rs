//! stackgate: GitOps deployments for AWS CloudFormation, gated by WebAssembly policies.
//!
//! Data flows one way: intake (webhook) and api (manual redeploy) → queue → pipeline
//! (checkout → policy → plan → deploy) → report (statuses, PR comment, pages, metrics,
//! through the outbox to GitHub). `app` wires them; `workers` run the loops; the tools of
//! the steps are `git`, `stack`, `policy`, `cloud` and `github`. The CLI drives the steps
//! directly. `tests/imports.rs` keeps the top-level modules free of import cycles.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod domain;
#[doc(hidden)]
pub mod fuzz;
pub mod git;
pub mod github;
pub mod intake;
pub mod pipeline;
pub mod policy;
pub mod queue;
pub mod report;
pub mod review;
pub mod stack;
pub mod workers;
