//! A drift sweep over 500 stacks (issue 11 §5): every deployed stack checked once through
//! stackgate's real drift path, against the emulator, with concurrency bounded and no
//! throttling. See `benches/README.md`; writes `results/drift_sweep.md`.
//!
//! ```text
//! cargo bench -p stackgate --bench drift_sweep        # or --profile dev: it times waits
//! ```
//!
//! A real git repository of `DRIFT_BENCH_STACKS` (500) stack folders, one security group
//! each; a real `stackgate serve` (tests/support/service.rs) with the GitHub stand-in; one
//! signed push deploys them all (setup, printed, not the measured number). Then:
//! - *scheduled*: serve restarted with `[drift] interval_seconds = 60, concurrency = N`
//!   (and `max_parallel_jobs = 16`, so the drift bound is the one that binds), watched for
//!   `DRIFT_BENCH_WINDOW` seconds at most, or until every stack has a drift row checked
//!   after the restart;
//! - *on demand*: serve with the scheduler off and `max_parallel_jobs = N`, one
//!   `POST /api/v1/stacks/{owner}/{repo}/{stack}/drift` per stack, watched until every
//!   check has ended.
//!
//! The numbers come from the state file (read only, WAL): each drift job's `created_at`,
//! `started_at` and `finished_at`, the `drift` rows' `checked_at`, and the running drift jobs
//! sampled every 100 ms. Errors: drift jobs that ended `failed` or `error` (and the skipped
//! ones, `superseded`), `Throttling` / `Rate exceeded` in serve's and the emulator's logs,
//! the drift rows (all must be `in_sync`), `/metrics` (one
//! `stackgate_stack_drift_checked_seconds` per stack) and the stand-in's refusals.
//!
//! Knobs (environment): `DRIFT_BENCH_STACKS` (500), `DRIFT_BENCH_CONCURRENCY` ("2,8"),
//! `DRIFT_BENCH_WINDOW` (300 s per scheduled sweep), `DRIFT_BENCH_PATHS`
//! ("scheduled,on-demand"), `DRIFT_BENCH_DEADLINE` (1200 s for the whole run),
//! `DRIFT_BENCH_DEPLOY_PARALLEL` (8), `STACKGATE_TEST_AWS_ENDPOINT` (else an emulator of
//! its own on `DRIFT_BENCH_EMULATOR_PORT`, 4671, stopped at the end).

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use rusqlite::{Connection, OpenFlags, params};
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";
/// What the scheduler's interval is set to: the least the configuration allows.
const INTERVAL: u64 = 60;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn folder(i: usize) -> String {
    format!("s{i:03}")
}

/// One cheap resource the policies pass: a security group with one tcp 80 rule.
fn write_stack(repo: &GitRepo, run: &str, i: usize) {
    let f = folder(i);
    repo.write(
        &format!("stacks/{f}/deployment.yaml"),
        &format!("template-file-path: template.yaml\nstack-name: ds-{run}-{f}\n"),
    );
    repo.write(
        &format!("stacks/{f}/template.yaml"),
        &format!(
            "AWSTemplateFormatVersion: '2010-09-09'\nDescription: drift sweep stack {i}\n\
             Resources:\n  Web:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      \
             GroupDescription: drift sweep {i}\n      SecurityGroupIngress:\n        \
             - IpProtocol: tcp\n          FromPort: 80\n          ToPort: 80\n          \
             CidrIp: 10.0.0.0/16\n"
        ),
    );
}

/// Restarts serve (clean stop) with the config as first written, edited.
fn restart(server: &mut Server, base: &str, parallel: usize, drift: Option<usize>) {
    let drift_lines = match drift {
        Some(n) => format!("[drift]\ninterval_seconds = {INTERVAL}\nconcurrency = {n}\n"),
        None => "[drift]\ninterval_seconds = 0\n".to_string(),
    };
    let text = base
        .replace(
            "max_parallel_jobs = 4\n",
            &format!("max_parallel_jobs = {parallel}\n"),
        )
        .replace("[drift]\ninterval_seconds = 0\n", &drift_lines);
    assert!(text.contains(&drift_lines), "the config's [drift] table");
    std::fs::write(&server.config, text).expect("config");
    if server.terminate(Duration::from_secs(30)).is_none() {
        eprintln!("serve did not stop within 30 s of SIGTERM; killed");
    }
    server.spawn();
}

/// The state file, read only.
struct Db(Connection);

