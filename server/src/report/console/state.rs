//! A stack's state at a glance, derived from its lane's newest job and the ledger.

use serde::{Deserialize, Serialize};

use crate::domain::JobState;
use crate::policy::Verdict;
use crate::queue::{LedgerRow, RunSummary};

/// What the overview says of a stack.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StackState {
    /// The ledger's commit is deployed and nothing newer waits.
    InSync,
    /// A deploy (or removal) is queued or running.
    Deploying,
    /// The newest deploy's change set waits for an operator's approval.
    AwaitingApproval,
    /// The newest deploy failed.
    Failed,
    /// The newest deploy was stopped by the policy gate (a finding, or a policy error).
    BlockedByPolicy,
    /// The deployed stack differs from what stackgate deployed (set from the drift check).
    Drifted,
    /// The stack was removed.
    Removed,
}

impl StackState {
    pub const ALL: [StackState; 7] = [
        StackState::InSync,
        StackState::Deploying,
        StackState::AwaitingApproval,
        StackState::Failed,
        StackState::BlockedByPolicy,
        StackState::Drifted,
        StackState::Removed,
    ];

    /// The name in URLs and JSON.
    pub fn slug(self) -> &'static str {
        match self {
            StackState::InSync => "in_sync",
            StackState::Deploying => "deploying",
            StackState::AwaitingApproval => "awaiting_approval",
            StackState::Failed => "failed",
            StackState::BlockedByPolicy => "blocked_by_policy",
            StackState::Drifted => "drifted",
            StackState::Removed => "removed",
        }
    }

    /// The words a page shows.
    pub fn label(self) -> &'static str {
        match self {
            StackState::InSync => "in sync",
            StackState::Deploying => "deploying",
            StackState::AwaitingApproval => "awaiting approval",
            StackState::Failed => "failed",
            StackState::BlockedByPolicy => "blocked by policy",
            StackState::Drifted => "drifted",
            StackState::Removed => "removed",
        }
    }

    pub fn from_slug(s: &str) -> Option<StackState> {
        StackState::ALL.into_iter().find(|st| st.slug() == s)
    }

    /// The state of a stack whose lane's newest job is `head` (superseded ones are never
    /// the newest) and whose ledger line is `ledger`. Drift is laid over it by
    /// [`StackState::with_drift`].
    pub fn derive(head: Option<&RunSummary>, ledger: Option<&LedgerRow>) -> StackState {
        let removed = ledger.is_some_and(|l| l.removed);
        match head.map(|h| (h.state, h.verdict.as_deref().and_then(verdict))) {
            Some((JobState::Queued | JobState::Running, _)) => StackState::Deploying,
            Some((JobState::Held, _)) => StackState::AwaitingApproval,
            Some((JobState::Failed | JobState::Error, Some(Verdict::Fail | Verdict::Error))) => {
                StackState::BlockedByPolicy
            }
            Some((JobState::Failed | JobState::Error, _)) => StackState::Failed,
            _ if removed => StackState::Removed,
            _ => StackState::InSync,
        }
    }

    /// A stack in sync whose drift check found differences is drifted; every other state
    /// says more than drift does.
    pub fn with_drift(self, drift: Option<&DriftView>) -> StackState {
        match (self, drift.map(|d| d.state)) {
            (StackState::InSync, Some(DriftState::Drifted)) => StackState::Drifted,
            (s, _) => s,
        }
    }
}

fn verdict(s: &str) -> Option<Verdict> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// What the drift check says of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    InSync,
    Drifted,
    /// The check could not tell (it failed, or the stack does not support it).
    Unknown,
}

/// The last drift check of a stack, from the drift table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriftView {
    pub state: DriftState,
    /// When it was checked (ms since the epoch), and how long ago.
    pub checked_at: i64,
    pub checked_ago: String,
    pub drifted_resources: u32,
    /// Findings on the live state that the deployed template does not have.
    pub live_findings: u32,
    /// The check's run page.
    pub run_href: String,
}

