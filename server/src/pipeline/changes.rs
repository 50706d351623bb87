//! Change detection: which stack folders differ from what is (or will be) deployed, which
//! deployed stacks are gone, and whether a deploy's commit is still the branch's.

use std::collections::{BTreeMap, HashMap};

use crate::cloud::cfn;
use crate::config::RepoConfig;
use crate::domain::Trigger;
use crate::git::Snapshot;
use crate::queue::Job;
use crate::stack::Stack;

use super::{JobError, Pipeline};

impl Pipeline {
    /// The stacks whose folders differ from the last deployed commit, and the deployed
    /// stacks whose folders are gone. Compared with state, not the push's `before`, so
    /// force-pushes and missed webhooks still do the right thing.
    pub(super) async fn changed_stacks(
        &self,
        repo: &RepoConfig,
        snap: &Snapshot,
        deployed: &[(String, String, bool)],
    ) -> Result<(Vec<String>, Vec<String>), JobError> {
        let mut old_trees: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (_, sha, _) in deployed {
            if !old_trees.contains_key(sha) {
                let trees = self.mirrors.stack_trees(repo, sha).await?;
                old_trees.insert(sha.clone(), trees);
            }
        }
        let mut changed = Vec::new();
        for (name, tree) in &snap.stacks {
            let before = deployed
                .iter()
                .find(|(s, _, _)| s == name)
                .and_then(|(_, sha, _)| old_trees.get(sha).and_then(|t| t.get(name)));
            if before != Some(&tree.tree_id) {
                changed.push(name.clone());
            }
        }
        // A stack whose newest deploy is at a commit without its folder is being removed
        // already (a queued or running prune): not gone again.
        let gone = deployed
            .iter()
            .filter(|(s, sha, removed)| {
                !removed
                    && !snap.stacks.contains_key(s)
                    && old_trees.get(sha).is_some_and(|t| t.contains_key(s))
            })
            .map(|(s, _, _)| s.clone())
            .collect();
        Ok((changed, gone))
    }

    /// Unchanged stacks that state calls deployed but CloudFormation no longer has. Someone
    /// deleted them by hand, or the emulator restarted. Git says they exist, so they deploy
    /// again. A stack left empty by an interrupted create (REVIEW_IN_PROGRESS) counts as
    /// missing too. A failed check is logged and skipped; it never fails the sync.
    pub(super) async fn missing_stacks(
        &self,
        (repo, job): (&RepoConfig, &Job),
        snap: &Snapshot,
        deployed: &[(String, String, bool)],
        changed: &[String],
    ) -> Vec<String> {
        // (target, region) → (folder, CloudFormation name), for the stacks that should exist.
        // (target, region): where to ask.
        type Place<'a> = (Option<&'a str>, Option<String>);
        let mut expected: BTreeMap<Place<'_>, Vec<(&String, String)>> = BTreeMap::new();
        for (name, _, _) in deployed
            .iter()
            .filter(|(name, _, removed)| !removed && !changed.contains(name))
        {
            if let Some(stack) = snap.files(name).and_then(|f| Stack::load(&f).ok())
                && !stack.deployment.remove
                && let Ok(target) = self.target_of(repo, name, &stack)
            {
                expected
                    .entry((
                        target.map(|t| t.name.as_str()),
                        stack.deployment.region.clone(),
                    ))
                    .or_default()
                    .push((name, stack.name));
            }
        }
        let mut missing = Vec::new();
        for ((target, region), stacks) in expected {
            let target = target.and_then(|n| self.cfg.targets.iter().find(|t| t.name == n));
            let live = async {
                let d = self.deployer_for(job.id, target, region.as_deref()).await?;
                Ok::<_, JobError>(cfn::live_stacks(&d.aws.cfn).await?)
            };
            let live = match live.await {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check that the deployed stacks still exist");
                    continue;
                }
            };
            missing.extend(
                stacks
                    .into_iter()
                    .filter(|(_, cfn_name)| {
                        live.get(cfn_name)
                            .is_none_or(|status| status == "REVIEW_IN_PROGRESS")
                    })
                    .map(|(name, _)| name.clone()),
            );
        }
        if !missing.is_empty() {
            tracing::warn!(stacks = ?missing, "deployed stacks are missing from CloudFormation; deploying them again");
        }
        missing
    }
}

/// The branch head, when the stack's folder there differs from the job's commit. A push may
/// have changed it again, or back to what is deployed, while this deploy waited; that push's
/// sync saw nothing to supersede. A manual redeploy of an older commit is meant.
pub(super) async fn stale_against_head(
    app: &Pipeline,
    repo: &RepoConfig,
    job: &Job,
    stack: &str,
) -> Result<Option<String>, JobError> {
    if job.trigger == Trigger::Manual {
        return Ok(None);
    }
    let Some(head) = app.fetch(repo, None).await?.branch else {
        return Ok(None);
    };
    if head == job.sha {
        return Ok(None);
    }
    let ours = app.mirrors.stack_trees(repo, &job.sha).await?;
    let theirs = app.mirrors.stack_trees(repo, &head).await?;
    Ok((ours.get(stack) != theirs.get(stack)).then_some(head))
}

/// Each stack's commit once the queue drains: its newest queued or running deploy's, else
/// the last finished one's.
pub(super) fn after_the_queue(
    deployed: &[(String, String, bool)],
    pending: &[(String, String)],
) -> Vec<(String, String, bool)> {
    let mut out: Vec<_> = deployed
        .iter()
        .filter(|(s, _, _)| !pending.iter().any(|(p, _)| p == s))
        .cloned()
        .collect();
    out.extend(
        pending
            .iter()
            .map(|(s, sha)| (s.clone(), sha.clone(), false)),
    );
    out
}
