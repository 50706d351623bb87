//! The steps every kind shares: the target a stack folder may use (the server's
//! configuration decides, never the repository) and its deployer, the policy gate, and the
//! claims a commit's folders make on the live stacks.

use std::sync::Arc;

use crate::cloud::deployer::Deployer;
use crate::cloud::targets::session_name;
use crate::config::RepoConfig;
use crate::config::targets::{self, TargetConfig, TargetRefusal};
use crate::domain::{JobId, StackIdentity};
use crate::git::Snapshot;
use crate::policy::input::EventInfo;
use crate::policy::{Report, Verdict};
use crate::queue::Job;
use crate::stack::Stack;
use crate::stack::claims::{self, Claims};

use super::{JobError, Pipeline};

impl Pipeline {
    /// The target a stack folder of `repo` may use, as the server's configuration alone
    /// decides (`None`: the server's own account), and the stack's region within it.
    pub(super) fn target_of(
        &self,
        repo: &RepoConfig,
        folder: &str,
        stack: &Stack,
    ) -> Result<Option<&TargetConfig>, TargetRefusal> {
        let path = format!("{}/{folder}", repo.stacks_dir);
        let Some(name) = targets::allowed(repo, &path, stack.deployment.target.as_deref())? else {
            return Ok(None);
        };
        // Validated at load: every mapped target exists. Were it gone, nothing deploys.
        let Some(target) = self.cfg.targets.iter().find(|t| t.name == name) else {
            return Err(TargetRefusal::Unmapped {
                repo: repo.name.clone(),
                path,
            });
        };
        target.region(stack.deployment.region.as_deref())?;
        Ok(Some(target))
    }

    /// The target of a stack the ledger says `folder` deployed (the folder may be gone):
    /// the one the configuration maps its path to, which must hold the stack's account.
    pub(super) async fn target_of_deployed(
        &self,
        repo: &RepoConfig,
        folder: &str,
        identity: &StackIdentity,
    ) -> Result<Option<&TargetConfig>, JobError> {
        let path = format!("{}/{folder}", repo.stacks_dir);
        let target = targets::choose(&repo.targets, &path)
            .and_then(|n| self.cfg.targets.iter().find(|t| t.name == n));
        let account = match target {
            Some(t) => t.account_id.as_str(),
            None => self.deployer.aws.account().await?,
        };
        if account != identity.account {
            // Account ids stay out of the status: it may be public.
            return Err(JobError::Invalid(format!(
                "stack `{}` of {path} is not in the account of {}; nothing done",
                identity.name,
                target.map_or("the server's own credentials".to_string(), |t| format!(
                    "target `{}`",
                    t.name
                )),
            )));
        }
        Ok(target)
    }

    /// The target a deploy job recorded before it called AWS (`None`: the server's own).
    pub(super) fn target_in(
        &self,
        detail: &serde_json::Value,
    ) -> Result<Option<&TargetConfig>, JobError> {
        match detail["target"].as_str() {
            None => Ok(None),
            Some(name) => match self.cfg.targets.iter().find(|t| t.name == name) {
                Some(t) => Ok(Some(t)),
                None => Err(JobError::Invalid(format!(
                    "target `{name}` is no longer configured; nothing done"
                ))),
            },
        }
    }

    /// The deployer of a stack of `target` (the server's own account when `None`) in
    /// `region` (its default when `None`), acting for `job`.
    pub(super) async fn deployer_for(
        &self,
        job: JobId,
        target: Option<&TargetConfig>,
        region: Option<&str>,
    ) -> Result<Arc<Deployer>, JobError> {
        Ok(match target {
            None => self.regions.get(region).await?,
            Some(t) => self.targets.deployer(t, region, &session_name(job)).await?,
        })
    }

    /// The deployer of a stack folder, in its allowed target and region, for `job`.
    pub(super) async fn deployer_for_stack(
        &self,
        job: &Job,
        repo: &RepoConfig,
        folder: &str,
        stack: &Stack,
    ) -> Result<Arc<Deployer>, JobError> {
        let target = self.target_of(repo, folder, stack)?;
        self.deployer_for(job.id, target, stack.deployment.region.as_deref())
            .await
    }

    /// A stack's identity: its target's account (else the server's) and its region.
    pub(super) async fn identity_of(
        &self,
        target: Option<&TargetConfig>,
        stack: &Stack,
    ) -> Result<StackIdentity, JobError> {
        Ok(match target {
            Some(t) => StackIdentity {
                account: t.account_id.clone(),
                region: t.region(stack.deployment.region.as_deref())?.to_string(),
                name: stack.name.clone(),
            },
            None => {
                let account = self.deployer.aws.account().await?;
                claims::identity(account, &self.deployer.aws.region, stack)
            }
        })
    }

    /// What each folder of the commit claims, against the live stacks of every repository.
    pub(super) async fn claims(
        &self,
        repo: &RepoConfig,
        snap: &Snapshot,
    ) -> Result<Claims, JobError> {
        let mut current: Vec<(String, StackIdentity)> = Vec::new();
        for f in snap.stacks.keys() {
            let Some(stack) = snap.files(f).and_then(|files| Stack::load(&files).ok()) else {
                continue;
            };
            // A folder refused its target deploys nowhere, so claims nothing.
            let Ok(target) = self.target_of(repo, f, &stack) else {
                continue;
            };
            current.push((f.clone(), self.identity_of(target, &stack).await?));
        }
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
        let target = self.target_of(repo, folder, &stack).ok()?;
        self.identity_of(target, &stack).await.ok()
    }

    /// The policy gate of stack folder `folder` of the job's repository: its target first
    /// (a target the server does not allow it is an error, and nothing deploys), then the
    /// policies with that target's name, labels and settings. `aws` lets it look up what
    /// CloudFormation would fetch at deploy time (never for a fork's pull request, which
    /// gets no AWS calls).
    pub(super) async fn gate(
        &self,
        (stack, files): (&Stack, &dyn crate::stack::StackFiles),
        kind: &str,
        (job, folder): (&Job, &str),
        aws: bool,
    ) -> Report {
        let event = EventInfo {
            kind: kind.into(),
            sha: Some(job.sha.clone()),
        };
        let target = match self
            .repo(&job.repo)
            .map(|r| self.target_of(r, folder, stack))
        {
            Some(Ok(t)) => t,
            Some(Err(refusal)) => {
                let at = format!(
                    "{}:{}",
                    stack.deployment_file,
                    stack.deployment.target_line.max(1)
                );
                return self.verdict(Report::from_outcomes(vec![
                    crate::policy::refusal::bad_input(format!("{at}: {refusal}")),
                ]));
            }
            None => {
                return self.verdict(Report::from_outcomes(vec![
                    crate::policy::refusal::bad_input("the repository is not configured".into()),
                ]));
            }
        };
        // The stack's own account and region: its exports and parameters are the ones
        // CloudFormation reads. A region with no client looks nothing up, so its doubt
        // stays an error.
        let region = stack.deployment.region.as_deref();
        let regional = match aws {
            true => self.deployer_for(job.id, target, region).await.ok(),
            false => None,
        };
        let region = match target {
            Some(t) => t.region(region).unwrap_or_default(),
            None => region.unwrap_or(&self.deployer.aws.region),
        };
        let report = crate::policy::gate::judge(
            &self.policies,
            stack,
            files,
            region,
            event,
            regional.as_ref().map(|d| &d.aws),
            target,
        )
        .await;
        self.verdict(report)
    }

    fn verdict(&self, report: Report) -> Report {
        let v = match report.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        };
        self.metrics.verdict(v);
        report
    }
}
