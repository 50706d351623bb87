//! The deployment file: CloudFormation Git sync's format (`template-file-path`,
//! `parameters`, `tags`) plus stackgate's own optional keys. Unknown keys are an error, so a
//! typo never silently deploys something else.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::StackError;
use super::yaml::Document;

/// The names a deployment file may have, in the order they are looked for.
pub const DEPLOYMENT_FILES: &[&str] = &["deployment.yaml", "deployment.yml", "deployment.json"];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Deployment {
    pub template_file_path: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub tags: BTreeMap<String, Scalar>,
    /// Defaults to the folder name.
    #[serde(default)]
    pub stack_name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub remove: bool,
    /// What a drift check does when it finds the live stack changed outside stackgate.
    #[serde(default)]
    pub drift: DriftAction,
    /// The `[[targets]]` entry of the server's configuration this stack deploys to; the
    /// server allows it only where it maps the folder to it.
    #[serde(default)]
    pub target: Option<String>,
    /// The line of `target`, for the refusal.
    #[serde(skip)]
    pub target_line: usize,
    /// `approval: required` holds every change set for an operator; unset, the server's
    /// setting applies. The stricter of the two wins.
    #[serde(default)]
    pub approval: Option<crate::domain::Approval>,
}

/// `drift: report` (the default) or `drift: revert`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftAction {
    /// Say so: the status, the console, the metrics, the notification.
    #[default]
    Report,
    /// Also redeploy the deployed commit through the gate, putting drifted resources back.
    Revert,
}

/// A folder that is zipped and uploaded; its bucket and key feed two template parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Artifact {
    pub path: String,
    pub bucket_parameter: String,
    pub key_parameter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Capability {
    #[serde(rename = "CAPABILITY_IAM")]
    Iam,
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    NamedIam,
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    AutoExpand,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Iam => "CAPABILITY_IAM",
            Capability::NamedIam => "CAPABILITY_NAMED_IAM",
            Capability::AutoExpand => "CAPABILITY_AUTO_EXPAND",
        }
    }
}

/// Git sync writes parameter and tag values as strings, but YAML makes `80` a number;
/// accept scalars and hand CloudFormation their text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Bool(bool),
    Number(serde_json::Number),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(n) => n.to_string(),
        }
    }
}

const KEYS: &[&str] = &[
    "template-file-path",
    "parameters",
    "tags",
    "stack-name",
    "region",
    "capabilities",
    "artifacts",
    "remove",
    "drift",
    "target",
    "approval",
];
const ARTIFACT_KEYS: &[&str] = &["path", "bucket-parameter", "key-parameter"];

impl Deployment {
    /// Parses a deployment document; `file` names it in errors.
    pub fn from_document(file: &str, doc: &Document) -> Result<Self, StackError> {
        let at = |pointer: &str| doc.line_of(pointer).unwrap_or(1);
        let Value::Object(top) = &doc.value else {
            return Err(StackError::Invalid {
                file: file.into(),
                line: 1,
                message: "the deployment file must be a mapping with `template-file-path`".into(),
            });
        };
        // Name the unknown key and its line; serde alone would name neither the line nor
        // the allowed keys.
        let unknown = |key: &str, pointer: String, allowed: &[&str]| StackError::Invalid {
            file: file.into(),
            line: at(&pointer),
            message: format!("unknown key `{key}`; allowed keys: {}", allowed.join(", ")),
        };
        for key in top.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(unknown(key, format!("/{key}"), KEYS));
            }
        }
        if let Some(Value::Array(items)) = top.get("artifacts") {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(m) = item {
                    for key in m.keys() {
                        if !ARTIFACT_KEYS.contains(&key.as_str()) {
                            return Err(unknown(
                                key,
                                format!("/artifacts/{i}/{key}"),
                                ARTIFACT_KEYS,
                            ));
                        }
                    }
                }
            }
        }
        if let Some(Value::Object(tags)) = top.get("tags")
            && let Some(key) = tags
                .keys()
                .find(|k| crate::stack::ownership::reserved_tag(k))
        {
            return Err(StackError::Invalid {
                file: file.into(),
                line: at(&format!("/tags/{}", super::yaml::escape_pointer(key))),
                message: format!(
                    "tag `{key}` is stackgate's own: it says who owns the stack; choose another key"
                ),
            });
        }
        let de = serde_path_to_error::deserialize::<_, Deployment>(&doc.value);
        let deployment = de.map_err(|e| {
            let pointer: String = e
                .path()
                .iter()
                .map(|seg| format!("/{seg}"))
                .collect::<String>();
            StackError::Invalid {
                file: file.into(),
                line: at(&pointer),
                message: format!("{}: {}", e.path(), e.inner()),
            }
        })?;
        let mut deployment = deployment;
        deployment.target_line = at("/target");
        // It becomes part of AWS host names.
        if let Some(region) = &deployment.region
            && !valid_region(region)
        {
            return Err(StackError::Invalid {
                file: file.into(),
                line: at("/region"),
                message: format!("region `{region}` is not an AWS region name (like eu-west-1)"),
            });
        }
        Ok(deployment)
    }
}

