//! Loading a stack definition: the deployment file and its template, checked before
//! anything reaches AWS.

pub mod claims;
pub mod deployment;
pub mod files;
pub mod ownership;
pub mod yaml;

use std::collections::BTreeMap;

use serde_json::Value;

pub use deployment::{Artifact, Capability, Deployment};
pub use files::{DirFiles, FileEntry, StackFiles};

/// CloudFormation's limit for an inline `TemplateBody`; larger templates go through S3.
pub const TEMPLATE_BODY_LIMIT: usize = 51_200;

/// Bad input in a stack definition. Each names the file and, where it can, the line.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: the path `{path}` leaves the stack folder; keep every file inside it")]
    Escapes { file: String, path: String },
    #[error("{file}: larger than {limit} bytes; stacks hold templates and code, not data")]
    TooLarge { file: String, limit: u64 },
    #[error("{file}: {scope} passes {limit} here; stacks hold templates and code, not data")]
    FolderTooLarge {
        file: String,
        scope: Scope,
        limit: files::FolderLimit,
    },
    #[error("{folder}: no deployment file; add one of {}", deployment::DEPLOYMENT_FILES.join(", "))]
    NoDeploymentFile { folder: String },
}

/// What a size limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One stack folder.
    Folder,
    /// All the stack folders of one commit, as the service reads them.
    Commit,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Folder => "the stack folder",
            Scope::Commit => "the stack folders of this commit",
        })
    }
}

/// A template: its text as written (sent to CloudFormation unchanged) and its long form.
#[derive(Debug, Clone)]
pub struct Template {
    /// Display path, e.g. `stacks/hybrid-alb/template.yaml`.
    pub file: String,
    pub body: String,
    pub doc: yaml::Document,
}

impl Template {
    pub fn parse(file: &str, bytes: Vec<u8>) -> Result<Self, StackError> {
        let body = String::from_utf8(bytes).map_err(|_| StackError::Io {
            file: file.into(),
            message: "not UTF-8 text".into(),
        })?;
        let doc = yaml::parse(&body).map_err(|e| StackError::Invalid {
            file: file.into(),
            line: e.line,
            message: format!("column {}: {}", e.column, e.message),
        })?;
        let Value::Object(top) = &doc.value else {
            return Err(StackError::Invalid {
                file: file.into(),
                line: 1,
                message: "a template must be a mapping with `Resources`".into(),
            });
        };
        match top.get("Resources") {
            Some(Value::Object(r)) if !r.is_empty() => {}
            _ => {
                return Err(StackError::Invalid {
                    file: file.into(),
                    line: doc.line_of("/Resources").unwrap_or(1),
                    message: "a template needs a non-empty `Resources` mapping".into(),
                });
            }
        }
        Ok(Self {
            file: file.into(),
            body,
            doc,
        })
    }

    /// The declared parameters and their `Default`s (as text).
    pub fn parameters(&self) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        if let Some(Value::Object(params)) = self.doc.value.get("Parameters") {
            for (name, decl) in params {
                let default = decl.get("Default").map(|d| match d {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                });
                out.insert(name.clone(), default);
            }
        }
        out
    }

    /// The logical ids and types of the resources, in template order.
    pub fn resources(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(Value::Object(res)) = self.doc.value.get("Resources") {
            for (id, r) in res {
                let ty = r.get("Type").and_then(Value::as_str).unwrap_or("?");
                out.push((id.clone(), ty.to_string()));
            }
        }
        out
    }
}

/// A loaded stack definition, ready for policy and deploy.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The stack folder's name.
    pub folder: String,
    /// The CloudFormation stack name.
    pub name: String,
    pub deployment_file: String,
    pub deployment: Deployment,
    pub template: Template,
}

