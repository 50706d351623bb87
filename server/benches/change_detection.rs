//! Change detection on a repository of 500 stacks: a push that touches one makes exactly
//! one deploy job, and how long the sync that finds it takes. See `benches/README.md`.
//!
//! ```text
//! CHANGE_BENCH_AWS_ENDPOINT=http://127.0.0.1:4613 cargo bench -p stackgate --bench change_detection
//! ```
//!
//! The sync runs through `pipeline::run`, as the dispatcher runs it: fetch into the mirror,
//! the commit's snapshot, the comparison with the ledger and the queue
//! (`pipeline/changes.rs`), the check that the deployed stacks still exist in
//! CloudFormation, the claims, the policies on the changed stack, and the deploy job
//! enqueued. The 500 stacks exist in the emulator and the ledger holds each at the first
//! commit; each run commits a change to one stack's template, runs the sync of that commit,
//! checks that it enqueued one deploy job and only for that stack, then records that
//! deploy as done (as the deploy job would) so that the next run starts from the same state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stackgate::config::Config;
use stackgate::domain::{JobState, Kind, StackIdentity, Trigger};
use stackgate::pipeline::{self, Pipeline};
use stackgate::queue::{LedgerEntry, NewJob};

const REPO: &str = "bench/five-hundred";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn folder(i: usize) -> String {
    format!("s{i:03}")
}

/// A small template that both embedded policies pass: one SNS topic, one output.
fn template(i: usize, round: usize) -> String {
    format!(
        "AWSTemplateFormatVersion: '2010-09-09'\nDescription: stack {i}, round {round}\n\
         Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      \
         DisplayName: topic-{i}\nOutputs:\n  TopicArn:\n    Value: !Ref Topic\n"
    )
}

fn stack_name(run: &str, i: usize) -> String {
    format!("cd-{run}-{}", folder(i))
}

/// The emulator: the one given, or one started here (and stopped at the end).
struct Emulator {
    endpoint: String,
    started_port: Option<String>,
    root: PathBuf,
}

