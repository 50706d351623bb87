//! The end-to-end pull-request dry run (issue 12 §5): from the signed `pull_request`
//! webhook to the last commit status and the PR comment, against the emulator, next to a
//! boto3 script (`pr_dry_run_calls.py`) making the same CloudFormation, SSM and S3 calls.
//! See `benches/README.md`; writes `results/pr_dry_run.md`.
//!
//! ```text
//! cargo bench -p stackgate --bench pr_dry_run --profile dev   # or release
//! ```
//!
//! A real git repository holding `stacks/hybrid-alb`, the GitHub stand-in, a real
//! `stackgate serve` (tests/support/service.rs, `[aws] poll_seconds = 0.1`), and the
//! emulator (`STACKGATE_TEST_AWS_ENDPOINT`, else its own on `PR_BENCH_EMULATOR_PORT`, 4651,
//! stopped at the end). One push deploys the stack (setup, not timed). Then one recorded
//! pull request and one recorded script run (moto's recorder, not timed) give both call
//! lists, which must match; then `PR_BENCH_RUNS` (10) timed pairs, stackgate then the
//! script. Each pull request is a branch off main whose deployment file changes the
//! `InstanceType` parameter, so a real change set (Modify Instance) is computed; its
//! `opened` webhook is GitHub's example payload.
//!
//! Knobs (environment): `PR_BENCH_RUNS` (10), `PR_BENCH_POLL_MS` (25: how often the
//! stand-in's requests are read, the resolution of stackgate's times),
//! `PR_BENCH_SERVE_LOG` (serve's `STACKGATE_LOG`), `PR_BENCH_EMULATOR_PORT` (4651).

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";
const FOLDER: &str = "hybrid-alb";
const PLAN: &str = "stackgate/plan/hybrid-alb";
const POLICY: &str = "stackgate/policy";

/// One HTTP/1.1 request on a fresh connection (no curl process: the poll stays cheap and
/// the webhook's clock starts at the socket): status and body.
fn raw_http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        code,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// moto's recorder (`/moto-api/recorder/...`): every request the emulator serves between
/// start and stop. Its file is wherever the emulator was told (`MOTO_RECORDER_FILEPATH`).
fn recorder(what: &str) -> String {
    let method = if what == "download-recording" {
        "GET"
    } else {
        "POST"
    };
    let (code, body) = raw_http(
        &aws_endpoint(),
        method,
        &format!("/moto-api/recorder/{what}"),
        &[],
        b"",
    );
    assert_eq!(code, 200, "moto recorder {what}: {body}");
    body
}

/// The recorded calls, named by the script: (operations, CreateChangeSet's form, artifact).
fn recorded(label: &str, between: impl FnOnce()) -> Value {
    recorder("reset-recording");
    recorder("start-recording");
    between();
    recorder("stop-recording");
    let text = recorder("download-recording");
    // Kept for reading: every request with its headers and body.
    let file = std::env::temp_dir().join(format!("pr_dry_run-{label}-calls.jsonl"));
    std::fs::write(&file, text).expect("write the recording");
    let out = Command::new(python())
        .arg(root().join("server/benches/pr_dry_run_calls.py"))
        .arg("--name-ops")
        .arg(&file)
        .output()
        .expect("pr_dry_run_calls.py --name-ops");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the named recording")
}

/// The stand-in's requests, read from a cursor: what is new since the last look.
struct Watch<'a> {
    gh: &'a StandIn,
    seq: u64,
}

impl Watch<'_> {
    fn new_requests(&mut self) -> Vec<Value> {
        let (_, body) = raw_http(
            &self.gh.url,
            "GET",
            &format!("/_standin/requests?since={}", self.seq),
            &[],
            b"",
        );
        let v: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        if let Some(s) = v.iter().filter_map(|r| r["seq"].as_u64()).max() {
            self.seq = self.seq.max(s);
        }
        v
    }
}

/// One pull request's dry run, timed from the webhook's send until the stand-in holds the
/// head's comment and the final (not pending) policy and plan statuses.
struct PrRun {
    seconds: f64,
    /// When the comment was seen, from the send.
    comment_s: f64,
    plan: String,
}