impl Db {
    fn open(server: &Server) -> Self {
        let c = Connection::open_with_flags(
            server.state.join("stackgate.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the state file");
        c.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        Self(c)
    }

    fn count(&self, sql: &str, p: impl rusqlite::Params) -> i64 {
        self.0.query_row(sql, p, |r| r.get(0)).unwrap_or(-1)
    }

    fn live(&self, kind: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = ?1 AND state IN ('queued', 'running')",
            [kind],
        )
    }

    fn running_drift(&self) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'drift' AND state = 'running'",
            [],
        )
    }

    fn checked_since(&self, t0: i64) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM drift WHERE repo = ?1 AND checked_at >= ?2",
            params![REPO, t0],
        )
    }

    /// Drift jobs made since `t0`: (state, created, started, finished).
    fn drift_jobs(&self, t0: i64) -> Vec<(String, i64, Option<i64>, Option<i64>)> {
        let mut s = self
            .0
            .prepare(
                "SELECT state, created_at, started_at, finished_at FROM jobs
                 WHERE kind = 'drift' AND created_at >= ?1 ORDER BY id",
            )
            .expect("prepare");
        s.query_map([t0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

/// One sweep's numbers.
struct Sweep {
    path: &'static str,
    bound: usize,
    /// What bounds it, as configured.
    knob: String,
    checked: i64,
    complete: bool,
    /// From serve ready (scheduled) or the first POST (on demand) to the last check done.
    from_start: f64,
    /// From the first check's start to the last one's end.
    first_to_last: f64,
    /// Watched for this long.
    watched: f64,
    per_check: Vec<f64>,
    queue_wait: Vec<f64>,
    max_sampled: i64,
    max_exact: i64,
    failed: usize,
    errored: usize,
    skipped: usize,
    unfinished: usize,
    throttles: usize,
    /// The scheduler's rounds that enqueued checks: when (s of the day), and how many.
    rounds: Vec<(f64, usize)>,
    refused_posts: usize,
}

impl Sweep {
    /// Checks per second over the sweep, from its start (serve ready, or the first POST) to
    /// its last check's end: a sweep's rate, waits included.
    fn rate(&self) -> f64 {
        if self.from_start > 0.0 {
            self.checked as f64 / self.from_start
        } else {
            f64::NAN
        }
    }
}

/// The most intervals open at once; an unfinished one is open to the end.
fn max_overlap(spans: &[(i64, Option<i64>)]) -> i64 {
    let mut ev: Vec<(i64, i64)> = Vec::new();
    for (s, f) in spans {
        ev.push((*s, 1));
        ev.push((f.unwrap_or(i64::MAX), -1));
    }
    // An end before a start at the same millisecond.
    ev.sort();
    let (mut cur, mut max) = (0, 0);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    max
}

fn log_since(server: &Server, offset: usize) -> String {
    let all = server.logs();
    plain(all.get(offset.min(all.len())..).unwrap_or_default())
}

/// Seconds since midnight of a log line's timestamp (`2026-12-03T11:23:52.246613Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

fn throttles(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.contains("Throttling") || l.contains("Rate exceeded") || l.contains("TooManyRequests")
        })
        .count()
}

/// Watches until every stack has a drift row checked since `t0`, or `until`, or (on demand)
/// until no drift job is left; samples the running drift jobs meanwhile.
fn watch(db: &Db, t0: i64, n: i64, until: Instant, stop_when_idle: bool) -> (i64, bool) {
    let mut max = 0;
    let mut last_print = Instant::now();
    loop {
        max = max.max(db.running_drift());
        let checked = db.checked_since(t0);
        if checked >= n {
            return (max, true);
        }
        if stop_when_idle && db.live("drift") == 0 {
            return (max, false);
        }
        if Instant::now() >= until {
            return (max, false);
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            eprintln!(
                "  {checked}/{n} checked, {} drift job(s) running, {} live",
                db.running_drift(),
                db.live("drift")
            );
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    db: &Db,
    path: &'static str,
    bound: usize,
    knob: String,
    t0: i64,
    started: Instant,
    n: i64,
    (max_sampled, complete): (i64, bool),
    log: &str,
    refused_posts: usize,
) -> Sweep {
    let watched = started.elapsed().as_secs_f64();
    let jobs = db.drift_jobs(t0);
    let mut per_check: Vec<f64> = jobs
        .iter()
        .filter_map(|(_, _, s, f)| Some((f.as_ref()? - s.as_ref()?) as f64))
        .collect();
    per_check.sort_by(f64::total_cmp);
    let mut queue_wait: Vec<f64> = jobs
        .iter()
        .filter_map(|(_, c, s, _)| Some((s.as_ref()? - c) as f64))
        .collect();
    queue_wait.sort_by(f64::total_cmp);
    let spans: Vec<(i64, Option<i64>)> = jobs
        .iter()
        .filter_map(|(_, _, s, f)| Some(((*s)?, *f)))
        .collect();
    let first = spans.iter().map(|s| s.0).min();
    let last = jobs.iter().filter_map(|j| j.3).max();
    let state = |s: &str| jobs.iter().filter(|j| j.0 == s).count();
    let rounds = log
        .lines()
        .filter(|l| l.contains("drift checks due"))
        .filter_map(|l| {
            let k = l
                .split("checks=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            Some((log_time(l)?, k))
        })
        .collect();
    let sweep = Sweep {
        path,
        bound,
        knob,
        checked: db.checked_since(t0),
        complete,
        from_start: last.map_or(f64::NAN, |l| (l - t0) as f64 / 1000.0),
        first_to_last: match (first, last) {
            (Some(f), Some(l)) => (l - f) as f64 / 1000.0,
            _ => f64::NAN,
        },
        watched,
        per_check,
        queue_wait,
        max_sampled,
        max_exact: max_overlap(&spans),
        failed: state("failed"),
        errored: state("error"),
        skipped: state("superseded"),
        unfinished: state("queued") + state("running"),
        throttles: throttles(log),
        rounds,
        refused_posts,
    };
    let _ = n;
    eprintln!(
        "{path} N={bound}: {}/{n} checked in {:.1} s (first→last {:.1} s), per check p50 {:.0} ms p99 {:.0} ms, \
         max running {} sampled / {} exact, failed {} error {} skipped {} unfinished {}, throttles {}",
        sweep.checked,
        sweep.from_start,
        sweep.first_to_last,
        percentile(&sweep.per_check, 0.5),
        percentile(&sweep.per_check, 0.99),
        sweep.max_sampled,
        sweep.max_exact,
        sweep.failed,
        sweep.errored,
        sweep.skipped,
        sweep.unfinished,
        sweep.throttles
    );
    sweep
}

/// Restarts serve with the scheduler off and waits (bounded) until no drift job is left.
fn drain(server: &mut Server, base: &str, until: Instant) {
    restart(server, base, 16, None);
    let db = Db::open(server);
    while db.live("drift") > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scheduled(
    server: &mut Server,
    base: &str,
    n: i64,
    conc: usize,
    window: u64,
    deadline: Instant,
) -> Sweep {
    let offset = server.logs().len();
    restart(server, base, 16, Some(conc));
    let (t0, started) = (now_ms(), Instant::now());
    let db = Db::open(server);
    let until = deadline.min(Instant::now() + Duration::from_secs(window));
    let seen = watch(&db, t0, n, until, false);
    let log = log_since(server, offset);
    summarize(
        &db,
        "scheduled",
        conc,
        format!(
            "[drift] interval_seconds = {INTERVAL}, concurrency = {conc}; max_parallel_jobs = 16"
        ),
        t0,
        started,
        n,
        seen,
        &log,
        0,
    )
}

fn on_demand(
    server: &mut Server,
    base: &str,
    n: usize,
    parallel: usize,
    deadline: Instant,
) -> Sweep {
    let offset = server.logs().len();
    restart(server, base, parallel, None);
    let db = Db::open(server);
    let (t0, started) = (now_ms(), Instant::now());
    let url = server.url.clone();
    let (owner, name) = REPO.split_once('/').expect("owner/name");
    // Four senders: curl per request, as the other benches do.
    let refused: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let url = &url;
                s.spawn(move || {
                    let mut refused = 0;
                    for i in (k..n).step_by(4) {
                        let (code, body) = http(
                            "POST",
                            &format!("{url}/api/v1/stacks/{owner}/{name}/{}/drift", folder(i)),
                            &[("Authorization", format!("Bearer {API_TOKEN}"))],
                            None,
                        );
                        if code != 202 {
                            eprintln!("POST drift {}: {code} {body}", folder(i));
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("sender")).sum()
    });
    eprintln!(
        "  {} POSTs sent in {:.1} s",
        n,
        started.elapsed().as_secs_f64()
    );
    let until = deadline.min(Instant::now() + Duration::from_secs(600));
    let seen = watch(&db, t0, n as i64, until, true);
    let log = log_since(server, offset);
    summarize(
        &db,
        "on demand",
        parallel,
        format!("max_parallel_jobs = {parallel}; [drift] interval_seconds = 0"),
        t0,
        started,
        n as i64,
        seen,
        &log,
        refused,
    )
}

fn main() {
    let deadline_s = env_num("DRIFT_BENCH_DEADLINE", 1200);
    let deadline = Instant::now() + Duration::from_secs(deadline_s);
    let n = env_num("DRIFT_BENCH_STACKS", 500) as usize;
    let window = env_num("DRIFT_BENCH_WINDOW", 300);
    let deploy_parallel = env_num("DRIFT_BENCH_DEPLOY_PARALLEL", 8) as usize;
    let bounds: Vec<usize> = env_str("DRIFT_BENCH_CONCURRENCY", "2,8")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let paths = env_str("DRIFT_BENCH_PATHS", "scheduled,on-demand");
    let (_, _, _, load_start) = machine();

    let emulator = Emulator::get("DRIFT_BENCH_EMULATOR_PORT", "4671", &[]);
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let run = unique("ds");
    for i in 0..n {
        write_stack(&repo, &run, i);
    }
    let sha = repo.commit(&format!("{n} stacks"));
    let mut server = Server::start_opts(&repo, &gh, Opts::default());
    let base = std::fs::read_to_string(&server.config).expect("config");
    restart(&mut server, &base, deploy_parallel, None);

    // Setup: one push deploys every stack.
    let setup = Instant::now();
    let touched: Vec<String> = (0..n)
        .map(|i| format!("stacks/{}/template.yaml", folder(i)))
        .collect();
    let touched: Vec<&str> = touched.iter().map(String::as_str).collect();
    let (code, body) = server.push(ZERO, &sha, &touched);
    assert_eq!(code, 202, "the push: {body}");
    let db = Db::open(&server);
    let setup_until = deadline.min(Instant::now() + Duration::from_secs(900));
    let mut last_print = Instant::now();
    loop {
        let deployed = db.count(
            "SELECT COUNT(*) FROM deployed WHERE repo = ?1 AND removed = 0",
            [REPO],
        );
        let live = db.live("deploy") + db.live("sync");
        if deployed >= n as i64 && live == 0 {
            break;
        }
        if Instant::now() >= setup_until {
            panic!(
                "setup: {deployed}/{n} deployed after {:.0} s; log {}",
                setup.elapsed().as_secs_f64(),
                server.log.display()
            );
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            eprintln!("setup: {deployed}/{n} deployed, {live} job(s) live");
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let deploy_bad = db.count(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'deploy' AND state != 'succeeded'",
        [],
    );
    eprintln!(
        "setup: {n} stacks deployed in {setup_s:.1} s (max_parallel_jobs = {deploy_parallel}); \
         deploy jobs not succeeded: {deploy_bad}"
    );
    drop(db);

    let mut sweeps = Vec::new();
    if paths.contains("scheduled") {
        for &c in &bounds {
            if Instant::now() + Duration::from_secs(30) >= deadline {
                eprintln!("deadline: scheduled N={c} not run");
                break;
            }
            eprintln!("scheduled sweep, concurrency = {c}, window {window} s");
            sweeps.push(scheduled(&mut server, &base, n as i64, c, window, deadline));
            drain(
                &mut server,
                &base,
                deadline.min(Instant::now() + Duration::from_secs(120)),
            );
        }
    }
    if paths.contains("on-demand") {
        for &c in &bounds {
            if Instant::now() + Duration::from_secs(30) >= deadline {
                eprintln!("deadline: on demand N={c} not run");
                break;
            }
            eprintln!("on-demand sweep, max_parallel_jobs = {c}");
            sweeps.push(on_demand(&mut server, &base, n, c, deadline));
        }
    }

    // The state afterwards.
    let db = Db::open(&server);
    let rows = db.count("SELECT COUNT(*) FROM drift WHERE repo = ?1", [REPO]);
    let not_in_sync = db.count(
        "SELECT COUNT(*) FROM drift WHERE repo = ?1 AND (state != 'in_sync' OR drifted != 0 OR live_findings != 0)",
        [REPO],
    );
    let (_, metrics) = http("GET", &format!("{}/metrics", server.url), &[], None);
    let gauges = metrics
        .lines()
        .filter(|l| l.starts_with("stackgate_stack_drift_checked_seconds{"))
        .count();
    let drifted_gauges = metrics
        .lines()
        .filter(|l| l.starts_with("stackgate_stack_drifted{") && !l.ends_with(" 0"))
        .count();
    let invalid = gh.invalid_requests().len();
    let all_log = plain(&server.logs());
    let log_throttles = throttles(&all_log);
    let emu_throttles = emulator
        .log()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map_or(0, |t| throttles(&t));
    let log_errors = all_log.lines().filter(|l| l.contains(" ERROR ")).count();
    let (cpu, commit, date, load_end) = machine();
    let profile = if env!("CARGO_BIN_EXE_stackgate").contains("/release/") {
        "release"
    } else {
        "dev (debug)"
    };

    let mut r = String::new();
    r.push_str(&format!("# Drift sweep over {n} stacks\n\n"));
    r.push_str(
        "Generated by `cargo bench -p stackgate --bench drift_sweep` (`benches/drift_sweep.rs`): \
         a real `stackgate serve`, a git repository of stack folders (one security group with \
         one tcp 80 rule each), the GitHub stand-in, and the emulator. Every stack checked once \
         through stackgate's drift path (`pipeline/drift.rs`: DetectStackDrift, its status, \
         DescribeStackResourceDrifts, the policies on the deployed and the live template, the \
         drift row and status). Times from the state file's job rows; *wall* is from the first \
         check's start to the last one's end, *from start* from serve ready (scheduled) or the \
         first POST (on demand).\n\n",
    );
    r.push_str(&format!(
        "Setup (not measured): one push deployed {n} stacks in {setup_s:.0} s with \
         `max_parallel_jobs = {deploy_parallel}`; deploy jobs not succeeded: {deploy_bad}.\n\n"
    ));
    r.push_str(
        "| path | bound | checked | wall (s) | from start (s) | checks/s (from start) | per check p50 / p99 (ms) | queue wait p50 / p99 (s) | max running sampled / exact | failed / error / skipped / unfinished | throttles |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &sweeps {
        let rate = s.rate();
        r.push_str(&format!(
            "| {} | {} | {}/{n}{} | {:.1} | {:.1} | {:.2} | {:.0} / {:.0} | {:.1} / {:.1} | {} / {} | {} / {} / {} / {} | {} |\n",
            s.path,
            s.knob,
            s.checked,
            if s.complete {
                String::new()
            } else {
                format!(" (stopped after {:.0} s)", s.watched)
            },
            s.first_to_last,
            s.from_start,
            rate,
            percentile(&s.per_check, 0.5),
            percentile(&s.per_check, 0.99),
            percentile(&s.queue_wait, 0.5) / 1000.0,
            percentile(&s.queue_wait, 0.99) / 1000.0,
            s.max_sampled,
            s.max_exact,
            s.failed,
            s.errored,
            s.skipped,
            s.unfinished,
            s.throttles,
        ));
    }
    r.push('\n');
    for s in sweeps.iter().filter(|s| s.path == "scheduled") {
        let total: usize = s.rounds.iter().map(|r| r.1).sum();
        let mut gaps: Vec<f64> = s.rounds.windows(2).map(|w| w[1].0 - w[0].0).collect();
        gaps.sort_by(f64::total_cmp);
        let rate = s.rate();
        r.push_str(&format!(
            "- scheduled, concurrency {}: {} scheduler round(s) enqueued {} check(s) (at most {} each), \
             {:.1} s apart (median); at {:.3} checks/s a whole sweep of {n} takes {:.0} s ({:.1} min).\n",
            s.bound,
            s.rounds.len(),
            total,
            s.rounds.iter().map(|r| r.1).max().unwrap_or(0),
            percentile(&gaps, 0.5),
            rate,
            n as f64 / rate,
            n as f64 / rate / 60.0,
        ));
    }
    for s in sweeps.iter().filter(|s| s.refused_posts > 0) {
        r.push_str(&format!(
            "- on demand, bound {}: {} POST(s) not answered 202.\n",
            s.bound, s.refused_posts
        ));
    }
    r.push_str(&format!(
        "\nAfterwards: {rows} drift rows, {not_in_sync} not in sync (must be 0); \
         `/metrics`: {gauges} `stackgate_stack_drift_checked_seconds` gauges, {drifted_gauges} \
         `stackgate_stack_drifted` not 0; the stand-in refused {invalid} request(s); \
         `Throttling`/`Rate exceeded` lines: {log_throttles} in serve's log, {emu_throttles} in \
         the emulator's{}; ERROR lines in serve's log: {log_errors}.\n\n",
        if emulator.port.is_some() {
            ""
        } else {
            " (not read: an emulator given by STACKGATE_TEST_AWS_ENDPOINT)"
        }
    ));
    r.push_str("## Machine\n\n");
    r.push_str(&format!(
        "- {date}; {} CPUs ({cpu}); load average (1/5/15 min) at the start {load_start}, at the end {load_end}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));
    r.push_str(&format!(
        "- commit {commit}, stackgate {profile} build; the emulator (moto, one Python process) at {} shares the CPUs\n",
        aws_endpoint()
    ));
    write_report("drift_sweep", &r, &server.log);
    drop(server);
    drop(emulator);
}
