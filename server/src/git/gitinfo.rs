//! What the CLI can learn about where a stack folder came from: the repository and commit
//! that tag the stack.

use std::path::Path;

use crate::cloud::deployer::Origin;

/// The repository (as `owner/name` when the remote says so), HEAD commit and the folder's
/// path in the git work tree holding `dir`, if any: the service tags the same stack with
/// the same repository and path. Credentials in remote URLs are never kept.
pub fn origin_of(dir: &Path) -> Origin {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return Origin::default();
    };
    let sha = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string());
    let name = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().map(repo_name_from_url))
        .or_else(|| {
            repo.workdir()
                .and_then(|w| w.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        });
    let path = repo.workdir().and_then(|w| {
        let rel = dir
            .canonicalize()
            .ok()?
            .strip_prefix(w.canonicalize().ok()?)
            .ok()?
            .to_path_buf();
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    });
    Origin {
        repo: name,
        sha,
        path,
        ..Origin::default()
    }
}

/// `https://x:token@github.com/acme/infra.git` → `acme/infra`.
pub fn repo_name_from_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/').trim_end_matches(".git");
    let path = match trimmed.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        // scp-like: git@github.com:acme/infra
        None => trimmed.split_once(':').map(|(_, p)| p).unwrap_or(trimmed),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [.., owner, name] => format!("{owner}/{name}"),
        [name] => (*name).to_string(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_keep_credentials() {
        assert_eq!(
            repo_name_from_url("https://x:ghp_secret@github.com/acme/infra.git"),
            "acme/infra"
        );
        assert_eq!(
            repo_name_from_url("git@github.com:acme/infra.git"),
            "acme/infra"
        );
        assert_eq!(repo_name_from_url("/srv/git/infra"), "git/infra");
    }
}
