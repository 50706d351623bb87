//! The two sides of a review as the policies would see them: a loaded stack (the proposed
//! side, or the deployed commit's), and the live stack (GetTemplate, parsed by the same
//! loader, with the live parameter values). Both go through the same policy input and the
//! same look-ups, so that the comparison is of like with like.

use serde_json::{Map, Value, json};

use crate::cloud::{Aws, cfn};
use crate::policy::input::{EventInfo, PolicyInput, StackInfo, no_echo};
use crate::policy::lookup;
use crate::stack::{Stack, yaml};

/// Why the deployed side cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Aws(#[from] crate::cloud::AwsError),
    #[error("the deployed template of `{stack}` does not parse: line {line}: {message}")]
    Template {
        stack: String,
        line: usize,
        message: String,
    },
}

impl BaselineError {
    /// What a public comment may say: no AWS text (it names accounts and ARNs).
    pub fn public(&self) -> String {
        match self {
            BaselineError::Aws(_) => {
                "the deployed template cannot be read from CloudFormation".into()
            }
            e @ BaselineError::Template { .. } => e.to_string(),
        }
    }
}

fn event() -> EventInfo {
    EventInfo {
        kind: "review".into(),
        sha: None,
    }
}

/// A loaded stack's side; with `aws`, what CloudFormation would fetch is looked up first,
/// as the gate does.
pub async fn of_stack(stack: &Stack, region: &str, aws: Option<&Aws>) -> Value {
    let mut input = PolicyInput::for_stack(stack, region, event());
    if let Some(aws) = aws {
        input.resolved = lookup::resolve(aws, &input).await;
    }
    document(&input)
}

/// The live stack `name`'s side, `None` when it is not deployed.
pub async fn deployed(aws: &Aws, name: &str, region: &str) -> Result<Option<Value>, BaselineError> {
    let Some((body, live)) = cfn::live_template(&aws.cfn, name).await? else {
        return Ok(None);
    };
    let doc = yaml::parse(&body).map_err(|e| BaselineError::Template {
        stack: name.to_string(),
        line: e.line,
        message: e.message,
    })?;
    let mut input = PolicyInput {
        parameters: parameters(&doc.value, &live),
        template: doc.value,
        capabilities: Vec::new(),
        stack: StackInfo {
            name: name.to_string(),
            region: region.to_string(),
        },
        // The review reads grants, not the policies' settings.
        target: None,
        event: event(),
        resolved: Default::default(),
        origin: Default::default(),
    };
    input.resolved = lookup::resolve(aws, &input).await;
    Ok(Some(document(&input)))
}

/// The live values; a `NoEcho` one comes back masked, so it is known only at deploy time:
/// doubt, never the mask compared as a value.
fn parameters(template: &Value, live: &[(String, String)]) -> Map<String, Value> {
    let decls = template.get("Parameters").and_then(Value::as_object);
    live.iter()
        .map(|(k, v)| {
            let masked = decls.and_then(|d| d.get(k)).is_some_and(no_echo);
            let value = if masked {
                json!({"deploy_time": format!(
                    "the deployed value of NoEcho parameter `{k}` (CloudFormation masks it)"
                )})
            } else {
                Value::String(v.clone())
            };
            (k.clone(), value)
        })
        .collect()
}

/// The policy-input document the SDK's resolver reads.
pub fn document(input: &PolicyInput) -> Value {
    // Serialising plain maps and strings cannot fail; `Null` would only be refused later.
    serde_json::to_value(input).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_no_echo_values_are_deploy_time_values_not_text() {
        let t = json!({"Parameters": {"Pw": {"Type": "String", "NoEcho": "true"},
                                      "Env": {"Type": "String"}}});
        let p = parameters(
            &t,
            &[("Pw".into(), "****".into()), ("Env".into(), "prod".into())],
        );
        assert_eq!(p["Env"], "prod");
        assert!(
            p["Pw"]["deploy_time"].as_str().unwrap().contains("masks"),
            "{p:?}"
        );
    }
}
