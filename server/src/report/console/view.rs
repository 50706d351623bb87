//! What every page shares: the clock ages are told by, links (to GitHub and within the
//! console), and the view models of a commit, a run link, a finding, a change and an output.

use std::sync::atomic::{AtomicI64, Ordering};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{JobId, JobState, Kind, Trigger, short};
use crate::git::commits::CommitInfo;
use crate::policy::{Finding, Severity, Verdict};
use crate::report::redact::REDACTED;

/// The time pages tell ages by: the system's, or one fixed by a test.
#[derive(Debug, Default)]
pub struct Clock {
    fixed: AtomicI64,
}

impl Clock {
    /// Now, in ms since the epoch.
    pub fn now(&self) -> i64 {
        match self.fixed.load(Ordering::Relaxed) {
            0 => crate::queue::now(),
            t => t,
        }
    }

    /// Fixes now at `ms` (0: the system's again).
    pub fn fix(&self, ms: i64) {
        self.fixed.store(ms, Ordering::Relaxed);
    }
}

/// How long ago `then` was, in words: "just now", "5 min ago", "3 h ago", "12 days ago".
pub fn age(now: i64, then: i64) -> String {
    let s = (now - then).max(0) / 1000;
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        86_400..172_800 => "1 day ago".into(),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A time as a page prints it: `2026-01-01 00:00:00 UTC`.
pub fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

/// A duration in words: `45 s`, `3 min 5 s`, `2 h 1 min`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// What a path segment must escape: everything but unreserved characters.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\'')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// `path` with each `/`-separated segment percent-encoded.
pub fn path_segments(path: &str) -> String {
    path.split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

pub fn github_commit(repo: &str, sha: &str) -> String {
    format!(
        "https://github.com/{}/commit/{}",
        path_segments(repo),
        path_segments(sha)
    )
}

/// A file at a commit on GitHub, at `line` when known.
pub fn github_file(repo: &str, sha: &str, file: &str, line: Option<usize>) -> String {
    let anchor = line.map(|l| format!("#L{l}")).unwrap_or_default();
    format!(
        "https://github.com/{}/blob/{}/{}{anchor}",
        path_segments(repo),
        path_segments(sha),
        path_segments(file)
    )
}

pub fn github_pull(repo: &str, pr: u64) -> String {
    format!("https://github.com/{}/pull/{pr}", path_segments(repo))
}

/// The console's page of a stack folder.
pub fn stack_href(repo: &str, stack: &str) -> String {
    format!("/stacks/{}/{}", path_segments(repo), path_segments(stack))
}

pub fn run_href(id: JobId) -> String {
    format!("/runs/{id}")
}

pub fn pull_href(repo: &str, pr: u64) -> String {
    format!("/repos/{}/pulls/{pr}", path_segments(repo))
}

/// A commit: its short sha linking to GitHub, and what the mirror knows of it (empty when
/// it knows nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommitView {
    pub sha: String,
    pub short: String,
    pub url: String,
    pub summary: Option<String>,
    pub author: Option<String>,
    pub age: Option<String>,
    pub at: Option<String>,
}

impl CommitView {
    pub fn new(repo: &str, sha: &str, info: Option<&CommitInfo>, now: i64) -> Self {
        Self {
            sha: sha.to_string(),
            short: short(sha).to_string(),
            url: github_commit(repo, sha),
            summary: info.map(|i| i.summary.clone()),
            author: info.map(|i| i.author.clone()),
            age: info.map(|i| age(now, i.time.saturating_mul(1000))),
            at: info.map(|i| when(i.time.saturating_mul(1000))),
        }
    }
}

/// A link to a run, with what a list says of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RunLink {
    pub id: JobId,
    pub href: String,
    pub kind: Kind,
    pub state: JobState,
    pub trigger: Trigger,
    pub sha: String,
    pub short: String,
    pub age: String,
    pub at: String,
    pub verdict: Option<Verdict>,
}

impl RunLink {
    pub fn new(r: &crate::queue::RunSummary, now: i64) -> Self {
        Self {
            id: r.id,
            href: run_href(r.id),
            kind: r.kind,
            state: r.state,
            trigger: r.trigger,
            sha: r.sha.clone(),
            short: short(&r.sha).to_string(),
            age: age(now, r.created_at),
            at: when(r.created_at),
            verdict: r.verdict.as_deref().and_then(verdict),
        }
    }
}

