//! Values CloudFormation would fetch at deploy time, looked up first where stackgate has
//! AWS access, so that the policies judge the real value: exports (`ListExports`) and plain
//! SSM `String` / `StringList` parameters (`DescribeParameters` for the type, then
//! `GetParameters`). `SecureString` parameters and Secrets Manager are never read; what is
//! not found stays doubt, and the policies fail it closed.

use std::collections::BTreeSet;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use serde_json::Value;
use stackgate_policy_sdk::{Input, Resolved, pointer};

use super::expansion::MAX_DEPTH;
use super::input::{Lookups, PolicyInput};
use crate::cloud::Aws;

/// At most this many SSM names and exports are looked up for one template.
pub const MAX_NAMES: usize = 100;
/// `ListExports` pages read at most (100 exports a page on AWS).
const MAX_EXPORT_PAGES: usize = 50;
/// `GetParameters` and `DescribeParameters` take at most 10 names a call.
const BATCH: usize = 10;

/// What the template asks CloudFormation to fetch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// SSM parameter names, `name` or `name:version` / `name:label`.
    pub ssm: BTreeSet<String>,
    /// Export names.
    pub imports: BTreeSet<String>,
}

/// Looks up what it safely can; a failed call is logged and leaves the values unresolved.
pub async fn resolve(aws: &Aws, input: &PolicyInput) -> Lookups {
    let wanted = wanted(input);
    let mut out = Lookups::default();
    if !wanted.imports.is_empty() {
        match exports(aws, &wanted.imports).await {
            Ok(found) => out.imports = found,
            Err(e) => tracing::warn!(error = %e, "cannot list exports; imports stay unresolved"),
        }
    }
    if !wanted.ssm.is_empty() {
        match ssm_strings(aws, &wanted.ssm).await {
            Ok(found) => out.ssm = found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read SSM parameters; they stay unresolved")
            }
        }
    }
    tracing::debug!(
        ssm = out.ssm.len(),
        imports = out.imports.len(),
        "looked up deploy-time values"
    );
    out
}

/// Every SSM name and export the template uses, as far as it can be resolved here.
pub fn wanted(input: &PolicyInput) -> Wanted {
    let mut out = Wanted::default();
    let Ok(json) = serde_json::to_value(input) else {
        return out;
    };
    // A template the SDK cannot read is the policies' error to report; nothing to look up.
    let Ok(parsed) = Input::parse(&json) else {
        return out;
    };
    let resolver = parsed.resolver();
    if let Some(Value::Object(params)) = input.template.get("Parameters") {
        for (name, decl) in params {
            let ty = decl.get("Type").and_then(Value::as_str).unwrap_or("");
            if !ty.starts_with("AWS::SSM::Parameter::Value<") {
                continue;
            }
            let value = input.parameters.get(name).or_else(|| decl.get("Default"));
            if let Some(Value::String(ssm_name)) = value {
                out.ssm.insert(ssm_name.clone());
            }
        }
    }
    let mut stack: Vec<(&Value, String, usize)> = vec![(&input.template, String::new(), 0)];
    while let Some((value, ptr, depth)) = stack.pop() {
        if depth > MAX_DEPTH || out.ssm.len() + out.imports.len() >= MAX_NAMES {
            continue;
        }
        match value {
            Value::String(s) => out.ssm.extend(ssm_references(s)),
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    stack.push((v, pointer::index(&ptr, i), depth + 1));
                }
            }
            Value::Object(m) => {
                if let (1, Some(arg)) = (m.len(), m.get("Fn::ImportValue")) {
                    let at = pointer::child(&ptr, "Fn::ImportValue");
                    for p in resolver.resolve(arg, &at).unwrap_or_default() {
                        if let Resolved::Str(name) = p.value {
                            out.imports.insert(name);
                        }
                    }
                }
                for (k, v) in m {
                    stack.push((v, pointer::child(&ptr, k), depth + 1));
                }
            }
            _ => {}
        }
    }
    out
}

/// The names in `{{resolve:ssm:NAME}}` references; `ssm-secure` and `secretsmanager` are
/// never looked up.
fn ssm_references(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{resolve:ssm:") {
        let tail = &rest[start + "{{resolve:ssm:".len()..];
        let Some(end) = tail.find("}}") else { break };
        if !tail[..end].is_empty() {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end + 2..];
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("AWS {operation} failed: {message}")]
struct LookupError {
    operation: &'static str,
    message: String,
}

fn lookup_error<E: std::error::Error + 'static>(
    operation: &'static str,
) -> impl Fn(E) -> LookupError {
    move |e| LookupError {
        operation,
        message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
    }
}

