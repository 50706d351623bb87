//! The stack page (`/stacks/{owner}/{repo}/{stack}`, `GET /api/v1/stacks/…`): a stack
//! folder's state, its runs page by page, its outputs and resources from the latest
//! successful deploy, and the findings on the template deployed.

use std::collections::HashMap;

use serde::Serialize;

use super::run::{StackPart, events};
use super::state::{DriftView, StackState};
use super::view::{CommitView, OutputView, RunLink, outputs, run_href};
use crate::domain::JobId;
use crate::git::commits::CommitInfo;
use crate::queue::{Job, LedgerRow, RunSummary};

/// Runs on one page of the history.
pub const PAGE_SIZE: usize = 25;
/// The furthest page: older runs are pruned long before.
pub const MAX_PAGE: usize = 400;

/// A resource as the last deploy's events left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ResourceView {
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub physical_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StackPage {
    pub repo: String,
    pub folder: String,
    pub path: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub stack_name: Option<String>,
    pub state: StackState,
    pub deployed: Option<CommitView>,
    pub drift: Option<DriftView>,
    pub runs: Vec<RunLink>,
    pub page: usize,
    pub prev_page: Option<usize>,
    pub next_page: Option<usize>,
    /// The deploy the outputs and resources are from.
    pub outputs_from: Option<JobId>,
    pub outputs_href: Option<String>,
    pub outputs: Vec<OutputView>,
    pub resources: Vec<ResourceView>,
    /// The policy report on the template deployed, from the latest successful deploy.
    pub findings_from: Option<JobId>,
    pub findings_href: Option<String>,
    pub deployed_policy: Option<StackPart>,
}

pub struct Inputs<'a> {
    pub repo: &'a str,
    pub folder: &'a str,
    pub stacks_dir: &'a str,
    pub ledger: Option<&'a LedgerRow>,
    /// The lane's newest job.
    pub head: Option<&'a RunSummary>,
    /// This page of runs, and one more if there is a next page.
    pub runs: &'a [RunSummary],
    pub page: usize,
    pub last_success: Option<&'a Job>,
    pub last_with_outputs: Option<&'a Job>,
    pub commits: &'a HashMap<String, CommitInfo>,
    /// The stack's latest drift check.
    pub drift: Option<&'a crate::queue::DriftRow>,
    pub now: i64,
}

/// Each resource's last event in a deploy, in the order they first appear.
pub fn resources(job: &Job) -> Vec<ResourceView> {
    let (events, _) = events(&job.detail);
    let mut out: Vec<ResourceView> = Vec::new();
    for e in events {
        match out.iter_mut().find(|r| r.logical_id == e.logical_id) {
            Some(r) => {
                r.status = e.status;
                if e.physical_id.is_some() {
                    r.physical_id = e.physical_id;
                }
            }
            None => out.push(ResourceView {
                logical_id: e.logical_id,
                resource_type: e.resource_type,
                status: e.status,
                physical_id: e.physical_id,
            }),
        }
    }
    // The stack itself is the page, not one of its resources.
    out.retain(|r| r.resource_type != "AWS::CloudFormation::Stack");
    out
}

pub fn build(i: &Inputs<'_>) -> StackPage {
    let identity = i
        .ledger
        .and_then(|l| l.identity.as_ref())
        .or_else(|| i.head.and_then(|h| h.identity.as_ref()));
    let drift = i.drift.map(|d| DriftView::new(d, i.now));
    let more = i.runs.len() > PAGE_SIZE;
    StackPage {
        repo: i.repo.to_string(),
        folder: i.folder.to_string(),
        path: format!("{}/{}", i.stacks_dir, i.folder),
        account: identity.map(|x| x.account.clone()),
        region: identity.map(|x| x.region.clone()),
        stack_name: identity.map(|x| x.name.clone()),
        state: StackState::derive(i.head, i.ledger).with_drift(drift.as_ref()),
        deployed: i
            .ledger
            .map(|l| CommitView::new(i.repo, &l.sha, i.commits.get(&l.sha), i.now)),
        drift,
        runs: i
            .runs
            .iter()
            .take(PAGE_SIZE)
            .map(|r| RunLink::new(r, i.now))
            .collect(),
        page: i.page,
        prev_page: i.page.checked_sub(1),
        next_page: (more && i.page < MAX_PAGE).then_some(i.page + 1),
        outputs_from: i.last_with_outputs.map(|j| j.id),
        outputs_href: i.last_with_outputs.map(|j| run_href(j.id)),
        outputs: i
            .last_with_outputs
            .map(|j| outputs(&j.detail["outputs"]))
            .unwrap_or_default(),
        resources: i.last_with_outputs.map(resources).unwrap_or_default(),
        findings_from: i.last_success.map(|j| j.id),
        findings_href: i.last_success.map(|j| run_href(j.id)),
        deployed_policy: i
            .last_success
            .and_then(|j| super::run::parts(j).into_iter().next()),
    }
}
