//! The lane rules, with no SQL: which lane a job runs in, which jobs are the same work, and
//! how a batch of new jobs folds and supersedes within itself. A backend applies them to
//! what it has queued.

use std::collections::HashMap;

use crate::domain::{Kind, Lane, Trigger};

use super::NewJob;

impl NewJob {
    /// Jobs in one lane run one at a time, and a newer one supersedes the queued ones.
    pub fn lane(&self) -> Lane {
        match (self.kind, &self.stack, self.pr) {
            (Kind::Deploy, Some(stack), _) => stack_lane(&self.repo, stack),
            (Kind::Preview, _, Some(pr)) => pr_lane(&self.repo, pr),
            (Kind::Drift, Some(stack), _) => Lane(format!("{}#drift:{stack}", self.repo)),
            _ => Lane(format!("{}#sync", self.repo)),
        }
    }
}

/// The lane of a stack folder's deploys.
pub fn stack_lane(repo: &str, stack: &str) -> Lane {
    Lane(format!("{repo}#stack:{stack}"))
}

/// The lane of a pull request's previews.
pub fn pr_lane(repo: &str, pr: u64) -> Lane {
    Lane(format!("{repo}#pr:{pr}"))
}

/// Whether two jobs of one lane are the same work: the same commit, from the same side of a
/// fork. A manual redeploy posts its own policy status and tells the policies it is manual,
/// so it is never folded into a push's or a poll's job, nor they into it; a drift revert
/// reverts drift, which a push's deploy of the same commit would not.
pub fn same_commit(a: &NewJob, b: &NewJob) -> bool {
    a.sha == b.sha && a.fork == b.fork && asked_as(a.trigger) == asked_as(b.trigger)
}

/// Which triggers ask for the same work: a push, a poll and a scheduled check do.
fn asked_as(t: Trigger) -> Trigger {
    match t {
        Trigger::Manual | Trigger::Drift => t,
        Trigger::Push | Trigger::Poll | Trigger::PullRequest | Trigger::Schedule => Trigger::Push,
    }
}

/// Where one job of a batch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The newest job of its lane in the batch: it supersedes what its lane has queued.
    Newest,
    /// The same work as the newest job of its lane (at that index): it is that job.
    Folded(usize),
    /// Superseded at birth by the newest job of its lane (at that index).
    Superseded(usize),
}

/// Places each job of a batch, in order, against the newest job of its lane in the batch.
pub fn plan(jobs: &[&NewJob]) -> Vec<(Lane, Place)> {
    let lanes: Vec<Lane> = jobs.iter().map(|j| j.lane()).collect();
    let mut newest: HashMap<&Lane, usize> = HashMap::new();
    for (i, lane) in lanes.iter().enumerate() {
        newest.insert(lane, i);
    }
    let places: Vec<Place> = lanes
        .iter()
        .enumerate()
        .map(|(i, lane)| match newest.get(lane).copied() {
            Some(last) if last != i && same_commit(jobs[i], jobs[last]) => Place::Folded(last),
            Some(last) if last != i => Place::Superseded(last),
            _ => Place::Newest,
        })
        .collect();
    lanes.into_iter().zip(places).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(stack: &str, sha: &str) -> NewJob {
        NewJob {
            kind: Kind::Deploy,
            repo: "acme/infra".into(),
            stack: Some(stack.into()),
            sha: sha.into(),
            pr: None,
            fork: false,
            trigger: Trigger::Push,
        }
    }

    #[test]
    fn lanes_are_per_stack_per_pull_request_and_one_for_syncs() {
        let preview = NewJob {
            kind: Kind::Preview,
            pr: Some(7),
            ..deploy("web", "a")
        };
        let sync = NewJob {
            kind: Kind::Sync,
            ..deploy("web", "a")
        };
        assert_eq!(deploy("web", "a").lane().as_str(), "acme/infra#stack:web");
        assert_eq!(preview.lane().as_str(), "acme/infra#pr:7");
        assert_eq!(sync.lane().as_str(), "acme/infra#sync");
    }

    #[test]
    fn the_newest_job_of_a_lane_folds_its_commit_and_supersedes_the_rest() {
        let (a, b, b2, api) = (
            deploy("web", "a"),
            deploy("web", "b"),
            deploy("web", "b"),
            deploy("api", "a"),
        );
        let places: Vec<Place> = plan(&[&a, &b, &api, &b2])
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(
            places,
            [
                Place::Superseded(3),
                Place::Folded(3),
                Place::Newest,
                Place::Newest
            ]
        );
    }

    #[test]
    fn a_manual_redeploy_is_not_the_same_work_as_a_push() {
        let manual = NewJob {
            trigger: Trigger::Manual,
            ..deploy("web", "a")
        };
        assert!(!same_commit(&manual, &deploy("web", "a")));
        assert!(same_commit(&manual, &manual.clone()));
        let fork = NewJob {
            fork: true,
            ..deploy("web", "a")
        };
        assert!(!same_commit(&fork, &deploy("web", "a")));
    }
}
