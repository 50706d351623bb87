//! The overview (`/`, `GET /api/v1/stacks`): every stack of every repository, one row
//! each, with counts per state, filtered by repository, state and a text search.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::state::{DriftView, StackState};
use super::view::{CommitView, RunLink, stack_href};
use crate::git::commits::CommitInfo;
use crate::policy::Verdict;
use crate::queue::{LedgerLine, RunSummary};

/// The longest value a filter takes.
pub const MAX_REPO: usize = 200;
pub const MAX_QUERY: usize = 100;

/// The filters as the query string gives them (`?repo=&state=&q=`); empty is none.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// A repository (`owner/name`), at most 200 characters.
    pub repo: Option<String>,
    /// A state: in_sync, deploying, failed, blocked_by_policy, drifted, removed.
    pub state: Option<String>,
    /// Text in the repository, folder, stack name, account, region or target, at most
    /// 100 characters.
    pub q: Option<String>,
}

/// A filter the overview refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{param}: at most {max} characters")]
    TooLong { param: &'static str, max: usize },
    #[error(
        "state: `{0}` is none of in_sync, deploying, failed, blocked_by_policy, drifted, removed"
    )]
    UnknownState(String),
}

/// The filters, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Filters {
    pub repo: Option<String>,
    pub state: Option<StackState>,
    pub q: Option<String>,
}

impl OverviewQuery {
    pub fn check(self) -> Result<Filters, FilterError> {
        let given = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let bounded = |v: Option<String>, param, max| match given(v) {
            Some(s) if s.chars().count() > max => Err(FilterError::TooLong { param, max }),
            v => Ok(v),
        };
        let state = match bounded(self.state, "state", 40)? {
            Some(s) => Some(StackState::from_slug(&s).ok_or(FilterError::UnknownState(s))?),
            None => None,
        };
        Ok(Filters {
            repo: bounded(self.repo, "repo", MAX_REPO)?,
            state,
            q: bounded(self.q, "q", MAX_QUERY)?.map(|q| q.to_lowercase()),
        })
    }
}

/// One stack, as its row shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StackRow {
    pub repo: String,
    /// The stack folder, within the repository's stacks folder.
    pub folder: String,
    /// The folder from the repository root (`stacks/web`).
    pub path: String,
    pub href: String,
    pub account: Option<String>,
    pub region: Option<String>,
    /// The `[[targets]]` entry the stack is deployed through; absent for the server's own
    /// account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub stack_name: Option<String>,
    pub state: StackState,
    /// The commit the ledger says is deployed.
    pub deployed: Option<CommitView>,
    /// The lane's newest run.
    pub last_run: Option<RunLink>,
    pub verdict: Option<Verdict>,
    /// The last drift check, if any.
    pub drift: Option<DriftView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StateCount {
    pub state: StackState,
    pub label: &'static str,
    pub count: usize,
}

/// The overview's view model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub rows: Vec<StackRow>,
    /// Every state, with how many stacks (of all, before filtering) are in it.
    pub counts: Vec<StateCount>,
    pub total: usize,
    pub shown: usize,
    pub filters: Filters,
    pub filtered: bool,
    /// Every repository with a stack, for the filter.
    pub repos: Vec<String>,
    /// The most recent runs of every kind (syncs and previews too).
    pub recent: Vec<RunLink>,
}

/// What the overview is made of.
pub struct Inputs<'a> {
    pub ledger: &'a [LedgerLine],
    /// The newest job of each stack lane.
    pub heads: &'a [RunSummary],
    pub recent: &'a [RunSummary],
    /// Commits by sha, as far as the mirrors know them.
    pub commits: &'a HashMap<String, CommitInfo>,
    /// A repository's stacks folder (`stacks`).
    pub stacks_dir: &'a dyn Fn(&str) -> String,
    /// Each stack's latest drift check, by (repo, folder).
    pub drifts: &'a HashMap<(String, String), crate::queue::DriftRow>,
    /// The target a stack of (repo, path from the root) is deployed through.
    pub target: &'a dyn Fn(&str, &str, &crate::domain::StackIdentity) -> Option<String>,
    pub now: i64,
}

/// The shas whose commits the overview shows: each deployed one, by repository.
pub fn deployed_shas(ledger: &[LedgerLine]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in ledger {
        let shas = out.entry(l.repo.clone()).or_default();
        if !shas.contains(&l.row.sha) {
            shas.push(l.row.sha.clone());
        }
    }
    out
}

