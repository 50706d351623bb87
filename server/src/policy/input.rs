//! The one JSON document a policy receives.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

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
    pub parameters: Map<String, Value>,
    /// What the deployment file grants CloudFormation (`CAPABILITY_IAM`, ...).
    pub capabilities: Vec<String>,
    pub stack: StackInfo,
    /// The `[[targets]]` entry the stack deploys to; absent for the server's own account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInfo>,
    pub event: EventInfo,
    /// What stackgate looked up in AWS before the policies ran.
    #[serde(skip_serializing_if = "Lookups::is_empty")]
    pub resolved: Lookups,
    /// Where the input came from; the host's own checks read it, the policies never see it.
    #[serde(skip)]
    pub origin: InputOrigin,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackInfo {
    pub name: String,
    pub region: String,
}

/// A target as the policies see it: its name and labels (never its account or roles).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TargetInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Values CloudFormation would fetch at deploy time, looked up by stackgate first: plain
/// SSM `String`/`StringList` parameters by name (or `name:version`) and exports by name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Lookups {
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub ssm: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub imports: Map<String, Value>,
}

impl Lookups {
    pub fn is_empty(&self) -> bool {
        self.ssm.is_empty() && self.imports.is_empty()
    }
}

/// Facts about the input that are the host's, not the policies'.
#[derive(Debug, Clone, Default)]
pub struct InputOrigin {
    /// The template file findings point into, e.g. `stacks/web/template.yaml`.
    pub file: String,
    /// True for a stack folder (a deployment file gives the parameters): a parameter
    /// with no value is an error, as CloudFormation would refuse it. False for a bare
    /// template, where it stays the policies' warning.
    pub deployment: bool,
    /// Parameters stackgate fills in at deploy time (artifact bucket and key).
    pub filled_later: Vec<String>,
    /// Nested stacks whose child template stackgate judges itself (a file in the folder).
    pub local_children: Vec<String>,
    /// Per policy, the target's settings, merged over the policy's own key by key.
    pub settings: BTreeMap<String, Value>,
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
            capabilities: stack
                .deployment
                .capabilities
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            stack: StackInfo {
                name: stack.name.clone(),
                region: stack
                    .deployment
                    .region
                    .clone()
                    .unwrap_or_else(|| region.to_string()),
            },
            target: None,
            event,
            resolved: Lookups::default(),
            origin: InputOrigin {
                file: stack.template.file.clone(),
                deployment: true,
                filled_later: stack
                    .deployment
                    .artifacts
                    .iter()
                    .flat_map(|a| [a.bucket_parameter.clone(), a.key_parameter.clone()])
                    .collect(),
                ..InputOrigin::default()
            },
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
            capabilities: Vec::new(),
            stack: StackInfo {
                name: name.to_string(),
                region: region.to_string(),
            },
            target: None,
            event: EventInfo {
                kind: "check".into(),
                sha: None,
            },
            resolved: Lookups::default(),
            origin: InputOrigin {
                file: template.file.clone(),
                ..InputOrigin::default()
            },
        }
    }

    /// True for `stackgate check`: no AWS access, so nothing is looked up.
    pub fn offline(&self) -> bool {
        self.event.kind == "check"
    }

    /// The stack's target: its name and labels for the policies, and its settings.
    pub fn for_target(mut self, target: Option<&crate::config::targets::TargetConfig>) -> Self {
        if let Some(t) = target {
            self.target = Some(TargetInfo {
                name: t.name.clone(),
                labels: t.labels.clone(),
            });
            self.origin.settings = t
                .policies
                .iter()
                .map(|(name, p)| (name.clone(), p.settings.clone()))
                .collect();
        }
        self
    }

    /// A policy's settings for this input: its own, with the target's laid over them.
    pub fn settings_for(&self, policy: &str, own: &Value) -> Value {
        let Some(Value::Object(over)) = self.origin.settings.get(policy) else {
            return own.clone();
        };
        let mut merged = match own {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        for (k, v) in over {
            merged.insert(k.clone(), v.clone());
        }
        Value::Object(merged)
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

/// The values looked up in SSM for the input's `NoEcho` SSM-typed parameters: CloudFormation
/// would hide them, and policy messages may quote them.
pub fn looked_up_no_echo(input: &PolicyInput) -> Vec<String> {
    let params = input.template.get("Parameters").and_then(Value::as_object);
    params
        .into_iter()
        .flatten()
        .filter(|(_, decl)| no_echo(decl))
        .filter_map(|(name, decl)| input.parameters.get(name).or_else(|| decl.get("Default")))
        .filter_map(Value::as_str)
        .filter_map(|ssm_name| input.resolved.ssm.get(ssm_name))
        .flat_map(|v| match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Whether a parameter declaration says `NoEcho: true` (CloudFormation takes the string too).
pub fn no_echo(decl: &Value) -> bool {
    match decl.get("NoEcho") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{DirFiles, Stack};

    #[test]
    fn capabilities_and_lookups_reach_the_policies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("deployment.yaml"),
            "template-file-path: t.yaml\ncapabilities: [CAPABILITY_NAMED_IAM]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("t.yaml"),
            "Resources:\n  B:\n    Type: AWS::S3::Bucket\n",
        )
        .unwrap();
        let stack = Stack::load(&DirFiles::open(&dir).unwrap()).unwrap();
        let event = EventInfo {
            kind: "push".into(),
            sha: None,
        };
        let mut input = PolicyInput::for_stack(&stack, "us-east-1", event);
        let json: Value = serde_json::from_str(&input.to_json(&Value::Null).unwrap()).unwrap();
        assert_eq!(
            json["capabilities"],
            serde_json::json!(["CAPABILITY_NAMED_IAM"])
        );
        assert!(json.get("resolved").is_none(), "{json}");
        assert!(json.get("origin").is_none(), "{json}");
        input
            .resolved
            .imports
            .insert("net-cidr".into(), "10.0.0.0/8".into());
        let json: Value = serde_json::from_str(&input.to_json(&Value::Null).unwrap()).unwrap();
        assert_eq!(json["resolved"]["imports"]["net-cidr"], "10.0.0.0/8");
        assert!(json.get("target").is_none(), "{json}");
    }

    #[test]
    fn a_target_gives_its_name_labels_and_settings_over_the_global_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("deployment.yaml"), "template-file-path: t.yaml\n").unwrap();
        std::fs::write(
            dir.join("t.yaml"),
            "Resources:\n  B:\n    Type: AWS::S3::Bucket\n",
        )
        .unwrap();
        let stack = Stack::load(&DirFiles::open(&dir).unwrap()).unwrap();
        let target: crate::config::targets::TargetConfig = toml::from_str(
            "name = 'prod'\naccount_id = '111111111111'\n\
             role_arn = 'arn:aws:iam::111111111111:role/d'\nregions = ['us-east-1']\n\
             labels = { env = 'prod' }\n\
             [policies.open-ingress]\nsettings = { alb_world_ports = [] }\n",
        )
        .unwrap();
        let event = EventInfo {
            kind: "push".into(),
            sha: None,
        };
        let input = PolicyInput::for_stack(&stack, "us-east-1", event).for_target(Some(&target));
        let global =
            serde_json::json!({"alb_world_ports": [80, 443], "allow_deploy_time_values": true});
        let merged = input.settings_for("open-ingress", &global);
        assert_eq!(
            merged,
            serde_json::json!({"alb_world_ports": [], "allow_deploy_time_values": true})
        );
        // Another policy keeps its own.
        assert_eq!(input.settings_for("least-privilege-iam", &global), global);
        let json: Value = serde_json::from_str(&input.to_json(&merged).unwrap()).unwrap();
        assert_eq!(
            json["target"],
            serde_json::json!({"name": "prod", "labels": {"env": "prod"}})
        );
        // The account and roles are not the policies' business.
        assert!(!json.to_string().contains("111111111111"), "{json}");
    }
}
