//! The input document and a typed view of the template.
//!
//! ```json
//! {"template": {...}, "parameters": {"Name": "value"}, "capabilities": ["CAPABILITY_IAM"],
//!  "stack": {"name": "...", "region": "..."}, "event": {"kind": "push", "sha": "..."},
//!  "resolved": {"ssm": {"/name": "value"}, "imports": {"export": "value"}}, "settings": {...}}
//! ```
//! Only `template` is required. Anything malformed is an `Err`: the host fails closed.

use serde_json::{Map, Value};

use crate::resolve::{Lookups, Resolver};
use crate::template::{Stack, Template};

/// The setting that turns doubt (values fetched from elsewhere at deploy time) back into
/// warnings for one policy. Only the server's configuration sets it.
pub const ALLOW_DEPLOY_TIME_VALUES: &str = "allow_deploy_time_values";

/// The parsed input, borrowing from the JSON value the host passed.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub template: Template<'a>,
    /// Deployment parameter values; a missing entry falls back to the template's Default.
    pub parameters: Option<&'a Map<String, Value>>,
    pub stack: Stack<'a>,
    pub event: Event<'a>,
    /// The capabilities the deployment grants CloudFormation (`CAPABILITY_IAM`, ...), all
    /// strings; see [`Input::capabilities`].
    capabilities: &'a [Value],
    /// What the host looked up before the policies ran.
    pub lookups: Lookups<'a>,
    pub settings: Settings<'a>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Event<'a> {
    pub kind: Option<&'a str>,
    pub sha: Option<&'a str>,
}

impl<'a> Input<'a> {
    pub fn parse(value: &'a Value) -> Result<Self, String> {
        let root = value
            .as_object()
            .ok_or("policy input must be a JSON object")?;
        let template = Template::parse(
            root.get("template")
                .ok_or("policy input has no `template`")?,
        )?;
        let parameters = optional_object(root, "parameters")?;
        let stack = optional_object(root, "stack")?.map_or(Ok(Stack::default()), |s| {
            Ok::<_, String>(Stack {
                name: optional_str(s, "stack", "name")?,
                region: optional_str(s, "stack", "region")?,
            })
        })?;
        let event = optional_object(root, "event")?.map_or(Ok(Event::default()), |e| {
            Ok::<_, String>(Event {
                kind: optional_str(e, "event", "kind")?,
                sha: optional_str(e, "event", "sha")?,
            })
        })?;
        let capabilities: &[Value] = match root.get("capabilities") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items,
            Some(_) => return Err("policy input `capabilities` must be a list of strings".into()),
        };
        let lookups = optional_object(root, "resolved")?.map_or(Ok(Lookups::default()), |r| {
            Ok::<_, String>(Lookups {
                ssm: optional_object(r, "ssm")?,
                imports: optional_object(r, "imports")?,
            })
        })?;
        let settings = Settings(optional_object(root, "settings")?);
        Ok(Input {
            template,
            parameters,
            stack,
            event,
            capabilities,
            lookups,
            settings,
        })
    }

    /// A resolver for intrinsics in this input's template.
    pub fn resolver(&self) -> Resolver<'a> {
        Resolver::new(self.template, self.parameters, self.stack).with_lookups(self.lookups)
    }

    /// The capabilities the deployment grants CloudFormation, e.g. `CAPABILITY_IAM`.
    pub fn capabilities(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.capabilities.iter().filter_map(Value::as_str)
    }

    /// Whether the operator let this policy treat doubt as a warning (setting
    /// [`ALLOW_DEPLOY_TIME_VALUES`], default `false`: doubt is an error).
    pub fn doubt_allowed(&self) -> Result<bool, String> {
        self.settings.bool(ALLOW_DEPLOY_TIME_VALUES, false)
    }
}

fn optional_object<'a>(
    root: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("policy input `{key}` must be a JSON object")),
    }
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("policy input `{parent}.{key}` must be a string")),
    }
}

/// The policy's own settings from the server configuration; absent means defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings<'a>(Option<&'a Map<String, Value>>);