/// A folder's ledger line and its lane's newest job, either of which may be missing.
type Joined<'a> = (Option<&'a LedgerLine>, Option<&'a RunSummary>);

pub fn build(inputs: &Inputs<'_>, filters: Filters) -> Overview {
    // One row per (repo, folder): the ledger's and the lanes', joined.
    let mut rows: BTreeMap<(String, String), Joined<'_>> = BTreeMap::new();
    for l in inputs.ledger {
        rows.entry((l.repo.clone(), l.stack.clone())).or_default().0 = Some(l);
    }
    for h in inputs.heads {
        if let Some(stack) = &h.stack {
            rows.entry((h.repo.clone(), stack.clone())).or_default().1 = Some(h);
        }
    }
    let all: Vec<StackRow> = rows
        .into_iter()
        .map(|((repo, folder), (ledger, head))| row(inputs, repo, folder, ledger, head))
        .collect();
    let counts = StackState::ALL
        .into_iter()
        .map(|state| StateCount {
            state,
            label: state.label(),
            count: all.iter().filter(|r| r.state == state).count(),
        })
        .collect();
    let mut repos: Vec<String> = all.iter().map(|r| r.repo.clone()).collect();
    repos.dedup();
    let total = all.len();
    let rows: Vec<StackRow> = all.into_iter().filter(|r| matches(r, &filters)).collect();
    Overview {
        shown: rows.len(),
        rows,
        counts,
        total,
        filtered: filters != Filters::default(),
        filters,
        repos,
        recent: inputs
            .recent
            .iter()
            .map(|r| RunLink::new(r, inputs.now))
            .collect(),
    }
}

fn row(
    inputs: &Inputs<'_>,
    repo: String,
    folder: String,
    ledger: Option<&LedgerLine>,
    head: Option<&RunSummary>,
) -> StackRow {
    let identity = ledger
        .and_then(|l| l.row.identity.as_ref())
        .or_else(|| head.and_then(|h| h.identity.as_ref()));
    let drift = inputs
        .drifts
        .get(&(repo.clone(), folder.clone()))
        .map(|d| DriftView::new(d, inputs.now));
    let path = format!("{}/{folder}", (inputs.stacks_dir)(&repo));
    StackRow {
        target: identity.and_then(|i| (inputs.target)(&repo, &path, i)),
        path,
        href: stack_href(&repo, &folder),
        account: identity.map(|i| i.account.clone()),
        region: identity.map(|i| i.region.clone()),
        stack_name: identity.map(|i| i.name.clone()),
        state: StackState::derive(head, ledger.map(|l| &l.row)).with_drift(drift.as_ref()),
        deployed: ledger.map(|l| {
            CommitView::new(
                &repo,
                &l.row.sha,
                inputs.commits.get(&l.row.sha),
                inputs.now,
            )
        }),
        last_run: head.map(|h| RunLink::new(h, inputs.now)),
        verdict: head
            .and_then(|h| h.verdict.as_deref())
            .and_then(super::view::verdict),
        drift,
        repo,
        folder,
    }
}

fn matches(r: &StackRow, f: &Filters) -> bool {
    if f.repo.as_ref().is_some_and(|repo| *repo != r.repo) {
        return false;
    }
    if f.state.is_some_and(|s| s != r.state) {
        return false;
    }
    let Some(q) = &f.q else { return true };
    [
        Some(&r.repo),
        Some(&r.path),
        r.stack_name.as_ref(),
        r.account.as_ref(),
        r.region.as_ref(),
        r.target.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|field| field.to_lowercase().contains(q.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bounded_and_states_typed() {
        let q = |repo: &str, state: &str, q: &str| OverviewQuery {
            repo: Some(repo.into()),
            state: Some(state.into()),
            q: Some(q.into()),
        };
        assert_eq!(q("", " ", "").check(), Ok(Filters::default()));
        assert_eq!(
            q("acme/infra", "failed", "Web").check(),
            Ok(Filters {
                repo: Some("acme/infra".into()),
                state: Some(StackState::Failed),
                q: Some("web".into()),
            })
        );
        assert_eq!(
            q("", "broken", "").check(),
            Err(FilterError::UnknownState("broken".into()))
        );
        assert_eq!(
            q("", "", &"x".repeat(MAX_QUERY + 1)).check(),
            Err(FilterError::TooLong {
                param: "q",
                max: MAX_QUERY
            })
        );
    }
}
