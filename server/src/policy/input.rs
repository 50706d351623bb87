//! The one JSON document a policy receives.

use serde::Serialize;
use serde_json::Value;

use crate::stack::Stack;

/// What triggered the evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    /// `push`, `pull_request`, `manual` or `check`.
    pub kind: String,
    pub sha: Option<String>,
}

/// The document without the per-policy `settings`; the host adds those.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput {
    pub template: Value,
    /// Deployment values over template defaults.
    pub parameters: serde_json::Map<String, Value>,
    pub stack: StackInfo,
    pub event: EventInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackInfo {
    pub name: String,
    pub region: String,
}

impl PolicyInput {
    pub fn for_stack(stack: &Stack, region: &str, event: EventInfo) -> Self {
        Self {
            template: stack.template.doc.value.clone(),
            parameters: stack
                .resolved_parameters()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            stack: StackInfo {
                name: stack.name.clone(),
                region: stack
                    .deployment
                    .region
                    .clone()
                    .unwrap_or_else(|| region.to_string()),
            },
            event,
        }
    }

    /// A bare template: parameters come from its defaults alone.
    pub fn for_template(template: &crate::stack::Template, name: &str, region: &str) -> Self {
        Self {
            template: template.doc.value.clone(),
            parameters: template
                .parameters()
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, Value::String(v))))
                .collect(),
            stack: StackInfo {
                name: name.to_string(),
                region: region.to_string(),
            },
            event: EventInfo {
                kind: "check".into(),
                sha: None,
            },
        }
    }

    /// The JSON text for one policy, with its settings spliced in.
    pub fn to_json(&self, settings: &Value) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Full<'a> {
            #[serde(flatten)]
            input: &'a PolicyInput,
            settings: &'a Value,
        }
        serde_json::to_string(&Full {
            input: self,
            settings,
        })
    }
}
