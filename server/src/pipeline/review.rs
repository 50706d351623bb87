//! The review of what a change widens, as a job runs it: against the live stack, or, for a
//! fork's pull request (no AWS calls), against the deployed commit's template from git.

use crate::cloud::Aws;
use crate::config::RepoConfig;
use crate::queue::Job;
use crate::report::redact::Redactor;
use crate::review::{self, Baseline, Review, baseline};
use crate::stack::Stack;

use super::Pipeline;

impl Pipeline {
    /// What `stack` widens against what is deployed: the live stack in its region, or for
    /// a fork's pull request (`fork`) the deployed commit. Values pass through `redact`.
    pub(super) async fn review(
        &self,
        (job, folder): (&Job, &str),
        repo: &RepoConfig,
        stack: &Stack,
        fork: bool,
        redact: &Redactor,
    ) -> Review {
        // The stack's own target and region: the live stack is there.
        let regional = if fork {
            None
        } else {
            match self.deployer_for_stack(job, repo, folder, stack).await {
                Ok(d) => Some(d),
                Err(e) => {
                    let b = Baseline::Deployed {
                        stack: stack.name.clone(),
                    };
                    return Review::unknown(b, &stack.name, e.public());
                }
            }
        };
        let region = match &regional {
            Some(d) => d.aws.region.as_str(),
            None => stack
                .deployment
                .region
                .as_deref()
                .unwrap_or(&self.deployer.aws.region),
        };
        let aws: Option<&Aws> = regional.as_ref().map(|d| &d.aws);
        let proposed = baseline::of_stack(stack, region, aws).await;
        let (against, base) = match aws {
            Some(aws) => match baseline::deployed(aws, &stack.name, region).await {
                Ok(Some(doc)) => (
                    Baseline::Deployed {
                        stack: stack.name.clone(),
                    },
                    Some(doc),
                ),
                Ok(None) => (Baseline::NotDeployed, None),
                Err(e) => {
                    tracing::warn!(error = %e, stack = %stack.name, "cannot read the deployed template");
                    let b = Baseline::Deployed {
                        stack: stack.name.clone(),
                    };
                    return Review::unknown(b, &stack.name, e.public());
                }
            },
            None => match self.deployed_commit(repo, stack).await {
                Ok(Some((sha, doc))) => (Baseline::DeployedCommit { sha }, Some(doc)),
                Ok(None) => (Baseline::NotDeployed, None),
                Err(why) => return Review::unknown(Baseline::NotDeployed, &stack.name, why),
            },
        };
        review::compare(against, base.as_ref(), &proposed).map_text(|s| redact.text(s))
    }

    /// The stack folder as the ledger last deployed it, from git: `None` when never
    /// deployed (or removed).
    async fn deployed_commit(
        &self,
        repo: &RepoConfig,
        stack: &Stack,
    ) -> Result<Option<(String, serde_json::Value)>, String> {
        let rows = self.queue.deployed(&repo.name).map_err(|e| e.to_string())?;
        let Some((_, sha, _)) = rows
            .into_iter()
            .find(|(folder, _, removed)| *folder == stack.folder && !removed)
        else {
            return Ok(None);
        };
        let snap = self.snapshot(repo, &sha, None).await.map_err(|_| {
            format!(
                "the deployed commit {} cannot be read from git",
                crate::domain::short(&sha)
            )
        })?;
        let deployed = snap
            .files(&stack.folder)
            .and_then(|files| Stack::load(&files).ok())
            .ok_or_else(|| {
                format!(
                    "the stack folder at the deployed commit {} does not load",
                    crate::domain::short(&sha)
                )
            })?;
        let region = deployed
            .deployment
            .region
            .as_deref()
            .unwrap_or(&self.deployer.aws.region);
        Ok(Some((
            sha,
            baseline::of_stack(&deployed, region, None).await,
        )))
    }
}
