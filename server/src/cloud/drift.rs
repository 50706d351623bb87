//! CloudFormation's drift detection: start it, wait for it (bounded), and read what each
//! resource looks like live. Compare only: nothing here changes a resource.

use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{StackDriftDetectionStatus, StackResourceDriftStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AwsError;

/// How long one detection may take before the check gives up (AWS takes seconds to
/// minutes, by the number of resources).
pub const DETECTION_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// At most this many pages of resource drifts (100 each): CloudFormation's limit is 500
/// resources per stack.
pub const MAX_PAGES: usize = 25;

/// One property that differs between the template and the live resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// A JSON pointer into the resource's properties: `/SecurityGroupIngress/1`.
    pub path: String,
    /// ADD, REMOVE or NOT_EQUAL.
    pub kind: String,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

/// One resource as drift detection saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDrift {
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    /// IN_SYNC, MODIFIED, DELETED or NOT_CHECKED.
    pub status: String,
    /// The live properties, as CloudFormation read them (MODIFIED only).
    pub actual: Option<Value>,
    pub differences: Vec<Difference>,
}

impl ResourceDrift {
    pub fn drifted(&self) -> bool {
        self.status == StackResourceDriftStatus::Modified.as_str()
            || self.status == StackResourceDriftStatus::Deleted.as_str()
    }
}

/// A finished detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub detection_id: String,
    /// IN_SYNC, DRIFTED or UNKNOWN.
    pub stack_status: String,
    pub resources: Vec<ResourceDrift>,
}

/// Why a detection gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("drift detection {id} failed: {reason}")]
    Failed { id: String, reason: String },
    #[error("drift detection {id} was not done after {seconds} s")]
    Timeout { id: String, seconds: u64 },
    #[error("more than {MAX_PAGES} pages of resource drifts")]
    TooManyPages,
}

/// Detects drift on `stack`, waits for the answer (polling every `poll`, at most
/// [`DETECTION_DEADLINE`]), and reads every checked resource's drift.
pub async fn detect(cfn: &Client, stack: &str, poll: Duration) -> Result<Detection, DriftError> {
    let started = cfn
        .detect_stack_drift()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DetectStackDrift", e))?;
    let id = started
        .stack_drift_detection_id()
        .ok_or_else(|| DriftError::Failed {
            id: String::new(),
            reason: "DetectStackDrift gave no detection id".into(),
        })?
        .to_string();
    let since = Instant::now();
    let stack_status = loop {
        let s = cfn
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(&id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeStackDriftDetectionStatus", e))?;
        match s.detection_status() {
            Some(StackDriftDetectionStatus::DetectionComplete) => {
                break s
                    .stack_drift_status()
                    .map_or("UNKNOWN", |d| d.as_str())
                    .to_string();
            }
            Some(StackDriftDetectionStatus::DetectionFailed) => {
                // Failed for some resources: what was checked is still worth reading, but
                // the stack's answer is not whole, so the check must not say "in sync".
                return Err(DriftError::Failed {
                    id,
                    reason: s
                        .detection_status_reason()
                        .unwrap_or("no reason given")
                        .to_string(),
                });
            }
            _ => {}
        }
        if since.elapsed() >= DETECTION_DEADLINE {
            return Err(DriftError::Timeout {
                id,
                seconds: DETECTION_DEADLINE.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    };
    let resources = resource_drifts(cfn, stack).await?;
    Ok(Detection {
        detection_id: id,
        stack_status,
        resources,
    })
}

/// Every checked resource's latest drift, paged and bounded.
async fn resource_drifts(cfn: &Client, stack: &str) -> Result<Vec<ResourceDrift>, DriftError> {
    let mut out = Vec::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = cfn
            .describe_stack_resource_drifts()
            .stack_name(stack)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeStackResourceDrifts", e))?;
        for d in page.stack_resource_drifts() {
            out.push(ResourceDrift {
                logical_id: d.logical_resource_id().unwrap_or_default().to_string(),
                physical_id: d.physical_resource_id().map(str::to_string),
                resource_type: d.resource_type().unwrap_or_default().to_string(),
                // No status is no answer: not "in sync".
                status: d
                    .stack_resource_drift_status()
                    .map_or("UNKNOWN", |s| s.as_str())
                    .to_string(),
                actual: d.actual_properties().and_then(parse),
                differences: d
                    .property_differences()
                    .iter()
                    .map(|p| Difference {
                        path: p.property_path().unwrap_or_default().to_string(),
                        kind: p.difference_type().map_or("", |t| t.as_str()).to_string(),
                        expected: p.expected_value().and_then(parse),
                        actual: p.actual_value().and_then(parse),
                    })
                    .collect(),
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
    Err(DriftError::TooManyPages)
}

/// A property value as AWS sends it: JSON text, or a bare string.
fn parse(s: &str) -> Option<Value> {
    if s.is_empty() {
        return None;
    }
    Some(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_or_plain_strings() {
        assert_eq!(parse("t3.micro"), Some(Value::String("t3.micro".into())));
        assert_eq!(parse("256"), Some(serde_json::json!(256)));
        assert_eq!(
            parse(r#"{"IpProtocol":"tcp","FromPort":22}"#),
            Some(serde_json::json!({"IpProtocol": "tcp", "FromPort": 22}))
        );
        assert_eq!(parse(""), None);
    }
}
