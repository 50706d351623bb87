//! What the service benches share: their knobs, the emulator they start, reading serve's
//! log, percentiles and the machine's context for a report.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use crate::support::root;

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The emulator: `STACKGATE_TEST_AWS_ENDPOINT`, or one started here on the port in
/// `port_env` (else `default_port`) with `env`, and stopped when dropped.
pub struct Emulator {
    pub port: Option<String>,
}

impl Emulator {
    pub fn get(port_env: &str, default_port: &str, env: &[(&str, String)]) -> Self {
        if std::env::var("STACKGATE_TEST_AWS_ENDPOINT").is_ok() {
            return Self { port: None };
        }
        let port = env_str(port_env, default_port);
        let ok = Command::new("bash")
            .arg(root().join("deploy/local/emulator.sh"))
            .arg("start")
            .env("STACKGATE_EMULATOR_PORT", &port)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the AWS emulator did not start; run deploy/local/setup.sh first"
        );
        // SAFETY: set once at the start of main, before any thread exists.
        unsafe {
            std::env::set_var(
                "STACKGATE_TEST_AWS_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
        };
        Self { port: Some(port) }
    }

    /// Its log, when started here.
    pub fn log(&self) -> Option<PathBuf> {
        let port = self.port.as_ref()?;
        Some(root().join(format!(".local/emulator-{port}.log")))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(port) = &self.port {
            let _ = Command::new("bash")
                .arg(root().join("deploy/local/emulator.sh"))
                .arg("stop")
                .env("STACKGATE_EMULATOR_PORT", port)
                .status();
        }
    }
}

/// The value at fraction `p` of `sorted` (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Without the terminal colours the log is written with.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (CPU model, commit, date, load average) for a report's machine section.
pub fn machine() -> (String, String, String, String) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .current_dir(root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    (
        cpu,
        out("git", &["describe", "--always", "--dirty"]),
        out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        load,
    )
}

/// Prints the report, writes it to `results/<name>.md`, and keeps serve's log (`log`) as
/// `<tmp>/<name>-serve.log`.
pub fn write_report(name: &str, report: &str, log: &std::path::Path) {
    print!("{report}");
    let path = root().join(format!("server/benches/results/{name}.md"));
    if let Err(e) = std::fs::write(&path, report) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    let kept = std::env::temp_dir().join(format!("{name}-serve.log"));
    if std::fs::copy(log, &kept).is_ok() {
        eprintln!("serve's log: {}", kept.display());
    }
}
