//! The command line: `stackgate plan | deploy | remove | check | diff | serve | state`.

mod diff;
mod local;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::cloud::deployer::{DeployError, Deployer, Progress, Removed};
use crate::cloud::{Aws, AwsTarget};
use crate::git::gitinfo;
use crate::policy::{Limits, PolicyHost, PolicySource};
use crate::report::{check, render};
use crate::stack::{DirFiles, Stack};

#[derive(Parser, Debug)]
#[command(
    name = "stackgate",
    version,
    about = "GitOps for AWS CloudFormation, gated by WebAssembly policies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// AWS endpoint, e.g. a local emulator (default: AWS_ENDPOINT_URL, else real AWS).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Region (default: the deployment file's `region`, else AWS_REGION / profile).
    #[arg(long)]
    pub region: Option<String>,
    /// Bucket for artifacts and large templates (default: stackgate-artifacts-<region>).
    #[arg(long, env = "STACKGATE_ARTIFACT_BUCKET")]
    pub artifact_bucket: Option<String>,
    /// Seconds between CloudFormation polls.
    #[arg(long, default_value_t = 2.0)]
    pub poll_seconds: f64,
    /// Take over an existing stack that stackgate did not create (no `managed-by=stackgate`
    /// tag), e.g. one CloudFormation Git sync deployed. Never a stack of another owner.
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the policies, then show what a deploy would change (a change set that is
    /// created, shown, and deleted).
    Plan {
        stack_dir: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Run the policies, then create and execute a change set, and follow the stack until
    /// it settles.
    Deploy {
        stack_dir: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Empty the stack's buckets and delete it.
    Remove {
        stack_dir: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Run the GitOps service. Without --config: the embedded default (SQLite state, a local
    /// git repository seeded from stacks/ and polled, the AWS endpoint in the environment).
    Serve {
        #[arg(long, env = "STACKGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The stacks folder that seeds the local repository (embedded default only).
        #[arg(long, default_value = "stacks")]
        seed: PathBuf,
    },
    /// The state database: `state copy` moves an installation from SQLite to PostgreSQL.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Run the policies on stack folders or bare template files (no AWS calls).
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Per-policy settings, JSON or TOML: `{"open-ingress": {"alb_world_ports": [80]}}`.
        #[arg(long)]
        settings: Option<PathBuf>,
        #[command(flatten)]
        policies: PolicyArgs,
        /// Region for `AWS::Region` when the deployment file names none.
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// What the stack folder's template widens (and narrows): security-group rules, IAM
    /// actions, `*` resources, trust principals, Lambda permissions, conditions removed.
    /// Exit 0 when nothing widens, 1 when something does or may, 2 when it cannot compare.
    Diff {
        stack_dir: PathBuf,
        /// `deployed` (the live stack, GetTemplate; needs AWS) or a git revision of the
        /// folder's repository (`main`, `HEAD~1`, a sha; no AWS calls).
        #[arg(long, default_value = diff::DEPLOYED)]
        against: String,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// AWS endpoint, e.g. a local emulator (default: AWS_ENDPOINT_URL, else real AWS).
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Region (default: the deployment file's `region`, else AWS_REGION / profile).
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Copy jobs (ids kept), the deployed ledger, the outbox (statuses, comments, pull
    /// request comment ids) and delivery ids into an empty PostgreSQL database, in one
    /// transaction. Stop stackgate first; then point `[state] url` at the target.
    Copy {
        /// `sqlite:PATH`, the state file (`[state] path`).
        #[arg(long)]
        from: String,
        /// `postgres://user:password@host:port/database` (default: STACKGATE_STATE_URL).
        #[arg(long, env = "STACKGATE_STATE_URL", hide_env_values = true)]
        to: String,
    },
}

/// The policy gate that `plan` and `deploy` run before any change set.
#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// Per-policy settings, JSON or TOML: `{"open-ingress": {"alb_world_ports": [80]}}`.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    #[command(flatten)]
    pub policies: PolicyArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Load the `*.wasm` policies in this folder instead of the embedded ones.
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Milliseconds one policy may run on one input.
    #[arg(long, default_value_t = 1000)]
    pub policy_deadline_ms: u64,
    /// MiB of memory one policy may use.
    #[arg(long, default_value_t = 64)]
    pub policy_memory_mib: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cli.command))
}

pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STACKGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Plan {
            stack_dir,
            aws,
            gate,
        } => stack_command(&stack_dir, &aws, Action::Plan(&gate)).await,
        Command::Deploy {
            stack_dir,
            aws,
            gate,
        } => stack_command(&stack_dir, &aws, Action::Deploy(&gate)).await,
        Command::Remove { stack_dir, aws } => stack_command(&stack_dir, &aws, Action::Remove).await,
        Command::Serve { config, seed } => match serve(config.as_deref(), &seed).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::State {
            command: StateCommand::Copy { from, to },
        } => state_copy(from, to).await,
        Command::Check {
            paths,
            format,
            settings,
            policies,
            region,
        } => check_command(&paths, format, settings.as_deref(), &policies, &region).await,
        Command::Diff {
            stack_dir,
            against,
            format,
            endpoint_url,
            region,
        } => {
            let target = diff::Target {
                endpoint_url: &endpoint_url,
                region,
            };
            diff::run(&stack_dir, &against, format, target).await
        }
    }
}

async fn state_copy(from: String, to: String) -> ExitCode {
    let Some(path) = from.strip_prefix("sqlite:").map(PathBuf::from) else {
        eprintln!("error: --from {from}: a SQLite state file, as sqlite:PATH");
        return ExitCode::from(2);
    };
    let target = crate::config::StateUrl::new(to.as_str());
    let (p, t) = (path.clone(), to.clone());
    let copied =
        tokio::task::spawn_blocking(move || crate::queue::copy::sqlite_to_postgres(&p, &t))
            .await
            .unwrap_or_else(|e| Err(crate::queue::StoreError::Backend(Box::new(e))));
    let path = path.display();
    match copied {
        Ok(copied) => {
            println!("copied {copied} from {path} to {}", target.redacted());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: copy from {path} to {}: {e}", target.redacted());
            ExitCode::from(1)
        }
    }
}

/// Where precompiled policies are cached between runs.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STACKGATE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stackgate").join("policies"))
}

/// Reads per-policy settings (JSON, or TOML by extension) into a map by policy name.
pub fn read_settings(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{}:{}: {e}", path.display(), e.line()))?
    };
    match value {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(format!(
            "{}: settings must be a table keyed by policy name",
            path.display()
        )),
    }
}

