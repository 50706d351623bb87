//! checkout: fetch commits into a cached bare mirror (git2) and read stack folders straight
//! from a commit's tree, with no work tree. Paths outside the stacks folder, symlinks that
//! escape a stack, and oversized files are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, Tree};
use secrecy::{ExposeSecret, SecretString};

use crate::stack::files::{Budget, FolderLimit, MAX_FILE_BYTES, MAX_FOLDER_DEPTH, clean_relative};
use crate::stack::{FileEntry, Scope, StackError, StackFiles};

/// All the stack folders of one commit, every path counted: a commit of many folders just
/// under the folder limit must not fill memory either.
pub const MAX_COMMIT_BYTES: u64 = 256 * 1024 * 1024;
/// Files and folders under the stacks folder of one commit.
pub const MAX_COMMIT_FILES: usize = 50_000;
/// The longest symlink target followed; real ones are a path.
const MAX_LINK_BYTES: usize = 4096;

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
    /// Whether this process has cleared what a killed one left in the mirror.
    checked: std::sync::atomic::AtomicBool,
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
            checked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The bare repository's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> Result<Repository, CheckoutError> {
        if !self.checked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            clear_stale_locks(&self.path);
        }
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
        read_snapshot(&self.open()?, &self.repo_name, sha, stacks_dir)
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

/// Removes the `*.lock` files a process killed mid-fetch or mid-init left in a mirror (at
/// the top and under `refs/`): git refuses to touch a locked file, so one crash would break
/// the mirror for good. Safe because a mirror belongs to one process, which opens it only
/// under its mutex, and this runs before that process's first open.
fn clear_stale_locks(path: &Path) {
    const MAX_ENTRIES: usize = 100_000;
    let mut todo = vec![path.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return;
            }
            let p = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && (dir != path || entry.file_name() == "refs") {
                todo.push(p);
            } else if !is_dir && p.extension().is_some_and(|e| e == "lock") {
                tracing::warn!(file = %p.display(), "removing a lock a stopped process left in the mirror");
                let _ = std::fs::remove_file(&p);
            }
        }
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

/// Copies one stack folder out of git, sizes read from object headers before any
/// content, within the folder's and the commit's budgets.
struct Reader<'a> {
    repo: &'a Repository,
    odb: &'a git2::Odb<'a>,
    folder: Budget,
    commit: &'a mut Budget,
    stack: &'a mut StackTree,
}

