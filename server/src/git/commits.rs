//! What the console shows of a commit (its first line, author, time), read from the bare
//! mirror and kept in a small cache by sha. A page never waits on a fetch for it: a mirror
//! that is busy, missing or slow leaves the commit unknown, and the page shows it empty.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use git2::{Oid, Repository};
use serde::Serialize;

/// A commit as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    pub sha: String,
    /// The first line of its message, at most [`SUMMARY_MAX`] characters.
    pub summary: String,
    pub author: String,
    /// The author's time, in seconds since the epoch.
    pub time: i64,
}

/// The longest first line kept.
pub const SUMMARY_MAX: usize = 200;
/// How many commits the cache holds: every stack's deployed commit, many times over.
pub const CACHE_MAX: usize = 4096;
/// The longest a page waits for commits the cache does not have.
pub const LOOKUP_DEADLINE: Duration = Duration::from_millis(300);

/// Commits by sha, oldest entry evicted first. Commits never change, so an entry is never
/// stale; only found commits are kept (a missing one may be fetched later).
#[derive(Default)]
pub struct CommitCache {
    inner: Mutex<(HashMap<String, CommitInfo>, VecDeque<String>)>,
}

impl CommitCache {
    pub fn get(&self, sha: &str) -> Option<CommitInfo> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.get(sha).cloned()
    }

    pub fn put(&self, info: CommitInfo) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *inner;
        if map.contains_key(&info.sha) {
            return;
        }
        while map.len() >= CACHE_MAX {
            match order.pop_front() {
                Some(old) => map.remove(&old),
                None => break,
            };
        }
        order.push_back(info.sha.clone());
        map.insert(info.sha.clone(), info);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `shas` from the bare repository at `path`, opened read-only for this call (git
/// reads alongside a fetch): the ones it has.
pub fn read(path: &Path, shas: &[String]) -> Vec<CommitInfo> {
    let Ok(repo) = Repository::open_bare(path) else {
        return Vec::new();
    };
    shas.iter()
        .filter_map(|sha| {
            let commit = repo.find_commit(Oid::from_str(sha).ok()?).ok()?;
            let summary = commit.summary().unwrap_or_default();
            let author = commit.author();
            Some(CommitInfo {
                sha: sha.clone(),
                summary: summary.chars().take(SUMMARY_MAX).collect(),
                author: author.name().unwrap_or_default().to_string(),
                time: author.when().seconds(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: usize) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            summary: format!("commit {n}"),
            author: "a".into(),
            time: n as i64,
        }
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let c = CommitCache::default();
        for n in 0..CACHE_MAX + 10 {
            c.put(info(n));
        }
        assert_eq!(c.len(), CACHE_MAX);
        assert_eq!(c.get(&info(0).sha), None);
        assert_eq!(c.get(&info(CACHE_MAX + 9).sha), Some(info(CACHE_MAX + 9)));
    }

    #[test]
    fn a_missing_repository_or_commit_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("none.git"), &[info(1).sha]).is_empty());
        let repo = Repository::init_bare(dir.path().join("r.git")).unwrap();
        let sig = git2::Signature::new(
            "Ann Author",
            "a@example.com",
            &git2::Time::new(1_700_000_000, 0),
        )
        .unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let oid = repo
            .commit(None, &sig, &sig, "Fix the thing\n\nbody text", &tree, &[])
            .unwrap();
        let got = read(
            &dir.path().join("r.git"),
            &[oid.to_string(), info(2).sha, "nope".into()],
        );
        assert_eq!(
            got,
            [CommitInfo {
                sha: oid.to_string(),
                summary: "Fix the thing".into(),
                author: "Ann Author".into(),
                time: 1_700_000_000,
            }]
        );
    }
}