impl DriftView {
    pub fn new(d: &crate::queue::DriftRow, now: i64) -> Self {
        Self {
            state: match d.state {
                crate::domain::DriftState::InSync => DriftState::InSync,
                crate::domain::DriftState::Drifted => DriftState::Drifted,
            },
            checked_at: d.checked_at,
            checked_ago: super::view::age(now, d.checked_at),
            drifted_resources: u32::try_from(d.drifted).unwrap_or(u32::MAX),
            live_findings: u32::try_from(d.live_findings).unwrap_or(u32::MAX),
            run_href: format!("/runs/{}", d.job),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobId, Kind, Trigger};

    fn head(state: JobState, verdict: Option<&str>) -> RunSummary {
        RunSummary {
            id: JobId(1),
            kind: Kind::Deploy,
            repo: "acme/infra".into(),
            stack: Some("web".into()),
            sha: "a".repeat(40),
            pr: None,
            trigger: Trigger::Push,
            state,
            phase: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            verdict: verdict.map(str::to_string),
            identity: None,
        }
    }

    fn ledger(removed: bool) -> LedgerRow {
        LedgerRow {
            sha: "a".repeat(40),
            removed,
            identity: None,
        }
    }

    #[test]
    fn the_newest_job_and_the_ledger_say_the_state() {
        use JobState::*;
        use StackState as S;
        let cases = [
            (
                Some(head(Succeeded, Some("pass"))),
                Some(ledger(false)),
                S::InSync,
            ),
            (Some(head(Queued, None)), Some(ledger(false)), S::Deploying),
            (Some(head(Running, Some("pass"))), None, S::Deploying),
            // A running removal is deploying, not removed yet.
            (Some(head(Running, None)), Some(ledger(true)), S::Deploying),
            (
                Some(head(Failed, Some("pass"))),
                Some(ledger(false)),
                S::Failed,
            ),
            (Some(head(Error, None)), None, S::Failed),
            (
                Some(head(Failed, Some("fail"))),
                Some(ledger(false)),
                S::BlockedByPolicy,
            ),
            (Some(head(Failed, Some("error"))), None, S::BlockedByPolicy),
            (Some(head(Failed, Some("nonsense"))), None, S::Failed),
            (Some(head(Succeeded, None)), Some(ledger(true)), S::Removed),
            (
                Some(head(Held, Some("pass"))),
                Some(ledger(false)),
                S::AwaitingApproval,
            ),
            // A rejected change set left the deployed commit in place.
            (
                Some(head(Rejected, Some("pass"))),
                Some(ledger(false)),
                S::InSync,
            ),
            // Its jobs pruned, the ledger alone.
            (None, Some(ledger(true)), S::Removed),
            (None, Some(ledger(false)), S::InSync),
        ];
        for (h, l, want) in cases {
            assert_eq!(
                StackState::derive(h.as_ref(), l.as_ref()),
                want,
                "{h:?} {l:?}"
            );
        }
    }

    #[test]
    fn drift_shows_only_on_a_stack_in_sync() {
        let drifted = DriftView {
            state: DriftState::Drifted,
            checked_at: 1,
            checked_ago: "1 s ago".into(),
            drifted_resources: 2,
            live_findings: 0,
            run_href: "/runs/1".into(),
        };
        assert_eq!(
            StackState::InSync.with_drift(Some(&drifted)),
            StackState::Drifted
        );
        assert_eq!(
            StackState::Failed.with_drift(Some(&drifted)),
            StackState::Failed
        );
        assert_eq!(StackState::InSync.with_drift(None), StackState::InSync);
        let clean = DriftView {
            state: DriftState::InSync,
            ..drifted.clone()
        };
        assert_eq!(
            StackState::InSync.with_drift(Some(&clean)),
            StackState::InSync
        );
    }

    #[test]
    fn slugs_read_back() {
        for s in StackState::ALL {
            assert_eq!(StackState::from_slug(s.slug()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.slug());
        }
        assert_eq!(StackState::from_slug("in sync"), None);
    }
}
