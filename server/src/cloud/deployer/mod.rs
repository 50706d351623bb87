//! plan, deploy and remove: CloudFormation change sets driven the way a careful operator
//! would, with every step reported to a progress sink.

mod apply;
mod compare;

pub use apply::Settled;

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cloud::cfn::{self, Change, ChangeSetOutcome, ChangeSetRequest, Event};
use crate::cloud::guard::{Guard, LeaseLapsed};
use crate::cloud::package;
use crate::cloud::{Aws, AwsError, s3};
use crate::stack::ownership::{self, Claim, NotOwned, Owner};
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
    /// A call that changes AWS was not sent: the job's lease may have lapsed.
    #[error(transparent)]
    LeaseLapsed(#[from] LeaseLapsed),
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
    #[error(
        "stack `{stack}` acts as service role {actual}, not the target's pinned {pinned}; \
         nothing changed"
    )]
    ServiceRole {
        stack: String,
        actual: String,
        pinned: String,
    },
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
    /// Asked before every call that changes AWS; names the calls' tokens.
    pub guard: Guard,
    /// Put drifted resources back as the template says (a `REVERT_DRIFT` change set): an
    /// unchanged template alone would be "no changes".
    pub revert_drift: bool,
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
    /// The guard of the job that planned it: its execution is asked too.
    #[serde(skip)]
    pub guard: Guard,
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
    /// The target's pinned service role: `RoleARN` on every change set.
    pub service_role: Option<String>,
}

impl Deployer {
    pub fn new(aws: Aws, artifact_bucket: Option<String>) -> Self {
        let bucket =
            artifact_bucket.unwrap_or_else(|| format!("stackgate-artifacts-{}", aws.region));
        Self {
            aws,
            artifact_bucket: bucket,
            poll: Duration::from_secs(2),
            service_role: None,
        }
    }
}
