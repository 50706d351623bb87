//! Policy evaluation benchmark: the embedded WebAssembly policies in wasmtime, the same
//! policies compiled natively (the lower bound), and checkov (the Python scanner they
//! replace), on `stacks/hybrid-alb`. See `benches/README.md` for what each figure means.
//!
//! Run with `cargo bench -p stackgate --bench policy_eval`. Prints a Markdown report and
//! writes the same report to `benches/results/policy_eval.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use stackgate::policy::input::{EventInfo, PolicyInput};
use stackgate::policy::{Limits, PolicyHost, PolicySource, Verdict};
use stackgate::stack::{DirFiles, Stack};

/// Ratio goals, checked as measured.
const GOAL_WASM_OVER_NATIVE: f64 = 3.0;
const GOAL_CHECKOV_OVER_WASM: f64 = 100.0;

/// Cold compiles are slow (hundreds of ms each); a few are enough for a median.
const COMPILE_RUNS: usize = 3;
const CACHED_LOAD_RUNS: usize = 10;
const CHECKOV_WARMUP: usize = 2;

/// Imports checkov's CloudFormation runner once, then times scans of one template with a
/// fresh `Runner` each (parse, graph, checks; no Python start-up), first restricted to the
/// checks comparable to stackgate's two policies, then with every CloudFormation check.
/// Prints one JSON line.
const CHECKOV_SCRIPT: &str = r#"
import json, logging, statistics, sys, time
logging.disable(logging.CRITICAL)
template, n, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
from checkov.cloudformation.runner import Runner
from checkov.cloudformation.checks.resource.registry import cfn_registry
from checkov.runner_filter import RunnerFilter
from checkov.version import version
import_s = time.perf_counter() - t0
def comparable(rtype):
    return rtype in ("AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress",
                     "AWS::Lambda::Permission") or rtype.startswith("AWS::IAM::")
ids = sorted({c.id for rtype, checks in cfn_registry.checks.items() if comparable(rtype) for c in checks})
def scan(checks):
    flt = RunnerFilter(framework=["cloudformation"], checks=checks, show_progress_bar=False)
    t = time.perf_counter()
    report = Runner().run(root_folder=None, files=[template], runner_filter=flt)
    ms = (time.perf_counter() - t) * 1e3
    return ms, len(report.passed_checks), len(report.failed_checks)
out = {"version": version, "import_s": import_s, "comparable_checks": ids}
for label, checks in (("comparable", ids), ("all", None)):
    for _ in range(warm):
        scan(checks)
    runs = [scan(checks) for _ in range(n)]
    times = sorted(r[0] for r in runs)
    out[label] = {"median_ms": statistics.median(times), "min_ms": times[0],
                  "max_ms": times[-1], "passed": runs[-1][1], "failed": runs[-1][2]}
print(json.dumps(out))
"#;

#[derive(Clone, Copy, PartialEq)]
enum Native {
    OpenIngress,
    LeastPrivilegeIam,
}

impl Native {
    /// The policies this bench links natively (its dev-dependencies); a new policy runs
    /// everywhere else without being added here.
    fn for_policy(name: &str) -> Option<Self> {
        match name {
            policy_open_ingress::NAME => Some(Self::OpenIngress),
            policy_least_privilege_iam::NAME => Some(Self::LeastPrivilegeIam),
            _ => None,
        }
    }
}

/// The embedded policies that have a native counterpart, so that both sides run the same
/// set; and the names of those left out.
fn benched_sources() -> (Vec<PolicySource>, Vec<String>) {
    let (linked, left_out): (Vec<_>, Vec<_>) = PolicySource::embedded()
        .into_iter()
        .partition(|s| Native::for_policy(&s.name).is_some());
    (linked, left_out.into_iter().map(|s| s.name).collect())
}

/// Parses the JSON text and evaluates natively: the work the guest does, minus the sandbox.
macro_rules! native_eval {
    ($policy:expr, $json:expr) => {
        serde_json::from_str::<Value>($json)
            .map_err(|e| format!("policy input is not valid JSON: {e}"))
            .and_then(|value| match $policy {
                Native::OpenIngress => policy_open_ingress::evaluate(&value),
                Native::LeastPrivilegeIam => policy_least_privilege_iam::evaluate(&value),
            })
    };
}