/// Whether `name` has the shape of an AWS region: `us-east-1`, `us-gov-west-1`,
/// `eusc-de-east-1`. It becomes part of AWS endpoint host names.
pub fn valid_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    name.len() <= 32
        && parts.len() >= 3
        && (2..=4).contains(&parts[0].len())
        && parts[..parts.len() - 1].iter().all(letters)
        && parts[parts.len() - 1].len() <= 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::yaml;

    fn parse(text: &str) -> Result<Deployment, StackError> {
        Deployment::from_document("stacks/x/deployment.yaml", &yaml::parse(text).unwrap())
    }

    #[test]
    fn git_sync_file_parses_with_stackgate_keys() {
        let d = parse(
            "template-file-path: template.yaml\nparameters:\n  Port: 80\n  Name: web\ntags:\n  team: platform\n\
             capabilities: [CAPABILITY_IAM]\nartifacts:\n  - path: lambda\n    bucket-parameter: B\n    key-parameter: K\n",
        )
        .unwrap();
        assert_eq!(d.template_file_path, "template.yaml");
        assert_eq!(d.parameters["Port"].text(), "80");
        assert_eq!(d.capabilities, [Capability::Iam]);
        assert_eq!(d.artifacts[0].bucket_parameter, "B");
        assert!(!d.remove);
        assert_eq!(d.drift, DriftAction::Report);
    }

    #[test]
    fn a_target_is_a_name_with_its_line() {
        let d = parse("template-file-path: t.yaml\nregion: eu-west-1\ntarget: prod\n").unwrap();
        assert_eq!(d.target.as_deref(), Some("prod"));
        assert_eq!(d.target_line, 3);
        assert!(parse("template-file-path: t.yaml\ntarget: [prod]\n").is_err());
        assert_eq!(parse("template-file-path: t.yaml\n").unwrap().target, None);
    }

    #[test]
    fn approval_is_one_of_three_or_unset() {
        use crate::domain::Approval;
        assert_eq!(
            parse("template-file-path: t.yaml\n").unwrap().approval,
            None
        );
        let d = parse("template-file-path: t.yaml\napproval: required\n").unwrap();
        assert_eq!(d.approval, Some(Approval::Required));
        let e = parse("template-file-path: t.yaml\napproval: yes-please\n").unwrap_err();
        assert!(e.to_string().contains("approval"), "{e}");
    }

    #[test]
    fn drift_is_report_or_revert_and_nothing_else() {
        let d = parse("template-file-path: t.yaml\ndrift: revert\n").unwrap();
        assert_eq!(d.drift, DriftAction::Revert);
        assert!(parse("template-file-path: t.yaml\ndrift: fix\n").is_err());
    }

    #[test]
    fn unknown_keys_name_the_key_file_and_line() {
        let err = parse("template-file-path: t.yaml\nparamters:\n  A: b\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("stacks/x/deployment.yaml:2"), "{msg}");
        assert!(msg.contains("unknown key `paramters`"), "{msg}");

        let err = parse(
            "template-file-path: t.yaml\nartifacts:\n  - path: a\n    bucket-parameter: B\n    key-parameter: K\n    zip: true\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains(":6"), "{err}");
    }

    #[test]
    fn ownership_tags_are_refused_with_their_line() {
        for key in ["managed-by", "stackgate:repo", "stackgate:path"] {
            let err = parse(&format!(
                "template-file-path: t.yaml\ntags:\n  team: a\n  {key}: someone-else\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("stacks/x/deployment.yaml:4") && err.contains(key),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_types_and_missing_keys_are_explained() {
        let err =
            parse("template-file-path: t.yaml\ncapabilities: [CAPABILITY_ROOT]\n").unwrap_err();
        assert!(err.to_string().contains(":2"), "{err}");
        assert!(err.to_string().contains("CAPABILITY_ROOT"), "{err}");
        let err = parse("parameters: {}\n").unwrap_err();
        assert!(err.to_string().contains("template-file-path"), "{err}");
        let err = parse("template-file-path: t.yaml\nregion: evil.example.com\n").unwrap_err();
        assert!(err.to_string().contains("deployment.yaml:2"), "{err}");
        assert!(err.to_string().contains("not an AWS region"), "{err}");
    }
}
