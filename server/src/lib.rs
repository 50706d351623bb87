//! stackgate: GitOps deployments for AWS CloudFormation, gated by WebAssembly policies.
//!
//! Data flows one way: intake (webhook, API) → queue → pipeline (checkout → policy →
//! deploy) → report (GitHub, UI). The CLI drives the pipeline's steps directly.

pub mod check;
pub mod cli;
pub mod cloud;
pub mod deployer;
pub mod gitinfo;
pub mod package;
pub mod policy;
pub mod render;
pub mod stack;