/// Median, p90 and min of a sample, in the sample's unit.
struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(samples: &[f64]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        // Nearest rank.
        let p90 = s[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        Self {
            median,
            p90,
            min: s[0],
            max: s[n - 1],
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{name}={v}: expected a positive integer")),
        Err(_) => Ok(default),
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**NOT met**" }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("policy_eval bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let iters = env_usize("POLICY_BENCH_ITERS", 200)?;
    let warmup = env_usize("POLICY_BENCH_WARMUP", 20)?;
    let checkov_scans = env_usize("CHECKOV_SCANS", 20)?;

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .context("server/ has no parent folder")?
        .to_path_buf();
    let stack_dir = workspace.join("stacks/hybrid-alb");
    let template_path = stack_dir.join("template.yaml");
    let results_path = manifest.join("benches/results/policy_eval.md");

    let load_start = read_loadavg();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into());

    // ---- the input
    let files = DirFiles::open(&stack_dir).map_err(|e| anyhow!("{e}"))?;
    let stack = Stack::load(&files).map_err(|e| anyhow!("{e}"))?;
    let input = PolicyInput::for_stack(
        &stack,
        "us-east-1",
        EventInfo {
            kind: "check".into(),
            sha: None,
        },
    );
    let json = input.to_json(&serde_json::json!({}))?;

    // ---- hosts and sanity: the wasm and native policies must agree on this input
    let (sources, left_out) = benched_sources();
    if sources.iter().any(|s| s.settings != serde_json::json!({})) {
        bail!("embedded policies have settings; the native side would see a different input");
    }
    let host = PolicyHost::load(sources, Limits::default(), None)?;
    let policies: Vec<(String, Native)> = host
        .policies()
        .into_iter()
        .map(|(name, _)| {
            let native = Native::for_policy(&name).context("filtered to linked policies")?;
            Ok((name, native))
        })
        .collect::<anyhow::Result<_>>()?;
    let first = host.evaluate_blocking(&input);
    let mut agreement = Vec::new();
    for (outcome, (name, native)) in first.outcomes.iter().zip(&policies) {
        if outcome.verdict == Verdict::Error {
            bail!("wasm policy {name} errored: {:?}", outcome.error);
        }
        let mut wasm_keys: Vec<String> = outcome
            .findings
            .iter()
            .map(|f| format!("{} {} {}", f.rule, f.resource, f.path))
            .collect();
        let mut native_keys: Vec<String> = native_eval!(*native, &json)
            .map_err(|e| anyhow!("native {name}: {e}"))?
            .iter()
            .map(|f| format!("{} {} {}", f.rule, f.resource, f.path))
            .collect();
        wasm_keys.sort();
        native_keys.sort();
        if wasm_keys != native_keys {
            bail!("{name}: wasm findings {wasm_keys:?} differ from native {native_keys:?}");
        }
        agreement.push(format!("{name}: {} finding(s), identical", wasm_keys.len()));
    }

    // ---- warm evaluation, wasm and native interleaved (order alternates every iteration)
    let n_pol = policies.len();
    let mut wasm_pol: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); n_pol];
    let mut wasm_sum: Vec<f64> = Vec::with_capacity(iters);
    let mut wasm_wall: Vec<f64> = Vec::with_capacity(iters);
    let mut nat_pol: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); n_pol];
    let mut nat_sum: Vec<f64> = Vec::with_capacity(iters);
    let mut wasm_errors = 0usize;

    let run_wasm = || {
        let start = Instant::now();
        let report = host.evaluate_blocking(&input);
        (micros(start.elapsed()), report)
    };
    let run_native = || {
        policies
            .iter()
            .map(|(_, native)| {
                let start = Instant::now();
                let result = black_box(native_eval!(*native, black_box(&json)));
                let t = micros(start.elapsed());
                assert!(result.is_ok(), "native evaluation failed");
                t
            })
            .collect::<Vec<f64>>()
    };
    for i in 0..warmup + iters {
        let ((wall, report), native) = if i % 2 == 0 {
            let w = run_wasm();
            (w, run_native())
        } else {
            let n = run_native();
            (run_wasm(), n)
        };
        if report.verdict == Verdict::Error {
            wasm_errors += 1;
        }
        if i < warmup {
            continue;
        }
        wasm_wall.push(wall);
        wasm_sum.push(report.outcomes.iter().map(|o| o.micros as f64).sum());
        for (k, o) in report.outcomes.iter().enumerate() {
            wasm_pol[k].push(o.micros as f64);
        }
        nat_sum.push(native.iter().sum());
        for (k, t) in native.into_iter().enumerate() {
            nat_pol[k].push(t);
        }
    }
    if wasm_errors > 0 {
        bail!("{wasm_errors} wasm evaluation(s) errored during the timed loop");
    }
    drop(host);

    // ---- cold start
    let mut compile = Vec::new();
    for _ in 0..COMPILE_RUNS {
        let (sources, _) = benched_sources();
        let start = Instant::now();
        let h = PolicyHost::load(sources, Limits::default(), None)?;
        compile.push(millis(start.elapsed()));
        drop(h);
    }
    let cache = tempfile::tempdir()?;
    let start = Instant::now();
    drop(PolicyHost::load(
        benched_sources().0,
        Limits::default(),
        Some(cache.path()),
    )?);
    let populate = millis(start.elapsed());
    let cwasm = std::fs::read_dir(cache.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    if cwasm != n_pol {
        bail!("expected {n_pol} precompiled files in the cache, found {cwasm}");
    }
    let mut cached_load = Vec::new();
    let mut first_eval = Vec::new();
    for _ in 0..CACHED_LOAD_RUNS {
        let (sources, _) = benched_sources();
        let start = Instant::now();
        let h = PolicyHost::load(sources, Limits::default(), Some(cache.path()))?;
        cached_load.push(millis(start.elapsed()));
        let start = Instant::now();
        let report = h.evaluate_blocking(&input);
        first_eval.push(millis(start.elapsed()));
        if report.verdict == Verdict::Error {
            bail!("evaluation after a cached load errored");
        }
    }

    // ---- checkov
    let checkov = match find_checkov() {
        Some(c) => Some(run_checkov(&c, &template_path, checkov_scans)?),
        None => None,
    };

    let load_end = read_loadavg();

    // ---- report
    let ws = Stats::of(&wasm_sum);
    let ww = Stats::of(&wasm_wall);
    let ns = Stats::of(&nat_sum);
    let ratio_wn = ws.median / ns.median;
    let ratio_wn_e2e = ww.median / ns.median;

    let mut md = String::new();
    let w = &mut md;
    writeln!(w, "# Policy evaluation benchmark\n")?;
    writeln!(
        w,
        "Input: `stacks/hybrid-alb` ({} bytes of policy-input JSON). Generated by \
         `cargo bench -p stackgate --bench policy_eval`; see `server/benches/README.md`.\n",
        json.len()
    )?;
    writeln!(w, "## Machine\n")?;
    writeln!(w, "| | |\n|---|---|")?;
    writeln!(w, "| date (UTC) | {date} |")?;
    writeln!(w, "| CPU | {} |", cpu_model())?;
    writeln!(
        w,
        "| cores (available_parallelism) | {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(
        w,
        "| load average (1/5/15 min), start → end | {load_start} → {load_end} |"
    )?;
    writeln!(w, "| rustc | {} |", command_line("rustc", &["-V"]))?;
    writeln!(w, "| commit | {} |", git_rev(&workspace))?;
    writeln!(w, "| wasm and native findings | {} |", agreement.join("; "))?;
    if !left_out.is_empty() {
        writeln!(
            w,
            "| embedded but not linked natively (left out) | {} |",
            left_out.join(", ")
        )?;
    }
    writeln!(w)?;

    writeln!(
        w,
        "## Warm evaluation (µs, {iters} iterations after {warmup} warm-up, wasm and native interleaved)\n"
    )?;
    writeln!(
        w,
        "| what | median | p90 | min | max |\n|---|---:|---:|---:|---:|"
    )?;
    let row = |w: &mut String, label: &str, s: &Stats| {
        writeln!(
            w,
            "| {label} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.median, s.p90, s.min, s.max
        )
    };
    for (k, (name, _)) in policies.iter().enumerate() {
        row(
            w,
            &format!("wasm {name} (fresh store + instantiate + call)"),
            &Stats::of(&wasm_pol[k]),
        )?;
    }
    row(w, "wasm both policies (sum of the calls)", &ws)?;
    row(
        w,
        "wasm `evaluate_blocking` wall (calls + host JSON encoding per policy)",
        &ww,
    )?;
    for (k, (name, _)) in policies.iter().enumerate() {
        row(
            w,
            &format!("native {name} (parse JSON + evaluate)"),
            &Stats::of(&nat_pol[k]),
        )?;
    }
    row(w, "native both policies", &ns)?;
    writeln!(w)?;

    writeln!(w, "## Cold start (ms)\n")?;
    writeln!(
        w,
        "| what | median | min | max | runs |\n|---|---:|---:|---:|---:|"
    )?;
    let row_ms = |w: &mut String, label: &str, samples: &[f64]| {
        let s = Stats::of(samples);
        writeln!(
            w,
            "| {label} | {:.1} | {:.1} | {:.1} | {} |",
            s.median,
            s.min,
            s.max,
            samples.len()
        )
    };
    row_ms(w, "compile both (`PolicyHost::load`, no cache)", &compile)?;
    row_ms(
        w,
        "populate cache (compile + serialize + write)",
        &[populate],
    )?;
    row_ms(w, "load both from precompiled `.cwasm` cache", &cached_load)?;
    row_ms(
        w,
        "first `evaluate_blocking` after a cached load",
        &first_eval,
    )?;
    writeln!(w)?;

    writeln!(w, "## checkov\n")?;
    let checkov_ratio = match &checkov {
        None => {
            writeln!(
                w,
                "Skipped: no `CHECKOV_PYTHON` (a python that can `import checkov`) and no \
                 `checkov` on PATH.\n"
            )?;
            None
        }
        Some(c) => {
            writeln!(
                w,
                "checkov {} via `{}`, in-process: imported once ({:.1} s), then a fresh \
                 CloudFormation `Runner` per scan of `template.yaml` ({} scans after {} warm-up).\n",
                c.version,
                c.python.display(),
                c.import_s,
                c.scans,
                CHECKOV_WARMUP
            )?;
            writeln!(
                w,
                "| what | median ms | min ms | max ms | passed / failed checks |\n|---|---:|---:|---:|---:|"
            )?;
            for (label, s) in [
                (
                    format!(
                        "scan, comparable checks only ({}: {})",
                        c.comparable_ids.len(),
                        c.comparable_ids.join(", ")
                    ),
                    &c.comparable,
                ),
                ("scan, all CloudFormation checks".to_string(), &c.all),
            ] {
                writeln!(
                    w,
                    "| {label} | {:.1} | {:.1} | {:.1} | {} / {} |",
                    s.median_ms, s.min_ms, s.max_ms, s.passed, s.failed
                )?;
            }
            match &c.whole {
                Ok((secs, cmd, code)) => writeln!(
                    w,
                    "| whole process `{cmd}` (wall, once; exit code {code}) | {:.0} | | | |",
                    secs * 1e3
                )?,
                Err(e) => writeln!(w, "| whole process | failed: {e} | | | |")?,
            }
            writeln!(w)?;
            Some((
                c.comparable.median_ms * 1e3 / ww.median,
                c.all.median_ms * 1e3 / ww.median,
            ))
        }
    };

    writeln!(w, "## Ratios and goals (medians)\n")?;
    writeln!(w, "| ratio | value | goal | |\n|---|---:|---:|---|")?;
    writeln!(
        w,
        "| wasm / native: sum of sandboxed calls vs parse + evaluate | {ratio_wn:.2}× | ≤ {GOAL_WASM_OVER_NATIVE}× | {} |",
        met(ratio_wn <= GOAL_WASM_OVER_NATIVE)
    )?;
    writeln!(
        w,
        "| wasm / native, end to end: `evaluate_blocking` wall vs parse + evaluate | {ratio_wn_e2e:.2}× | ≤ {GOAL_WASM_OVER_NATIVE}× | {} |",
        met(ratio_wn_e2e <= GOAL_WASM_OVER_NATIVE)
    )?;
    match checkov_ratio {
        Some((comparable, all)) => {
            writeln!(
                w,
                "| checkov (comparable checks) / wasm `evaluate_blocking` wall | {comparable:.0}× | ≥ {GOAL_CHECKOV_OVER_WASM}× | {} |",
                met(comparable >= GOAL_CHECKOV_OVER_WASM)
            )?;
            writeln!(
                w,
                "| checkov (all checks) / wasm `evaluate_blocking` wall | {all:.0}× | ≥ {GOAL_CHECKOV_OVER_WASM}× | {} |",
                met(all >= GOAL_CHECKOV_OVER_WASM)
            )?;
        }
        None => writeln!(
            w,
            "| checkov / wasm | not measured | ≥ {GOAL_CHECKOV_OVER_WASM}× | unknown (checkov not found) |"
        )?,
    }

    print!("{md}");
    if let Some(dir) = results_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&results_path, &md)
        .with_context(|| format!("writing {}", results_path.display()))?;
    eprintln!("\nwritten to {}", results_path.display());
    Ok(())
}

