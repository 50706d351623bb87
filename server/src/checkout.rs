//! checkout: fetch commits into a cached bare mirror (git2) and read stack folders straight
//! from a commit's tree, with no work tree. Paths outside the stacks folder, symlinks that
//! escape a stack, and oversized files are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, Tree};
use secrecy::{ExposeSecret, SecretString};

use crate::stack::files::{MAX_FILE_BYTES, clean_relative};
use crate::stack::{FileEntry, StackError, StackFiles};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("git: {0}")]
    Git(String),
    #[error("commit {sha} is not in {repo}; was it force-pushed away?")]
    MissingCommit { repo: String, sha: String },
    #[error(
        "git: {repo}: the server refused the credentials; check the token's (or the App's) \
         Contents: read permission on the repository"
    )]
    Refused { repo: String },
    #[error("git: {repo}: fetch cut off after {seconds} s: {message}")]
    Timeout {
        repo: String,
        seconds: u64,
        message: String,
    },
}

impl From<git2::Error> for CheckoutError {
    fn from(e: git2::Error) -> Self {
        CheckoutError::Git(e.message().to_string())
    }
}

/// Bounds every git network wait: connecting, and each read from the server. libgit2 holds
/// these for the whole process, so they are set once, at start-up.
pub fn set_network_timeouts(timeout: Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: libgit2 reads these globals when it opens a connection; they are written
    // here once, before any fetch runs.
    let set = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)
            .and_then(|_| git2::opts::set_server_timeout_in_milliseconds(ms))
    };
    if let Err(e) = set {
        tracing::warn!(error = %e.message(), "git network timeouts are not supported by this libgit2");
    }
}

/// The heads one fetch found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    pub branch: Option<String>,
    /// `refs/pull/<n>/head`, when a pull request was asked for.
    pub pull_request: Option<String>,
}

/// A bare mirror of one repository.
pub struct Mirror {
    pub repo_name: String,
    url: String,
    path: PathBuf,
    /// The longest one fetch may take, transfer included.
    timeout: Duration,
}

impl Mirror {
    pub fn new(state_dir: &Path, repo_name: &str, url: &str, timeout: Duration) -> Self {
        let path = state_dir
            .join("mirrors")
            .join(format!("{}.git", repo_name.replace('/', "__")));
        Self {
            repo_name: repo_name.to_string(),
            url: url.to_string(),
            path,
            timeout: timeout.max(Duration::from_secs(1)),
        }
    }

    fn open(&self) -> Result<Repository, CheckoutError> {
        match Repository::open_bare(&self.path) {
            Ok(r) => Ok(r),
            Err(_) => {
                std::fs::create_dir_all(&self.path)
                    .map_err(|e| CheckoutError::Git(e.to_string()))?;
                Ok(Repository::init_bare(&self.path)?)
            }
        }
    }

