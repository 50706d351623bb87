//! The steps every kind shares: the policy gate, and the claims a commit's folders make
//! on the live stacks.

use crate::config::RepoConfig;
use crate::domain::StackIdentity;
use crate::git::Snapshot;
use crate::policy::input::EventInfo;
use crate::policy::{Report, Verdict};
use crate::stack::Stack;
use crate::stack::claims::{self, Claims};

use super::{JobError, Pipeline};

impl Pipeline {
    /// What each folder of the commit claims, against the live stacks of every repository.
    pub(super) async fn claims(
        &self,
        repo: &RepoConfig,
        snap: &Snapshot,
    ) -> Result<Claims, JobError> {
        let account = self.deployer.aws.account().await?.to_string();
        let region = &self.deployer.aws.region;
        let current: Vec<(String, StackIdentity)> = snap
            .stacks
            .keys()
            .filter_map(|f| {
                let stack = Stack::load(&snap.files(f)?).ok()?;
                Some((f.clone(), claims::identity(&account, region, &stack)))
            })
            .collect();
        let ledger = self.ledger().await?;
        Ok(Claims::find(
            &repo.name,
            &current,
            &|f| snap.stacks.contains_key(f),
            &ledger,
            &|r, f| self.stacks_path(r, f),
        ))
    }

    /// Every live stack of the ledger, by identity. A row from before the ledger kept
    /// identities is read from its commit once: unseen, its stack would have no claimant.
    pub(super) async fn ledger(&self) -> Result<Vec<(StackIdentity, String, String)>, JobError> {
        for (repo, folder, sha) in self.queue.live_unidentified()? {
            let Some(cfg) = self.repo(&repo).cloned() else {
                continue;
            };
            if let Some(id) = self.identity_at(&cfg, &sha, &folder).await {
                self.queue.fill_identity(&repo, &folder, &id)?;
            }
        }
        Ok(self.queue.live_identities()?)
    }

    /// The stack `folder` deployed at `sha`, read from its deployment file there: for
    /// ledger rows from before the ledger kept identities.
    pub(super) async fn identity_at(
        &self,
        repo: &RepoConfig,
        sha: &str,
        folder: &str,
    ) -> Option<StackIdentity> {
        let snap = self.snapshot(repo, sha, None).await.ok()?;
        let stack = Stack::load(&snap.files(folder)?).ok()?;
        let account = self.deployer.aws.account().await.ok()?;
        Some(claims::identity(account, &self.deployer.aws.region, &stack))
    }

    /// The policy gate; `aws` lets it look up what CloudFormation would fetch at deploy
    /// time (never for a fork's pull request, which gets no AWS calls).
    pub(super) async fn gate(
        &self,
        (stack, files): (&Stack, &dyn crate::stack::StackFiles),
        kind: &str,
        sha: &str,
        aws: bool,
    ) -> Report {
        let event = EventInfo {
            kind: kind.into(),
            sha: Some(sha.into()),
        };
        // The stack's own region: its exports and parameters are the ones CloudFormation
        // reads. A region with no client looks nothing up, so its doubt stays an error.
        let regional = self.regions.get(stack.deployment.region.as_deref()).await;
        let region = stack
            .deployment
            .region
            .as_deref()
            .unwrap_or(&self.deployer.aws.region);
        let aws = match &regional {
            Ok(d) if aws => Some(&d.aws),
            _ => None,
        };
        let report =
            crate::policy::gate::judge(&self.policies, stack, files, region, event, aws).await;
        let v = match report.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        };
        self.metrics.verdict(v);
        report
    }
}
