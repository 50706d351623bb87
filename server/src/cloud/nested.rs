//! Local nested stacks, the way `aws cloudformation package` does them: an
//! `AWS::CloudFormation::Stack` whose `TemplateURL` names a file in the stack folder
//! (relative to the template) is judged with its own file and lines, and at deploy time
//! uploaded as an artifact, with the parent's `TemplateURL` rewritten to it.

use serde_json::Value;
use sha2::{Digest, Sha256};
use stackgate_policy_sdk::pointer;

use crate::cloud::s3::{self, S3Error};
use crate::cloud::{Aws, AwsError};
use crate::stack::{StackError, StackFiles, Template, files};

/// Children may nest this deep (a child's child is level 2); deeper is bad input.
pub const MAX_LEVELS: usize = 4;
/// At most this many local children in one stack, all levels together.
pub const MAX_CHILDREN: usize = 32;

/// A local child template, and its own local children.
#[derive(Debug, Clone)]
pub struct Child {
    /// The `AWS::CloudFormation::Stack` resource's logical id in the parent.
    pub resource: String,
    /// The parent's `Parameters` property for it, as written.
    pub parameters: serde_json::Map<String, Value>,
    pub template: Template,
    pub children: Vec<Child>,
}

/// True for a `TemplateURL` that names a file rather than a URL.
pub fn is_local(url: &str) -> bool {
    !url.contains("://") && !url.starts_with("https:") && !url.starts_with("http:")
}

/// The local children of `template` (at `template_path` in the folder), recursively.
pub fn load(
    files: &dyn StackFiles,
    template_path: &str,
    template: &Template,
) -> Result<Vec<Child>, StackError> {
    let mut count = 0;
    load_level(files, template_path, template, 1, &mut count)
}

fn load_level(
    files: &dyn StackFiles,
    template_path: &str,
    template: &Template,
    level: usize,
    count: &mut usize,
) -> Result<Vec<Child>, StackError> {
    let mut out = Vec::new();
    let Some(Value::Object(resources)) = template.doc.value.get("Resources") else {
        return Ok(out);
    };
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::CloudFormation::Stack") {
            continue;
        }
        let props = res.get("Properties");
        let Some(Value::String(url)) = props.and_then(|p| p.get("TemplateURL")) else {
            continue;
        };
        if !is_local(url) {
            continue;
        }
        let at = pointer::child(&pointer::child("/Resources", id), "Properties");
        let line = template
            .doc
            .line_of(&pointer::child(&at, "TemplateURL"))
            .unwrap_or(1);
        let invalid = |message: String| StackError::Invalid {
            file: template.file.clone(),
            line,
            message,
        };
        *count += 1;
        if level > MAX_LEVELS || *count > MAX_CHILDREN {
            return Err(invalid(format!(
                "nested stack `{id}`: local nested stacks are limited to {MAX_LEVELS} levels and \
                 {MAX_CHILDREN} templates"
            )));
        }
        let rel = relative_to(template_path, url);
        files::clean_relative(&template.file, &rel)?;
        let bytes = files.read(&rel)?;
        let child = Template::parse(&files.display(&rel), bytes)?;
        let parameters = match props.and_then(|p| p.get("Parameters")) {
            None => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "nested stack `{id}`: `Parameters` must be a mapping"
                )));
            }
        };
        let children = load_level(files, &rel, &child, level + 1, count)?;
        out.push(Child {
            resource: id.clone(),
            parameters,
            template: child,
            children,
        });
    }
    Ok(out)
}

/// `url` relative to the folder of `template_path`, as `aws cloudformation package` reads it.
fn relative_to(template_path: &str, url: &str) -> String {
    let url = url.trim_start_matches("./");
    match template_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{url}"),
        None => url.to_string(),
    }
}

/// Uploads every child (deepest first) under its sha256 and returns the parent's body
/// with each local `TemplateURL` rewritten to its S3 URL, as JSON.
pub async fn package(
    aws: &Aws,
    bucket: &str,
    owner: &str,
    stack_name: &str,
    template: &Template,
    children: &[Child],
) -> Result<String, S3Error> {
    let mut value = template.doc.value.clone();
    for child in children {
        let body = if child.children.is_empty() {
            child.template.body.clone()
        } else {
            Box::pin(package(
                aws,
                bucket,
                owner,
                stack_name,
                &child.template,
                &child.children,
            ))
            .await?
        };
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        let key = format!("stackgate/{stack_name}/nested/{digest}.template");
        s3::put_verified(&aws.s3, bucket, owner, &key, body.into_bytes()).await?;
        // Path-style, as for large templates: valid for every bucket name.
        let url = format!("https://s3.{}.amazonaws.com/{bucket}/{key}", aws.region);
        if let Some(props) = value
            .get_mut("Resources")
            .and_then(|r| r.get_mut(&child.resource))
            .and_then(|r| r.get_mut("Properties"))
        {
            props["TemplateURL"] = Value::String(url);
        }
    }
    serde_json::to_string_pretty(&value).map_err(|e| {
        S3Error::Aws(AwsError {
            operation: "package nested stacks",
            code: None,
            message: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::DirFiles;
    use crate::stack::tests::write;

    const LEAF: &str = "Resources:\n  B:\n    Type: AWS::S3::Bucket\n";

    #[test]
    fn loads_local_children_recursively_and_skips_urls() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            &[
                (
                    "t.yaml",
                    "Resources:\n  Net:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: nested/net.yaml\n      Parameters:\n        Cidr: 10.0.0.0/16\n  Remote:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: https://example.com/t.yaml\n",
                ),
                (
                    "nested/net.yaml",
                    "Resources:\n  Leaf:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: leaf.yaml\n",
                ),
                ("nested/leaf.yaml", LEAF),
            ],
        );
        let files = DirFiles::open(tmp.path()).unwrap();
        let t =
            Template::parse("t.yaml", std::fs::read(tmp.path().join("t.yaml")).unwrap()).unwrap();
        let children = load(&files, "t.yaml", &t).unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].resource, "Net");
        assert!(children[0].template.file.ends_with("nested/net.yaml"));
        assert_eq!(children[0].parameters["Cidr"], "10.0.0.0/16");
        assert!(
            children[0].children[0]
                .template
                .file
                .ends_with("nested/leaf.yaml")
        );
    }

    #[test]
    fn escapes_missing_files_and_cycles_are_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let nested = |url: &str| {
            format!(
                "Resources:\n  C:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: {url}\n"
            )
        };
        write(tmp.path(), &[("self.yaml", &nested("self.yaml"))]);
        let files = DirFiles::open(tmp.path()).unwrap();
        for (url, expect) in [
            ("../x.yaml", "leaves the stack folder"),
            ("missing.yaml", "missing.yaml"),
            ("self.yaml", "limited to"),
        ] {
            let t = Template::parse("t.yaml", nested(url).into_bytes()).unwrap();
            let err = load(&files, "t.yaml", &t).unwrap_err().to_string();
            assert!(err.contains(expect), "{url}: {err}");
        }
    }
}
