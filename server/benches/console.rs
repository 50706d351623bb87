//! The console on a big state database: 500 stacks × 200 runs (100,000 jobs with
//! deploy-sized details) and one run with 1,000 stack events, in SQLite and in PostgreSQL,
//! each page fetched through the router as a browser gets it. See `benches/README.md`.
//!
//! ```text
//! cargo bench -p stackgate --bench console --profile dev
//! ```
//!
//! It prints p50/p99 of `/`, of a filtered `/`, of a stack page, of the one query behind
//! `/` (the newest job of each lane), and of the big run's page and its JSON, on the schema
//! as the migrations make it; then, for comparison, on SQLite the overview's rows again
//! after `DROP INDEX jobs_lane_id`, on PostgreSQL the `GROUP BY` query `lane_heads` used
//! before it walked that index lane by lane. PostgreSQL: a throwaway cluster of
//! `deploy/local/postgres.sh` on `CONSOLE_BENCH_PG_PORT` (5590), started and stopped here,
//! or the cluster at `STACKGATE_BENCH_POSTGRES_URL`, on which a database of the bench's own
//! is made and dropped. `CONSOLE_BENCH_BACKENDS=sqlite` (or `postgres`) runs one of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use stackgate::config::Config;
use stackgate::domain::JobId;
use stackgate::queue::Queue;
use tower::ServiceExt;

const REPO: &str = "bench/console";
/// The stack events of the big run, and the resources they are about.
const RUN_EVENTS: usize = 1000;
const RUN_RESOURCES: usize = 150;
/// 2026-01-01T00:00:00Z, in ms.
const BASE: i64 = 1_767_225_600_000;

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

/// The big run's detail: an update of ~150 resources that took 25 minutes, told by 1,000
/// stack events (each resource in progress and done, several times over, as nested stacks
/// and replacements make them) with a few notes between, a policy report with findings,
/// a change set of every resource, and outputs.
fn big_detail(stack: usize) -> String {
    const TYPES: [&str; 6] = [
        "AWS::EC2::SecurityGroup",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::CloudFormation::Stack",
    ];
    let span_ms = 25 * 60 * 1000;
    let mut events = Vec::with_capacity(RUN_EVENTS + 4);
    for e in 0..RUN_EVENTS {
        let done = (e * RUN_RESOURCES / RUN_EVENTS).min(RUN_RESOURCES);
        // The stack itself first and last; resources in turn between, each one's events in
        // pairs (in progress, then complete or, for a few, failed and updated again).
        let (logical_id, rtype, status, reason) = if e == 0 || e == RUN_EVENTS - 1 {
            let s = if e == 0 {
                "UPDATE_IN_PROGRESS"
            } else {
                "UPDATE_COMPLETE"
            };
            (
                format!("s{stack:03}"),
                "AWS::CloudFormation::Stack",
                s,
                Some("User Initiated"),
            )
        } else {
            let i = e - 1;
            let r = (i / 2) % RUN_RESOURCES;
            let second = i % 2 == 1;
            let status = match (second, r % 37 == 5 && i < 2 * RUN_RESOURCES) {
                (false, _) => "UPDATE_IN_PROGRESS",
                (true, true) => "UPDATE_FAILED",
                (true, false) => "UPDATE_COMPLETE",
            };
            (
                format!("Resource{r:03}WithALongishLogicalIdForTheLabel"),
                TYPES[r % TYPES.len()],
                status,
                (status == "UPDATE_FAILED").then_some("Resource handler returned message: \"Rate exceeded (Service: Lambda, Status Code: 429)\""),
            )
        };
        let at = BASE + (e as i64 * span_ms) / RUN_EVENTS as i64;
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(at as i128 * 1_000_000)
            .expect("a time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format a time");
        events.push(json!({"event": {"id": format!("ev-big-{e}"), "timestamp": ts,
            "logical_id": logical_id, "resource_type": rtype, "status": status, "reason": reason,
            "physical_id": format!("arn:aws:cloudformation:eu-west-1:123456789012:thing/{logical_id}/{e}")},
            "done": done, "total": RUN_RESOURCES}));
        if e % 250 == 125 {
            events.push(json!({"note": format!("{e} events so far; waiting for CloudFormation")}));
        }
    }
    let findings: Vec<_> = (0..12)
        .map(|f| json!({"policy": "least-privilege-iam", "rule": "write-on-star", "severity": if f % 3 == 0 { "error" } else { "warning" },
            "resource": format!("Resource{:03}WithALongishLogicalIdForTheLabel", f * 12), "path": format!("/Resources/Resource{:03}/Properties/Policies/0", f * 12),
            "line": 31 + f * 20, "message": "s3:PutObject on Resource \"*\"", "remediation": "name the bucket"}))
        .collect();
    let changes: Vec<_> = (0..RUN_RESOURCES)
        .map(|r| json!({"action": if r % 10 == 0 { "Add" } else { "Modify" },
            "logical_id": format!("Resource{r:03}WithALongishLogicalIdForTheLabel"), "resource_type": TYPES[r % TYPES.len()],
            "replacement": if r % 7 == 0 { "True" } else { "False" }}))
        .collect();
    json!({
        "template": format!("stacks/s{stack:03}/template.yaml"),
        "identity": {"account": "123456789012", "region": "eu-west-1", "name": format!("s{stack:03}")},
        "policy": {"verdict": "fail", "outcomes": [
            {"policy": "open-ingress", "digest": "a".repeat(64), "verdict": "pass", "micros": 812, "findings": []},
            {"policy": "least-privilege-iam", "digest": "b".repeat(64), "verdict": "fail", "micros": 1405, "findings": findings}]},
        "changes": changes,
        "outputs": {"TopicArn": "[redacted]", "QueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/q"},
        "events": events,
    })
    .to_string()
}

