//! Where a stack's files come from: a folder on disk (the CLI) or a commit's tree (the
//! service). Both refuse paths that leave the stack folder, by `..` or by symlink.

use std::path::{Component, Path, PathBuf};

use super::{Scope, StackError};

/// One regular file under an artifact folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the folder that was walked, with `/` separators.
    pub path: String,
    pub contents: Vec<u8>,
    pub executable: bool,
}

/// Read access to the files of one stack folder.
pub trait StackFiles: Send + Sync {
    /// How to name `rel` in an error, e.g. `stacks/hybrid-alb/template.yaml`.
    fn display(&self, rel: &str) -> String;
    /// Read a file relative to the stack folder.
    fn read(&self, rel: &str) -> Result<Vec<u8>, StackError>;
    /// Every regular file below the folder `rel`, sorted by path.
    fn walk(&self, rel: &str) -> Result<Vec<FileEntry>, StackError>;
    /// The stack folder's own name.
    fn folder_name(&self) -> String;
}

/// Normalises a relative path and refuses anything that would leave the stack folder.
pub fn clean_relative(label: &str, rel: &str) -> Result<PathBuf, StackError> {
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(StackError::Escapes {
                        file: label.to_string(),
                        path: rel.to_string(),
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(StackError::Escapes {
                    file: label.to_string(),
                    path: rel.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// A stack folder on the local disk.
pub struct DirFiles {
    root: PathBuf,
    label: String,
}

/// Files larger than this are refused: a stack is text and small code, not a data store.
pub const MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;
/// A stack folder in all, every path counted: many paths naming one file count many times.
pub const MAX_FOLDER_BYTES: u64 = 100 * 1024 * 1024;
/// Files and folders in one stack folder.
pub const MAX_FOLDER_FILES: usize = 20_000;
/// Folders nested inside a stack folder.
pub const MAX_FOLDER_DEPTH: usize = 32;

/// Which limit a folder passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderLimit {
    Bytes(u64),
    Files(usize),
    Depth(usize),
}

impl std::fmt::Display for FolderLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderLimit::Bytes(n) => write!(
                f,
                "{n} bytes (every path counts, also paths naming one file)"
            ),
            FolderLimit::Files(n) => write!(f, "{n} files and folders"),
            FolderLimit::Depth(n) => write!(f, "{n} nested folders"),
        }
    }
}

/// A running count of what a walk has taken, against its limits.
#[derive(Debug, Clone)]
pub struct Budget {
    bytes: u64,
    files: usize,
    max_bytes: u64,
    max_files: usize,
}

impl Budget {
    pub fn new(max_bytes: u64, max_files: usize) -> Self {
        Self {
            bytes: 0,
            files: 0,
            max_bytes,
            max_files,
        }
    }

    /// The limits of one stack folder.
    pub fn folder() -> Self {
        Self::new(MAX_FOLDER_BYTES, MAX_FOLDER_FILES)
    }

    /// Counts one more entry of `bytes`; the limit it passes, if any.
    pub fn take(&mut self, bytes: u64) -> Option<FolderLimit> {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.files > self.max_files {
            Some(FolderLimit::Files(self.max_files))
        } else if self.bytes > self.max_bytes {
            Some(FolderLimit::Bytes(self.max_bytes))
        } else {
            None
        }
    }
}

impl DirFiles {
    pub fn open(dir: &Path) -> Result<Self, StackError> {
        let root = dir.canonicalize().map_err(|e| StackError::Io {
            file: dir.display().to_string(),
            message: e.to_string(),
        })?;
        if !root.is_dir() {
            return Err(StackError::Io {
                file: dir.display().to_string(),
                message: "not a folder; pass a stack folder such as stacks/hybrid-alb".into(),
            });
        }
        let files = Self {
            root,
            label: dir.display().to_string().trim_end_matches('/').to_string(),
        };
        files.measure()?;
        Ok(files)
    }

    /// Refuses a folder past the limits a checkout has, before anything is read, so that
    /// `check` and the service agree. Symlinks are followed as reads follow them.
    fn measure(&self) -> Result<(), StackError> {
        let mut budget = Budget::folder();
        let mut todo = vec![(self.root.clone(), 0)];
        while let Some((dir, depth)) = todo.pop() {
            let io = |e: std::io::Error| StackError::Io {
                file: dir.display().to_string(),
                message: e.to_string(),
            };
            for entry in std::fs::read_dir(&dir).map_err(io)? {
                let path = entry.map_err(io)?.path();
                let inner = path
                    .strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Escaping links are refused when read; here they count as nothing.
                let Ok(meta) = self.resolve(&inner).and_then(|real| {
                    std::fs::metadata(real).map_err(|e| StackError::Io {
                        file: self.display(&inner),
                        message: e.to_string(),
                    })
                }) else {
                    continue;
                };
                let over = if meta.is_dir() && depth + 1 > MAX_FOLDER_DEPTH {
                    Some(FolderLimit::Depth(MAX_FOLDER_DEPTH))
                } else {
                    budget.take(if meta.is_file() { meta.len() } else { 0 })
                };
                if let Some(limit) = over {
                    return Err(StackError::FolderTooLarge {
                        file: self.display(&inner),
                        scope: Scope::Folder,
                        limit,
                    });
                }
                if meta.is_dir() {
                    todo.push((path, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Resolves `rel` inside the root, following symlinks, and refuses escapes.
    fn resolve(&self, rel: &str) -> Result<PathBuf, StackError> {
        let clean = clean_relative(&self.display(rel), rel)?;
        let full = self.root.join(&clean);
        let real = full.canonicalize().map_err(|e| StackError::Io {
            file: self.display(rel),
            message: e.to_string(),
        })?;
        if !real.starts_with(&self.root) {
            return Err(StackError::Escapes {
                file: self.display(rel),
                path: rel.to_string(),
            });
        }
        Ok(real)
    }
}

impl StackFiles for DirFiles {
    fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.label, rel.trim_start_matches("./"))
    }

    fn folder_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, StackError> {
        let path = self.resolve(rel)?;
        let io = |e: std::io::Error| StackError::Io {
            file: self.display(rel),
            message: e.to_string(),
        };
        let meta = std::fs::metadata(&path).map_err(io)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(StackError::TooLarge {
                file: self.display(rel),
                limit: MAX_FILE_BYTES,
            });
        }
        std::fs::read(&path).map_err(io)
    }

    fn walk(&self, rel: &str) -> Result<Vec<FileEntry>, StackError> {
        use std::os::unix::fs::PermissionsExt;
        let base = self.resolve(rel)?;
        if !base.is_dir() {
            return Err(StackError::Io {
                file: self.display(rel),
                message: "not a folder".into(),
            });
        }
        let mut out = Vec::new();
        let mut todo = vec![base.clone()];
        while let Some(dir) = todo.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| StackError::Io {
                file: dir.display().to_string(),
                message: e.to_string(),
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| StackError::Io {
                    file: dir.display().to_string(),
                    message: e.to_string(),
                })?;
                let inner = entry
                    .path()
                    .strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Resolve again so that a symlink inside the folder cannot point outside.
                let real = self.resolve(&inner)?;
                let meta = std::fs::metadata(&real).map_err(|e| StackError::Io {
                    file: self.display(&inner),
                    message: e.to_string(),
                })?;
                if meta.is_dir() {
                    todo.push(entry.path());
                } else if meta.is_file() {
                    let path = entry
                        .path()
                        .strip_prefix(&base)
                        .map(|p| p.to_string_lossy().replace('\\', "/"))
                        .unwrap_or_default();
                    out.push(FileEntry {
                        path,
                        contents: self.read(&inner)?,
                        executable: meta.permissions().mode() & 0o111 != 0,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_and_absolute_paths_are_refused() {
        assert!(clean_relative("x", "../secret").is_err());
        assert!(clean_relative("x", "a/../../secret").is_err());
        assert!(clean_relative("x", "/etc/passwd").is_err());
        assert_eq!(
            clean_relative("x", "./a/b/../c").unwrap(),
            PathBuf::from("a/c")
        );
    }

    #[test]
    fn a_folder_past_the_limit_is_refused_when_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("stack");
        std::fs::create_dir_all(stack.join("data")).unwrap();
        std::fs::write(
            stack.join("deployment.yaml"),
            "template-file-path: t.yaml\n",
        )
        .unwrap();
        // Sparse: 40 MiB long, nothing on disk. Three paths name it: 120 MiB in all.
        std::fs::File::create(stack.join("data/a"))
            .unwrap()
            .set_len(40 << 20)
            .unwrap();
        std::os::unix::fs::symlink("a", stack.join("data/b")).unwrap();
        std::os::unix::fs::symlink("a", stack.join("data/c")).unwrap();
        let err = DirFiles::open(&stack).err().expect("refused").to_string();
        assert!(
            err.contains("stack/data/") && err.contains("the stack folder passes 104857600 bytes"),
            "{err}"
        );
        std::fs::remove_file(stack.join("data/c")).unwrap();
        assert!(DirFiles::open(&stack).is_ok());
    }

    #[test]
    fn symlinks_that_escape_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("stack");
        std::fs::create_dir_all(stack.join("code")).unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "s3cret").unwrap();
        std::fs::write(stack.join("code/app.py"), "print(1)").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.txt"), stack.join("code/leak")).unwrap();
        std::os::unix::fs::symlink("app.py", stack.join("code/alias.py")).unwrap();
        let files = DirFiles::open(&stack).unwrap();
        assert!(matches!(
            files.read("code/leak"),
            Err(StackError::Escapes { .. })
        ));
        assert_eq!(files.read("code/alias.py").unwrap(), b"print(1)");
        assert!(matches!(
            files.walk("code"),
            Err(StackError::Escapes { .. })
        ));
        std::fs::remove_file(stack.join("code/leak")).unwrap();
        let walked = files.walk("code").unwrap();
        let names: Vec<_> = walked.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["alias.py", "app.py"]);
    }
}
