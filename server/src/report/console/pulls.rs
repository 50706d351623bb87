//! The pull request page (`/repos/{owner}/{repo}/pulls/{n}`): each preview's change
//! tables and findings, newest first.

use serde::Serialize;

use super::run::{StackPart, parts};
use super::view::{RunLink, github_pull};
use crate::domain::JobId;
use crate::queue::Job;

/// The most previews a page shows.
pub const MAX_PREVIEWS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub run: RunLink,
    pub id: JobId,
    pub fork: bool,
    pub parts: Vec<StackPart>,
    /// The stacks it found changed.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PullPage {
    pub repo: String,
    pub pr: u64,
    pub github: String,
    pub previews: Vec<Preview>,
}

pub fn build(repo: &str, pr: u64, jobs: &[Job], now: i64) -> PullPage {
    PullPage {
        repo: repo.to_string(),
        pr,
        github: github_pull(repo, pr),
        previews: jobs
            .iter()
            .map(|j| Preview {
                run: RunLink::new(&j.summary(), now),
                id: j.id,
                fork: j.fork,
                parts: parts(j),
                changed: j.detail["changed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            })
            .collect(),
    }
}