/// The state of the `n`th job of the fill (interleaved as pushes make them: each round
/// touches every stack), and its times.
fn job_of(stacks: usize, run: usize, s: usize) -> (&'static str, i64, i64) {
    let state = match (run + s) % 23 {
        0 => "failed",
        _ => "succeeded",
    };
    let at = BASE + (run * stacks + s) as i64 * 1000;
    (state, at, at + 45_000)
}

fn stack_name(s: usize) -> String {
    format!("s{s:03}")
}

fn lane(stack: &str) -> String {
    format!("{REPO}#stack:{stack}")
}

/// Fills the SQLite file; the id of the big run, the newest job of stack s000's lane.
fn fill_sqlite(db: &Path, stacks: usize, runs: usize, sha: &str) -> JobId {
    let mut c = rusqlite::Connection::open(db).expect("open the state file");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let tx = c.transaction().expect("transaction");
    let big;
    {
        let mut job = tx
            .prepare(
                "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, state, phase,
                     detail, created_at, started_at, finished_at, attempts, fence)
                 VALUES ('deploy', ?1, ?2, ?3, ?4, NULL, 0, 'push', ?5, 'done', ?6, ?7, ?7, ?8, 1, 1)",
            )
            .expect("prepare");
        for run in 0..runs {
            for s in 0..stacks {
                let stack = stack_name(s);
                let (state, at, end) = job_of(stacks, run, s);
                job.execute(rusqlite::params![
                    REPO,
                    stack,
                    sha,
                    lane(&stack),
                    state,
                    detail(s, run),
                    at,
                    end,
                ])
                .expect("insert a job");
            }
        }
        let at = BASE + (runs * stacks) as i64 * 1000;
        let stack = stack_name(0);
        job.execute(rusqlite::params![
            REPO,
            stack,
            sha,
            lane(&stack),
            "succeeded",
            big_detail(0),
            at,
            at + 25 * 60 * 1000,
        ])
        .expect("insert the big run");
        big = JobId(tx.last_insert_rowid());
        let mut ledger = tx
            .prepare(
                "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
                 VALUES (?1, ?2, ?3, 0, ?4, ?2, 'eu-west-1', '123456789012')",
            )
            .expect("prepare");
        for s in 0..stacks {
            ledger
                .execute(rusqlite::params![REPO, stack_name(s), sha, BASE])
                .expect("insert a ledger line");
        }
    }
    tx.commit().expect("commit");
    c.execute_batch("ANALYZE").expect("analyze");
    big
}

