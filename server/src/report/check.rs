//! `stackgate check`: the policy gate on local files, as text, JSON or SARIF.

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::policy::input::{EventInfo, PolicyInput};
use crate::policy::{Finding, PolicyHost, Report, Severity, Verdict};
use crate::stack::{DirFiles, Stack, Template};

/// The result for one PATH argument.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: String,
    /// The template file the findings' lines refer to.
    pub template: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Why the verdict is `error`: bad input or a policy that could not decide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Checks one stack folder or bare template file.
pub async fn check_path(host: &PolicyHost, path: &Path, region: &str) -> PathResult {
    let label = path.display().to_string();
    if path.is_dir() {
        return match DirFiles::open(path).and_then(|f| Stack::load(&f).map(|s| (f, s))) {
            Ok((files, stack)) => {
                let event = EventInfo {
                    kind: "check".into(),
                    sha: None,
                };
                let report =
                    crate::policy::gate::judge(host, &stack, &files, region, event, None, None)
                        .await;
                from_report(label, stack.template.file, report)
            }
            Err(e) => bad_input(label, e),
        };
    }
    let loaded = std::fs::read(path)
        .map_err(|e| crate::stack::StackError::Io {
            file: label.clone(),
            message: e.to_string(),
        })
        .and_then(|b| Template::parse(&label, b))
        .map(|t| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let input = PolicyInput::for_template(&t, &name, region);
            (t, input)
        });
    match loaded {
        Err(e) => bad_input(label, e),
        Ok((template, input)) => {
            let report = host.evaluate(&input, Some(&template.doc)).await;
            from_report(label, template.file, report)
        }
    }
}

fn bad_input(label: String, e: crate::stack::StackError) -> PathResult {
    PathResult {
        path: label.clone(),
        template: label,
        verdict: Verdict::Error,
        findings: Vec::new(),
        errors: vec![e.to_string()],
    }
}

/// One path's result from a report on its template.
pub fn from_report(path: String, template: String, report: Report) -> PathResult {
    let errors = report
        .outcomes
        .iter()
        .filter_map(|o| {
            o.error.as_ref().map(|e| match o.policy.as_str() {
                // The host's refusals name their file and line themselves.
                crate::policy::refusal::NAME => e.clone(),
                _ => format!("policy {}: {e}", o.policy),
            })
        })
        .collect();
    PathResult {
        path,
        template,
        verdict: report.verdict,
        findings: report
            .outcomes
            .into_iter()
            .flat_map(|o| o.findings)
            .collect(),
        errors,
    }
}

/// 0 when all pass (warnings allowed), 1 when any fails, 2 for bad input or a policy error.
pub fn exit_code(results: &[PathResult]) -> u8 {
    if results.iter().any(|r| r.verdict == Verdict::Error) {
        2
    } else if results.iter().any(|r| r.verdict == Verdict::Fail) {
        1
    } else {
        0
    }
}

pub fn text(results: &[PathResult]) -> String {
    let mut out = String::new();
    for r in results {
        for f in &r.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            out.push_str(&format!(
                "{}{line}: {sev} [{}] {}: {}\n",
                f.file.as_deref().unwrap_or(&r.template),
                f.rule,
                f.resource,
                f.message
            ));
            if !f.remediation.is_empty() {
                out.push_str(&format!("    fix: {}\n", f.remediation));
            }
        }
        for e in &r.errors {
            out.push_str(&format!("{}: error: {e}\n", r.path));
        }
        let errors = r
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let verdict = match r.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR (fails closed)",
        };
        out.push_str(&format!(
            "{}: {verdict} ({errors} error(s), {} warning(s))\n",
            r.path,
            r.findings.len() - errors
        ));
    }
    out
}

pub fn json(results: &[PathResult]) -> Value {
    json!({ "results": results })
}

/// SARIF 2.1.0, as GitHub code scanning reads it.
pub fn sarif(results: &[PathResult]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut sarif_results = Vec::new();
    let mut notifications = Vec::new();
    for r in results {
        for f in &r.findings {
            if seen.insert(f.rule.clone()) {
                rules.push(json!({
                    "id": f.rule,
                    "name": f.rule,
                    "shortDescription": {"text": f.rule},
                    "help": {"text": f.remediation},
                    "properties": {"policy": f.policy},
                }));
            }
            sarif_results.push(json!({
                "ruleId": f.rule,
                "level": match f.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": {"text": format!("{}: {}", f.resource, f.message)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file.as_deref().unwrap_or(&r.template)},
                        "region": {"startLine": f.line.unwrap_or(1)},
                    },
                    "logicalLocations": [{"name": f.resource, "kind": "resource"}],
                }],
                "properties": {"policy": f.policy, "jsonPointer": f.path},
            }));
        }
        for e in &r.errors {
            notifications.push(json!({
                "level": "error",
                "message": {"text": format!("{}: {e}", r.path)},
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "stackgate",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/stackgate/stackgate",
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": sarif_results,
        }],
    })
}