pub fn load_policies(
    args: &PolicyArgs,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<PolicyHost, String> {
    let mut sources = match &args.policies {
        Some(dir) => PolicySource::from_dir(dir).map_err(|e| e.to_string())?,
        None => PolicySource::embedded(),
    };
    for name in settings.keys() {
        if !sources.iter().any(|s| &s.name == name) {
            return Err(format!("settings name an unknown policy `{name}`"));
        }
    }
    for s in &mut sources {
        if let Some(v) = settings.get(&s.name) {
            s.settings = v.clone();
        }
    }
    let limits = Limits {
        deadline: std::time::Duration::from_millis(args.policy_deadline_ms),
        memory_bytes: args.policy_memory_mib << 20,
        ..Limits::default()
    };
    PolicyHost::load(sources, limits, default_cache_dir().as_deref()).map_err(|e| e.to_string())
}

async fn check_command(
    paths: &[PathBuf],
    format: Format,
    settings: Option<&Path>,
    policy_args: &PolicyArgs,
    region: &str,
) -> ExitCode {
    let settings = match settings.map(read_settings).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let host = match load_policies(policy_args, &settings) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    for p in paths {
        results.push(check::check_path(&host, p, region).await);
    }
    let out = match format {
        Format::Text => check::text(&results),
        Format::Json => format!("{:#}\n", check::json(&results)),
        Format::Sarif => format!("{:#}\n", check::sarif(&results)),
    };
    print!("{out}");
    ExitCode::from(check::exit_code(&results))
}

#[derive(Clone, Copy)]
enum Action<'a> {
    Plan(&'a GateArgs),
    Deploy(&'a GateArgs),
    Remove,
}

/// Runs the policy gate with AWS access; prints what it found. `Err` is the exit code
/// when the stack must not go further.
async fn gate(
    args: &GateArgs,
    dir: &Path,
    (files, stack): (&DirFiles, &Stack),
    deployer: &Deployer,
) -> Result<(), ExitCode> {
    let settings = match args.settings.as_deref().map(read_settings).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let host = load_policies(&args.policies, &settings).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let event = crate::policy::input::EventInfo {
        kind: "manual".into(),
        sha: None,
    };
    let region = deployer.aws.region.clone();
    let report = crate::policy::gate::judge(
        &host,
        stack,
        files,
        &region,
        event,
        Some(&deployer.aws),
        None,
    )
    .await;
    let verdict = report.verdict;
    let summary = report.summary();
    let result = check::from_report(
        dir.display().to_string(),
        stack.template.file.clone(),
        report,
    );
    print!("{}", check::text(std::slice::from_ref(&result)));
    match verdict {
        crate::policy::Verdict::Pass => Ok(()),
        _ => {
            eprintln!("error: blocked by policy, nothing was sent to CloudFormation: {summary}");
            Err(ExitCode::from(check::exit_code(&[result])))
        }
    }
}

fn fail(err: &DeployError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(err.exit_code())
}

async fn stack_command(dir: &Path, args: &AwsArgs, action: Action<'_>) -> ExitCode {
    let loaded = DirFiles::open(dir).and_then(|files| Stack::load(&files).map(|s| (files, s)));
    let (files, stack) = match loaded {
        Ok(x) => x,
        Err(e) => return fail(&DeployError::Stack(e)),
    };
    let target = AwsTarget {
        region: args
            .region
            .clone()
            .or_else(|| stack.deployment.region.clone()),
        endpoint_url: args.endpoint_url.clone(),
    };
    let mut deployer = Deployer::new(Aws::connect(&target).await, args.artifact_bucket.clone());
    deployer.poll = std::time::Duration::from_secs_f64(args.poll_seconds.max(0.05));
    let mut origin = gitinfo::origin_of(dir);
    origin.adopt = args.adopt;
    let mut out = std::io::stdout();
    let mut sink = |p: Progress<'_>| {
        let _ = match p {
            Progress::Note(n) => writeln!(out, "{n}"),
            Progress::Changes(c) => write!(out, "{}", render::change_table(c)),
            Progress::Event { event, done, total } => {
                writeln!(out, "{}", render::event_line(event, done, total))
            }
        };
        let _ = out.flush();
    };
    println!(
        "stack {} ({}, region {})",
        stack.name,
        dir.display(),
        deployer.aws.region
    );
    if let Action::Plan(args) | Action::Deploy(args) = action
        && let Err(code) = gate(args, dir, (&files, &stack), &deployer).await
    {
        return code;
    }
    match action {
        Action::Plan(_) => match deployer.plan(&files, &stack, &origin, &mut sink).await {
            Ok(p) => {
                match &p.changes {
                    None => println!("plan: no changes"),
                    Some(c) => println!("plan: {} change(s); nothing was executed", c.len()),
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Action::Deploy(_) => match deployer.deploy(&files, &stack, &origin, &mut sink).await {
            Ok(d) => {
                if d.changed {
                    println!("{} {}", d.stack_name, d.status);
                } else {
                    println!("{} unchanged ({})", d.stack_name, d.status);
                }
                if !d.outputs.is_empty() {
                    println!("outputs:");
                    for (k, v) in &d.outputs {
                        println!("  {k} = {v}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Action::Remove => match deployer
            .remove(
                &stack.name,
                &origin.owner(&stack.folder),
                origin.adopt,
                &origin.guard,
                &mut sink,
            )
            .await
        {
            Ok(Removed::NotFound) => ExitCode::SUCCESS,
            Ok(Removed::Deleted { .. }) => {
                println!("{} DELETE_COMPLETE", stack.name);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

async fn serve(config: Option<&Path>, seed: &Path) -> anyhow::Result<()> {
    let (cfg, local_repo) = match config {
        Some(path) => (crate::config::Config::load(Some(path))?, None),
        None => {
            let root = std::env::current_dir()?;
            let (cfg, repo) = local::local_default(&root, seed)?;
            (cfg, Some(repo))
        }
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let app = crate::app::build(cfg).await?;
    println!(
        "stackgate listening on http://{addr}  (runs: http://{addr}/, metrics: http://{addr}/metrics)"
    );
    if let Some(repo) = local_repo {
        println!(
            "watching the local repository {repo} (branch main, polled every 3 s)\n\
             to deploy a change:\n  cd {repo}\n  $EDITOR stacks/hybrid-alb/deployment.yaml\n  \
             git commit -am 'my change'\nstackgate picks up the new commit within seconds; watch it at http://{addr}/",
            repo = repo.display()
        );
    }
    // SIGINT or SIGTERM (systemd, containers): stop taking requests; a deploy in flight
    // resumes on the next start.
    let shutdown = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    };
    crate::app::run(app, listener, shutdown).await
}
