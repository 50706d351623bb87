//! CloudFormation: stack state, change sets, events, delete. Thin, typed wrappers that turn
//! SDK shapes into the few facts the pipeline needs.

use std::collections::HashMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, DeploymentMode, ExecutionStatus, Parameter, Stack,
    Tag,
};
use serde::{Deserialize, Serialize};

use super::AwsError;

/// What CloudFormation says about a stack right now.
#[derive(Debug, Clone, Serialize)]
pub struct StackInfo {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: Vec<(String, String)>,
    /// Who owns it, by stackgate's tags (see `ownership`).
    pub tags: Vec<(String, String)>,
    /// The service role CloudFormation acts as for it, if any.
    pub role_arn: Option<String>,
    /// When it last changed (its creation, before any update): a held change set executes
    /// only on the stack it was made for.
    pub updated: Option<String>,
}

impl StackInfo {
    pub fn in_progress(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS")
    }
}

/// One row of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    pub replacement: String,
    /// What of the resource changes (`Properties`, `Tags`…), for the run page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
}

/// One stack event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
    /// The resource's physical id, once CloudFormation has one (the run and stack pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
}

impl Event {
    /// A resource that failed for a reason of its own, not one cancelled because another
    /// failed.
    pub fn is_root_failure(&self) -> bool {
        self.status.ends_with("_FAILED")
            && !self
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("cancelled") || r.contains("canceled"))
            && self.resource_type != "AWS::CloudFormation::Stack"
    }
}

/// The outcome of creating a change set.
#[derive(Debug, Clone)]
pub enum ChangeSetOutcome {
    Ready {
        id: String,
        stack_id: String,
        changes: Vec<Change>,
    },
    /// CloudFormation found nothing to change.
    NoChanges { id: String, stack_id: String },
}

/// What a change set is asked to do.
#[derive(Debug, Clone)]
pub struct ChangeSetRequest<'a> {
    pub stack_name: &'a str,
    pub change_set_name: &'a str,
    pub create: bool,
    pub template_body: Option<&'a str>,
    pub template_url: Option<&'a str>,
    pub parameters: Vec<(String, String)>,
    pub capabilities: Vec<&'static str>,
    pub tags: Vec<(String, String)>,
    pub description: &'a str,
    /// `ClientToken`: a retry of this request is the same request.
    pub client_token: Option<String>,
    /// `DeploymentMode=REVERT_DRIFT`: the change set also puts drifted resources back.
    pub revert_drift: bool,
    /// `RoleARN`: the service role CloudFormation acts as (a target's pinned one).
    pub role_arn: Option<&'a str>,
}

/// The messages CloudFormation uses for "nothing to do".
fn means_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// DescribeStacks of one stack; `None` when it does not exist.
async fn describe(cfn: &Client, name: &str) -> Result<Option<Stack>, AwsError> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.unwrap_or_default().into_iter().next()),
        Err(e) => {
            let err = AwsError::from_sdk("DescribeStacks", e);
            if err.message.contains("does not exist") {
                return Ok(None);
            }
            Err(err)
        }
    }
}