impl Emulator {
    fn get(root: &Path) -> Emulator {
        if let Ok(e) = std::env::var("CHANGE_BENCH_AWS_ENDPOINT") {
            return Emulator {
                endpoint: e,
                started_port: None,
                root: root.into(),
            };
        }
        let port = std::env::var("CHANGE_BENCH_EMULATOR_PORT").unwrap_or("4597".into());
        let ok = Command::new("bash")
            .arg(root.join("deploy/local/emulator.sh"))
            .arg("start")
            .env("STACKGATE_EMULATOR_PORT", &port)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the AWS emulator did not start; run deploy/local/setup.sh first"
        );
        Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            started_port: Some(port),
            root: root.into(),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(port) = &self.started_port {
            let _ = Command::new("bash")
                .arg(self.root.join("deploy/local/emulator.sh"))
                .arg("stop")
                .env("STACKGATE_EMULATOR_PORT", port)
                .status();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let stacks = env_usize("CHANGE_BENCH_STACKS", 500);
    let runs = env_usize("CHANGE_BENCH_RUNS", 30);
    let warmup = env_usize("CHANGE_BENCH_WARMUP", 3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let emulator = Emulator::get(&root);
    // The emulator takes any key; the SDK wants one.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            // SAFETY: no other thread runs yet.
            unsafe { std::env::set_var(k, v) };
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = rt.block_on(bench(&emulator.endpoint, stacks, runs, warmup));
    let out = root.join("server/benches/results/change_detection.md");
    std::fs::write(&out, &report).expect("write the report");
    println!("{report}\n(written to {})", out.display());
}

async fn bench(endpoint: &str, stacks: usize, runs: usize, warmup: usize) -> String {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = format!(
        "{:x}",
        std::process::id() ^ (stackgate::queue::now() as u32)
    );
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("stacks")).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    for i in 0..stacks {
        let dir = repo.join("stacks").join(folder(i));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("deployment.yaml"),
            format!(
                "template-file-path: template.yaml\nstack-name: {}\ntags:\n  bench: change-detection\n",
                stack_name(&run, i)
            ),
        )
        .expect("write");
        std::fs::write(dir.join("template.yaml"), template(i, 0)).expect("write");
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "500 stacks"]);
    let base = git(&repo, &["rev-parse", "HEAD"]);

    let cfg_path = tmp.path().join("stackgate.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "max_parallel_jobs = 2\n[state]\npath = \"{}\"\n[aws]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             [[repos]]\nname = \"{REPO}\"\nurl = \"{}\"\nbranch = \"main\"\n",
            tmp.path().join("state/stackgate.db").display(),
            repo.display()
        ),
    )
    .expect("write config");
    let cfg = Config::load(Some(&cfg_path)).expect("config");
    let app = stackgate::app::build(cfg).await.expect("build the service");
    let p: Arc<Pipeline> = app.pipeline.clone();

    // The stacks exist in CloudFormation, as deployed stacks do.
    let t = Instant::now();
    let cfn = p.deployer.aws.cfn.clone();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..stacks {
        let (cfn, name, body) = (cfn.clone(), stack_name(&run, i), template(i, 0));
        pending.spawn(async move {
            cfn.create_stack()
                .stack_name(name)
                .template_body(body)
                .send()
                .await
                .map(drop)
        });
        if pending.len() >= 8 {
            pending
                .join_next()
                .await
                .expect("task")
                .expect("join")
                .expect("CreateStack");
        }
    }
    while let Some(r) = pending.join_next().await {
        r.expect("join").expect("CreateStack");
    }
    eprintln!(
        "created {stacks} stacks in the emulator in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The ledger holds each at the first commit, as after their deploys.
    let account = p.deployer.aws.account().await.expect("account").to_string();
    let deploys: Vec<NewJob> = (0..stacks).map(|i| deploy_job(&folder(i), &base)).collect();
    p.enqueue(&deploys).expect("enqueue");
    finish_deploys(&p, &run, &account, &base, stacks);

    let mut times = Vec::new();
    let mut sync_phases = Vec::new();
    for k in 0..warmup + runs {
        let i = (k * 7 + 1) % stacks;
        let path = repo.join("stacks").join(folder(i)).join("template.yaml");
        std::fs::write(&path, template(i, k + 1)).expect("write");
        git(
            &repo,
            &["commit", "-q", "-am", &format!("touch {}", folder(i))],
        );
        let sha = git(&repo, &["rev-parse", "HEAD"]);
        let before: Vec<_> = live_deploys(&p);
        assert!(
            before.is_empty(),
            "deploys left from an earlier run: {before:?}"
        );
        p.enqueue(&[NewJob {
            kind: Kind::Sync,
            repo: REPO.into(),
            sha: sha.clone(),
            trigger: Trigger::Push,
            stack: None,
            pr: None,
            fork: false,
        }])
        .expect("enqueue the sync");
        let job = claim_sync(&p).await;
        let t = Instant::now();
        pipeline::run(p.clone(), job.clone()).await;
        let took = t.elapsed().as_secs_f64() * 1000.0;
        let done = p.queue.job(job.id).expect("read").expect("the sync job");
        assert_eq!(done.state, JobState::Succeeded, "{:#}", done.detail);
        let made = live_deploys(&p);
        assert_eq!(
            made,
            vec![(folder(i), sha.clone())],
            "the push touching {} made these deploy jobs",
            folder(i)
        );
        if k >= warmup {
            times.push(took);
            sync_phases.push(done.detail["changed"].as_array().map_or(0, |a| a.len()));
        }
        finish_deploys_at(&p, &run, &account, &sha, &[i]);
    }
    // Where the time goes: the sync's steps, each called apart as the sync calls it, on the
    // last commit (median of 10 each).
    let parts = parts(&p, &sha_last(&repo)).await;
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = percentile(&sorted, 0.5);
    let p95 = percentile(&sorted, 0.95);
    let met = if median <= 50.0 && p95 <= 50.0 {
        "met"
    } else {
        "**NOT met**"
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut r = String::new();
    r.push_str("# Change detection on 500 stacks\n\n");
    r.push_str("Generated by `cargo bench -p stackgate --bench change_detection` (`benches/change_detection.rs`).\n");
    r.push_str(&format!(
        "A real git repository with {stacks} stack folders (each a deployment file and a one-topic\n\
         template), all {stacks} stacks created in the emulator and in the ledger at the first commit.\n\
         Each run commits a change to one stack's template and runs that commit's sync job through\n\
         `pipeline::run`, as the dispatcher does: fetch into the mirror, the commit's snapshot, the\n\
         comparison with the ledger and the queue, the check that the deployed stacks still exist\n\
         (DescribeStacks against the emulator), the claims, both policies on the changed stack, the\n\
         job's end and its deploy job enqueued. Timed from the call to its return; the claim, the\n\
         commit and the checks are outside.\n\n"
    ));
    r.push_str("| measure | value | goal | |\n|---|---:|---|---|\n");
    r.push_str(&format!(
        "| deploy jobs made per push touching one stack (every run checked) | 1 in each of {} runs | exactly 1 | met |\n",
        times.len()
    ));
    r.push_str(&format!(
        "| stacks the sync found changed (every run) | {} | 1 | {} |\n",
        sync_phases
            .iter()
            .map(|n| n.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", "),
        if sync_phases.iter().all(|n| *n == 1) {
            "met"
        } else {
            "**NOT met**"
        }
    ));
    r.push_str(&format!(
        "| **sync (change detection), median / p95** (ms) | **{median:.1} / {p95:.1}** | ≤ 50 ms | {met} |\n"
    ));
    r.push_str(&format!(
        "| min / max (ms) | {:.1} / {:.1} | | |\n\n",
        sorted[0],
        sorted[sorted.len() - 1]
    ));
    r.push_str(&format!(
        "{} runs after {warmup} warm-up runs; each run touches another stack.\n\n",
        times.len()
    ));
    r.push_str(
        "Where the time goes: the sync's steps, each called apart with the calls the sync makes\n",
    );
    r.push_str("(median of 10, ms):\n\n| step | ms |\n|---|---:|\n");
    for (name, ms) in &parts {
        r.push_str(&format!("| {name} | {ms:.1} |\n"));
    }
    let own: f64 = parts
        .iter()
        .filter(|(n, _)| !n.contains("live_stacks"))
        .map(|(_, ms)| ms)
        .sum::<f64>()
        + parts
            .iter()
            .find(|(n, _)| n.contains("Stack::load"))
            .map_or(0.0, |(_, ms)| *ms);
    r.push_str(&format!(
        "\nstackgate's own steps (each stack loaded twice, as the sync does) add up to {own:.1} ms;\n\
         the rest of the sync is the policies on the one changed stack, the job's end and its\n\
         deploy enqueued, and the DescribeStacks listing of every stack, the emulator's time.\n\n"
    ));
    r.push_str("## Machine\n\n");
    r.push_str(&format!(
        "- {date}; {} CPUs ({cpu}); load average (1/5/15 min) at the end: {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.join(" ")
    ));
    r.push_str(&format!(
        "- commit {commit}, release profile; the emulator (moto) at {endpoint} shares the CPUs\n"
    ));
    r
}

fn deploy_job(stack: &str, sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Deploy,
        repo: REPO.into(),
        stack: Some(stack.into()),
        sha: sha.into(),
        trigger: Trigger::Push,
        pr: None,
        fork: false,
    }
}

