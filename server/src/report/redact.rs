//! What the run pages, the job API and the logs must not show: the values of `NoEcho`
//! parameters (anywhere), and stack outputs the operator did not list as public (an output
//! may be a password or a connection string).

use serde_json::{Map, Value};

use crate::policy::input::no_echo;
use crate::stack::Stack;

pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not searched for in text: replacing every `1` or `on` in a
/// page would hide more than it protects. Such a value is still never shown as an output.
const MIN_SEARCHED: usize = 4;

/// The secrets of one stack.
#[derive(Debug, Default)]
pub struct Redactor {
    no_echo: Vec<String>,
    /// The stack could not be read (a resumed deploy whose commit is gone): hide every output.
    unknown: bool,
}

impl Redactor {
    /// The resolved values of the template's `NoEcho` parameters.
    pub fn for_stack(stack: &Stack) -> Self {
        let params = stack.template.doc.value.get("Parameters");
        let resolved = stack.resolved_parameters();
        let mut no_echo: Vec<String> = params
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, decl)| no_echo(decl))
            .filter_map(|(name, _)| resolved.get(name).cloned())
            .filter(|v| !v.is_empty())
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        no_echo.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self {
            no_echo,
            unknown: false,
        }
    }

    /// Also hides `values` (what the gate looked up for `NoEcho` parameters).
    pub fn and(mut self, values: &[String]) -> Self {
        self.no_echo
            .extend(values.iter().filter(|v| !v.is_empty()).cloned());
        self.no_echo.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self
    }

    /// For when the stack's definition cannot be read.
    pub fn unknown() -> Self {
        Self {
            no_echo: Vec::new(),
            unknown: true,
        }
    }

    /// `text` with every `NoEcho` value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.no_echo.iter().filter(|s| s.len() >= MIN_SEARCHED) {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Every string in `value`, redacted in place.
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                let r = self.text(s);
                if r != *s {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }

    /// Outputs as shown: a public output's value (unless it carries a `NoEcho` value),
    /// every other output's name only.
    pub fn outputs(&self, outputs: &[(String, String)], public: &[String]) -> Value {
        let mut out = Map::new();
        for (name, value) in outputs {
            let shown = !self.unknown
                && public.iter().any(|p| p == name)
                && !self.no_echo.iter().any(|s| value.contains(s.as_str()));
            let v = if shown {
                self.text(value)
            } else {
                REDACTED.into()
            };
            out.insert(name.clone(), Value::String(v));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::DirFiles;

    fn stack(template: &str, deployment: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deployment.yaml"), deployment).unwrap();
        std::fs::write(dir.path().join("template.yaml"), template).unwrap();
        Stack::load(&DirFiles::open(dir.path()).unwrap()).unwrap()
    }

    const TEMPLATE: &str = "Parameters:\n  DbPassword:\n    Type: String\n    NoEcho: true\n  Env:\n    Type: String\nResources:\n  P:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Type: String\n      Value: !Ref DbPassword\nOutputs:\n  Password:\n    Value: !Ref DbPassword\n  Env:\n    Value: !Ref Env\n";

    #[test]
    fn no_echo_values_are_hidden_everywhere() {
        let s = stack(
            TEMPLATE,
            "template-file-path: template.yaml\nstack-name: s\nparameters:\n  DbPassword: hunter2hunter2\n  Env: prod\n",
        );
        let r = Redactor::for_stack(&s);
        let mut v = serde_json::json!({"events": [{"reason": "value hunter2hunter2 is invalid"}]});
        r.json(&mut v);
        assert_eq!(v["events"][0]["reason"], "value [redacted] is invalid");
        // Listed as public, but it is the NoEcho value: still hidden.
        let public = vec!["Password".to_string(), "Env".to_string()];
        let outputs = vec![
            ("Password".to_string(), "hunter2hunter2".to_string()),
            ("Env".to_string(), "prod".to_string()),
        ];
        assert_eq!(
            r.outputs(&outputs, &public),
            serde_json::json!({"Password": REDACTED, "Env": "prod"})
        );
        assert_eq!(
            r.outputs(&outputs, &[]),
            serde_json::json!({"Password": REDACTED, "Env": REDACTED})
        );
        assert_eq!(
            Redactor::unknown().outputs(&outputs, &public)["Env"],
            REDACTED
        );
    }
}
