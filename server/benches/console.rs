//! The console's overview on a big state file: 500 stacks × 200 runs (100,000 jobs with
//! deploy-sized details) in SQLite, and `GET /` rendered through the router, as a browser
//! gets it. See `benches/README.md`.
//!
//! ```text
//! cargo bench -p stackgate --bench console
//! ```
//!
//! It prints p50/p99 of `/`, of a stack page, and of the one query behind `/` (the newest
//! job of each lane), first on the schema as it is, then again after adding an index on
//! `jobs(lane, id)` to the bench's own file, side by side in one run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use stackgate::config::Config;
use stackgate::queue::Console;
use tower::ServiceExt;

const REPO: &str = "bench/console";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
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
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A deploy's detail as big as a real one: a policy report with findings and 24 events.
fn detail(stack: usize, run: usize) -> String {
    let events: Vec<_> = (0..24)
        .map(|e| {
            json!({"event": {"id": format!("ev-{stack}-{run}-{e}"),
                "timestamp": format!("2026-01-01T12:00:{:02}Z", e * 2),
                "logical_id": format!("Resource{}", e / 2), "resource_type": "AWS::SNS::Topic",
                "status": if e % 2 == 0 { "CREATE_IN_PROGRESS" } else { "CREATE_COMPLETE" },
                "reason": null, "physical_id": format!("arn:aws:sns:eu-west-1:123456789012:t{stack}-{e}")},
                "done": e / 2, "total": 12})
        })
        .collect();
    json!({
        "template": format!("stacks/s{stack:03}/template.yaml"),
        "identity": {"account": "123456789012", "region": "eu-west-1", "name": format!("s{stack:03}")},
        "policy": {"verdict": if run.is_multiple_of(17) { "fail" } else { "pass" }, "outcomes": [
            {"policy": "open-ingress", "digest": "a".repeat(64), "verdict": "pass", "micros": 812, "findings": []},
            {"policy": "least-privilege-iam", "digest": "b".repeat(64), "verdict": "pass", "micros": 1405, "findings": [
                {"policy": "least-privilege-iam", "rule": "write-on-star", "severity": "warning",
                 "resource": "Role", "path": "/Resources/Role/Properties/Policies/0", "line": 31,
                 "message": "s3:PutObject on Resource \"*\"", "remediation": "name the bucket"}]}]},
        "changes": [{"action": "Modify", "logical_id": "Topic", "resource_type": "AWS::SNS::Topic", "replacement": "False"}],
        "outputs": {"TopicArn": "[redacted]"},
        "events": events,
    })
    .to_string()
}

fn fill(db: &Path, stacks: usize, runs: usize, sha: &str) {
    let mut c = rusqlite::Connection::open(db).expect("open the state file");
    c.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let tx = c.transaction().expect("transaction");
    {
        let mut job = tx
            .prepare(
                "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, state, phase,
                     detail, created_at, started_at, finished_at, attempts, fence)
                 VALUES ('deploy', ?1, ?2, ?3, ?4, NULL, 0, 'push', ?5, 'done', ?6, ?7, ?7, ?8, 1, 1)",
            )
            .expect("prepare");
        let base = 1_767_225_600_000i64;
        // Interleaved as pushes make them: each round touches every stack.
        for run in 0..runs {
            for s in 0..stacks {
                let stack = format!("s{s:03}");
                let state = match (run + s) % 23 {
                    0 => "failed",
                    _ => "succeeded",
                };
                let at = base + (run * stacks + s) as i64 * 1000;
                job.execute(rusqlite::params![
                    REPO,
                    stack,
                    sha,
                    format!("{REPO}#stack:{stack}"),
                    state,
                    detail(s, run),
                    at,
                    at + 45_000,
                ])
                .expect("insert a job");
            }
        }
        let mut ledger = tx
            .prepare(
                "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                 VALUES (?1, ?2, ?3, 0, ?4, ?2, 'eu-west-1', '123456789012')",
            )
            .expect("prepare");
        for s in 0..stacks {
            ledger
                .execute(rusqlite::params![REPO, format!("s{s:03}"), sha, base])
                .expect("insert a ledger line");
        }
    }
    tx.commit().expect("commit");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    format!("{cpu}, {cores} cores, {profile} profile")
}

struct Timings(Vec<f64>);