fn pull_request(
    server: &Server,
    repo: &GitRepo,
    watch: &mut Watch<'_>,
    i: u64,
    poll: Duration,
) -> PrRun {
    let branch = format!("bench-{i}");
    repo.git(&["checkout", "-q", "-B", &branch, "main"]);
    let dep = repo.dir.join(format!("stacks/{FOLDER}/deployment.yaml"));
    let text = std::fs::read_to_string(&dep).expect("deployment.yaml");
    let changed = text.replace(
        "InstanceType: t3.micro\n",
        &format!("InstanceType: {}\n", instance_type(i)),
    );
    assert_ne!(text, changed, "the deployment file's InstanceType");
    std::fs::write(&dep, changed).expect("write deployment.yaml");
    let head = repo.commit(&format!(
        "pull request {i}: InstanceType {}",
        instance_type(i)
    ));
    let number = 100 + i;
    repo.set_pull_head(number, &head);
    repo.git(&["checkout", "-q", "main"]);
    watch.new_requests();

    let body = pr_payload("opened", number, &head, &branch, false);
    let headers = [
        ("Content-Type", "application/json".to_string()),
        ("X-GitHub-Event", "pull_request".to_string()),
        ("X-GitHub-Delivery", delivery_id()),
        ("User-Agent", "GitHub-Hookshot/bench".to_string()),
        (
            "X-Hub-Signature-256",
            stackgate::intake::signature::sign(HOOK_SECRET.as_bytes(), &body),
        ),
    ];
    let t0 = Instant::now();
    let (code, answer) = raw_http(&server.url, "POST", "/webhooks/github", &headers, &body);
    assert_eq!(code, 202, "the pull_request webhook: {answer}");
    let (mut comment, mut policy, mut plan) = (None, None, None::<(f64, String)>);
    let deadline = t0 + Duration::from_secs(180);
    loop {
        let now = t0.elapsed().as_secs_f64();
        for r in watch.new_requests() {
            let ok = r["status"].as_u64().is_some_and(|s| s < 300);
            let op = r["operation"].as_str().unwrap_or("");
            if ok
                && (op == "issues/create-comment" || op == "issues/update-comment")
                && r["body"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(&head[..7]))
            {
                comment.get_or_insert(now);
            }
            if ok && op == "repos/create-commit-status" && r["path_params"]["sha"] == head.as_str()
            {
                let state = r["body"]["state"].as_str().unwrap_or("");
                let description = r["body"]["description"].as_str().unwrap_or("").to_string();
                if state != "pending" {
                    match r["body"]["context"].as_str() {
                        Some(POLICY) => policy = Some(now),
                        Some(PLAN) => plan = Some((now, format!("{state}: {description}"))),
                        _ => {}
                    }
                }
            }
        }
        if let (Some(c), Some(p), Some((s, said))) = (comment, policy, &plan) {
            assert!(
                said.starts_with("success")
                    && said.contains("change(s)")
                    && !said.contains(" 0 change"),
                "plan: {said}"
            );
            return PrRun {
                seconds: c.max(p).max(*s),
                comment_s: c,
                plan: said.clone(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "pull request {i}: no comment and final statuses within 180 s (comment {comment:?}, \
             policy {policy:?}, plan {plan:?}); log {}",
            server.log.display()
        );
        std::thread::sleep(poll);
    }
}

/// Pull request `i`'s instance type (main has t3.micro): a real change, to the instance.
fn instance_type(i: u64) -> &'static str {
    ["t3.small", "t3.medium", "t3.large"][(i % 3) as usize]
}

/// The boto3 script, one process serving every run.
struct Script {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Script {
    fn start(poll_seconds: f64) -> Self {
        let mut child = Command::new(python())
            .arg(root().join("server/benches/pr_dry_run_calls.py"))
            .args(["--endpoint", &aws_endpoint(), "--region", "us-east-1"])
            .args(["--poll", &poll_seconds.to_string()])
            .envs(AWS_ENV.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pr_dry_run_calls.py");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the script's ready line");
        assert!(line.contains("ready"), "pr_dry_run_calls.py: {line}");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// One run: (seconds as timed from here, operations, changes listed).
    fn run(&mut self, job: &Value) -> (f64, Vec<String>, u64) {
        let t0 = Instant::now();
        writeln!(self.stdin, "{job}").expect("to the script");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("from the script");
        let seconds = t0.elapsed().as_secs_f64();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("pr_dry_run_calls.py answered {line:?}: {e}"));
        let ops = v["ops"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        (seconds, ops, v["changes"].as_u64().unwrap_or(0))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The script's job for run `i` of commit `head`: the change set stackgate asked for
/// (recorded), with this run's tag and commit.
fn script_job(stack: &str, template: &str, recorded: &Value, i: u64, head: &str) -> Value {
    let cs = &recorded["change_set"];
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default().into_iter();
    let tags: Vec<Value> = list(&cs["tags"])
        .map(|t| match t[0].as_str() {
            Some("stackgate:sha") => json!(["stackgate:sha", head]),
            _ => t,
        })
        .collect();
    let parameters: Vec<Value> = list(&cs["parameters"])
        .map(|p| match p[0].as_str() {
            Some("InstanceType") => json!(["InstanceType", instance_type(i)]),
            _ => p,
        })
        .collect();
    json!({
        "stack": stack,
        "template": template,
        "parameters": parameters,
        "tags": tags,
        "capabilities": cs["capabilities"],
        "bucket": recorded["artifact"]["bucket"],
        "key": recorded["artifact"]["key"],
        "change_set_name": format!("boto3-{}-{i}", &head[..12]),
        "sha": head,
        "ssm": recorded["ssm"],
        "ssm_keys": ssm_keys(template),
    })
}

/// The template's SSM-typed parameters (`Type: AWS::SSM::Parameter::Value<...>`): the
/// review looks their live values up too.
fn ssm_keys(template: &str) -> Vec<String> {
    let lines: Vec<&str> = template.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[1].trim().starts_with("Type: AWS::SSM::Parameter::Value<"))
        .filter_map(|w| w[0].trim().strip_suffix(':').map(str::to_string))
        .collect()
}

/// Counts per operation, in first-seen order.
fn counts(ops: &[String]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for o in ops {
        match out.iter_mut().find(|(n, _)| n == o) {
            Some(e) => e.1 += 1,
            None => out.push((o.clone(), 1)),
        }
    }
    out
}

/// The sequence with repeated DescribeChangeSet polls folded into one: how many polls a
/// change set takes depends on when the emulator finishes it, not on the caller.
fn folded(ops: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in ops {
        if o == "DescribeChangeSet" && out.last() == Some(o) {
            continue;
        }
        out.push(o.clone());
    }
    out
}

fn stats(v: &[f64]) -> [f64; 4] {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    [
        percentile(&s, 0.5),
        percentile(&s, 0.9),
        s.first().copied().unwrap_or(f64::NAN),
        s.last().copied().unwrap_or(f64::NAN),
    ]
}

fn main() {
    let runs = env_num("PR_BENCH_RUNS", 10);
    let poll = Duration::from_millis(env_num("PR_BENCH_POLL_MS", 25));
    let (_, _, _, load_start) = machine();
    // moto's recorder writes where it is told; the bench reads it over HTTP.
    let recording = std::env::temp_dir().join("pr_dry_run-moto-recording.jsonl");
    let emulator = Emulator::get(
        "PR_BENCH_EMULATOR_PORT",
        "4651",
        &[("MOTO_RECORDER_FILEPATH", recording.display().to_string())],
    );
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let stack = unique("prbench");
    repo.add_stack_copy(FOLDER, &root().join("stacks/hybrid-alb"), &stack);
    let base = repo.commit("the hybrid ALB stack");
    // PR_BENCH_SERVE_LOG: serve's STACKGATE_LOG, e.g. with `aws_smithy_runtime=debug` to
    // see each AWS call's start and end in serve's log (it slows serve down a little).
    let env = std::env::var("PR_BENCH_SERVE_LOG")
        .map(|f| vec![("STACKGATE_LOG", f)])
        .unwrap_or_default();
    let server = Server::start_opts(
        &repo,
        &gh,
        Opts {
            env,
            ..Opts::default()
        },
    );
    let config = std::fs::read_to_string(&server.config).expect("config");
    let poll_seconds: f64 = config
        .lines()
        .find_map(|l| l.strip_prefix("poll_seconds = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("[aws] poll_seconds in the config");

    // Setup: one push deploys the stack on main.
    let setup = Instant::now();
    let (code, body) = server.push(ZERO, &base, &[&format!("stacks/{FOLDER}/template.yaml")]);
    assert_eq!(code, 202, "the push: {body}");
    let deployed = wait_for(300, "the deploy of hybrid-alb", || {
        final_state(&gh.statuses(&base), &format!("stackgate/{FOLDER}"))
    });
    assert_eq!(
        deployed.0,
        "success",
        "{deployed:?}; log {}",
        server.log.display()
    );
    let setup_s = setup.elapsed().as_secs_f64();
    eprintln!("setup: hybrid-alb deployed in {setup_s:.1} s");

    let mut watch = Watch { gh: &gh, seq: 0 };
    let template = std::fs::read_to_string(repo.dir.join(format!("stacks/{FOLDER}/template.yaml")))
        .expect("template.yaml");
    let mut script = Script::start(poll_seconds);

    // The call lists: one recorded pull request, one recorded script run (neither timed).
    let mut warm = None;
    let sg = recorded("stackgate", || {
        warm = Some(pull_request(&server, &repo, &mut watch, 0, poll))
    });
    let warm = warm.expect("the recorded run");
    assert!(
        sg["change_set"].is_object(),
        "no CreateChangeSet recorded: {sg}"
    );
    assert!(
        sg["artifact"].is_object(),
        "no artifact HeadObject recorded: {sg}"
    );
    assert_eq!(sg["change_set"]["type"], "UPDATE", "{sg}");
    let head0 = repo.git(&["rev-parse", "refs/pull/100/head"]);
    let job0 = script_job(&stack, &template, &sg, 0, &head0);
    let mut script_ops = Vec::new();
    let mut script_changes = 0;
    let py = recorded("boto3", || {
        (_, script_ops, script_changes) = script.run(&job0)
    });
    assert!(
        warm.plan.contains(&format!(" {script_changes} change(s)")),
        "the script's change set lists {script_changes} change(s), stackgate's: {}",
        warm.plan
    );
    let names = |v: &Value| -> Vec<String> {
        v["ops"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (sg_ops, py_ops) = (names(&sg), names(&py));
    assert_eq!(
        py_ops, script_ops,
        "the script's own list and the emulator's recording"
    );
    let same = folded(&sg_ops) == folded(&py_ops);
    eprintln!("stackgate: {sg_ops:?}\nscript:    {py_ops:?}\nsame sequence (polls folded): {same}");
    assert!(
        same,
        "the script does not make stackgate's calls:\n{sg_ops:?}\n{py_ops:?}"
    );

    // Timed: stackgate, script, stackgate, script, ...
    let (mut a, mut b, mut comment_at, mut polls) = (vec![], vec![], vec![], vec![]);
    let mut plan = String::new();
    for i in 1..=runs {
        let r = pull_request(&server, &repo, &mut watch, i, poll);
        let head = repo.git(&["rev-parse", &format!("refs/pull/{}/head", 100 + i)]);
        let (s, ops, changes) = script.run(&script_job(&stack, &template, &sg, i, &head));
        assert!(
            r.plan.contains(&format!("{changes} change(s)")),
            "run {i}: the script's change set lists {changes} change(s), stackgate's: {}",
            r.plan
        );
        eprintln!(
            "run {i}: stackgate {:.3} s (comment at {:.3} s; {}), script {s:.3} s",
            r.seconds, r.comment_s, r.plan
        );
        polls.push(ops.iter().filter(|o| *o == "DescribeChangeSet").count());
        a.push(r.seconds);
        b.push(s);
        comment_at.push(r.comment_s);
        plan = r.plan;
    }
    let (sa, sb) = (stats(&a), stats(&b));
    let ratio = sa[0] / sb[0];
    let met = ratio <= 1.5;

    // Where stackgate's time goes: the job rows (created → started → finished) of the
    // timed previews, from the state file.
    let db = rusqlite::Connection::open_with_flags(
        server.state.join("stackgate.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the state file");
    let mut q = db
        .prepare(
            "SELECT created_at, started_at, finished_at FROM jobs WHERE kind = 'preview' \
             AND started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY id",
        )
        .expect("prepare");
    let jobs: Vec<(i64, i64, i64)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let timed: Vec<_> = jobs
        .iter()
        .skip(jobs.len().saturating_sub(runs as usize))
        .collect();
    let queued: Vec<f64> = timed.iter().map(|j| (j.1 - j.0) as f64 / 1000.0).collect();
    let ran: Vec<f64> = timed.iter().map(|j| (j.2 - j.1) as f64 / 1000.0).collect();
    let log = plain(&server.logs());
    let errors = log.lines().filter(|l| l.contains(" ERROR ")).count();
    let invalid = gh.invalid_requests().len();
    let (cpu, commit, date, load_end) = machine();
    let profile = if env!("CARGO_BIN_EXE_stackgate").contains("/release/") {
        "release"
    } else {
        "dev (debug)"
    };

    let mut r = String::new();
    r.push_str("# Pull-request dry run, end to end, against a boto3 script\n\n");
    r.push_str(
        "Generated by `cargo bench -p stackgate --bench pr_dry_run` (`benches/pr_dry_run.rs`): \
         a real `stackgate serve`, a git repository holding `stacks/hybrid-alb` (deployed once \
         on main first, not timed), the GitHub stand-in and the emulator. Each run is a new \
         pull request whose deployment file changes the instance type; *stackgate* is timed from sending \
         its signed `opened` webhook (GitHub's example payload) until the stand-in has \
         recorded the head's comment and its final `stackgate/policy` and \
         `stackgate/plan/hybrid-alb` statuses; *boto3* is `pr_dry_run_calls.py` making the same \
         CloudFormation, SSM and S3 calls in the same order against the same emulator, \
         timed from handing it the run to its answer (one Python process for all runs; its \
         one GetCallerIdentity is made before the first, as stackgate keeps the account from \
         its first call, the deploy). Neither side's git, policy or GitHub work has a \
         counterpart in the script: that is what the ratio prices. Runs alternate stackgate, boto3, stackgate, …\n\n",
    );
    r.push_str(&format!(
        "| {runs} runs | p50 (s) | p90 (s) | min (s) | max (s) |\n|---|---:|---:|---:|---:|\n\
         | stackgate, webhook → last status and comment | {:.3} | {:.3} | {:.3} | {:.3} |\n\
         | boto3 script, the same calls | {:.3} | {:.3} | {:.3} | {:.3} |\n\n",
        sa[0], sa[1], sa[2], sa[3], sb[0], sb[1], sb[2], sb[3]
    ));
    r.push_str(&format!(
        "**Ratio of p50s: {ratio:.2}×; goal ≤ 1.5×: {}.**\n\n",
        if met { "met" } else { "NOT met" }
    ));
    let (qa, ra, ca) = (stats(&queued), stats(&ran), stats(&comment_at));
    r.push_str(&format!(
        "Resolution: the stand-in is polled every {} ms, so stackgate's times are late by up \
         to that. Where stackgate's time goes (p50 / max, s, from the state file's job rows, \
         whole milliseconds): webhook received → preview job started {:.3} / {:.3}; job \
         started → finished (fetch, snapshot, policies, review, change set, comment and \
         statuses written to the outbox) {:.3} / {:.3}; the comment seen at {:.3} / {:.3} \
         after the send. `[aws] poll_seconds = {poll_seconds}` for both sides \
         (stackgate's default is 2). DescribeChangeSet polls per boto3 run: {polls:?}. The \
         last plan said: `{plan}`. The warm-up (recorded) run took {:.3} s.\n\n",
        poll.as_millis(),
        qa[0],
        qa[3],
        ra[0],
        ra[3],
        ca[0],
        ca[3],
        warm.seconds
    ));
    r.push_str("## The calls (one recorded run each, moto's recorder)\n\n");
    r.push_str("| operation | stackgate | boto3 |\n|---|---:|---:|\n");
    let (cs, cp) = (counts(&sg_ops), counts(&py_ops));
    for (op, n) in &cs {
        let m = cp.iter().find(|(o, _)| o == op).map_or(0, |e| e.1);
        r.push_str(&format!("| {op} | {n} | {m} |\n"));
    }
    for (op, m) in cp.iter().filter(|(o, _)| !cs.iter().any(|(p, _)| p == o)) {
        r.push_str(&format!("| {op} | 0 | {m} |\n"));
    }
    r.push_str(&format!(
        "| **total** | {} | {} |\n\nIn order, stackgate: {}.\n\nThe same sequence with \
         repeated DescribeChangeSet polls folded: {}.\n\n",
        sg_ops.len(),
        py_ops.len(),
        sg_ops.join(", "),
        if same { "yes" } else { "NO" }
    ));
    r.push_str(&format!(
        "Afterwards: the stand-in refused {invalid} request(s); ERROR lines in serve's log: \
         {errors}.\n\n## Machine\n\n- {date}; {} CPUs ({cpu}); load average (1/5/15 min) at \
         the start {load_start}, at the end {load_end}\n- commit {commit}, stackgate {profile} \
         build; the emulator (moto, one Python process) at {}, the stand-in and the script \
         share the CPUs\n- setup (the deploy on main): {setup_s:.1} s\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        aws_endpoint()
    ));
    write_report("pr_dry_run", &r, &server.log);
    drop(script);
    drop(server);
    drop(emulator);
}
