//! `stackgate serve`: wires intake, queue, pipeline and report together and runs the
//! background loops (dispatcher, status reporter, pollers).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use crate::checkout::Mirror;
use crate::cloud::{Aws, AwsTarget};
use crate::config::{Config, RepoConfig};
use crate::deployer::Deployer;
use crate::domain::{Kind, Trigger};
use crate::pipeline::{self, App};
use crate::policy::{Limits, PolicyHost, PolicySource};
use crate::queue::{NewJob, Queue, Store};
use crate::report::metrics::Metrics;

/// Builds the application from its configuration.
pub async fn build(cfg: Config) -> anyhow::Result<Arc<App>> {
    let state_dir = cfg.state.dir();
    std::fs::create_dir_all(&state_dir)?;
    let store: Arc<dyn Queue> = Arc::new(Store::open(&cfg.state.path, cfg.state.synchronous)?);

    let mut sources = match &cfg.policies.dir {
        Some(dir) => PolicySource::from_dir(dir)?,
        None => PolicySource::embedded(),
    };
    for (name, pc) in &cfg.policies.policy {
        let Some(src) = sources.iter_mut().find(|s| &s.name == name) else {
            anyhow::bail!("policies.policy.{name}: no such policy");
        };
        if pc.digest.is_some() {
            src.pinned = pc.digest.clone();
        }
        if !pc.settings.is_null() {
            src.settings = pc.settings.clone();
        }
    }
    if cfg.policies.dir.is_some()
        && let Some(unpinned) = sources.iter().find(|s| s.pinned.is_none())
    {
        anyhow::bail!(
            "policies.policy.{}.digest: policies loaded from a folder must be pinned by sha256",
            unpinned.name
        );
    }
    let limits = Limits {
        deadline: Duration::from_millis(cfg.policies.deadline_ms),
        memory_bytes: cfg.policies.memory_mib << 20,
        concurrency: cfg.max_parallel_jobs.max(1),
    };
    let policies = PolicyHost::load(sources, limits, Some(&state_dir.join("policy-cache")))?;
    for (name, digest) in policies.policies() {
        tracing::info!(policy = %name, %digest, "policy loaded");
    }

    let aws = Aws::connect(&AwsTarget {
        region: cfg.aws.region.clone(),
        endpoint_url: cfg.aws.endpoint_url.clone(),
    })
    .await;
    let mut deployer = Deployer::new(aws, cfg.aws.artifact_bucket.clone());
    if let Some(p) = cfg.aws.poll_seconds {
        deployer.poll = Duration::from_secs_f64(p.max(0.05));
    }
    let deployer = Arc::new(deployer);
    let regions = crate::regions::Regions::new(deployer.clone(), cfg.aws.endpoint_url.clone());

    let (github, git) = crate::github::from_config(cfg.github.as_ref())
        .await
        .map_err(anyhow::Error::msg)?;
    let git_timeout = Duration::from_secs(cfg.git_timeout_seconds);
    crate::checkout::set_network_timeouts(git_timeout);
    let mut mirrors = HashMap::new();
    let mut webhook_secrets = Vec::new();
    for r in &cfg.repos {
        mirrors.insert(
            r.name.clone(),
            Arc::new(Mutex::new(Mirror::new(
                &state_dir,
                &r.name,
                &r.url,
                git_timeout,
            ))),
        );
        if let Some(s) = r.webhook_secret()? {
            webhook_secrets.push((r.name.clone(), s));
        }
    }
    let recorder = crate::queue::recorder::Recorder::spawn(
        store.clone(),
        Arc::new(crate::report::statuses::Announcer(cfg.clone())),
    )?;
    Ok(Arc::new(App {
        cfg,
        store,
        recorder,
        policies,
        deployer,
        regions,
        github,
        mirrors,
        git,
        webhook_secrets,
        metrics: Metrics::default(),
        wake: Notify::new(),
        report_wake: Arc::new(Notify::new()),
    }))
}

/// Starts the background loops; returns when `shutdown` resolves.
pub async fn run(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    pipeline::recover(&app).await;
    tokio::spawn(dispatch(app.clone()));
    tokio::spawn(crate::report::outbox::run(
        app.store.clone(),
        app.github.clone(),
        app.report_wake.clone(),
    ));
    tokio::spawn(prune(app.clone()));
    for repo in app.cfg.repos.clone() {
        if let Some(every) = repo.poll() {
            tokio::spawn(poll(app.clone(), repo, every));
        }
    }
    let router = crate::intake::router(app.clone());
    crate::listener::serve(listener, router, &app.cfg.listener, shutdown).await;
    // A clean stop (systemd, a rolling upgrade) is not a crash: a long deploy that spans a
    // few of them resumes each time instead of being failed as poisoned.
    match app.store.release_running() {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "stopping; running jobs resume on the next start"),
        Err(e) => tracing::error!(error = %e, "cannot release the running jobs"),
    }
    Ok(())
}

/// How long the dispatcher lets a burst of wake-ups gather.
const GATHER: Duration = Duration::from_millis(10);

/// How often history older than `[state] retain_days` is forgotten, and how many rows one
/// transaction deletes: 500 of a million deliveries (random ids) took 6 ms (p50) here, and
/// a step never reads more rows than that, so deliveries hardly wait behind it.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: usize = 500;

async fn prune(app: Arc<App>) {
    let days = app.cfg.state.retain_days;
    if days == 0 {
        return;
    }
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        every.tick().await;
        // At most 36,500 days (config checks it): no overflow.
        let before = crate::queue::now() - (days as i64) * 86_400_000;
        let store = app.store.clone();
        match tokio::task::spawn_blocking(move || store.prune(before, PRUNE_BATCH)).await {
            Ok(Ok(p)) if p != Default::default() => tracing::info!(
                jobs = p.jobs,
                statuses = p.statuses,
                deliveries = p.deliveries,
                "forgot history older than {days} days"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot forget old history"),
            Err(e) => tracing::error!(error = %e, "the pruning task failed"),
        }
    }
}

/// Claims runnable jobs (one per lane, up to the parallel limit) and runs them.
async fn dispatch(app: Arc<App>) {
    loop {
        match app.store.claim(app.cfg.max_parallel_jobs.max(1)) {
            Ok(jobs) => {
                for job in jobs {
                    tokio::spawn(pipeline::run(app.clone(), job));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot claim jobs"),
        }
        // Short enough to pick up a debounced sync soon after it is due.
        if tokio::time::timeout(Duration::from_millis(100), app.wake.notified())
            .await
            .is_ok()
        {
            // A burst of deliveries wakes this once per delivery: claim once for all.
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// Polls a branch head, so a missed webhook or a repository without webhooks still deploys.
async fn poll(app: Arc<App>, repo: RepoConfig, every: Duration) {
    let mut last: Option<String> = None;
    loop {
        match app.fetch(&repo, None).await.map(|h| h.branch) {
            Ok(Some(sha)) if last.as_deref() != Some(sha.as_str()) => {
                tracing::info!(repo = %repo.name, sha = %crate::domain::short(&sha), "new head");
                let job = NewJob {
                    kind: Some(Kind::Sync),
                    repo: repo.name.clone(),
                    sha: sha.clone(),
                    trigger: Trigger::Poll,
                    ..Default::default()
                };
                match app.enqueue(&[job]) {
                    Ok(_) => last = Some(sha),
                    Err(e) => tracing::error!(error = %e, "cannot enqueue a polled head"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(repo = %repo.name, error = %e, "poll failed"),
        }
        tokio::time::sleep(every).await;
    }
}

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
