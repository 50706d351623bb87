//! What CloudFormation expands at deploy time, out of the policies' sight: transforms and
//! macros, `Fn::Transform`, nested stacks, modules, stack sets and provisioned products.
//! The host looks for them itself, beside the policies, so that no policy can forget one:
//! each is refused, and the verdict is `error`.

use serde_json::Value;
use stackgate_policy_sdk::pointer;

/// Templates nest far less; a deeper one is refused rather than walked.
pub const MAX_DEPTH: usize = 128;

/// A construct CloudFormation expands into something the gate cannot see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// The template's `Transform` section: SAM, `AWS::Include`, language extensions, macros.
    Transform,
    /// `Fn::Transform` anywhere in the template.
    FnTransform,
    /// `AWS::CloudFormation::Stack`: a child template CloudFormation fetches by URL.
    NestedStack,
    /// A `…::MODULE` resource type: a registered module's resources.
    Module,
    /// `AWS::CloudFormation::StackSet`: a template deployed to other accounts and regions.
    StackSet,
    /// `AWS::ServiceCatalog::CloudFormationProvisionedProduct`: a product's template.
    ProvisionedProduct,
    /// Nested deeper than [`MAX_DEPTH`]: not walked, so not proven free of the above.
    TooDeep,
}

impl Construct {
    pub fn rule(self) -> &'static str {
        match self {
            Construct::Transform => "stackgate/transform",
            Construct::FnTransform => "stackgate/fn-transform",
            Construct::NestedStack => "stackgate/nested-stack",
            Construct::Module => "stackgate/module",
            Construct::StackSet => "stackgate/stack-set",
            Construct::ProvisionedProduct => "stackgate/provisioned-product",
            Construct::TooDeep => "stackgate/too-deep",
        }
    }

    fn is_transform(self) -> bool {
        matches!(self, Construct::Transform | Construct::FnTransform)
    }
}

/// One construct found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub construct: Construct,
    /// The logical id of the resource it sits in; empty at template level.
    pub resource: String,
    /// RFC 6901 pointer into the template.
    pub pointer: String,
    /// What it is, as written: `Transform: AWS::Serverless-2016-10-31`.
    pub what: String,
}

impl Expansion {
    /// Why it is refused, and, for transforms, where it could be judged.
    pub fn message(&self, offline: bool) -> String {
        let why = match self.construct {
            Construct::Transform | Construct::FnTransform => {
                "CloudFormation runs this transform at deploy time, and the policies cannot see \
                 the template it produces"
            }
            Construct::NestedStack => {
                "CloudFormation deploys the child template it names, and the policies cannot see \
                 a template outside the stack folder"
            }
            Construct::Module => {
                "CloudFormation replaces it with the module's resources, which the policies \
                 cannot see"
            }
            Construct::StackSet => {
                "CloudFormation deploys the template it holds to other accounts and regions, \
                 unjudged"
            }
            Construct::ProvisionedProduct => {
                "Service Catalog deploys the product's template, which the policies cannot see"
            }
            Construct::TooDeep => "the template is not walked any deeper",
        };
        let tail = match (self.construct.is_transform(), offline) {
            (true, true) => {
                "; `stackgate check` reads only the files, and a transform can only be judged \
                 on the processed template CloudFormation makes of it: that needs `plan`"
            }
            (true, false) => {
                "; stackgate does not judge processed templates yet, so the transform is \
                 refused"
            }
            _ => "",
        };
        format!("{}: {why}{tail}.", self.what)
    }

    pub fn remediation(&self) -> &'static str {
        match self.construct {
            Construct::Transform | Construct::FnTransform => {
                "Write the resources the transform would produce into the template itself."
            }
            Construct::NestedStack => {
                "Put the child template in the stack folder and name it by a relative path in \
                 TemplateURL, or deploy it as a stack of its own."
            }
            Construct::Module => "Write the module's resources into the template itself.",
            Construct::StackSet | Construct::ProvisionedProduct => {
                "Deploy the template as a stack folder of its own, so that the gate judges it."
            }
            Construct::TooDeep => "Flatten the template.",
        }
    }
}

const STACK: &str = "AWS::CloudFormation::Stack";
const STACK_SET: &str = "AWS::CloudFormation::StackSet";
const PROVISIONED_PRODUCT: &str = "AWS::ServiceCatalog::CloudFormationProvisionedProduct";

/// Every construct in `template` that CloudFormation expands at deploy time, in document
/// order. `local` says whether a nested stack's resource id names a child the caller
/// expands itself (a template in the stack folder); those are not reported.
pub fn scan(template: &Value, local: &dyn Fn(&str) -> bool) -> Vec<Expansion> {
    let mut out = Vec::new();
    let Value::Object(top) = template else {
        return out;
    };
    if let Some(t) = top.get("Transform") {
        out.push(Expansion {
            construct: Construct::Transform,
            resource: String::new(),
            pointer: "/Transform".into(),
            what: format!("`Transform: {}`", names(t)),
        });
    }
    if let Some(Value::Object(resources)) = top.get("Resources") {
        for (id, res) in resources {
            let ty = res.get("Type").and_then(Value::as_str).unwrap_or_default();
            let ptr = pointer::child("/Resources", id);
            let props = res.get("Properties");
            let construct = match ty {
                STACK if !local(id) => Some(Construct::NestedStack),
                STACK_SET
                    if props.is_some_and(|p| {
                        p.get("TemplateBody").is_some() || p.get("TemplateURL").is_some()
                    }) =>
                {
                    Some(Construct::StackSet)
                }
                PROVISIONED_PRODUCT => Some(Construct::ProvisionedProduct),
                _ if ty.ends_with("::MODULE") => Some(Construct::Module),
                _ => None,
            };
            if let Some(construct) = construct {
                let url = props
                    .and_then(|p| p.get("TemplateURL"))
                    .map(|u| format!(" with TemplateURL {}", short(u)))
                    .unwrap_or_default();
                out.push(Expansion {
                    construct,
                    resource: id.clone(),
                    pointer: ptr,
                    what: format!("resource `{id}` of type `{ty}`{url}"),
                });
            }
        }
    }
    fn_transforms(template, &mut out);
    out
}

