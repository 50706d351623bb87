//! Apply: execute a change set and follow the stack until it settles, or empty the
//! stack's buckets and delete it.

use super::*;

impl Deployer {
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
            self.discard(
                &planned.change_set_id,
                &planned.stack_id,
                planned.create,
                &planned.guard,
            )
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
        planned.guard.check("ExecuteChangeSet")?;
        cfn::execute_change_set(&self.aws.cfn, &planned.change_set_id, planned.guard.token())
            .await?;
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
        guard: &Guard,
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
            guard.check("DeleteObjects")?;
            let n = s3::empty_bucket(&self.aws.s3, physical, account).await?;
            sink(Progress::Note(&format!(
                "emptied bucket {physical}: {n} object versions"
            )));
            emptied += n;
        }
        let mut seen = HashSet::new();
        cfn::new_events(&self.aws.cfn, &info.id, &mut seen).await?;
        guard.check("DeleteStack")?;
        cfn::delete_stack(&self.aws.cfn, &info.id, guard.token()).await?;
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
                physical_id: None,
            })
        });
        DeployError::Failed {
            stack: stack.into(),
            status,
            failure: failure.map(Box::new),
        }
    }
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