/// Fills the PostgreSQL database the same way, one multi-row INSERT (arrays, `unnest`) per
/// round of pushes, in one transaction; then `VACUUM ANALYZE`, as autovacuum would have
/// done to a database that grew over months. The id of the big run.
async fn fill_postgres(url: &str, stacks: usize, runs: usize, sha: &str) -> JobId {
    let (mut c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the bench database: {e}"));
    let conn = tokio::spawn(conn);
    let tx = c.transaction().await.expect("transaction");
    let insert = tx
        .prepare(
            "INSERT INTO jobs (kind, repo, stack, sha, lane, pr, fork, trigger, state, phase,
                 detail, created_at, started_at, finished_at, attempts, fence)
             SELECT 'deploy', $1, stack, $2, lane, NULL, false, 'push', state, 'done',
                 detail::jsonb, at, at, done, 1, 1
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
                 AS r(stack, lane, state, detail, at, done)
             RETURNING id",
        )
        .await
        .expect("prepare");
    let mut big = None;
    for run in 0..=runs {
        // One round's columns: (stack, state, detail, created, finished) of each job.
        let jobs: Vec<(usize, &str, String, i64, i64)> = if run < runs {
            (0..stacks)
                .map(|s| {
                    let (state, at, done) = job_of(stacks, run, s);
                    (s, state, detail(s, run), at, done)
                })
                .collect()
        } else {
            let at = BASE + (runs * stacks) as i64 * 1000;
            vec![(0, "succeeded", big_detail(0), at, at + 25 * 60 * 1000)]
        };
        let stack: Vec<String> = jobs.iter().map(|j| stack_name(j.0)).collect();
        let lanes: Vec<String> = stack.iter().map(|s| lane(s)).collect();
        let state: Vec<&str> = jobs.iter().map(|j| j.1).collect();
        let at: Vec<i64> = jobs.iter().map(|j| j.3).collect();
        let done: Vec<i64> = jobs.iter().map(|j| j.4).collect();
        let details: Vec<String> = jobs.into_iter().map(|j| j.2).collect();
        let ids = tx
            .query(
                &insert,
                &[&REPO, &sha, &stack, &lanes, &state, &details, &at, &done],
            )
            .await
            .expect("insert a round of jobs");
        if run == runs {
            big = Some(JobId(ids[0].get(0)));
        }
    }
    for s in 0..stacks {
        tx.execute(
            "INSERT INTO deployed (repo, stack, sha, removed, at, stack_name, region, account)
             VALUES ($1, $2, $3, false, $4, $2, 'eu-west-1', '123456789012')",
            &[&REPO, &stack_name(s), &sha, &BASE],
        )
        .await
        .expect("insert a ledger line");
    }
    tx.commit().await.expect("commit");
    // One statement each: several in one string are one transaction, which VACUUM refuses.
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        c.batch_execute(sql).await.expect(sql);
    }
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    big.expect("the big run")
}

