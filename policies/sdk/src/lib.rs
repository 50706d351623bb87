//! Guest-side library shared by stackgate policies.
//!
//! A policy is a pure function from one JSON input document to a list of findings
//! (see `policies/wit/policy.wit` and `policies/README.md`). This crate holds what every
//! policy needs and none should rewrite:
//! - [`finding`]: the output type and a de-duplicating collector;
//! - [`input`]: the input document: template, parameters, stack, look-ups, settings;
//! - [`template`]: a typed view of the template and its resources;
//! - [`resolve`]: CloudFormation intrinsics resolved to the *set* of values they may take;
//! - [`refs`]: which resources use a security group;
//! - [`iam`]: IAM policy documents normalised to statements;
//! - [`catalog`]: every IAM action and its access level, to expand wildcards;
//! - [`cidr`]: CIDR parsing for IPv4 and IPv6;
//! - [`pointer`]: RFC 6901 JSON pointers.
//!
//! Everything here is plain Rust on `serde_json`, so a policy runs natively (tests,
//! benchmarks) exactly as it runs inside the Wasm component.

pub mod catalog;
pub mod cidr;
mod export;
pub mod finding;
pub mod iam;
pub mod input;
pub mod pointer;
pub mod refs;
pub mod resolve;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;

pub use finding::{Finding, Findings, Severity};
pub use input::Input;
pub use resolve::{Doubt, Part, Possible, Resolved, Resolver, Source};
pub use template::{Resource, Template};

/// The signature every policy exposes natively.
pub type EvaluateFn = fn(&serde_json::Value) -> Result<Vec<Finding>, String>;

/// Parses the raw input string and runs `evaluate` on it: the body of the Wasm export.
pub fn evaluate_json(input: &str, evaluate: EvaluateFn) -> Result<Vec<Finding>, String> {
    let value: serde_json::Value =
        serde_json::from_str(input).map_err(|e| format!("policy input is not valid JSON: {e}"))?;
    evaluate(&value)
}