impl Reader<'_> {
    /// Counts an entry of `bytes` at `path`; false once the folder is refused.
    fn take(&mut self, path: &str, bytes: u64) -> bool {
        let over = match self.folder.take(bytes) {
            Some(limit) => Some((Scope::Folder, limit)),
            None => self.commit.take(bytes).map(|l| (Scope::Commit, l)),
        };
        match over {
            Some((scope, limit)) => {
                self.stack.over = Some((path.to_string(), scope, limit));
                false
            }
            None => true,
        }
    }

    fn collect(
        &mut self,
        tree: &Tree<'_>,
        prefix: &str,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        for e in tree.iter() {
            if self.stack.over.is_some() {
                return Ok(());
            }
            let Some(name) = e.name() else { continue };
            let path = format!("{prefix}{name}");
            match e.kind() {
                Some(ObjectType::Tree) => {
                    if depth + 1 > MAX_FOLDER_DEPTH {
                        let limit = FolderLimit::Depth(MAX_FOLDER_DEPTH);
                        self.stack.over = Some((path, Scope::Folder, limit));
                        return Ok(());
                    }
                    if !self.take(&path, 0) {
                        return Ok(());
                    }
                    let sub = self.repo.find_tree(e.id())?;
                    self.collect(&sub, &format!("{path}/"), depth + 1)?;
                }
                Some(ObjectType::Blob) => {
                    let mut oid = e.id();
                    if e.filemode() == 0o120000 {
                        // A symlink: follow it only if it stays inside the stack folder.
                        match self.link_target(tree, prefix, &path, oid)? {
                            Ok(target) => oid = target,
                            Err(why) => {
                                self.stack.errors.push((path, why));
                                continue;
                            }
                        }
                    }
                    let (size, _) = self.odb.read_header(oid)?;
                    if size as u64 > MAX_FILE_BYTES {
                        self.stack
                            .errors
                            .push((path, format!("larger than {MAX_FILE_BYTES} bytes")));
                        continue;
                    }
                    if !self.take(&path, size as u64) {
                        return Ok(());
                    }
                    let blob = self.repo.find_blob(oid)?;
                    let exec = e.filemode() == 0o100755;
                    self.stack
                        .files
                        .insert(path, (blob.content().to_vec(), exec));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The blob a symlink at `path` names, or why it is refused.
    fn link_target(
        &self,
        tree: &Tree<'_>,
        prefix: &str,
        path: &str,
        link: Oid,
    ) -> Result<Result<Oid, String>, CheckoutError> {
        let (size, _) = self.odb.read_header(link)?;
        if size > MAX_LINK_BYTES {
            return Ok(Err(format!("symlink longer than {MAX_LINK_BYTES} bytes")));
        }
        let target = String::from_utf8_lossy(self.repo.find_blob(link)?.content()).into_owned();
        let base = Path::new(path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(resolved) = clean_relative(path, &format!("{base}/{target}")) else {
            return Ok(Err(format!(
                "symlink to `{target}` leaves the stack folder"
            )));
        };
        let resolved = resolved.to_string_lossy().into_owned();
        Ok(tree_blob(tree, prefix, &resolved).ok_or_else(|| {
            format!("symlink to `{target}` that leaves the stack folder or does not exist")
        }))
    }
}

/// The blob at a path relative to the stack folder, looked up from the stack's own tree.
fn tree_blob(tree: &Tree<'_>, prefix: &str, resolved: &str) -> Option<Oid> {
    // `tree` is the tree of `prefix`; climb is impossible without the root, so resolve
    // only paths within this subtree or below.
    let rel = resolved
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(resolved);
    let rel = rel.trim_start_matches('/');
    let entry = tree.get_path(Path::new(rel)).ok()?;
    (entry.kind() == Some(ObjectType::Blob)).then(|| entry.id())
}

/// Reads the stacks folder of commit `sha` of `repo`, within the folder and commit budgets.
fn read_snapshot(
    repo: &Repository,
    repo_name: &str,
    sha: &str,
    stacks_dir: &str,
) -> Result<Snapshot, CheckoutError> {
    let commit = Oid::from_str(sha)
        .ok()
        .and_then(|oid| repo.find_commit(oid).ok())
        .ok_or_else(|| CheckoutError::MissingCommit {
            repo: repo_name.to_string(),
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
    let odb = repo.odb()?;
    let mut commit = Budget::new(MAX_COMMIT_BYTES, MAX_COMMIT_FILES);
    for e in root.iter() {
        if e.kind() != Some(ObjectType::Tree) {
            continue;
        }
        let Some(name) = e.name() else { continue };
        let mut stack = StackTree {
            tree_id: e.id().to_string(),
            files: BTreeMap::new(),
            errors: Vec::new(),
            over: None,
        };
        if let Some(limit) = commit.take(0) {
            stack.over = Some((String::new(), Scope::Commit, limit));
        } else {
            let sub = repo.find_tree(e.id())?;
            let mut reader = Reader {
                repo,
                odb: &odb,
                folder: Budget::folder(),
                commit: &mut commit,
                stack: &mut stack,
            };
            reader.collect(&sub, "", 0)?;
        }
        if stack.over.is_some() {
            // Refused as a whole: keep nothing of it.
            stack.files.clear();
        }
        stacks.insert(name.to_string(), stack);
    }
    Ok(Snapshot {
        sha: sha.into(),
        stacks_dir: stacks_dir.into(),
        stacks,
    })
}

/// The folder `stacks_dir` (relative to the work tree) of the git revision `rev` of the
/// repository holding `dir`, read as a mirror's commit is: for `stackgate diff --against`.
pub fn local_snapshot(dir: &Path, rev: &str, stacks_dir: &str) -> Result<Snapshot, CheckoutError> {
    let repo = Repository::discover(dir)?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| CheckoutError::Git(format!("revision `{rev}`: {}", e.message())))?;
    read_snapshot(&repo, rev, &commit.id().to_string(), stacks_dir)
}

/// One stack folder of one commit.
#[derive(Debug, Clone)]
pub struct StackTree {
    pub tree_id: String,
    /// path → (contents, executable)
    pub files: BTreeMap<String, (Vec<u8>, bool)>,
    /// Files refused while reading: (path, why).
    pub errors: Vec<(String, String)>,
    /// Set when the folder is refused as a whole: the path where it passed a limit.
    pub over: Option<(String, Scope, FolderLimit)>,
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
        if let Some((path, scope, limit)) = &self.tree.over {
            return Some(StackError::FolderTooLarge {
                file: self.display(path),
                scope: *scope,
                limit: *limit,
            });
        }
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

    /// A commit holding `paths` (path → blob); its sha.
    fn commit(paths: &[(String, Oid)], repo: &Repository) -> String {
        let mut up = git2::build::TreeUpdateBuilder::new();
        for (p, oid) in paths {
            up.upsert(p.as_str(), *oid, git2::FileMode::Blob);
        }
        let empty = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let tree = repo
            .find_tree(up.create_updated(repo, &empty).unwrap())
            .unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(None, &sig, &sig, "c", &tree, &[])
            .unwrap()
            .to_string()
    }

    /// `data` as a zlib stream of one stored (uncompressed) block.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let len = data.len() as u16;
        let mut out = vec![0x78, 0x01, 0x01];
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(data);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        out.extend(((b << 16) | a).to_be_bytes());
        out
    }

    #[test]
    fn locks_a_killed_process_left_do_not_break_the_mirror() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mirrors/acme__infra.git");
        // Killed while creating the mirror: its config is still locked.
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("config.lock"), "").unwrap();
        let (_, repo) = mirror(tmp.path());
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let oid = repo.commit(None, &sig, &sig, "x", &tree, &[]).unwrap();
        drop(tree);
        // Killed mid-fetch: a ref is locked. The next process writes it again.
        std::fs::create_dir_all(path.join("refs/heads")).unwrap();
        std::fs::write(path.join("refs/heads/main.lock"), "").unwrap();
        let (_, repo) = mirror(tmp.path());
        repo.reference("refs/heads/main", oid, true, "fetch")
            .unwrap();
        assert!(!path.join("config.lock").exists());
    }

    fn mirror(dir: &Path) -> (Mirror, Repository) {
        let m = Mirror::new(dir, "acme/infra", "unused", Duration::from_secs(5));
        let repo = m.open().unwrap();
        (m, repo)
    }

    fn stack(repo: &Repository, folder: &str) -> Vec<(String, Oid)> {
        let dep = repo.blob(b"template-file-path: t.yaml\n").unwrap();
        let tpl = repo
            .blob(b"Resources:\n  B:\n    Type: AWS::S3::Bucket\n")
            .unwrap();
        vec![
            (format!("stacks/{folder}/deployment.yaml"), dep),
            (format!("stacks/{folder}/t.yaml"), tpl),
        ]
    }

    #[test]
    fn many_paths_naming_one_blob_are_refused_before_they_are_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, repo) = mirror(tmp.path());
        // A tiny pack: one 1 MiB blob of zeros, 120 paths naming it.
        let zeros = repo.blob(&vec![0; 1 << 20]).unwrap();
        let mut paths = stack(&repo, "big");
        paths.extend((0..120).map(|i| (format!("stacks/big/data/f{i:03}"), zeros)));
        paths.extend(stack(&repo, "small"));
        let sha = commit(&paths, &repo);
        let snap = m.snapshot(&sha, "stacks").unwrap();
        let err = snap
            .files("big")
            .unwrap()
            .read("t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("stacks/big/data/f100: the stack folder passes 104857600 bytes"),
            "{err}"
        );
        assert!(
            snap.stacks["big"].files.is_empty(),
            "a refused folder keeps nothing"
        );
        let err = crate::stack::Stack::load(&snap.files("big").unwrap()).unwrap_err();
        assert!(err.to_string().contains("the stack folder passes"), "{err}");
        assert!(snap.files("small").unwrap().read("t.yaml").is_ok());
    }

    #[test]
    fn a_blob_is_sized_from_its_header_before_it_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, repo) = mirror(tmp.path());
        // A loose object whose header claims 3 GB: reading it whole would take 3 GB.
        let oid = Oid::from_str("5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed").unwrap();
        let dir = repo.path().join("objects/5e");
        std::fs::create_dir_all(&dir).unwrap();
        let loose = zlib_stored(b"blob 3000000000\0just the start");
        std::fs::write(dir.join(&oid.to_string()[2..]), loose).unwrap();
        let mut paths = stack(&repo, "web");
        paths.push(("stacks/web/lambda/blob.bin".into(), oid));
        let sha = commit(&paths, &repo);
        let snap = m.snapshot(&sha, "stacks").unwrap();
        let files = snap.files("web").unwrap();
        let err = files.walk("lambda").unwrap_err().to_string();
        assert!(
            err.contains("stacks/web/lambda/blob.bin") && err.contains("larger than 52428800"),
            "{err}"
        );
        assert!(files.read("t.yaml").is_ok());
    }

    #[test]
    fn the_stack_folders_of_a_commit_have_a_total() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, repo) = mirror(tmp.path());
        // Four folders of 80 MiB each: under the folder limit, over the commit's.
        let blob = repo.blob(&vec![0; 40 << 20]).unwrap();
        let mut paths = Vec::new();
        for f in ["a", "b", "c", "d"] {
            paths.extend(stack(&repo, f));
            paths.push((format!("stacks/{f}/x/1"), blob));
            paths.push((format!("stacks/{f}/x/2"), blob));
        }
        let sha = commit(&paths, &repo);
        let snap = m.snapshot(&sha, "stacks").unwrap();
        for f in ["a", "b", "c"] {
            assert!(snap.files(f).unwrap().read("t.yaml").is_ok(), "{f}");
        }
        let err = snap
            .files("d")
            .unwrap()
            .read("t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "stacks/d/x/1: the stack folders of this commit passes 268435456 bytes"
            ),
            "{err}"
        );
    }

    #[test]
    fn deep_and_crowded_folders_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, repo) = mirror(tmp.path());
        let empty = repo.blob(b"").unwrap();
        let mut paths = stack(&repo, "deep");
        paths.push((format!("stacks/deep/{}f", "d/".repeat(40)), empty));
        paths.extend(stack(&repo, "crowded"));
        paths.extend((0..20_001).map(|i| (format!("stacks/crowded/many/{i:05}"), empty)));
        let sha = commit(&paths, &repo);
        let snap = m.snapshot(&sha, "stacks").unwrap();
        let err = snap
            .files("deep")
            .unwrap()
            .read("t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("passes 32 nested folders"), "{err}");
        let err = snap
            .files("crowded")
            .unwrap()
            .read("t.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("passes 20000 files and folders"), "{err}");
    }

    #[test]
    fn credentials_never_appear_in_messages() {
        let m = redact(
            "failed to connect to https://x:ghp_abc@github.com/a/b",
            "https://x:ghp_abc@github.com/a/b",
        );
        assert!(!m.contains("ghp_abc"), "{m}");
    }
}
