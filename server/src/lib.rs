//! stackgate: GitOps deployments for AWS CloudFormation, gated by WebAssembly policies.
//!
//! Data flows one way: intake (webhook, API) → queue → pipeline (checkout → policy →
//! deploy) → report (GitHub, UI). The CLI drives the pipeline's steps directly.

pub mod api;
pub mod app;
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
pub mod stack;
pub mod workers;
