//! What a policy returns.

use serde::{Deserialize, Serialize};

/// How bad a finding is. The host blocks a deploy on any `Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One violation, mirroring the WIT `finding` record. The host adds the policy name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule id, e.g. `open-ingress/world-open`.
    pub rule: String,
    pub severity: Severity,
    /// Logical id of the offending resource (empty when template-wide).
    pub resource: String,
    /// RFC 6901 JSON pointer into the template.
    pub path: String,
    /// What is wrong and why.
    pub message: String,
    /// What to do about it.
    pub remediation: String,
}

/// Collects findings in the order they are found, dropping exact repeats of
/// (rule, resource, path): `Fn::If` branches often lead to the same place twice.
#[derive(Debug, Default)]
pub struct Findings {
    items: Vec<Finding>,
}

impl Findings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, finding: Finding) {
        let seen = self.items.iter().any(|f| {
            f.rule == finding.rule && f.resource == finding.resource && f.path == finding.path
        });
        if !seen {
            self.items.push(finding);
        }
    }

    pub fn error(
        &mut self,
        rule: &str,
        resource: &str,
        path: &str,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) {
        self.add(
            Severity::Error,
            rule,
            resource,
            path,
            message.into(),
            remediation.into(),
        );
    }

    pub fn warning(
        &mut self,
        rule: &str,
        resource: &str,
        path: &str,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) {
        self.add(
            Severity::Warning,
            rule,
            resource,
            path,
            message.into(),
            remediation.into(),
        );
    }

    fn add(
        &mut self,
        severity: Severity,
        rule: &str,
        resource: &str,
        path: &str,
        message: String,
        remediation: String,
    ) {
        self.push(Finding {
            rule: rule.to_string(),
            severity,
            resource: resource.to_string(),
            path: path.to_string(),
            message,
            remediation,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_serialises_lowercase() {
        let json = serde_json::to_string(&Severity::Warning).unwrap();
        assert_eq!(json, "\"warning\"");
    }

    #[test]
    fn repeats_are_dropped() {
        let mut f = Findings::new();
        f.error("r/a", "X", "/Resources/X", "m", "fix");
        f.error("r/a", "X", "/Resources/X", "other words", "fix");
        f.warning("r/a", "X", "/Resources/X/Properties", "m", "fix");
        assert_eq!(f.len(), 2);
    }
}
