//! Declarative policy tests, after cfn-guard's rule-test files: each case is an input
//! and the exact set of findings it must produce.
//!
//! One case per `*.json` file:
//! ```json
//! {
//!   "name": "tcp 22 open to the world",
//!   "input": {"template": {...}, "parameters": {...}, "settings": {...}},
//!   "expect": [{"rule": "open-ingress/world-open", "resource": "WebSg", "severity": "error"}]
//! }
//! ```
//! `input` is the document the host sends; `stack` and `event` get defaults when missing.
//! `expect` is compared as a set of (rule, resource, severity); `[]` means the input passes.
//! Instead of `expect`, `"expect_error": "text"` asserts that evaluation fails with an
//! error containing `text`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{EvaluateFn, Severity, evaluate_json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Free text for readers of the case file.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    input: Value,
    #[serde(default)]
    expect: Option<Vec<Expected>>,
    #[serde(default)]
    expect_error: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(deny_unknown_fields)]
struct Expected {
    rule: String,
    resource: String,
    severity: Severity,
}

/// Runs every `*.json` case in `dir` through `evaluate` (via the same JSON-string entry
/// point the Wasm export uses). Returns the number of cases, or every failure at once.
pub fn run_cases(dir: impl AsRef<Path>, evaluate: EvaluateFn) -> Result<usize, String> {
    let dir = dir.as_ref();
    let mut files: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run_case(file, evaluate) {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    if files.is_empty() {
        return Err(format!("no *.json cases in {}", dir.display()));
    }
    if failures.is_empty() {
        Ok(files.len())
    } else {
        Err(format!(
            "{} of {} cases failed:\n{}",
            failures.len(),
            files.len(),
            failures.join("\n")
        ))
    }
}

fn run_case(file: &Path, evaluate: EvaluateFn) -> Result<(), String> {
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("not a test case: {e}"))?;
    let mut input = case.input;
    let obj = input
        .as_object_mut()
        .ok_or_else(|| format!("[{}] input must be an object", case.name))?;
    obj.entry("stack")
        .or_insert_with(|| json!({"name": "test-stack", "region": "us-east-1"}));
    obj.entry("event").or_insert_with(
        || json!({"kind": "check", "sha": "0000000000000000000000000000000000000000"}),
    );
    let raw = serde_json::to_string(&input).map_err(|e| e.to_string())?;
    let result = evaluate_json(&raw, evaluate);

    match (case.expect, case.expect_error, result) {
        (None, Some(want), Err(got)) if got.contains(&want) => Ok(()),
        (None, Some(want), Err(got)) => Err(format!(
            "[{}] expected an error containing {want:?}, got error {got:?}",
            case.name
        )),
        (None, Some(want), Ok(findings)) => Err(format!(
            "[{}] expected an error containing {want:?}, got findings {findings:#?}",
            case.name
        )),
        (Some(_), None, Err(e)) => Err(format!("[{}] evaluation failed: {e}", case.name)),
        (Some(expect), None, Ok(findings)) => {
            let template = input.get("template").cloned().unwrap_or(Value::Null);
            for f in &findings {
                if template.pointer(&f.path).is_none() {
                    return Err(format!(
                        "[{}] finding {} on {} has a path that is not in the template: {}",
                        case.name, f.rule, f.resource, f.path
                    ));
                }
                if f.message.is_empty() || f.remediation.is_empty() {
                    return Err(format!(
                        "[{}] finding {} lacks a message or remediation",
                        case.name, f.rule
                    ));
                }
            }
            let got: BTreeSet<Expected> = findings
                .iter()
                .map(|f| Expected {
                    rule: f.rule.clone(),
                    resource: f.resource.clone(),
                    severity: f.severity,
                })
                .collect();
            let want: BTreeSet<Expected> = expect.into_iter().collect();
            if got == want {
                return Ok(());
            }
            let missing: Vec<_> = want.difference(&got).map(show).collect();
            let extra: Vec<_> = got.difference(&want).map(show).collect();
            Err(format!(
                "[{}] findings differ\n  missing: {missing:?}\n  unexpected: {extra:?}\n  all findings: {}",
                case.name,
                serde_json::to_string_pretty(&findings).unwrap_or_default()
            ))
        }
        _ => Err(format!(
            "[{}] needs exactly one of `expect` or `expect_error`",
            case.name
        )),
    }
}

fn show(e: &Expected) -> String {
    format!("{} {} {}", e.rule, e.resource, e.severity.as_str())
}