    /// Fetches `branch` and, for a preview, pull request `pr`'s head: no other ref. The
    /// password (a token) is offered once; a refusal fails the fetch rather than offering it
    /// again while the mirror is locked. A fetch longer than the timeout is cut off.
    pub fn fetch(
        &self,
        branch: &str,
        pr: Option<u64>,
        password: Option<&SecretString>,
    ) -> Result<Heads, CheckoutError> {
        let repo = self.open()?;
        let mut remote = repo.remote_anonymous(&self.url)?;
        let mut callbacks = RemoteCallbacks::new();
        let refused = std::cell::Cell::new(false);
        if let Some(token) = password {
            let (mut offered, refused) = (false, &refused);
            // Private repositories: the token is the password of an https clone.
            callbacks.credentials(move |_url, _user, _allowed| {
                if std::mem::replace(&mut offered, true) {
                    refused.set(true);
                    return Err(git2::Error::from_str("credentials refused"));
                }
                git2::Cred::userpass_plaintext("x-access-token", token.expose_secret())
            });
        }
        let started = Instant::now();
        let timeout = self.timeout;
        callbacks.transfer_progress(move |_| started.elapsed() < timeout);
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks);
        opts.download_tags(git2::AutotagOption::None);
        let mut refspecs = vec![format!("+refs/heads/{branch}:refs/heads/{branch}")];
        if let Some(n) = pr {
            refspecs.push(format!("+refs/pull/{n}/head:refs/pull/{n}/head"));
        }
        let fetched = remote.fetch(&refspecs, Some(&mut opts), None);
        drop(opts);
        if let Err(e) = fetched {
            let repo_name = self.repo_name.clone();
            return Err(if refused.get() {
                CheckoutError::Refused { repo: repo_name }
            } else if started.elapsed() >= timeout || e.message().contains("timed out") {
                CheckoutError::Timeout {
                    repo: repo_name,
                    seconds: timeout.as_secs(),
                    message: redact(e.message(), &self.url),
                }
            } else {
                CheckoutError::Git(redact(e.message(), &self.url))
            });
        }
        let target = |name: String| {
            repo.find_reference(&name)
                .ok()
                .and_then(|r| r.target())
                .map(|o| o.to_string())
        };
        Ok(Heads {
            branch: target(format!("refs/heads/{branch}")),
            pull_request: pr.and_then(|n| target(format!("refs/pull/{n}/head"))),
        })
    }

    /// Whether `sha` is reachable from `branch` (for manual redeploys of older commits).
    pub fn on_branch(&self, sha: &str, branch: &str) -> Result<bool, CheckoutError> {
        let repo = self.open()?;
        let Ok(oid) = Oid::from_str(sha) else {
            return Ok(false);
        };
        let Some(head) = repo
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.target())
        else {
            return Ok(false);
        };
        Ok(head == oid || repo.graph_descendant_of(head, oid).unwrap_or(false))
    }

    /// Reads the stacks folder of a commit.
    pub fn snapshot(&self, sha: &str, stacks_dir: &str) -> Result<Snapshot, CheckoutError> {
        let repo = self.open()?;
        let commit = Oid::from_str(sha)
            .ok()
            .and_then(|oid| repo.find_commit(oid).ok())
            .ok_or_else(|| CheckoutError::MissingCommit {
                repo: self.repo_name.clone(),
                sha: sha.to_string(),
            })?;
        let tree = commit.tree()?;
        let mut stacks = BTreeMap::new();
        let Ok(entry) = tree.get_path(Path::new(stacks_dir)) else {
            return Ok(Snapshot {
                sha: sha.into(),
                stacks_dir: stacks_dir.into(),
                stacks,
            });
        };
        let root = repo.find_tree(entry.id())?;
        for e in root.iter() {
            if e.kind() != Some(ObjectType::Tree) {
                continue;
            }
            let Some(name) = e.name() else { continue };
            let sub = repo.find_tree(e.id())?;
            let mut files = BTreeMap::new();
            let mut errors = Vec::new();
            collect(&repo, &sub, "", &mut files, &mut errors)?;
            stacks.insert(
                name.to_string(),
                StackTree {
                    tree_id: e.id().to_string(),
                    files,
                    errors,
                },
            );
        }
        Ok(Snapshot {
            sha: sha.into(),
            stacks_dir: stacks_dir.into(),
            stacks,
        })
    }

    /// The tree id of each stack folder at `sha` (cheap: no blobs are read).
    pub fn stack_trees(
        &self,
        sha: &str,
        stacks_dir: &str,
    ) -> Result<BTreeMap<String, String>, CheckoutError> {
        let repo = self.open()?;
        let mut out = BTreeMap::new();
        let Some(commit) = Oid::from_str(sha)
            .ok()
            .and_then(|o| repo.find_commit(o).ok())
        else {
            return Ok(out);
        };
        let tree = commit.tree()?;
        if let Ok(entry) = tree.get_path(Path::new(stacks_dir))
            && let Ok(root) = repo.find_tree(entry.id())
        {
            for e in root.iter() {
                if e.kind() == Some(ObjectType::Tree)
                    && let Some(name) = e.name()
                {
                    out.insert(name.to_string(), e.id().to_string());
                }
            }
        }
        Ok(out)
    }
}

/// Strips credentials from anything that could name the remote.
fn redact(message: &str, url: &str) -> String {
    let mut m = message.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, _)) = rest.split_once('@')
    {
        m = m.replace(creds, "[redacted]");
        let _ = scheme;
    }
    m
}

