//! The embedded default of `stackgate serve` without a config file: SQLite state and a
//! local git repository seeded from `stacks/`, watched by polling.

use std::path::{Path, PathBuf};

use crate::config::{Config, RepoConfig};

/// The embedded default: SQLite state and a local git repository seeded from `stacks/`,
/// watched by polling, deploying to the AWS endpoint in the environment.
pub fn local_default(root: &Path, stacks: &Path) -> anyhow::Result<(Config, PathBuf)> {
    let state_dir = root.join(".local/state");
    let repo_dir = root.join(".local/gitops-repo");
    std::fs::create_dir_all(&state_dir)?;
    if !repo_dir.join(".git").exists() {
        seed_repo(&repo_dir, stacks)?;
    }
    let cfg = Config {
        listen: std::env::var("STACKGATE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into()),
        state: crate::config::StateConfig {
            path: state_dir.join("stackgate.db"),
            ..Default::default()
        },
        repos: vec![RepoConfig {
            name: "local/gitops".into(),
            url: repo_dir.display().to_string(),
            branch: "main".into(),
            stacks_dir: "stacks".into(),
            webhook_secret_env: None,
            webhook_secret_file: None,
            poll_interval: Some(3),
            prune: true,
            max_prune: 1,
            targets: Default::default(),
        }],
        aws: crate::config::AwsConfig {
            region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
            endpoint_url: std::env::var("AWS_ENDPOINT_URL").ok(),
            artifact_bucket: None,
            poll_seconds: Some(0.5),
        },
        max_parallel_jobs: 4,
        git_timeout_seconds: 120,
        ..Default::default()
    };
    Ok((cfg, repo_dir))
}

fn seed_repo(dir: &Path, stacks: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    copy_tree(stacks, &dir.join("stacks"))?;
    let repo =
        git2::Repository::init_opts(dir, git2::RepositoryInitOptions::new().initial_head("main"))?;
    let mut index = repo.index()?;
    index.add_all(["stacks"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("stackgate", "stackgate@localhost")?;
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "Seed from stackgate's stacks/",
        &tree,
        &[],
    )?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