struct CheckovScan {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    passed: u64,
    failed: u64,
}

struct CheckovResult {
    python: PathBuf,
    version: String,
    import_s: f64,
    scans: usize,
    comparable_ids: Vec<String>,
    comparable: CheckovScan,
    all: CheckovScan,
    /// (seconds, command as shown, exit code) of one whole `checkov -f` process.
    whole: Result<(f64, String, i32), String>,
}

/// How to run checkov: the python that imports it, and the CLI if there is one.
struct Checkov {
    python: PathBuf,
    cli: Option<PathBuf>,
}

fn can_import_checkov(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import checkov"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `CHECKOV_PYTHON`, else the interpreter named by the shebang of `checkov` on PATH.
fn find_checkov() -> Option<Checkov> {
    if let Some(python) = std::env::var_os("CHECKOV_PYTHON").filter(|p| !p.is_empty()) {
        let python = PathBuf::from(python);
        if can_import_checkov(&python) {
            return Some(Checkov { python, cli: None });
        }
        eprintln!(
            "CHECKOV_PYTHON={} cannot `import checkov`; looking on PATH",
            python.display()
        );
    }
    let cli = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("checkov"))
        .find(|p| p.is_file())?;
    let text = std::fs::read(&cli).ok()?;
    let first = text.split(|b| *b == b'\n').next()?;
    let shebang = std::str::from_utf8(first).ok()?.strip_prefix("#!")?.trim();
    // `#!/usr/bin/env python3` or `#!/path/to/python`.
    let mut parts = shebang.split_whitespace();
    let interp = parts.next()?;
    let python = if interp.ends_with("/env") {
        PathBuf::from(parts.next()?)
    } else {
        PathBuf::from(interp)
    };
    if !can_import_checkov(&python) {
        eprintln!(
            "{} is on PATH but its python {} cannot `import checkov`; skipping checkov",
            cli.display(),
            python.display()
        );
        return None;
    }
    Some(Checkov {
        python,
        cli: Some(cli),
    })
}