pub fn verdict(s: &str) -> Option<Verdict> {
    serde_json::from_value(Value::String(s.to_string())).ok()
}

/// One policy finding, or a policy's error, with where it points on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FindingView {
    pub policy: String,
    pub rule: String,
    /// `None` for a policy that erred (its message says why).
    pub severity: Option<Severity>,
    pub resource: String,
    pub path: String,
    pub message: String,
    pub remediation: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    /// The file (and line, when known) at the run's commit on GitHub.
    pub href: Option<String>,
}

/// What a policy report (as a job's detail holds it) found.
pub struct ReportView {
    pub verdict: Option<Verdict>,
    pub findings: Vec<FindingView>,
}

/// The findings of `report`, each linked to its file at `sha`: the finding's own file (a
/// nested template) or `template`, at its line when the finding knows it.
pub fn findings(report: &Value, repo: &str, sha: &str, template: Option<&str>) -> ReportView {
    let mut out = Vec::new();
    for o in report["outcomes"].as_array().into_iter().flatten() {
        let policy = o["policy"].as_str().unwrap_or_default().to_string();
        if let Some(err) = o["error"].as_str() {
            out.push(FindingView {
                policy: policy.clone(),
                rule: String::new(),
                severity: None,
                resource: String::new(),
                path: String::new(),
                message: err.to_string(),
                remediation: String::new(),
                file: None,
                line: None,
                href: None,
            });
        }
        for f in o["findings"].as_array().into_iter().flatten() {
            let Ok(f) = serde_json::from_value::<Finding>(f.clone()) else {
                continue;
            };
            let file = f.file.clone().or_else(|| template.map(str::to_string));
            out.push(FindingView {
                href: file
                    .as_deref()
                    .map(|file| github_file(repo, sha, file, f.line)),
                policy: f.policy,
                rule: f.rule,
                severity: Some(f.severity),
                resource: f.resource,
                path: f.path,
                message: f.message,
                remediation: f.remediation,
                file,
                line: f.line,
            });
        }
    }
    // Errors first, then warnings, each in the policies' order.
    out.sort_by_key(|f| match f.severity {
        None => 0,
        Some(Severity::Error) => 1,
        Some(Severity::Warning) => 2,
    });
    ReportView {
        verdict: report["verdict"].as_str().and_then(verdict),
        findings: out,
    }
}

/// One row of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeView {
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    pub replacement: String,
    #[serde(default)]
    pub scope: Vec<String>,
}

/// The change set a detail holds (`None`: none planned, or no changes).
pub fn changes(v: &Value) -> Option<Vec<ChangeView>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|c| serde_json::from_value(c.clone()).ok())
            .collect()
    })
}

/// A stack output as recorded: redacted at the deploy unless the operator made it public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutputView {
    pub name: String,
    pub value: String,
    pub redacted: bool,
}

pub fn outputs(v: &Value) -> Vec<OutputView> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or(REDACTED).to_string();
            OutputView {
                name: name.clone(),
                redacted: value == REDACTED,
                value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_durations_read_as_words() {
        let now = 10 * 86_400_000;
        assert_eq!(age(now, now - 5_000), "just now");
        assert_eq!(age(now, now - 5 * 60_000), "5 min ago");
        assert_eq!(age(now, now - 3 * 3_600_000), "3 h ago");
        assert_eq!(age(now, 0), "10 days ago");
        assert_eq!(age(now, now + 1000), "just now");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn links_escape_what_names_hold() {
        assert_eq!(
            github_file("acme/infra", "abc", "stacks/my web/t.yaml", Some(12)),
            "https://github.com/acme/infra/blob/abc/stacks/my%20web/t.yaml#L12"
        );
        assert_eq!(
            stack_href("acme/infra", "a/b?c"),
            "/stacks/acme/infra/a/b%3Fc"
        );
        assert_eq!(
            stack_href("acme/infra", "<x>\"y"),
            "/stacks/acme/infra/%3Cx%3E%22y"
        );
    }
}