impl Timings {
    fn line(mut self, what: &str) -> String {
        self.0.sort_by(|a, b| a.total_cmp(b));
        format!(
            "{what:<44} p50 {:>8.2} ms  p99 {:>8.2} ms  (n = {})",
            percentile(&self.0, 0.5),
            percentile(&self.0, 0.99),
            self.0.len()
        )
    }
}

async fn time_get(router: &axum::Router, path: &str, n: usize, warmup: usize) -> Timings {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + warmup {
        let t = Instant::now();
        let resp = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(body.len() > 1000);
        if i >= warmup {
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Timings(out)
}

fn time_query(q: &dyn Console, n: usize) -> Timings {
    Timings(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let heads = q.lane_heads().expect("lane heads");
                assert!(!heads.is_empty());
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stacks = env_usize("CONSOLE_BENCH_STACKS", 500);
    let runs = env_usize("CONSOLE_BENCH_RUNS", 200);
    let n = env_usize("CONSOLE_BENCH_SAMPLES", 50);
    let warmup = 3;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let origin = tmp.path().join("origin");
    std::fs::create_dir_all(origin.join("stacks/s000")).expect("mkdir");
    std::fs::write(origin.join("stacks/s000/README"), "bench").expect("write");
    git(&origin, &["init", "-q", "-b", "main"]);
    git(&origin, &["add", "-A"]);
    git(
        &origin,
        &["commit", "-q", "-m", "the one commit every stack is at"],
    );
    let sha = git(&origin, &["rev-parse", "HEAD"]);
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).expect("mkdir state");
    // The policies compiled once, as the middle tests keep them.
    let cache = root.join("target/middle-policy-cache");
    std::fs::create_dir_all(&cache).expect("mkdir the policy cache");
    std::os::unix::fs::symlink(&cache, state.join("policy-cache")).expect("link the cache");
    let cfg_path = tmp.path().join("stackgate.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "listen = \"127.0.0.1:0\"\n[state]\npath = \"{}\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n[[repos]]\nname = \"{REPO}\"\nurl = \"{}\"\nbranch = \"main\"\n",
            state.join("stackgate.db").display(),
            origin.display()
        ),
    )
    .expect("write the config");
    let cfg = Config::load(Some(&cfg_path)).expect("config");
    let repo = cfg.repos[0].clone();
    let app = stackgate::app::build(cfg).await.expect("build the service");
    app.http.mirrors.fetch(&repo, None).await.expect("fetch");
    let t = Instant::now();
    fill(&state.join("stackgate.db"), stacks, runs, &sha);
    let size = std::fs::metadata(state.join("stackgate.db")).map_or(0, |m| m.len());
    println!("console bench: {}", machine());
    println!(
        "{stacks} stacks x {runs} runs = {} jobs, state file {} MiB, filled in {:.1} s",
        stacks * runs,
        size >> 20,
        t.elapsed().as_secs_f64()
    );
    let router = app.router();
    let queue = app.http.queue.clone();
    let stack_page = format!("/stacks/{REPO}/s000");
    let mut lines = vec![
        time_query(queue.as_ref(), n).line("lane_heads (the overview's query)"),
        time_get(&router, "/", n, warmup)
            .await
            .line("GET / (500 rows, rendered)"),
        time_get(&router, "/?state=failed&q=s01", n, warmup)
            .await
            .line("GET /?state=failed&q=s01"),
        time_get(&router, &stack_page, n, warmup)
            .await
            .line("GET /stacks/…/s000"),
    ];
    // The same after an index on (lane, id): what migration 3 could add.
    let c = rusqlite::Connection::open(state.join("stackgate.db")).expect("open");
    c.execute_batch("CREATE INDEX bench_jobs_lane_id ON jobs(lane, id); ANALYZE;")
        .expect("index");
    drop(c);
    lines.push("with an index on jobs(lane, id):".into());
    lines.push(time_query(queue.as_ref(), n).line("lane_heads (the overview's query)"));
    lines.push(
        time_get(&router, "/", n, warmup)
            .await
            .line("GET / (500 rows, rendered)"),
    );
    lines.push(
        time_get(&router, &stack_page, n, warmup)
            .await
            .line("GET /stacks/…/s000"),
    );
    for l in lines {
        println!("{l}");
    }
}
