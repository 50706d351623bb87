//! What a policy returns.

use serde::{Deserialize, Serialize};

use crate::input::{ALLOW_DEPLOY_TIME_VALUES, Input};
use crate::resolve::Doubt;

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
    /// Doubt is reported as a warning rather than an error (setting
    /// `allow_deploy_time_values`).
    doubt_allowed: bool,
}

impl Findings {
    /// A collector where doubt is an error.
    pub fn new() -> Self {
        Self::default()
    }

    /// A collector that honours the input's `allow_deploy_time_values` setting.
    pub fn for_input(input: &Input<'_>) -> Result<Self, String> {
        Ok(Self {
            items: Vec::new(),
            doubt_allowed: input.doubt_allowed()?,
        })
    }

    /// A value the policy cannot see through. When CloudFormation fetches it from
    /// elsewhere at deploy time (`doubt`), it is an error: doubt fails closed, unless the
    /// operator allowed it for this policy. Anything else unresolved is a warning.
    pub fn unresolved(
        &mut self,
        doubt: Option<&Doubt>,
        rule: &str,
        resource: &str,
        path: &str,
        message: impl Into<String>,
        remediation: impl Into<String>,
    ) {
        let (mut message, mut remediation) = (message.into(), remediation.into());
        let severity = match doubt {
            Some(d) => {
                message.push_str(&format!(
                    " {} comes from {} at deploy time, out of the policy's sight, so doubt fails \
                     closed{}.",
                    d.what,
                    d.source.describe(),
                    if self.doubt_allowed {
                        " (relaxed to a warning by the server's configuration)"
                    } else {
                        ""
                    }
                ));
                remediation.push_str(&format!(
                    " Where stackgate has AWS access it looks up plain SSM String parameters and \
                     exports itself; anything else needs the value in the repository, or an \
                     operator setting `{ALLOW_DEPLOY_TIME_VALUES}` for this policy in the \
                     server configuration."
                ));
                if self.doubt_allowed {
                    Severity::Warning
                } else {
                    Severity::Error
                }
            }
            None => Severity::Warning,
        };
        self.add(severity, rule, resource, path, message, remediation);
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
    fn doubt_is_an_error_unless_allowed() {
        let doubt = Doubt {
            source: crate::resolve::Source::Import,
            what: "`Fn::ImportValue` of `x`".into(),
        };
        let mut f = Findings::new();
        f.unresolved(Some(&doubt), "r/u", "X", "/a", "m", "fix");
        f.unresolved(None, "r/u", "X", "/b", "m", "fix");
        let v = f.into_vec();
        assert_eq!(v[0].severity, Severity::Error);
        assert!(
            v[0].message.contains("doubt fails closed"),
            "{}",
            v[0].message
        );
        assert_eq!(v[1].severity, Severity::Warning);

        let input = serde_json::json!({"template": {"Resources": {}},
            "settings": {"allow_deploy_time_values": true}});
        let input = Input::parse(&input).unwrap();
        let mut f = Findings::for_input(&input).unwrap();
        f.unresolved(Some(&doubt), "r/u", "X", "/a", "m", "fix");
        assert_eq!(f.into_vec()[0].severity, Severity::Warning);
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