impl Stack {
    /// Reads and checks the deployment file and the template it names.
    pub fn load(files: &dyn StackFiles) -> Result<Self, StackError> {
        let mut found = None;
        for name in deployment::DEPLOYMENT_FILES {
            match files.read(name) {
                Ok(bytes) => {
                    found = Some((*name, bytes));
                    break;
                }
                // Missing: try the next name. Refused (too large, escaping): say so.
                Err(StackError::Io { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let (dep_name, bytes) = found.ok_or_else(|| StackError::NoDeploymentFile {
            folder: files.display("").trim_end_matches('/').to_string(),
        })?;
        let dep_file = files.display(dep_name);
        let text = String::from_utf8(bytes).map_err(|_| StackError::Io {
            file: dep_file.clone(),
            message: "not UTF-8 text".into(),
        })?;
        let doc = yaml::parse(&text).map_err(|e| StackError::Invalid {
            file: dep_file.clone(),
            line: e.line,
            message: format!("column {}: {}", e.column, e.message),
        })?;
        let deployment = Deployment::from_document(&dep_file, &doc)?;
        let line = |pointer: &str| doc.line_of(pointer).unwrap_or(1);

        let tpl_path = &deployment.template_file_path;
        files::clean_relative(&dep_file, tpl_path)?;
        let template = Template::parse(&files.display(tpl_path), files.read(tpl_path)?)?;

        let declared = template.parameters();
        for name in deployment.parameters.keys() {
            if !declared.contains_key(name) {
                return Err(StackError::Invalid {
                    file: dep_file.clone(),
                    line: line(&format!("/parameters/{}", yaml::escape_pointer(name))),
                    message: format!(
                        "parameter `{name}` is not declared in {}; declared: {}",
                        template.file,
                        declared.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        for (i, a) in deployment.artifacts.iter().enumerate() {
            for p in [&a.bucket_parameter, &a.key_parameter] {
                if !declared.contains_key(p) {
                    return Err(StackError::Invalid {
                        file: dep_file.clone(),
                        line: line(&format!("/artifacts/{i}")),
                        message: format!(
                            "artifact parameter `{p}` is not declared in {}",
                            template.file
                        ),
                    });
                }
            }
            files::clean_relative(&dep_file, &a.path)?;
        }
        let folder = files.folder_name();
        let name = deployment
            .stack_name
            .clone()
            .unwrap_or_else(|| folder.clone());
        if !valid_stack_name(&name) {
            return Err(StackError::Invalid {
                file: dep_file.clone(),
                line: line("/stack-name"),
                message: format!(
                    "`{name}` is not a valid stack name: start with a letter, then letters, digits and hyphens, at most 128"
                ),
            });
        }
        Ok(Self {
            folder,
            name,
            deployment_file: dep_file,
            deployment,
            template,
        })
    }

    /// Parameter values as the deployment gives them, over the template defaults. Artifact
    /// parameters are filled in later by packaging.
    pub fn resolved_parameters(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .template
            .parameters()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        for (k, v) in &self.deployment.parameters {
            out.insert(k.clone(), v.text());
        }
        out
    }
}

fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes (path, contents) pairs under `dir`; also used by `crate::cloud::nested`'s tests.
    pub(crate) fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
        for (p, c) in files {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
    }

    const TPL: &str = "Parameters:\n  Size:\n    Type: String\n    Default: small\nResources:\n  B:\n    Type: AWS::S3::Bucket\n";

    #[test]
    fn loads_a_stack_and_resolves_parameters() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        write(
            &dir,
            &[
                ("deployment.yaml", "template-file-path: t.yaml\n"),
                ("t.yaml", TPL),
            ],
        );
        let stack = Stack::load(&DirFiles::open(&dir).unwrap()).unwrap();
        assert_eq!(stack.name, "web");
        assert_eq!(stack.resolved_parameters()["Size"], "small");
        assert_eq!(
            stack.template.resources(),
            [("B".to_string(), "AWS::S3::Bucket".to_string())]
        );
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("web");
        write(
            &dir,
            &[
                (
                    "deployment.yaml",
                    "template-file-path: t.yaml\nparameters:\n  Nope: 1\n",
                ),
                ("t.yaml", TPL),
            ],
        );
        let err = Stack::load(&DirFiles::open(&dir).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deployment.yaml:3") && err.contains("`Nope` is not declared"),
            "{err}"
        );

        write(
            &dir,
            &[("deployment.yaml", "template-file-path: ../t.yaml\n")],
        );
        let err = Stack::load(&DirFiles::open(&dir).unwrap()).unwrap_err();
        assert!(matches!(err, StackError::Escapes { .. }), "{err}");

        write(
            &dir,
            &[
                ("deployment.yaml", "template-file-path: t.yaml\n"),
                ("t.yaml", "Resources:\n  B:\n    Type: [unclosed\n"),
            ],
        );
        let err = Stack::load(&DirFiles::open(&dir).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.yaml:"), "{err}");

        std::fs::remove_file(dir.join("deployment.yaml")).unwrap();
        let err = Stack::load(&DirFiles::open(&dir).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no deployment file"), "{err}");
    }
}