fn run_checkov(c: &Checkov, template: &Path, scans: usize) -> anyhow::Result<CheckovResult> {
    let out = Command::new(&c.python)
        .arg("-c")
        .arg(CHECKOV_SCRIPT)
        .arg(template)
        .arg(scans.to_string())
        .arg(CHECKOV_WARMUP.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running checkov's in-process timer")?;
    if !out.status.success() {
        bail!("checkov's in-process timer exited with {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("checkov's in-process timer printed no JSON")?;
    let v: Value = serde_json::from_str(line)?;
    let scan = |key: &str| -> anyhow::Result<CheckovScan> {
        let s = &v[key];
        let f = |k: &str| s[k].as_f64().with_context(|| format!("checkov {key}.{k}"));
        let u = |k: &str| s[k].as_u64().with_context(|| format!("checkov {key}.{k}"));
        Ok(CheckovScan {
            median_ms: f("median_ms")?,
            min_ms: f("min_ms")?,
            max_ms: f("max_ms")?,
            passed: u("passed")?,
            failed: u("failed")?,
        })
    };

    // One whole process, for context: interpreter start-up and imports dominate it.
    let mut cmd = match &c.cli {
        Some(cli) => Command::new(cli),
        None => {
            let mut cmd = Command::new(&c.python);
            cmd.args(["-m", "checkov.main"]);
            cmd
        }
    };
    cmd.arg("-f").arg(template);
    let shown = match &c.cli {
        Some(_) => "checkov -f template.yaml",
        None => "python -m checkov.main -f template.yaml",
    };
    let start = Instant::now();
    let whole = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| {
            (
                start.elapsed().as_secs_f64(),
                shown.to_string(),
                s.code().unwrap_or(-1),
            )
        })
        .map_err(|e| e.to_string());

    Ok(CheckovResult {
        python: c.python.clone(),
        version: v["version"].as_str().unwrap_or("?").to_string(),
        import_s: v["import_s"].as_f64().unwrap_or(f64::NAN),
        scans,
        comparable_ids: v["comparable_checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        comparable: scan("comparable")?,
        all: scan("all")?,
        whole,
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn read_loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn git_rev(workspace: &Path) -> String {
    let rev = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    match rev {
        Some(r) if dirty => format!("{r} (with uncommitted changes)"),
        Some(r) => r,
        None => "unknown".into(),
    }
}
