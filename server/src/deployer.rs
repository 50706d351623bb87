//! plan, deploy and remove: CloudFormation change sets driven the way a careful operator
//! would, with every step reported to a progress sink.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cloud::cfn::{self, Change, ChangeSetOutcome, ChangeSetRequest, Event};
use crate::cloud::{Aws, AwsError, s3};
use crate::ownership::{self, Claim, NotOwned, Owner};
use crate::package;
use crate::stack::{Stack, StackError, StackFiles, TEMPLATE_BODY_LIMIT};

/// Why a plan, deploy or remove did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    #[error(transparent)]
    NotOwned(#[from] NotOwned),
    #[error(
        "stack `{stack}`: cannot read its deployed template to tell which buckets it retains \
         ({message}); nothing emptied or deleted"
    )]
    DeployedTemplate { stack: String, message: String },
    #[error(
        "stack `{stack}` is in ROLLBACK_COMPLETE: its first create failed and it cannot be updated; \
         remove it (`stackgate remove`) and deploy again"
    )]
    RollbackComplete { stack: String },
    #[error("stack `{stack}` is busy ({status}); wait until it settles and try again")]
    Busy { stack: String, status: String },
    #[error("stack `{stack}` ended in {status}{}", failure_suffix(.failure))]
    Failed {
        stack: String,
        status: String,
        failure: Option<Box<Event>>,
    },
}

fn failure_suffix(failure: &Option<Box<Event>>) -> String {
    match failure {
        Some(e) => format!(
            ": {} ({}) {}: {}",
            e.logical_id,
            e.resource_type,
            e.status,
            e.reason.as_deref().unwrap_or("no reason given")
        ),
        None => String::new(),
    }
}

impl DeployError {
    /// The CLI's exit code: 2 for bad input, 1 for everything AWS refused or failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            DeployError::Stack(_) => 2,
            _ => 1,
        }
    }
}

/// Who asked for the change: tags the stack and names the change set.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub repo: Option<String>,
    pub sha: Option<String>,
    /// The stack folder from the repository root (`stacks/web`); unset: the folder's name.
    pub path: Option<String>,
    /// Take over a stack that stackgate did not create (no `managed-by` tag).
    pub adopt: bool,
    /// The path of a folder of this repository, gone at this commit, whose stack this
    /// folder now names: the stack moves with the folder.
    pub moved_from: Option<String>,
}

impl Origin {
    /// The owner a stack of `folder` is tagged with.
    pub fn owner(&self, folder: &str) -> Owner {
        Owner {
            repo: self.repo.clone(),
            path: self.path.clone().unwrap_or_else(|| folder.to_string()),
        }
    }
}