fn collect(
    repo: &Repository,
    tree: &Tree<'_>,
    prefix: &str,
    files: &mut BTreeMap<String, (Vec<u8>, bool)>,
    errors: &mut Vec<(String, String)>,
) -> Result<(), CheckoutError> {
    for e in tree.iter() {
        let Some(name) = e.name() else { continue };
        let path = format!("{prefix}{name}");
        match e.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo.find_tree(e.id())?;
                collect(repo, &sub, &format!("{path}/"), files, errors)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo.find_blob(e.id())?;
                if blob.size() as u64 > MAX_FILE_BYTES {
                    errors.push((path, format!("larger than {MAX_FILE_BYTES} bytes")));
                    continue;
                }
                if e.filemode() == 0o120000 {
                    // A symlink: follow it only if it stays inside the stack folder.
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    let base = Path::new(&path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    match clean_relative(&path, &format!("{base}/{target}")) {
                        Ok(resolved) => {
                            let resolved = resolved.to_string_lossy().into_owned();
                            match tree_blob(repo, tree, prefix, &resolved) {
                                Some(bytes) => {
                                    files.insert(path, (bytes, false));
                                }
                                None => errors.push((path, format!("symlink to `{target}` that leaves the stack folder or does not exist"))),
                            }
                        }
                        Err(_) => errors.push((
                            path,
                            format!("symlink to `{target}` leaves the stack folder"),
                        )),
                    }
                    continue;
                }
                files.insert(path, (blob.content().to_vec(), e.filemode() == 0o100755));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A blob at a path relative to the stack folder, looked up from the stack's own tree.
fn tree_blob(repo: &Repository, tree: &Tree<'_>, prefix: &str, resolved: &str) -> Option<Vec<u8>> {
    // `tree` is the tree of `prefix`; climb is impossible without the root, so resolve
    // only paths within this subtree or below.
    let rel = resolved
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(resolved);
    let rel = rel.trim_start_matches('/');
    let entry = tree.get_path(Path::new(rel)).ok()?;
    repo.find_blob(entry.id())
        .ok()
        .map(|b| b.content().to_vec())
}

/// One stack folder of one commit.
#[derive(Debug, Clone)]
pub struct StackTree {
    pub tree_id: String,
    /// path → (contents, executable)
    pub files: BTreeMap<String, (Vec<u8>, bool)>,
    /// Files refused while reading: (path, why).
    pub errors: Vec<(String, String)>,
}

/// The stack folders of one commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub sha: String,
    pub stacks_dir: String,
    pub stacks: BTreeMap<String, StackTree>,
}

impl Snapshot {
    pub fn files(&self, stack: &str) -> Option<SnapshotFiles<'_>> {
        self.stacks.get(stack).map(|tree| SnapshotFiles {
            label: format!("{}/{stack}", self.stacks_dir),
            folder: stack.to_string(),
            tree,
        })
    }
}

/// `StackFiles` over a snapshot.
pub struct SnapshotFiles<'a> {
    label: String,
    folder: String,
    tree: &'a StackTree,
}

impl SnapshotFiles<'_> {
    fn refused(&self, rel: &str) -> Option<StackError> {
        self.tree
            .errors
            .iter()
            .find(|(p, _)| p == rel || p.starts_with(&format!("{}/", rel.trim_end_matches('/'))))
            .map(|(p, why)| StackError::Io {
                file: self.display(p),
                message: format!("refused: {why}"),
            })
    }
}

impl StackFiles for SnapshotFiles<'_> {
    fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.label, rel.trim_start_matches("./"))
    }

    fn folder_name(&self) -> String {
        self.folder.clone()
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, StackError> {
        let clean = clean_relative(&self.display(rel), rel)?;
        let key = clean.to_string_lossy().into_owned();
        if let Some(e) = self.refused(&key) {
            return Err(e);
        }
        self.tree
            .files
            .get(&key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StackError::Io {
                file: self.display(rel),
                message: "no such file in this commit".into(),
            })
    }

    fn walk(&self, rel: &str) -> Result<Vec<FileEntry>, StackError> {
        let clean = clean_relative(&self.display(rel), rel)?;
        let prefix = format!("{}/", clean.to_string_lossy().trim_end_matches('/'));
        if let Some(e) = self.refused(prefix.trim_end_matches('/')) {
            return Err(e);
        }
        let out: Vec<FileEntry> = self
            .tree
            .files
            .iter()
            .filter_map(|(p, (bytes, exec))| {
                p.strip_prefix(&prefix).map(|inner| FileEntry {
                    path: inner.to_string(),
                    contents: bytes.clone(),
                    executable: *exec,
                })
            })
            .collect();
        if out.is_empty() {
            return Err(StackError::Io {
                file: self.display(rel),
                message: "no such folder in this commit".into(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_messages() {
        let m = redact(
            "failed to connect to https://x:ghp_abc@github.com/a/b",
            "https://x:ghp_abc@github.com/a/b",
        );
        assert!(!m.contains("ghp_abc"), "{m}");
    }
}
