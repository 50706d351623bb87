//! Compare: package, upload, and compute and describe a change set (what would change),
//! without touching the stack. Drift and previews need only this half.

use super::*;

impl Deployer {
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
        let children = crate::cloud::nested::load(
            files,
            &stack.deployment.template_file_path,
            &stack.template,
        )?;
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
        let guard = &origin.guard;
        let account = if needs_bucket {
            let account = self.aws.account().await?;
            guard.check("CreateBucket")?;
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
            guard.check("PutObject")?;
            let body = crate::cloud::nested::package(
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
            guard.check("PutObject")?;
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
            guard.check("PutObject")?;
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
            client_token: guard.token(),
            revert_drift: origin.revert_drift && !create,
            role_arn: self.service_role.as_deref(),
        };
        guard.check("CreateChangeSet")?;
        let (id, stack_id) = cfn::create_change_set(&self.aws.cfn, &request).await?;
        sink(Progress::Note(&format!(
            "change set {change_set_name} ({})",
            if create { "CREATE" } else { "UPDATE" }
        )));
        let outcome = match cfn::await_change_set(&self.aws.cfn, &id, &stack_id, self.poll).await {
            Ok(o) => o,
            Err(e) => {
                // Leave nothing behind when the change set itself failed.
                self.discard(&id, &stack_id, create, guard).await;
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
            guard: guard.clone(),
        })
    }

    /// Refuses a stack whose tags name another owner (or none, unless adopting).
    pub(super) fn claim(
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
        // A stack acting as another service role than the pinned one is not the target's
        // to change (a stack without one gets the pinned one with this change set).
        if let (Some(pinned), Some(actual)) = (&self.service_role, &info.role_arn)
            && pinned != actual
        {
            return Err(DeployError::ServiceRole {
                stack: name.to_string(),
                actual: actual.clone(),
                pinned: pinned.clone(),
            });
        }
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

    /// Deletes a change set that will not run, and the review-only stack that held it;
    /// nothing when the job's lease may have lapsed (whoever holds it now cleans up).
    pub async fn discard(&self, change_set_id: &str, stack_id: &str, create: bool, guard: &Guard) {
        if let Err(e) = guard.check("DeleteChangeSet") {
            tracing::warn!(error = %e, "change set left for the job's new holder");
            return;
        }
        if let Err(e) = cfn::delete_change_set(&self.aws.cfn, change_set_id).await {
            tracing::warn!(error = %e, "could not delete change set");
        }
        if create {
            match cfn::describe_stack(&self.aws.cfn, stack_id).await {
                Ok(Some(s)) if s.status == "REVIEW_IN_PROGRESS" => {
                    if let Err(e) = guard.check("DeleteStack") {
                        tracing::warn!(error = %e, "review-only stack left for the job's new holder");
                        return;
                    }
                    // No token: the job's token names its own stack's delete, not this one.
                    if let Err(e) = cfn::delete_stack(&self.aws.cfn, stack_id, None).await {
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
        self.discard(
            &planned.change_set_id,
            &planned.stack_id,
            planned.create,
            &origin.guard,
        )
        .await;
        Ok(planned)
    }
}

/// `stackgate-<sha12>-<millis>`: unique, and says which commit it came from.
pub(super) fn change_set_name(origin: &Origin) -> String {
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
