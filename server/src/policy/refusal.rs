//! The host's own refusals, made beside the policies so that no policy can forget them:
//! what CloudFormation expands out of sight ([`super::expansion`]) and, for a stack
//! folder, a parameter with no value. Each is a finding with its line; together they make
//! the verdict `error`.

use serde_json::Value;
use stackgate_policy_sdk::pointer;

use super::expansion;
use super::input::PolicyInput;
use super::{Finding, Outcome, Severity, Verdict};
use crate::stack::yaml::Document;

/// The name the refusals are reported under, beside the policies' names.
pub const NAME: &str = "stackgate";
pub const RULE_NO_VALUE: &str = "stackgate/parameter-without-value";

/// `None` when the host has nothing to refuse.
pub fn outcome(input: &PolicyInput, lines: Option<&Document>) -> Option<Outcome> {
    let line = |ptr: &str| lines.and_then(|d| d.line_of(ptr));
    let mut findings = Vec::new();
    let local = |id: &str| input.origin.local_children.iter().any(|c| c == id);
    for e in expansion::scan(&input.template, &local) {
        findings.push(Finding {
            policy: NAME.into(),
            rule: e.construct.rule().into(),
            severity: Severity::Error,
            resource: e.resource.clone(),
            line: line(&e.pointer),
            file: None,
            message: e.message(input.offline()),
            remediation: e.remediation().into(),
            path: e.pointer,
        });
    }
    if input.origin.deployment {
        for name in unset_parameters(input) {
            let ptr = pointer::child("/Parameters", &name);
            findings.push(Finding {
                policy: NAME.into(),
                rule: RULE_NO_VALUE.into(),
                severity: Severity::Error,
                resource: String::new(),
                line: line(&ptr),
                file: None,
                message: format!(
                    "parameter `{name}` has no value: the deployment file gives none and it has \
                     no Default, so the policies cannot judge what it feeds, and CloudFormation \
                     would refuse the stack."
                ),
                remediation: format!(
                    "Give `{name}` a value under `parameters` in the deployment file, or a \
                     Default in the template."
                ),
                path: ptr,
            });
        }
    }
    let first = findings.first()?;
    let at = first
        .line
        .map(|l| format!("{}:{l}", input.origin.file))
        .unwrap_or_else(|| input.origin.file.clone());
    let more = match findings.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let error = format!("{at}: {}{more}", first.message);
    Some(Outcome {
        policy: NAME.into(),
        digest: String::new(),
        verdict: Verdict::Error,
        findings,
        error: Some(error),
        micros: 0,
    })
}

/// Input the gate could not read as a whole (a nested template that is missing or
/// malformed): verdict `error`, nothing deploys.
pub fn bad_input(message: String) -> Outcome {
    Outcome {
        policy: NAME.into(),
        digest: String::new(),
        verdict: Verdict::Error,
        findings: Vec::new(),
        error: Some(message),
        micros: 0,
    }
}

/// Declared parameters with neither a value in the input nor a Default, and not filled in
/// by stackgate itself.
fn unset_parameters(input: &PolicyInput) -> Vec<String> {
    let Some(Value::Object(params)) = input.template.get("Parameters") else {
        return Vec::new();
    };
    params
        .iter()
        .filter(|(name, decl)| {
            decl.get("Default").is_none()
                && input.parameters.get(*name).is_none_or(Value::is_null)
                && !input.origin.filled_later.contains(name)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::input::{EventInfo, InputOrigin, Lookups, StackInfo};
    use crate::stack::yaml;

    fn input(text: &str, deployment: bool, kind: &str) -> (PolicyInput, Document) {
        let doc = yaml::parse(text).unwrap();
        let input = PolicyInput {
            template: doc.value.clone(),
            parameters: serde_json::Map::new(),
            capabilities: Vec::new(),
            stack: StackInfo {
                name: "s".into(),
                region: "us-east-1".into(),
            },
            target: None,
            event: EventInfo {
                kind: kind.into(),
                sha: None,
            },
            resolved: Lookups::default(),
            origin: InputOrigin {
                file: "stacks/s/template.yaml".into(),
                deployment,
                filled_later: vec!["CodeKey".into()],
                local_children: Vec::new(),
                settings: Default::default(),
            },
        };
        (input, doc)
    }

    #[test]
    fn a_transform_is_refused_with_file_and_line() {
        let (i, doc) = input(
            "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\nResources:\n  F:\n    Type: AWS::Serverless::Function\n",
            true,
            "check",
        );
        let o = outcome(&i, Some(&doc)).unwrap();
        assert_eq!(o.verdict, Verdict::Error);
        assert_eq!(o.findings[0].rule, "stackgate/transform");
        assert_eq!(o.findings[0].line, Some(2));
        let err = o.error.unwrap();
        assert!(err.starts_with("stacks/s/template.yaml:2: "), "{err}");
        assert!(err.contains("needs `plan`"), "{err}");
    }

    #[test]
    fn unset_parameters_are_refused_only_for_a_stack_folder() {
        let text = "Parameters:\n  Cidr:\n    Type: String\n  CodeKey:\n    Type: String\n  Size:\n    Type: String\n    Default: s\nResources:\n  B:\n    Type: AWS::S3::Bucket\n";
        let (i, doc) = input(text, true, "push");
        let o = outcome(&i, Some(&doc)).unwrap();
        assert_eq!(o.findings.len(), 1, "{:?}", o.findings);
        assert_eq!(o.findings[0].rule, RULE_NO_VALUE);
        assert_eq!(o.findings[0].line, Some(2));
        let (mut i, doc) = input(text, true, "push");
        i.parameters.insert("Cidr".into(), "10.0.0.0/8".into());
        assert!(outcome(&i, Some(&doc)).is_none());
        let (i, doc) = input(text, false, "check");
        assert!(outcome(&i, Some(&doc)).is_none());
    }
}