/// What the deployer tells whoever watches.
#[derive(Debug)]
pub enum Progress<'a> {
    Note(&'a str),
    Changes(&'a [Change]),
    Event {
        event: &'a Event,
        done: usize,
        total: usize,
    },
}

pub type Sink<'a> = &'a mut (dyn FnMut(Progress<'_>) + Send);

/// A computed change set, not yet executed.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub stack_name: String,
    pub change_set_id: String,
    pub stack_id: String,
    /// True when the stack was created only to hold this change set.
    pub create: bool,
    /// `None` when CloudFormation found nothing to change.
    pub changes: Option<Vec<Change>>,
}

/// The end of a deploy.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub stack_name: String,
    pub status: String,
    pub changed: bool,
    pub outputs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub enum Removed {
    Deleted { emptied_objects: usize },
    NotFound,
}

pub struct Deployer {
    pub aws: Aws,
    pub artifact_bucket: String,
    pub poll: Duration,
}

impl Deployer {
    pub fn new(aws: Aws, artifact_bucket: Option<String>) -> Self {
        let bucket =
            artifact_bucket.unwrap_or_else(|| format!("stackgate-artifacts-{}", aws.region));
        Self {
            aws,
            artifact_bucket: bucket,
            poll: Duration::from_secs(2),
        }
    }

    /// Packages artifacts, uploads what is new, and computes a change set.
    #[tracing::instrument(skip_all, fields(stack = %stack.name))]
    pub async fn prepare(
        &self,
        files: &dyn StackFiles,
        stack: &Stack,
        origin: &Origin,
        sink: Sink<'_>,
    ) -> Result<Planned, DeployError> {
        // Local work first: bad input fails before any AWS call.
        let packages = stack
            .deployment
            .artifacts
            .iter()
            .map(|a| package::package(files, a))
            .collect::<Result<Vec<_>, _>>()?;
        let children =
            crate::nested::load(files, &stack.deployment.template_file_path, &stack.template)?;
        let existing = cfn::describe_stack(&self.aws.cfn, &stack.name).await?;
        let owner = origin.owner(&stack.folder);
        if let Some(info) = &existing {
            self.claim(
                &owner,
                &stack.name,
                info,
                (origin.adopt, origin.moved_from.as_deref()),
                sink,
            )?;
        }
        let create = match &existing {
            None => true,
            Some(s) if s.status == "REVIEW_IN_PROGRESS" => true,
            Some(s) if s.status == "ROLLBACK_COMPLETE" => {
                return Err(DeployError::RollbackComplete {
                    stack: stack.name.clone(),
                });
            }
            Some(s) if s.in_progress() => {
                return Err(DeployError::Busy {
                    stack: stack.name.clone(),
                    status: s.status.clone(),
                });
            }
            Some(_) => false,
        };

        let mut parameters: Vec<(String, String)> = stack
            .deployment
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect();
        let needs_bucket = !stack.deployment.artifacts.is_empty()
            || !children.is_empty()
            || stack.template.body.len() > TEMPLATE_BODY_LIMIT;
        let account = if needs_bucket {
            let account = self.aws.account().await?;
            s3::ensure_artifact_bucket(
                &self.aws.s3,
                &self.artifact_bucket,
                &self.aws.region,
                account,
            )
            .await?;
            account
        } else {
            ""
        };
        // Local nested templates go up as artifacts; the parent then names them by URL.
        let body = if children.is_empty() {
            stack.template.body.clone()
        } else {
            let body = crate::nested::package(
                &self.aws,
                &self.artifact_bucket,
                account,
                &stack.name,
                &stack.template,
                &children,
            )
            .await?;
            sink(Progress::Note(&format!(
                "{} nested template(s) uploaded to s3://{}",
                children.len(),
                self.artifact_bucket
            )));
            body
        };
        for pkg in packages {
            let artifact = pkg.artifact.clone();
            let key = pkg.key(&stack.name);
            let size = pkg.bytes.len();
            let put = s3::put_verified(
                &self.aws.s3,
                &self.artifact_bucket,
                account,
                &key,
                pkg.bytes,
            )
            .await?;
            let verb = match put {
                s3::Put::Uploaded => "uploaded",
                s3::Put::Unchanged => "unchanged",
            };
            sink(Progress::Note(&format!(
                "artifact {}: {verb} s3://{}/{key} ({size} bytes)",
                artifact.path, self.artifact_bucket
            )));
            parameters.push((
                artifact.bucket_parameter.clone(),
                self.artifact_bucket.clone(),
            ));
            parameters.push((artifact.key_parameter.clone(), key));
        }

        let template_url = if body.len() > TEMPLATE_BODY_LIMIT {
            let digest = hex::encode(Sha256::digest(body.as_bytes()));
            let key = format!("stackgate/{}/templates/{digest}.template", stack.name);
            s3::put_verified(
                &self.aws.s3,
                &self.artifact_bucket,
                account,
                &key,
                body.clone().into_bytes(),
            )
            .await?;
            sink(Progress::Note(&format!(
                "template is {} bytes, over CloudFormation's {TEMPLATE_BODY_LIMIT}: passed by S3 URL",
                body.len()
            )));
            // Path-style: valid for every bucket name, and the form CloudFormation documents.
            Some(format!(
                "https://s3.{}.amazonaws.com/{}/{key}",
                self.aws.region, self.artifact_bucket
            ))
        } else {
            None
        };

        let mut tags: Vec<(String, String)> = stack
            .deployment
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect();
        tags.retain(|(k, _)| !ownership::reserved_tag(k));
        tags.extend(owner.tags());
        if let Some(sha) = &origin.sha {
            tags.push((ownership::SHA_TAG.into(), sha.clone()));
        }
        let change_set_name = change_set_name(origin);
        let description = format!(
            "stackgate {}",
            origin.sha.as_deref().unwrap_or("local working tree")
        );
        let request = ChangeSetRequest {
            stack_name: &stack.name,
            change_set_name: &change_set_name,
            create,
            template_body: template_url.is_none().then_some(body.as_str()),
            template_url: template_url.as_deref(),
            parameters,
            capabilities: stack
                .deployment
                .capabilities
                .iter()
                .map(|c| c.as_str())
                .collect(),
            tags,
            description: &description,
        };
        let (id, stack_id) = cfn::create_change_set(&self.aws.cfn, &request).await?;
        sink(Progress::Note(&format!(
            "change set {change_set_name} ({})",
            if create { "CREATE" } else { "UPDATE" }
        )));
        let outcome = match cfn::await_change_set(&self.aws.cfn, &id, &stack_id, self.poll).await {
            Ok(o) => o,
            Err(e) => {
                // Leave nothing behind when the change set itself failed.
                self.discard(&id, &stack_id, create).await;
                return Err(e.into());
            }
        };
        let changes = match outcome {
            ChangeSetOutcome::Ready { changes, .. } => {
                sink(Progress::Changes(&changes));
                Some(changes)
            }
            ChangeSetOutcome::NoChanges { .. } => {
                sink(Progress::Note("no changes"));
                None
            }
        };
        Ok(Planned {
            stack_name: stack.name.clone(),
            change_set_id: id,
            stack_id,
            create,
            changes,
        })
    }

    /// Refuses a stack whose tags name another owner (or none, unless adopting).
    fn claim(
        &self,
        owner: &Owner,
        name: &str,
        info: &cfn::StackInfo,
        (adopt, moved_from): (bool, Option<&str>),
        sink: Sink<'_>,
    ) -> Result<(), DeployError> {
        let claim = match owner.check(name, &info.tags, adopt) {
            Err(_) if moved_from.is_some_and(|p| owner.moved_from(&info.tags, p)) => Claim::Moved,
            other => other?,
        };
        match claim {
            Claim::Owned => {}
            Claim::Moved => sink(Progress::Note(&format!(
                "stack `{name}` moves with its folder: now tagged {owner}"
            ))),
            Claim::Legacy => sink(Progress::Note(&format!(
                "stack `{name}` was tagged before stackgate tagged paths; now tagged {owner}"
            ))),
            Claim::Adopted => sink(Progress::Note(&format!(
                "stack `{name}` has no stackgate tags; adopted: now tagged {owner}"
            ))),
        }
        Ok(())
    }

    /// Deletes a change set that will not run, and the review-only stack that held it.
    pub async fn discard(&self, change_set_id: &str, stack_id: &str, create: bool) {
        if let Err(e) = cfn::delete_change_set(&self.aws.cfn, change_set_id).await {
            tracing::warn!(error = %e, "could not delete change set");
        }
        if create {
            match cfn::describe_stack(&self.aws.cfn, stack_id).await {
                Ok(Some(s)) if s.status == "REVIEW_IN_PROGRESS" => {
                    if let Err(e) = cfn::delete_stack(&self.aws.cfn, stack_id).await {
                        tracing::warn!(error = %e, "could not delete review-only stack");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not describe review-only stack"),
            }
        }
    }

    /// Computes the change set, reports it, and deletes it again.
    pub async fn plan(
        &self,
        files: &dyn StackFiles,
        stack: &Stack,
        origin: &Origin,
        sink: Sink<'_>,
    ) -> Result<Planned, DeployError> {
        let planned = self.prepare(files, stack, origin, sink).await?;
        self.discard(&planned.change_set_id, &planned.stack_id, planned.create)
            .await;
        Ok(planned)
    }

    /// Plans, executes, and follows the stack until it settles.
    pub async fn deploy(
        &self,
        files: &dyn StackFiles,
        stack: &Stack,
        origin: &Origin,
        sink: Sink<'_>,
    ) -> Result<Deployed, DeployError> {
        let planned = self.prepare(files, stack, origin, sink).await?;
        if planned.changes.is_none() {
            self.discard(&planned.change_set_id, &planned.stack_id, planned.create)
                .await;
            let info = cfn::describe_stack(&self.aws.cfn, &planned.stack_id).await?;
            return Ok(Deployed {
                stack_name: stack.name.clone(),
                status: info.as_ref().map(|i| i.status.clone()).unwrap_or_default(),
                changed: false,
                outputs: info.map(|i| i.outputs).unwrap_or_default(),
            });
        }
        self.execute(&planned, stack.template.resources().len(), sink)
            .await
    }

    /// Executes a computed change set and follows it.
    pub async fn execute(
        &self,
        planned: &Planned,
        total: usize,
        sink: Sink<'_>,
    ) -> Result<Deployed, DeployError> {
        // Events from before the execution belong to earlier deploys.
        let mut seen = HashSet::new();
        cfn::new_events(&self.aws.cfn, &planned.stack_id, &mut seen).await?;
        cfn::execute_change_set(&self.aws.cfn, &planned.change_set_id).await?;
        sink(Progress::Note("executing change set"));
        self.follow(&planned.stack_name, &planned.stack_id, seen, total, sink)
            .await?
            .into_deployed(&planned.stack_name)
    }

    /// Follows a stack's events until it settles. Also used to re-attach after a restart.
    pub async fn follow(
        &self,
        stack_name: &str,
        stack_id: &str,
        mut seen: HashSet<String>,
        total: usize,
        sink: Sink<'_>,
    ) -> Result<Settled, DeployError> {
        let mut done: HashSet<String> = HashSet::new();
        let mut failure: Option<Event> = None;
        loop {
            for event in cfn::new_events(&self.aws.cfn, stack_id, &mut seen).await? {
                if event.status.ends_with("_COMPLETE") && event.logical_id != stack_name {
                    done.insert(event.logical_id.clone());
                }
                if failure.is_none() && event.is_root_failure() {
                    failure = Some(event.clone());
                }
                sink(Progress::Event {
                    event: &event,
                    done: done.len().min(total),
                    total,
                });
            }
            match cfn::describe_stack(&self.aws.cfn, stack_id).await? {
                None => {
                    return Ok(Settled {
                        status: "DELETE_COMPLETE".into(),
                        reason: None,
                        outputs: Vec::new(),
                        failure,
                    });
                }
                Some(info) if !info.in_progress() => {
                    return Ok(Settled {
                        status: info.status,
                        reason: info.reason,
                        outputs: info.outputs,
                        failure,
                    });
                }
                Some(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }

    /// Empties the stack's buckets (all but those it retains), deletes it, and waits for
    /// DELETE_COMPLETE. Only a stack `owner` owns.
    #[tracing::instrument(skip_all, fields(stack = %stack_name))]
    pub async fn remove(
        &self,
        stack_name: &str,
        owner: &Owner,
        adopt: bool,
        sink: Sink<'_>,
    ) -> Result<Removed, DeployError> {
        let Some(info) = cfn::describe_stack(&self.aws.cfn, stack_name).await? else {
            sink(Progress::Note(&format!(
                "stack `{stack_name}` does not exist; nothing to remove"
            )));
            return Ok(Removed::NotFound);
        };
        self.claim(owner, stack_name, &info, (adopt, None), sink)?;
        if info.in_progress() && info.status != "REVIEW_IN_PROGRESS" {
            return Err(DeployError::Busy {
                stack: stack_name.into(),
                status: info.status,
            });
        }
        let resources = cfn::resources(&self.aws.cfn, &info.id).await?;
        let mut emptied = 0;
        let buckets: Vec<_> = resources
            .iter()
            .filter(|(_, ty, _)| ty == "AWS::S3::Bucket")
            .collect();
        let retained = if buckets.is_empty() {
            HashSet::new()
        } else {
            let body = cfn::template_body(&self.aws.cfn, &info.id).await?;
            retained_resources(&body).map_err(|message| DeployError::DeployedTemplate {
                stack: stack_name.into(),
                message,
            })?
        };
        for (logical, _, physical) in buckets {
            if retained.contains(logical) {
                sink(Progress::Note(&format!(
                    "kept bucket {physical}: its DeletionPolicy retains it, and its objects"
                )));
                continue;
            }
            let account = self.aws.account().await?;
            let n = s3::empty_bucket(&self.aws.s3, physical, account).await?;
            sink(Progress::Note(&format!(
                "emptied bucket {physical}: {n} object versions"
            )));
            emptied += n;
        }
        let mut seen = HashSet::new();
        cfn::new_events(&self.aws.cfn, &info.id, &mut seen).await?;
        cfn::delete_stack(&self.aws.cfn, &info.id).await?;
        sink(Progress::Note("deleting stack"));
        let settled = self
            .follow(stack_name, &info.id, seen, resources.len(), sink)
            .await?;
        if settled.status == "DELETE_COMPLETE" {
            Ok(Removed::Deleted {
                emptied_objects: emptied,
            })
        } else {
            Err(settled.into_error(stack_name))
        }
    }
}

/// The logical ids of the resources CloudFormation keeps when the stack is deleted: any
/// `DeletionPolicy` but `Delete` (`Retain`, `RetainExceptOnCreate`, `Snapshot`, or one
/// that is not plain text, which is kept in doubt).
fn retained_resources(template: &str) -> Result<HashSet<String>, String> {
    let doc = crate::stack::yaml::parse(template)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?;
    let Some(serde_json::Value::Object(resources)) = doc.value.get("Resources") else {
        return Err("no Resources mapping".into());
    };
    Ok(resources
        .iter()
        .filter(|(_, r)| {
            r.get("DeletionPolicy")
                .is_some_and(|p| p.as_str() != Some("Delete"))
        })
        .map(|(id, _)| id.clone())
        .collect())
}

/// Where a stack came to rest.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub status: String,
    pub reason: Option<String>,
    pub outputs: Vec<(String, String)>,
    /// The first resource that failed for a reason of its own.
    pub failure: Option<Event>,
}

impl Settled {
    pub fn succeeded(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE"
        )
    }

    pub fn into_deployed(self, stack: &str) -> Result<Deployed, DeployError> {
        if self.succeeded() {
            Ok(Deployed {
                stack_name: stack.into(),
                status: self.status,
                changed: true,
                outputs: self.outputs,
            })
        } else {
            Err(self.into_error(stack))
        }
    }

    fn into_error(self, stack: &str) -> DeployError {
        let status = self.status;
        let failure = self.failure.or_else(|| {
            self.reason.map(|reason| Event {
                id: String::new(),
                timestamp: String::new(),
                logical_id: stack.into(),
                resource_type: "AWS::CloudFormation::Stack".into(),
                status: status.clone(),
                reason: Some(reason),
            })
        });
        DeployError::Failed {
            stack: stack.into(),
            status,
            failure: failure.map(Box::new),
        }
    }
}

/// `stackgate-<sha12>-<millis>`: unique, and says which commit it came from.
fn change_set_name(origin: &Origin) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let sha: String = origin
        .sha
        .as_deref()
        .unwrap_or("local")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("stackgate-{sha}-{millis}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_resources_are_those_not_deleted_with_the_stack() {
        let t = "Resources:\n  Keep:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: Retain\n  \
                 Mostly:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: RetainExceptOnCreate\n  \
                 Odd:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: !Ref Policy\n  \
                 Gone:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: Delete\n  \
                 Plain:\n    Type: AWS::S3::Bucket\n";
        let kept = retained_resources(t).unwrap();
        let mut kept: Vec<_> = kept.into_iter().collect();
        kept.sort();
        assert_eq!(kept, ["Keep", "Mostly", "Odd"]);
        let json =
            r#"{"Resources": {"B": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"}}}"#;
        assert!(retained_resources(json).unwrap().contains("B"));
        assert!(retained_resources("Resources: [").is_err());
    }
}