/// Every `Fn::Transform` key at any depth, walked with an explicit stack.
fn fn_transforms(template: &Value, out: &mut Vec<Expansion>) {
    let mut stack: Vec<(&Value, String, usize)> = vec![(template, String::new(), 0)];
    while let Some((value, ptr, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            out.push(Expansion {
                construct: Construct::TooDeep,
                resource: resource_of(&ptr),
                pointer: ptr,
                what: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
            continue;
        }
        match value {
            Value::Object(m) => {
                if let Some(t) = m.get("Fn::Transform") {
                    let at = pointer::child(&ptr, "Fn::Transform");
                    out.push(Expansion {
                        construct: Construct::FnTransform,
                        resource: resource_of(&at),
                        what: format!("`Fn::Transform` ({})", transform_name(t)),
                        pointer: at,
                    });
                }
                // Reversed, so that findings come out in document order.
                for (k, v) in m.iter().rev().filter(|(k, _)| *k != "Fn::Transform") {
                    if v.is_object() || v.is_array() {
                        stack.push((v, pointer::child(&ptr, k), depth + 1));
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate().rev() {
                    if v.is_object() || v.is_array() {
                        stack.push((v, pointer::index(&ptr, i), depth + 1));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The logical id in `/Resources/<id>/...`, else empty.
fn resource_of(ptr: &str) -> String {
    ptr.strip_prefix("/Resources/")
        .and_then(|rest| rest.split('/').next())
        .map(|id| id.replace("~1", "/").replace("~0", "~"))
        .unwrap_or_default()
}

fn names(t: &Value) -> String {
    match t {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(transform_name)
            .collect::<Vec<_>>()
            .join(", "),
        other => transform_name(other),
    }
}

fn transform_name(t: &Value) -> String {
    match t.get("Name") {
        Some(Value::String(n)) => n.clone(),
        _ => short(t),
    }
}

/// A value for a message: strings as they are, anything else as short JSON.
fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    crate::policy::truncate(&s, 80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn constructs(t: Value) -> Vec<(Construct, String, String)> {
        scan(&t, &|_| false)
            .into_iter()
            .map(|e| (e.construct, e.resource, e.pointer))
            .collect()
    }

    #[test]
    fn finds_every_construct_with_its_pointer() {
        let t = json!({
            "Transform": ["AWS::LanguageExtensions", {"Name": "AWS::Include", "Parameters": {}}],
            "Resources": {
                "Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "https://x/t.yaml"}},
                "Mod": {"Type": "Acme::Net::Vpc::MODULE"},
                "Set": {"Type": "AWS::CloudFormation::StackSet", "Properties": {"TemplateBody": "{}"}},
                "SetByName": {"Type": "AWS::CloudFormation::StackSet", "Properties": {"StackSetName": "x"}},
                "Product": {"Type": "AWS::ServiceCatalog::CloudFormationProvisionedProduct"},
                "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
                    "SecurityGroupIngress": [{"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://b/k"}}}]
                }},
                "Fn::Transform": {"Name": "AWS::Include"}
            }
        });
        let got = constructs(t);
        let want = [
            (Construct::Transform, "", "/Transform"),
            (Construct::NestedStack, "Child", "/Resources/Child"),
            (Construct::Module, "Mod", "/Resources/Mod"),
            (Construct::StackSet, "Set", "/Resources/Set"),
            (
                Construct::ProvisionedProduct,
                "Product",
                "/Resources/Product",
            ),
            (
                Construct::FnTransform,
                "Fn::Transform",
                "/Resources/Fn::Transform",
            ),
            (
                Construct::FnTransform,
                "Sg",
                "/Resources/Sg/Properties/SecurityGroupIngress/0/Fn::Transform",
            ),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(c, r, p)| (*c, r.to_string(), p.to_string()))
            .collect();
        let mut sorted_got = got.clone();
        sorted_got.sort_by(|a, b| a.2.cmp(&b.2));
        let mut sorted_want = want.clone();
        sorted_want.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(sorted_got, sorted_want);
    }

    #[test]
    fn local_children_and_plain_templates_pass() {
        let t = json!({"Resources": {
            "Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "child.yaml"}},
            "B": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": [{"Key": "Fn::Transform", "Value": "x"}]}}
        }});
        assert!(scan(&t, &|id| id == "Child").is_empty());
        assert_eq!(constructs(t).len(), 1);
    }

    #[test]
    fn the_message_says_a_transform_needs_plan_offline() {
        let t = json!({"Transform": "AWS::Serverless-2016-10-31", "Resources": {}});
        let e = &scan(&t, &|_| false)[0];
        assert!(e.what.contains("AWS::Serverless-2016-10-31"), "{}", e.what);
        assert!(
            e.message(true).contains("needs `plan`"),
            "{}",
            e.message(true)
        );
        assert!(!e.message(false).contains("needs `plan`"));
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_not_walked() {
        let mut v = json!("x");
        for _ in 0..(MAX_DEPTH + 5) {
            v = json!([v]);
        }
        let t = json!({"Resources": {"B": {"Type": "T", "Properties": {"X": v}}}});
        let got = constructs(t);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Construct::TooDeep);
        assert_eq!(got[0].1, "B");
    }
}