/// The queued or running deploy jobs, as (folder, sha).
fn live_deploys(p: &Pipeline) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for state in [JobState::Queued, JobState::Running] {
        for j in p.queue.jobs_in_state(state).expect("read jobs") {
            if j.kind == Kind::Deploy {
                out.push((j.stack.clone().unwrap_or_default(), j.sha.clone()));
            }
        }
    }
    out
}

/// Claims the sync just enqueued (it waits out the debounce first).
async fn claim_sync(p: &Pipeline) -> stackgate::queue::Job {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let claimed = p.claim(1).expect("claim");
        if let Some(job) = claimed.into_iter().next() {
            assert_eq!(job.kind, Kind::Sync);
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the sync job was never claimable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finish_deploys(p: &Pipeline, run: &str, account: &str, sha: &str, stacks: usize) {
    let all: Vec<usize> = (0..stacks).collect();
    finish_deploys_at(p, run, account, sha, &all);
}

/// Claims the queued deploys and ends them as deployed at `sha`, as their jobs would.
fn finish_deploys_at(p: &Pipeline, run: &str, account: &str, sha: &str, which: &[usize]) {
    let claimed = p.claim(which.len() + 2).expect("claim");
    assert_eq!(claimed.len(), which.len(), "deploy jobs to finish");
    for job in claimed {
        let stack = job.stack.clone().expect("a deploy names its stack");
        let i: usize = stack[1..].parse().expect("folder number");
        let id = StackIdentity {
            account: account.into(),
            region: "us-east-1".into(),
            name: stack_name(run, i),
        };
        p.queue
            .finish(
                job.claim(),
                JobState::Succeeded,
                &serde_json::json!({"bench": "deployed"}),
                &[],
                Some(LedgerEntry {
                    repo: REPO,
                    stack: &stack,
                    sha,
                    removed: false,
                    identity: Some(&id),
                }),
            )
            .expect("finish");
    }
}

fn sha_last(repo: &Path) -> String {
    git(repo, &["rev-parse", "HEAD"])
}

/// The sync's steps timed apart: median of 10 calls each.
async fn parts(p: &Pipeline, sha: &str) -> Vec<(&'static str, f64)> {
    let cfg = p.cfg.repo(REPO).expect("the repository").clone();
    let mut out = Vec::new();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let time = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        p.fetch(&cfg, None).await.expect("fetch");
        v.push(time(t));
    }
    out.push(("fetch into the mirror (`Mirrors::fetch`)", median(v)));
    let mut v = Vec::new();
    let mut snap = None;
    for _ in 0..10 {
        let t = Instant::now();
        snap = Some(p.mirrors.snapshot(&cfg, sha, None).await.expect("snapshot"));
        v.push(time(t));
    }
    out.push(("the commit's snapshot (`Mirrors::snapshot`)", median(v)));
    let snap = snap.expect("a snapshot");
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let _ = p.mirrors.stack_trees(&cfg, sha).await.expect("trees");
        v.push(time(t));
    }
    out.push((
        "each stack's tree at the deployed commit (`Mirrors::stack_trees`)",
        median(v),
    ));
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        for name in snap.stacks.keys() {
            let files = snap.files(name).expect("files");
            std::hint::black_box(stackgate::stack::Stack::load(&files).expect("load"));
        }
        v.push(time(t));
    }
    out.push((
        "every stack loaded once (`Stack::load` × 500; the sync loads each twice)",
        median(v),
    ));
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let live = stackgate::cloud::cfn::live_stacks(&p.deployer.aws.cfn)
            .await
            .expect("DescribeStacks");
        std::hint::black_box(live);
        v.push(time(t));
    }
    out.push((
        "the deployed stacks still exist? (`cfn::live_stacks`, the emulator)",
        median(v),
    ));
    let mut v = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        std::hint::black_box(p.queue.deployed(REPO).expect("ledger"));
        std::hint::black_box(p.queue.pending_deploys(REPO).expect("queue"));
        std::hint::black_box(p.queue.live_identities().expect("identities"));
        v.push(time(t));
    }
    out.push((
        "the ledger and the queue read (deployed, pending, identities)",
        median(v),
    ));
    out
}
