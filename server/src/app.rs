//! app: wiring only. Configuration becomes the HTTP state (what handlers need) and the
//! pipeline (what jobs need), and `run` starts the background loops beside the listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::api::HttpState;
use crate::cloud::deployer::Deployer;
use crate::cloud::targets::Targets;
use crate::cloud::{Aws, AwsTarget};
use crate::config::Config;
use crate::git::{Mirror, Mirrors};
use crate::github::GitHub;
use crate::pipeline::lease::Leases;
use crate::pipeline::{self, Pipeline};
use crate::policy::{Limits, PolicyHost, PolicySource};
use crate::queue::lease::{Lease, Replica};
use crate::queue::recorder::Recorder;
use crate::queue::{Queue, Store, Wake};
use crate::report::metrics::Metrics;
use crate::report::statuses::Announcer;

/// The service, wired.
pub struct App {
    pub http: Arc<HttpState>,
    pub pipeline: Arc<Pipeline>,
    pub github: Arc<dyn GitHub>,
}

impl App {
    /// The HTTP surface, without a socket.
    pub fn router(&self) -> axum::Router {
        crate::intake::router(self.http.clone())
    }
}

/// The policies of the configuration, pinned and set up, compiled once.
fn policies(cfg: &Config, state_dir: &std::path::Path) -> anyhow::Result<PolicyHost> {
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
    for t in &cfg.targets {
        if let Some(name) = t
            .policies
            .keys()
            .find(|n| !sources.iter().any(|s| &s.name == *n))
        {
            anyhow::bail!("targets[{}].policies.{name}: no such policy", t.name);
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
    Ok(policies)
}

/// The state database: PostgreSQL when `[state] url` is set (shared by every replica), else
/// the SQLite file.
pub fn open_queue(state: &crate::config::StateConfig) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(match &state.url {
        Some(url) => {
            tracing::info!(url = %url.redacted(), "state in PostgreSQL");
            Arc::new(crate::queue::postgres::Store::open(url.expose())?)
        }
        None => Arc::new(Store::open(&state.path, state.synchronous)?),
    })
}

/// Hands the heap freed since start (Cranelift's, when the policies were compiled: some
/// 20 MB) back to the OS; glibc keeps it resident otherwise, for the life of the process.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's own heap to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Builds the service from its configuration.
pub async fn build(cfg: Config) -> anyhow::Result<App> {
    let state_dir = cfg.state.dir();
    std::fs::create_dir_all(&state_dir)?;
    let queue = open_queue(&cfg.state)?;
    let policies = policies(&cfg, &state_dir)?;
    release_freed_heap();
    let lease = Lease {
        owner: Replica::new(),
        length: Duration::from_secs(cfg.state.lease_seconds),
    };
    tracing::info!(replica = %lease.owner, lease_seconds = cfg.state.lease_seconds, "leases");

    let conf = crate::cloud::load(&AwsTarget {
        region: cfg.aws.region.clone(),
        endpoint_url: cfg.aws.endpoint_url.clone(),
    })
    .await;
    let mut deployer = Deployer::new(Aws::from_conf(&conf), cfg.aws.artifact_bucket.clone());
    if let Some(p) = cfg.aws.poll_seconds {
        deployer.poll = Duration::from_secs_f64(p.max(0.05));
    }
    // An external id that cannot be read fails the start, not the first deploy.
    for t in &cfg.targets {
        t.external_id()?;
    }
    let targets = Targets::new(conf, deployer.poll);
    let deployer = Arc::new(deployer);
    let regions =
        crate::cloud::regions::Regions::new(deployer.clone(), cfg.aws.endpoint_url.clone());

    let (github, git) = crate::github::from_config(cfg.github.as_ref())
        .await
        .map_err(anyhow::Error::msg)?;
    let git_timeout = Duration::from_secs(cfg.git_timeout_seconds);
    crate::git::checkout::set_network_timeouts(git_timeout);
    let mut by_repo = HashMap::new();
    let mut webhook_secrets = Vec::new();
    for r in &cfg.repos {
        by_repo.insert(
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
    let mirrors = Arc::new(Mirrors::new(by_repo, git));
    let recorder = Recorder::spawn(queue.clone(), Arc::new(Announcer(cfg.clone())))?;
    let metrics = Arc::new(Metrics::default());
    let notify = Arc::new(crate::report::notify::Notifier::new(
        cfg.drift.notify_url()?,
    ));
    let wake = Arc::new(Wake::default());
    // The login's secrets and the exposure check (the CLI's embedded default, too).
    let auth = crate::auth::Auth::from_config(&cfg)?;
    let http = Arc::new(HttpState {
        cfg: cfg.clone(),
        queue: queue.clone(),
        recorder,
        mirrors: mirrors.clone(),
        webhook_secrets,
        metrics: metrics.clone(),
        wake: wake.clone(),
        auth,
        clock: Default::default(),
        live_streams: Arc::new(tokio::sync::Semaphore::new(crate::api::live::MAX_STREAMS)),
    });
    let pipeline = Arc::new(Pipeline {
        cfg,
        queue,
        policies,
        deployer,
        regions,
        targets,
        mirrors,
        metrics,
        notify,
        wake,
        leases: Arc::new(Leases::new(lease)),
    });
    Ok(App {
        http,
        pipeline,
        github,
    })
}

/// Starts the background loops and serves until `shutdown` resolves.
pub async fn run(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let p = app.pipeline.clone();
    // The backend says what a starting replica may take: SQLite's file is this process's
    // alone, so what ran before it is dead and resumes at once; a shared database's live
    // leases are other replicas' work.
    pipeline::recover(&p, p.queue.orphans_at_start()).await;
    tokio::spawn(crate::workers::heartbeat::run(p.clone()));
    tokio::spawn(crate::workers::takeover::run(p.clone()));
    tokio::spawn(crate::workers::dispatcher::run(p.clone()));
    tokio::spawn(crate::report::outbox::run(
        p.queue.clone(),
        app.github.clone(),
        p.wake.outbox.clone(),
    ));
    tokio::spawn(crate::workers::drift::run(p.clone()));
    tokio::spawn(crate::workers::expiry::run(p.clone()));
    tokio::spawn(crate::workers::pruner::run(
        p.queue.clone(),
        p.cfg.state.retain_days,
    ));
    for repo in p.cfg.repos.clone() {
        if let Some(every) = repo.poll() {
            tokio::spawn(crate::workers::poller::run(p.clone(), repo, every));
        }
    }
    let router = app.router();
    crate::intake::listener::serve(listener, router, &p.cfg.listener, shutdown).await;
    // A clean stop (systemd, a rolling upgrade) is not a crash: a long deploy that spans a
    // few of them resumes each time instead of being failed as poisoned.
    // No more AWS writes from this process's workers, then the leases go back.
    p.leases.stop();
    match p.queue.release(&p.leases.lease) {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "stopping; running jobs resume on the next start"),
        Err(e) => tracing::error!(error = %e, "cannot release the running jobs"),
    }
    Ok(())
}
