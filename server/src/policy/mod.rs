//! The policy gate: WebAssembly policies run in a tight sandbox, and any doubt fails
//! closed.

pub mod expansion;
pub mod gate;
pub mod host;
pub mod input;
pub mod live;
pub mod lookup;
pub mod refusal;

use serde::{Deserialize, Serialize};

pub use host::{Limits, PolicyHost, PolicySource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing a policy found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub policy: String,
    pub rule: String,
    pub severity: Severity,
    pub resource: String,
    pub path: String,
    pub message: String,
    pub remediation: String,
    /// The template line `path` points at, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The template file `line` is in, when it is not the stack's own template (a local
    /// nested stack's child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Error,
}

/// One policy's verdict on one input.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub digest: String,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Why the verdict is `error`: a trap, a limit, malformed output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub micros: u64,
}

/// Every policy's verdict on one input, and the verdict of them all.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub outcomes: Vec<Outcome>,
    /// Values looked up for `NoEcho` parameters: secret as the parameters are, never shown.
    #[serde(skip)]
    pub hidden: Vec<String>,
}

impl Report {
    pub fn from_outcomes(outcomes: Vec<Outcome>) -> Self {
        let verdict = if outcomes.is_empty() || outcomes.iter().any(|o| o.verdict == Verdict::Error)
        {
            // No policy at all is a misconfiguration, not a pass.
            Verdict::Error
        } else if outcomes.iter().any(|o| o.verdict == Verdict::Fail) {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
        Self {
            verdict,
            outcomes,
            hidden: Vec::new(),
        }
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.outcomes.iter().flat_map(|o| o.findings.iter())
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings().filter(|f| f.severity == severity).count()
    }

    /// One line for a commit status: at most 140 characters, as GitHub requires.
    pub fn summary(&self) -> String {
        let errors = self.count(Severity::Error);
        let warnings = self.count(Severity::Warning);
        let s = match self.verdict {
            Verdict::Pass => format!(
                "{} policies passed, {warnings} warning(s)",
                self.outcomes.len()
            ),
            Verdict::Fail => {
                let first = self
                    .findings()
                    .find(|f| f.severity == Severity::Error)
                    .map(|f| format!(": {} {}", f.rule, f.resource))
                    .unwrap_or_default();
                format!("{errors} error(s), {warnings} warning(s){first}")
            }
            Verdict::Error => {
                let why = self
                    .outcomes
                    .iter()
                    .find_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.policy)))
                    .unwrap_or_else(|| "no policies configured".into());
                format!("policy error, nothing deploys: {why}")
            }
        };
        truncate(&s, 140)
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}