async fn exports(
    aws: &Aws,
    names: &BTreeSet<String>,
) -> Result<serde_json::Map<String, Value>, LookupError> {
    let mut found = serde_json::Map::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_EXPORT_PAGES {
        let page = aws
            .cfn
            .list_exports()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(lookup_error("ListExports"))?;
        for e in page.exports() {
            if let (Some(n), Some(v)) = (e.name(), e.value())
                && names.contains(n)
            {
                found.insert(n.to_string(), Value::String(v.to_string()));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() || found.len() == names.len() {
            break;
        }
    }
    Ok(found)
}

/// `name:version` → `name`: SSM names hold no `:`, selectors start with one.
fn base_name(selector: &str) -> &str {
    selector.split(':').next().unwrap_or(selector)
}

async fn ssm_strings(
    aws: &Aws,
    names: &BTreeSet<String>,
) -> Result<serde_json::Map<String, Value>, LookupError> {
    // The type first, from metadata alone, so that a SecureString's value is never fetched.
    let bases: BTreeSet<&str> = names.iter().map(|n| base_name(n)).collect();
    let bases: Vec<&str> = bases.into_iter().collect();
    let mut plain: BTreeSet<String> = BTreeSet::new();
    for chunk in bases.chunks(BATCH) {
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .set_values(Some(chunk.iter().map(|s| s.to_string()).collect()))
            .build()
            .map_err(lookup_error("DescribeParameters"))?;
        let page = aws
            .ssm
            .describe_parameters()
            .parameter_filters(filter)
            .max_results(50)
            .send()
            .await
            .map_err(lookup_error("DescribeParameters"))?;
        for p in page.parameters() {
            if matches!(
                p.r#type(),
                Some(ParameterType::String | ParameterType::StringList)
            ) && let Some(n) = p.name()
            {
                plain.insert(n.to_string());
            }
        }
    }
    let selectors: Vec<&String> = names
        .iter()
        .filter(|n| plain.contains(base_name(n)))
        .collect();
    let mut found = serde_json::Map::new();
    for chunk in selectors.chunks(BATCH) {
        let out = aws
            .ssm
            .get_parameters()
            .set_names(Some(chunk.iter().map(|s| s.to_string()).collect()))
            .with_decryption(false)
            .send()
            .await
            .map_err(lookup_error("GetParameters"))?;
        for p in out.parameters() {
            if !matches!(
                p.r#type(),
                Some(ParameterType::String | ParameterType::StringList)
            ) {
                continue;
            }
            if let (Some(n), Some(v)) = (p.name(), p.value()) {
                let key = format!("{n}{}", p.selector().unwrap_or(""));
                found.insert(key, Value::String(v.to_string()));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::input::{EventInfo, InputOrigin, StackInfo};
    use serde_json::json;

    fn input(template: Value, parameters: Value) -> PolicyInput {
        PolicyInput {
            template,
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            capabilities: Vec::new(),
            stack: StackInfo {
                name: "web".into(),
                region: "us-east-1".into(),
            },
            target: None,
            event: EventInfo {
                kind: "push".into(),
                sha: None,
            },
            resolved: Lookups::default(),
            origin: InputOrigin::default(),
        }
    }

    #[test]
    fn finds_ssm_names_and_exports_but_never_secrets() {
        let t = json!({
            "Parameters": {
                "Admin": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/net/admin"},
                "Given": {"Type": "AWS::SSM::Parameter::Value<List<String>>"},
                "Env": {"Type": "String", "Default": "prod"}
            },
            "Resources": {"Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
                "A": "{{resolve:ssm:/net/rdp}} and {{resolve:ssm:/net/v:3}}",
                "B": "{{resolve:ssm-secure:/db/pw}} {{resolve:secretsmanager:db}}",
                "C": {"Fn::ImportValue": {"Fn::Sub": "${Env}-vpc-cidr"}},
                "D": [{"Fn::ImportValue": "office"}]
            }}}
        });
        let w = wanted(&input(t, json!({"Given": "/net/list"})));
        let ssm: Vec<&str> = w.ssm.iter().map(String::as_str).collect();
        assert_eq!(ssm, ["/net/admin", "/net/list", "/net/rdp", "/net/v:3"]);
        let imports: Vec<&str> = w.imports.iter().map(String::as_str).collect();
        assert_eq!(imports, ["office", "prod-vpc-cidr"]);
        assert_eq!(base_name("/net/v:3"), "/net/v");
    }
}
