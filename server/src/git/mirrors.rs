//! Every configured repository's mirror, and the credential git fetches with. The git work
//! runs on the blocking pool, in the caller's span.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::Span;

use super::checkout::{CheckoutError, Heads, Mirror, Snapshot};
use super::commits::{self, CommitCache, CommitInfo, LOOKUP_DEADLINE};
use crate::config::RepoConfig;
use crate::github::{GitCredential, GithubError};

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("no mirror for repository {0}")]
    NoMirror(String),
    #[error(transparent)]
    Credential(#[from] GithubError),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub struct Mirrors {
    by_repo: HashMap<String, Arc<Mutex<Mirror>>>,
    /// Each mirror's folder, read without its lock (git reads beside a fetch).
    paths: HashMap<String, PathBuf>,
    /// What git offers as the password of an https fetch.
    git: GitCredential,
    /// The commits the console showed.
    commits: Arc<CommitCache>,
}

impl Mirrors {
    pub fn new(by_repo: HashMap<String, Arc<Mutex<Mirror>>>, git: GitCredential) -> Self {
        // Nothing holds a new mirror's lock yet.
        let paths = by_repo
            .iter()
            .filter_map(|(name, m)| Some((name.clone(), m.try_lock().ok()?.path().to_path_buf())))
            .collect();
        Self {
            by_repo,
            paths,
            git,
            commits: Arc::default(),
        }
    }

    /// What the mirror of `repo` knows of `shas`, from the cache or read within
    /// [`LOOKUP_DEADLINE`]: never an error, never a fetch; the unknown ones are left out.
    pub async fn commits(&self, repo: &str, shas: &[String]) -> HashMap<String, CommitInfo> {
        let mut found = HashMap::new();
        let mut todo = Vec::new();
        for sha in shas {
            match self.commits.get(sha) {
                Some(info) => {
                    found.insert(sha.clone(), info);
                }
                None if !found.contains_key(sha) && !todo.contains(sha) => todo.push(sha.clone()),
                None => {}
            }
        }
        let Some(path) = self.paths.get(repo).cloned() else {
            return found;
        };
        if todo.is_empty() {
            return found;
        }
        let (cache, span) = (self.commits.clone(), Span::current());
        let read = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let infos = commits::read(&path, &todo);
                for i in &infos {
                    cache.put(i.clone());
                }
                infos
            })
        });
        if let Ok(Ok(infos)) = tokio::time::timeout(LOOKUP_DEADLINE, read).await {
            found.extend(infos.into_iter().map(|i| (i.sha.clone(), i)));
        }
        found
    }

    fn mirror(&self, repo: &str) -> Result<Arc<Mutex<Mirror>>, MirrorError> {
        self.by_repo
            .get(repo)
            .cloned()
            .ok_or_else(|| MirrorError::NoMirror(repo.to_string()))
    }

    /// Runs `f` on a repository's mirror, locked, on the blocking pool.
    pub async fn with<T: Send + 'static>(
        &self,
        repo: &str,
        f: impl FnOnce(&Mirror) -> T + Send + 'static,
    ) -> Result<T, MirrorError> {
        let (mirror, span) = (self.mirror(repo)?, Span::current());
        Ok(
            tokio::task::spawn_blocking(move || span.in_scope(|| f(&mirror.blocking_lock())))
                .await?,
        )
    }

    /// Fetches the branch (and pull request `pr`'s head) into the mirror.
    pub async fn fetch(&self, repo: &RepoConfig, pr: Option<u64>) -> Result<Heads, MirrorError> {
        self.mirror(&repo.name)?;
        // Asked for before the lock: an App token may need minting.
        let password = self.git.password().await?;
        let branch = repo.branch.clone();
        Ok(self
            .with(&repo.name, move |m| m.fetch(&branch, pr, password.as_ref()))
            .await??)
    }

    /// The stack folders of a commit, fetched first if the mirror does not have it yet (a
    /// manual redeploy, a missed webhook).
    pub async fn snapshot(
        &self,
        repo: &RepoConfig,
        sha: &str,
        pr: Option<u64>,
    ) -> Result<Snapshot, MirrorError> {
        let read = || {
            let (sha, dir) = (sha.to_string(), repo.stacks_dir.clone());
            self.with(&repo.name, move |m| m.snapshot(&sha, &dir))
        };
        match read().await? {
            Ok(s) => Ok(s),
            Err(_) => {
                self.fetch(repo, pr).await?;
                Ok(read().await??)
            }
        }
    }

    /// Each stack folder's tree id at a commit.
    pub async fn stack_trees(
        &self,
        repo: &RepoConfig,
        sha: &str,
    ) -> Result<BTreeMap<String, String>, MirrorError> {
        let (sha, dir) = (sha.to_string(), repo.stacks_dir.clone());
        Ok(self
            .with(&repo.name, move |m| m.stack_trees(&sha, &dir))
            .await??)
    }
}
