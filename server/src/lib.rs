//! stackgate: GitOps deployments for AWS CloudFormation, gated by WebAssembly policies.
//!
//! Data flows one way: intake (webhook, API) → queue → pipeline (checkout → policy →
//! deploy) → report (GitHub, UI). The CLI drives the pipeline's steps directly.

pub mod api;
pub mod app;
pub mod claims;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod deployer;
pub mod domain;
#[doc(hidden)]
pub mod fuzz;
pub mod git;
pub mod github;
pub mod intake;
pub mod listener;
pub mod nested;
pub mod ownership;
pub mod package;
pub mod pipeline;
pub mod policy;
pub mod queue;
pub mod redact;
pub mod regions;
pub mod report;
pub mod stack;
pub mod workers;