pub async fn describe_stack(cfn: &Client, name: &str) -> Result<Option<StackInfo>, AwsError> {
    Ok(describe(cfn, name).await?.map(|s| StackInfo {
        id: s.stack_id().unwrap_or_default().to_string(),
        status: s
            .stack_status()
            .map(|st| st.as_str().to_string())
            .unwrap_or_default(),
        reason: s.stack_status_reason().map(str::to_string),
        role_arn: s.role_arn().filter(|r| !r.is_empty()).map(str::to_string),
        updated: s
            .last_updated_time()
            .or(s.creation_time())
            .map(|t| t.to_string()),
        outputs: s
            .outputs()
            .iter()
            .map(|o| {
                (
                    o.output_key().unwrap_or_default().to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        tags: s
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    }))
}

/// The template the stack runs now, as CloudFormation holds it.
pub async fn template_body(cfn: &Client, stack: &str) -> Result<String, AwsError> {
    let out = cfn
        .get_template()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetTemplate", e))?;
    Ok(out.template_body().unwrap_or_default().to_string())
}

/// A deployed stack's template and parameter values, for the review of what a change
/// widens. `None`: no such stack, or one that never finished creating. A parameter
/// CloudFormation resolved (an SSM-typed one) comes as its resolved value; `NoEcho` ones
/// come masked.
pub async fn live_template(
    cfn: &Client,
    name: &str,
) -> Result<Option<(String, Vec<(String, String)>)>, AwsError> {
    let Some(s) = describe(cfn, name).await? else {
        return Ok(None);
    };
    let status = s.stack_status().map(|st| st.as_str()).unwrap_or_default();
    if matches!(status, "DELETE_COMPLETE" | "REVIEW_IN_PROGRESS") {
        return Ok(None);
    }
    let parameters = s
        .parameters()
        .iter()
        .map(|p| {
            let value = p
                .resolved_value()
                .or(p.parameter_value())
                .unwrap_or_default();
            (
                p.parameter_key().unwrap_or_default().to_string(),
                value.to_string(),
            )
        })
        .collect();
    let id = s.stack_id().unwrap_or(name).to_string();
    Ok(Some((template_body(cfn, &id).await?, parameters)))
}

/// Every stack in the account and region that is not deleted: name → status. One paged
/// DescribeStacks, where asking stack by stack would cost a call each.
pub async fn live_stacks(cfn: &Client) -> Result<HashMap<String, String>, AwsError> {
    let mut out = HashMap::new();
    let mut token = None;
    loop {
        let page = cfn
            .describe_stacks()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeStacks", e))?;
        for s in page.stacks() {
            let status = s.stack_status().map(|st| st.as_str()).unwrap_or_default();
            if status != "DELETE_COMPLETE" {
                out.insert(
                    s.stack_name().unwrap_or_default().to_string(),
                    status.to_string(),
                );
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

pub async fn create_change_set(
    cfn: &Client,
    req: &ChangeSetRequest<'_>,
) -> Result<(String, String), AwsError> {
    let params = req
        .parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let mut tags = Vec::new();
    for (k, v) in &req.tags {
        tags.push(Tag::builder().key(k).value(v).build());
    }
    let out = cfn
        .create_change_set()
        .stack_name(req.stack_name)
        .change_set_name(req.change_set_name)
        .change_set_type(if req.create {
            ChangeSetType::Create
        } else {
            ChangeSetType::Update
        })
        .set_template_body(req.template_body.map(str::to_string))
        .set_template_url(req.template_url.map(str::to_string))
        .set_parameters(Some(params))
        .set_capabilities(Some(
            req.capabilities
                .iter()
                .map(|c| Capability::from(*c))
                .collect(),
        ))
        .set_tags(Some(tags))
        .description(req.description)
        .set_client_token(req.client_token.clone())
        .set_deployment_mode(req.revert_drift.then_some(DeploymentMode::RevertDrift))
        .set_role_arn(req.role_arn.map(str::to_string))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateChangeSet", e))?;
    Ok((
        out.id().unwrap_or(req.change_set_name).to_string(),
        out.stack_id().unwrap_or(req.stack_name).to_string(),
    ))
}

/// Waits for a change set to be computed, then lists its changes.
pub async fn await_change_set(
    cfn: &Client,
    id: &str,
    stack_id: &str,
    poll: std::time::Duration,
) -> Result<ChangeSetOutcome, AwsError> {
    loop {
        let first = cfn
            .describe_change_set()
            .change_set_name(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeChangeSet", e))?;
        match first.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let mut changes = collect_changes(first.changes());
                let mut token = first.next_token().map(str::to_string);
                while let Some(t) = token {
                    let page = cfn
                        .describe_change_set()
                        .change_set_name(id)
                        .next_token(t)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("DescribeChangeSet", e))?;
                    changes.extend(collect_changes(page.changes()));
                    token = page.next_token().map(str::to_string);
                }
                return Ok(ChangeSetOutcome::Ready {
                    id: id.to_string(),
                    stack_id: stack_id.to_string(),
                    changes,
                });
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = first
                    .status_reason()
                    .unwrap_or("no reason given")
                    .to_string();
                if means_no_changes(&reason) {
                    return Ok(ChangeSetOutcome::NoChanges {
                        id: id.to_string(),
                        stack_id: stack_id.to_string(),
                    });
                }
                return Err(AwsError {
                    operation: "CreateChangeSet",
                    code: Some("FAILED".into()),
                    message: reason,
                });
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}

fn collect_changes(changes: &[aws_sdk_cloudformation::types::Change]) -> Vec<Change> {
    changes
        .iter()
        .filter_map(|c| c.resource_change())
        .map(|rc| Change {
            action: rc
                .action()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
            resource_type: rc.resource_type().unwrap_or_default().to_string(),
            replacement: rc
                .replacement()
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| "-".into()),
            scope: rc.scope().iter().map(|a| a.as_str().to_string()).collect(),
        })
        .collect()
}

/// Where an executed-or-not change set stands; `None` once CloudFormation has removed it
/// (it does so after a successful execution).
pub async fn change_set_execution(
    cfn: &Client,
    id: &str,
) -> Result<Option<ExecutionStatus>, AwsError> {
    match cfn.describe_change_set().change_set_name(id).send().await {
        Ok(out) => Ok(out.execution_status().cloned()),
        Err(e) => {
            let err = AwsError::from_sdk("DescribeChangeSet", e);
            if err.code.as_deref() == Some("ChangeSetNotFound")
                || err.message.contains("does not exist")
            {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Executes a change set; `token` (`ClientRequestToken`) marks the stack events it causes,
/// and makes a repeat of the same request the same execution.
pub async fn execute_change_set(
    cfn: &Client,
    id: &str,
    token: Option<String>,
) -> Result<(), AwsError> {
    cfn.execute_change_set()
        .change_set_name(id)
        .set_client_request_token(token)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ExecuteChangeSet", e))?;
    Ok(())
}

pub async fn delete_change_set(cfn: &Client, id: &str) -> Result<(), AwsError> {
    cfn.delete_change_set()
        .change_set_name(id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DeleteChangeSet", e))?;
    Ok(())
}

pub async fn delete_stack(
    cfn: &Client,
    stack: &str,
    token: Option<String>,
) -> Result<(), AwsError> {
    cfn.delete_stack()
        .stack_name(stack)
        .set_client_request_token(token)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DeleteStack", e))?;
    Ok(())
}

/// Events newer than the ones in `seen`, oldest first.
pub async fn new_events(
    cfn: &Client,
    stack_id: &str,
    seen: &mut std::collections::HashSet<String>,
) -> Result<Vec<Event>, AwsError> {
    let mut fresh = Vec::new();
    let mut token: Option<String> = None;
    'pages: loop {
        let page = cfn
            .describe_stack_events()
            .stack_name(stack_id)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeStackEvents", e))?;
        for e in page.stack_events() {
            let id = e.event_id().unwrap_or_default().to_string();
            // Events come newest first: stop at the first one already shown.
            if !seen.insert(id.clone()) {
                break 'pages;
            }
            fresh.push(Event {
                id,
                timestamp: e.timestamp().map(|t| t.to_string()).unwrap_or_default(),
                logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
                resource_type: e.resource_type().unwrap_or_default().to_string(),
                status: e
                    .resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: e.resource_status_reason().map(str::to_string),
                physical_id: e
                    .physical_resource_id()
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            });
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    fresh.reverse();
    Ok(fresh)
}

/// The stack's resources: logical id, type, physical id.
pub async fn resources(
    cfn: &Client,
    stack: &str,
) -> Result<Vec<(String, String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListStackResources", e))?;
        for r in page.stack_resource_summaries() {
            out.push((
                r.logical_resource_id().unwrap_or_default().to_string(),
                r.resource_type().unwrap_or_default().to_string(),
                r.physical_resource_id().unwrap_or_default().to_string(),
            ));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}