impl<'a> Settings<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// A boolean, or `default` when the key is absent.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("setting `{key}` must be true or false, got {v}")),
        }
    }

    /// A list of integers in `lo..=hi`, or `default` when the key is absent.
    pub fn int_list(
        &self,
        key: &str,
        lo: i64,
        hi: i64,
        default: &[i64],
    ) -> Result<Vec<i64>, String> {
        let Some(value) = self.get(key) else {
            return Ok(default.to_vec());
        };
        let items = value
            .as_array()
            .ok_or_else(|| format!("setting `{key}` must be a list of integers"))?;
        items
            .iter()
            .map(|v| {
                v.as_i64().filter(|n| (lo..=hi).contains(n)).ok_or_else(|| {
                    format!("setting `{key}` must hold integers in {lo}..={hi}, got {v}")
                })
            })
            .collect()
    }

    /// A list of strings, or `default` when the key is absent.
    pub fn str_list(&self, key: &str, default: &[&str]) -> Result<Vec<String>, String> {
        let Some(value) = self.get(key) else {
            return Ok(default.iter().map(|s| s.to_string()).collect());
        };
        let items = value
            .as_array()
            .ok_or_else(|| format!("setting `{key}` must be a list of strings"))?;
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("setting `{key}` must hold strings, got {v}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_full_input() {
        let v = json!({
            "template": {"Resources": {"A": {"Type": "AWS::S3::Bucket"}}},
            "parameters": {"P": "x"},
            "stack": {"name": "s", "region": "eu-west-1"},
            "event": {"kind": "push", "sha": "abc"},
            "capabilities": ["CAPABILITY_IAM"],
            "settings": {"ports": [80, 443]}
        });
        let input = Input::parse(&v).unwrap();
        assert_eq!(input.capabilities().collect::<Vec<_>>(), ["CAPABILITY_IAM"]);
        assert!(!input.doubt_allowed().unwrap());
        assert_eq!(input.stack.region, Some("eu-west-1"));
        assert_eq!(input.event.kind, Some("push"));
        assert_eq!(
            input.settings.int_list("ports", 0, 65535, &[80]).unwrap(),
            vec![80, 443]
        );
        assert_eq!(
            input.settings.int_list("other", 0, 65535, &[80]).unwrap(),
            vec![80]
        );
        assert!(input.settings.bool("flag", true).unwrap());
        assert!(input.settings.int_list("ports", 0, 100, &[]).is_err());
        assert!(input.settings.bool("ports", false).is_err());
        let r: Vec<_> = input.template.resources().collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].pointer, "/Resources/A");
        assert_eq!(r[0].property_pointer("X"), "/Resources/A/Properties/X");
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(Input::parse(&json!([])).is_err());
        assert!(Input::parse(&json!({})).is_err());
        assert!(Input::parse(&json!({"template": {}})).is_err());
        assert!(Input::parse(&json!({"template": {"Resources": {"A": {}}}})).is_err());
        assert!(
            Input::parse(
                &json!({"template": {"Resources": {"A": {"Type": "T", "Properties": []}}}})
            )
            .is_err()
        );
        let bad_settings = json!({"template": {"Resources": {}}, "settings": {"ports": ["x"]}});
        let input = Input::parse(&bad_settings).unwrap();
        assert!(input.settings.int_list("ports", 0, 65535, &[]).is_err());
        assert!(
            Input::parse(&json!({"template": {"Resources": {}}, "stack": {"region": 1}})).is_err()
        );
        assert!(
            Input::parse(&json!({"template": {"Resources": {}}, "capabilities": [1]})).is_err()
        );
        assert!(Input::parse(&json!({"template": {"Resources": {}}, "resolved": []})).is_err());
    }

    #[test]
    fn minimal_input_has_defaults() {
        let v = json!({"template": {"Resources": {}}, "settings": null});
        let input = Input::parse(&v).unwrap();
        assert!(input.parameters.is_none());
        assert!(input.stack.name.is_none());
        assert!(input.settings.get("x").is_none());
    }
}
