//! The reference graph: which resources use a security group.
//!
//! A resource *uses* a group when the group appears, by `Ref` or `Fn::GetAtt [G, GroupId]`,
//! in a security-group list property anywhere in its properties: `SecurityGroups` and
//! `SecurityGroupIds` of any resource type, including nested ones such as
//! `LaunchTemplateData.NetworkInterfaces[].Groups` or ECS `AwsvpcConfiguration`.
//! A rule on a group (`SourceSecurityGroupId`, `GroupId` of a standalone ingress) is not a use.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::pointer;
use crate::resolve::{Resolved, Resolver};

/// Property names that hold the security groups a resource is attached to.
pub const GROUP_LIST_KEYS: &[&str] = &[
    "SecurityGroups",
    "SecurityGroupIds",
    "VpcSecurityGroupIds",
    "VPCSecurityGroups",
    // EC2 instance / network interface, and launch-template network interfaces.
    "GroupSet",
    "Groups",
];

/// How deep [`GroupUses::build`] walks into properties. The host refuses deeper templates
/// and serde_json stops at 128; past this the walk fails rather than recursing on.
pub const MAX_DEPTH: usize = 128;

/// Resource types whose security-group-ish properties are rules, not attachments.
const NOT_USERS: &[&str] = &[
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SecurityGroupEgress",
];

/// One resource attaching one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupUse {
    /// Logical id of the resource that uses the group.
    pub user: String,
    /// Its resource type.
    pub user_type: String,
    /// Where the reference sits.
    pub pointer: String,
}

/// Security group logical id → every resource that uses it (all `Fn::If` branches).
#[derive(Clone, Debug, Default)]
pub struct GroupUses {
    uses: BTreeMap<String, Vec<GroupUse>>,
}

impl GroupUses {
    pub fn build(resolver: &Resolver<'_>) -> Result<Self, String> {
        let template = resolver.template();
        let mut uses: BTreeMap<String, Vec<GroupUse>> = BTreeMap::new();
        for res in template.resources() {
            if NOT_USERS.contains(&res.kind) {
                continue;
            }
            let Some(props) = res.properties else {
                continue;
            };
            let mut found = Vec::new();
            for (key, value) in props {
                collect(
                    resolver,
                    key,
                    value,
                    &res.property_pointer(key),
                    0,
                    &mut found,
                )?;
            }
            for (group, ptr) in found {
                if template.resource(&group).is_none() {
                    continue;
                }
                let entry = uses.entry(group).or_default();
                if !entry.iter().any(|u| u.user == res.id && u.pointer == ptr) {
                    entry.push(GroupUse {
                        user: res.id.to_string(),
                        user_type: res.kind.to_string(),
                        pointer: ptr,
                    });
                }
            }
        }
        Ok(GroupUses { uses })
    }

    /// Every use of `group` (a logical id), in template order.
    pub fn users(&self, group: &str) -> &[GroupUse] {
        self.uses.get(group).map_or(&[], Vec::as_slice)
    }
}

/// Walks a property; at a group-list key, records each referenced logical id.
fn collect(
    resolver: &Resolver<'_>,
    key: &str,
    value: &Value,
    ptr: &str,
    depth: usize,
    found: &mut Vec<(String, String)>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "properties nest deeper than {MAX_DEPTH} levels at {ptr}"
        ));
    }
    if GROUP_LIST_KEYS.contains(&key) {
        for el in resolver.elements(value, ptr)? {
            if let Some(group) = group_reference(&el.value) {
                found.push((group.to_string(), el.pointer));
            }
        }
        return Ok(());
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                collect(resolver, k, v, &pointer::child(ptr, k), depth + 1, found)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                // Array elements have no key of their own; keep the parent's context out.
                collect(resolver, "", v, &pointer::index(ptr, i), depth + 1, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The groups a standalone `AWS::EC2::SecurityGroupIngress` (properties `props` at `ptr`)
/// applies to, one per value its `GroupId` or `GroupName` may take: `Ok(logical id)` for a
/// security group of this template, `Err(what it is)` for anything else. Empty when it
/// names none.
pub fn rule_targets(
    resolver: &Resolver<'_>,
    props: &Map<String, Value>,
    ptr: &str,
) -> Result<Vec<Result<String, String>>, String> {
    let template = resolver.template();
    let mut groups = Vec::new();
    for key in ["GroupId", "GroupName"] {
        let Some(v) = props.get(key) else { continue };
        for p in resolver.resolve(v, &pointer::child(ptr, key))? {
            if p.value.is_absent() {
                continue;
            }
            let in_template = group_reference(&p.value).filter(|id| {
                template
                    .resource(id)
                    .is_some_and(|r| r.kind == "AWS::EC2::SecurityGroup")
            });
            groups.push(match in_template {
                Some(id) => Ok(id.to_string()),
                None => Err(p.value.describe()),
            });
        }
    }
    Ok(groups)
}

/// The logical id a value names as a group: `Ref G` or `Fn::GetAtt [G, GroupId]`.
pub fn group_reference<'r>(value: &'r Resolved<'_>) -> Option<&'r str> {
    match value {
        Resolved::Resource {
            id,
            attribute: None,
        } => Some(id),
        Resolved::Resource {
            id,
            attribute: Some(a),
        } if a == "GroupId" || a == "Id" => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Input;
    use serde_json::json;

    #[test]
    fn finds_uses_in_flat_and_nested_properties() {
        let doc = json!({"template": {"Resources": {
            "AlbSg": {"Type": "AWS::EC2::SecurityGroup"},
            "AppSg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
                "SecurityGroupIngress": [{"SourceSecurityGroupId": {"Ref": "AlbSg"}}]
            }},
            "Alb": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
                "SecurityGroups": [{"Fn::GetAtt": ["AlbSg", "GroupId"]}]
            }},
            "Lt": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
                "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": [{"Ref": "AppSg"}]}]
            }}},
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {
                "VpcConfig": {"SecurityGroupIds": {"Fn::If": ["C", [{"Ref": "AppSg"}], {"Ref": "AWS::NoValue"}]}}
            }},
            "Ingress": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {"GroupId": {"Ref": "AppSg"}}}
        }}});
        let input = Input::parse(&doc).unwrap();
        let uses = GroupUses::build(&input.resolver()).unwrap();
        let alb: Vec<_> = uses
            .users("AlbSg")
            .iter()
            .map(|u| u.user.as_str())
            .collect();
        assert_eq!(alb, vec!["Alb"]);
        assert_eq!(
            uses.users("AlbSg")[0].pointer,
            "/Resources/Alb/Properties/SecurityGroups/0"
        );
        let app: Vec<_> = uses
            .users("AppSg")
            .iter()
            .map(|u| u.user.as_str())
            .collect();
        assert_eq!(app, vec!["Lt", "Fn"]);
        assert!(uses.users("Nope").is_empty());
    }

    #[test]
    fn nesting_past_the_limit_is_an_error() {
        let mut v = json!("x");
        for _ in 0..(MAX_DEPTH + 2) {
            v = json!({"a": v});
        }
        let doc = json!({"template": {"Resources": {"B": {"Type": "T", "Properties": {"P": v}}}}});
        let input = Input::parse(&doc).unwrap();
        let err = GroupUses::build(&input.resolver()).unwrap_err();
        assert!(err.contains("deeper than"), "{err}");
    }
}