/// Runs `sql` on the database at `url`, on a connection of its own.
async fn pg_exec(url: &str, sql: &str) -> Vec<tokio_postgres::SimpleQueryMessage> {
    let (c, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer from PostgreSQL in 10 s"))
    .unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"));
    let conn = tokio::spawn(conn);
    let out = tokio::time::timeout(Duration::from_secs(300), c.simple_query(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: no answer in 300 s"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    out
}

async fn pg_value(url: &str, sql: &str) -> String {
    pg_exec(url, sql)
        .await
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

/// A PostgreSQL cluster for the bench: `deploy/local/postgres.sh`'s on a port of the
/// bench's range, stopped (and its folder removed) when dropped; or one given by URL,
/// left running. Either way, a database of the bench's own, dropped at the end.
struct Cluster {
    admin: String,
    url: String,
    db: String,
    port: Option<String>,
    script: PathBuf,
}

impl Cluster {
    async fn start(root: &Path) -> Cluster {
        let script = root.join("deploy/local/postgres.sh");
        let (admin, port) = match std::env::var("STACKGATE_BENCH_POSTGRES_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let port = env_usize("CONSOLE_BENCH_PG_PORT", 5590);
                assert!(
                    (5590..=5599).contains(&port),
                    "CONSOLE_BENCH_PG_PORT: the bench's ports are 5590-5599"
                );
                let port = port.to_string();
                let out = Command::new("timeout")
                    .args(["120", "bash"])
                    .arg(&script)
                    .args(["start", &port])
                    .output()
                    .expect("run deploy/local/postgres.sh");
                assert!(
                    out.status.success(),
                    "PostgreSQL did not start on {port}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let url = Command::new("bash")
                    .arg(&script)
                    .args(["url", &port])
                    .output()
                    .expect("run deploy/local/postgres.sh url");
                let url = String::from_utf8_lossy(&url.stdout).trim().to_string();
                (url, Some(port))
            }
        };
        let db = format!("sg_console_bench_{}", std::process::id());
        pg_exec(&admin, &format!("CREATE DATABASE {db}")).await;
        let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
        url.set_path(&format!("/{db}"));
        Cluster {
            admin,
            url: url.to_string(),
            db,
            port,
            script,
        }
    }

    async fn stop(self) {
        pg_exec(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
        )
        .await;
    }
}

/// The cluster started here is stopped however the bench ends, a panic included.
impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(port) = &self.port {
            let _ = Command::new("timeout")
                .args(["120", "bash"])
                .arg(&self.script)
                .args(["stop", port])
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
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
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    format!("{cpu}, {cores} cores (load {load} at start), {profile} profile")
}

struct Timings(Vec<f64>);

impl Timings {
    fn line(mut self, what: &str) -> String {
        self.0.sort_by(|a, b| a.total_cmp(b));
        format!(
            "{what:<48} p50 {:>8.2} ms  p99 {:>8.2} ms  (n = {})",
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
        let resp = tokio::time::timeout(
            Duration::from_secs(60),
            router
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("request")),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer in 60 s"))
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

/// `f` `n` times, after one warm-up.
fn time(n: usize, mut f: impl FnMut()) -> Timings {
    f();
    Timings(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// `lane_heads`, checked first: one head per stack, the big run the head of `s000`.
fn time_heads(q: &dyn Queue, n: usize, stacks: usize, big: JobId) -> Timings {
    let heads = q.lane_heads().expect("lane heads");
    assert_eq!(heads.len(), stacks, "one head per stack");
    assert_eq!(heads[0].id, big, "s000's newest run");
    time(n, || {
        assert_eq!(q.lane_heads().expect("lane heads").len(), stacks);
    })
}

/// A service on its own state folder (SQLite there, or PostgreSQL at `url`), its mirror of
/// the origin fetched.
async fn service(tmp: &Path, name: &str, origin: &Path, url: Option<&str>) -> stackgate::app::App {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let state = tmp.join(name);
    std::fs::create_dir_all(&state).expect("mkdir state");
    // The policies compiled once, as the middle tests keep them.
    let cache = root.join("target/middle-policy-cache");
    std::fs::create_dir_all(&cache).expect("mkdir the policy cache");
    std::os::unix::fs::symlink(&cache, state.join("policy-cache")).expect("link the cache");
    let cfg_path = tmp.join(format!("{name}.toml"));
    let url = url.map_or(String::new(), |u| format!("url = \"{u}\"\n"));
    std::fs::write(
        &cfg_path,
        format!(
            "listen = \"127.0.0.1:0\"\n[state]\npath = \"{}\"\n{url}[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n[[repos]]\nname = \"{REPO}\"\nurl = \"{}\"\nbranch = \"main\"\n",
            state.join("stackgate.db").display(),
            origin.display()
        ),
    )
    .expect("write the config");
    let cfg = Config::load(Some(&cfg_path)).expect("config");
    let repo = cfg.repos[0].clone();
    let app = stackgate::app::build(cfg).await.expect("build the service");
    app.http.mirrors.fetch(&repo, None).await.expect("fetch");
    app
}

/// The rows every backend gets: the overview, a filtered overview, a stack page, and the
/// big run's page, its JSON, and their parts (the query; building and rendering).
async fn rows(
    app: &stackgate::app::App,
    big: JobId,
    stacks: usize,
    n: usize,
    warmup: usize,
) -> Vec<String> {
    let router = app.router();
    let queue = app.http.queue.clone();
    let stack_page = format!("/stacks/{REPO}/s000");
    let mut lines = vec![
        time_heads(queue.as_ref(), n, stacks, big).line("lane_heads (the overview's query)"),
        time(n, || {
            queue.ledger_lines().expect("ledger");
            queue.lane_heads().expect("lane heads");
            queue.recent_jobs(20).expect("recent jobs");
            queue.drifts().expect("drifts");
        })
        .line("the overview's 4 queries (lane_heads and all)"),
        time_get(&router, "/api/v1/stacks", n, warmup)
            .await
            .line("GET /api/v1/stacks (the overview's JSON)"),
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
    let job = queue
        .job(big)
        .expect("read the big run")
        .expect("the big run");
    let events = job.detail["events"].as_array().map_or(0, Vec::len);
    lines.push(format!(
        "run {big}: {events} lines of log, detail {} KiB:",
        job.detail.to_string().len() >> 10
    ));
    lines.push(
        time(n, || {
            queue.job(big).expect("job").expect("a job");
        })
        .line("  job(id) (the run page's query)"),
    );
    lines.push(
        time(n, || {
            let page = stackgate::report::console::run::build(&job, None, BASE);
            assert!(page.timeline.is_some());
        })
        .line("  run::build (the view model, timeline)"),
    );
    lines.push(
        time(n, || {
            assert!(
                stackgate::report::console::run::html(&job)
                    .expect("render")
                    .len()
                    > 1000
            );
        })
        .line("  run::html (build + render)"),
    );
    lines.push(
        time_get(&router, &format!("/runs/{big}"), n, warmup)
            .await
            .line("  GET /runs/{id} (HTML, SVG timeline)"),
    );
    lines.push(
        time_get(&router, &format!("/api/v1/runs/{big}"), n, warmup)
            .await
            .line("  GET /api/v1/runs/{id} (JSON)"),
    );
    lines
}

/// The overview's rows again without the index of migration 3.
async fn rows_without_index(
    app: &stackgate::app::App,
    big: JobId,
    stacks: usize,
    n: usize,
    warmup: usize,
) -> Vec<String> {
    let router = app.router();
    let queue = app.http.queue.clone();
    vec![
        "without the index jobs_lane_id (dropped for comparison):".into(),
        time_heads(queue.as_ref(), n, stacks, big).line("lane_heads (the overview's query)"),
        time_get(&router, "/", n, warmup)
            .await
            .line("GET / (500 rows, rendered)"),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stacks = env_usize("CONSOLE_BENCH_STACKS", 500);
    let runs = env_usize("CONSOLE_BENCH_RUNS", 200);
    let n = env_usize("CONSOLE_BENCH_SAMPLES", 50);
    let backends = std::env::var("CONSOLE_BENCH_BACKENDS").unwrap_or("sqlite,postgres".into());
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
    println!("console bench: {}", machine());
    println!(
        "{stacks} stacks x {runs} runs = {} jobs, and one run of {RUN_EVENTS} stack events over {RUN_RESOURCES} resources",
        stacks * runs
    );

    if backends.contains("sqlite") {
        let app = service(tmp.path(), "sqlite", &origin, None).await;
        let db = tmp.path().join("sqlite/stackgate.db");
        let t = Instant::now();
        let big = fill_sqlite(&db, stacks, runs, &sha);
        let size = std::fs::metadata(&db).map_or(0, |m| m.len());
        println!(
            "SQLite: state file {} MiB, filled in {:.1} s; the schema as the migrations make it:",
            size >> 20,
            t.elapsed().as_secs_f64()
        );
        for l in rows(&app, big, stacks, n, warmup).await {
            println!("{l}");
        }
        let c = rusqlite::Connection::open(&db).expect("open");
        c.execute_batch("DROP INDEX jobs_lane_id; ANALYZE;")
            .expect("drop the index");
        drop(c);
        for l in rows_without_index(&app, big, stacks, n, warmup).await {
            println!("{l}");
        }
        drop(app);
        let _ = std::fs::remove_dir_all(tmp.path().join("sqlite"));
    }

    if backends.contains("postgres") {
        let cluster = Cluster::start(&root).await;
        let version = pg_value(&cluster.url, "SHOW server_version").await;
        let app = service(tmp.path(), "postgres", &origin, Some(&cluster.url)).await;
        let t = Instant::now();
        let big = fill_postgres(&cluster.url, stacks, runs, &sha).await;
        let size = pg_value(&cluster.url, "SELECT pg_database_size(current_database())").await;
        println!(
            "PostgreSQL {version}: database {} MiB, filled in {:.1} s; the schema as the migrations make it:",
            size.parse::<u64>().unwrap_or(0) >> 20,
            t.elapsed().as_secs_f64()
        );
        for l in rows(&app, big, stacks, n, warmup).await {
            println!("{l}");
        }
        // lane_heads walks jobs_lane_id from lane to lane: without the index (which
        // migration 3 makes) every step would read the table, so no row without it here;
        // instead the query it replaced, on the same database.
        let (c, conn) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let conn = tokio::spawn(conn);
        let mut samples = Vec::with_capacity(n);
        for i in 0..=n {
            let t = Instant::now();
            let rows = tokio::time::timeout(
                Duration::from_secs(60),
                c.query(
                    "SELECT id, kind, repo, stack, sha, pr, trigger, state, phase, created_at,
                         started_at, finished_at, detail #>> '{policy,verdict}',
                         detail #>> '{identity,account}', detail #>> '{identity,region}',
                         detail #>> '{identity,name}'
                     FROM jobs WHERE id IN (SELECT MAX(id) FROM jobs GROUP BY lane)
                         AND kind = 'deploy' AND stack IS NOT NULL AND state <> 'superseded'
                     ORDER BY repo, stack",
                    &[],
                ),
            )
            .await
            .expect("an answer in 60 s")
            .expect("the GROUP BY query");
            assert_eq!(rows.len(), stacks);
            if i > 0 {
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        println!(
            "{}",
            Timings(samples).line("MAX(id) … GROUP BY lane (the query before)")
        );
        drop(c);
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        drop(app);
        cluster.stop().await;
    }
}
