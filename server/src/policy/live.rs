//! The live state as the policies see it: the deployed template with what drift detection
//! read from AWS laid over it, so that a rule added by hand is judged as if it had been
//! pushed.

use serde_json::Value;

use crate::cloud::drift::ResourceDrift;

use super::{Finding, Report};

/// Lays each modified resource's live values over `template` (long form). Each difference
/// goes at its path; where one does not fit the template's shape, the resource takes its
/// whole `ActualProperties`. The logical ids whose live values could be laid over neither
/// way: the gate cannot see them.
pub fn overlay(template: &mut Value, drifts: &[ResourceDrift]) -> Vec<String> {
    let mut unseen = Vec::new();
    for d in drifts {
        match d.status.as_str() {
            "MODIFIED" => {}
            "IN_SYNC" | "DELETED" | "NOT_CHECKED" => continue,
            // A status this version does not know is no answer.
            _ => {
                unseen.push(d.logical_id.clone());
                continue;
            }
        }
        let Some(resource) = template
            .get_mut("Resources")
            .and_then(|r| r.get_mut(&d.logical_id))
            .and_then(Value::as_object_mut)
        else {
            unseen.push(d.logical_id.clone());
            continue;
        };
        let props = resource
            .entry("Properties")
            .or_insert_with(|| Value::Object(Default::default()));
        let mut patched = props.clone();
        let fits = !d.differences.is_empty()
            && d.differences
                .iter()
                .all(|diff| apply(&mut patched, &diff.path, &diff.kind, diff.actual.as_ref()));
        match (&d.actual, fits) {
            (_, true) => *props = patched,
            (Some(actual), false) => *props = actual.clone(),
            (None, false) => unseen.push(d.logical_id.clone()),
        }
    }
    unseen
}

/// Applies one difference at a JSON pointer; false when the template has no place for it.
fn apply(props: &mut Value, path: &str, kind: &str, actual: Option<&Value>) -> bool {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let Some(at) = props.pointer_mut(parent) else {
        return false;
    };
    match (kind, at, actual) {
        // An index past the template's list (rules are a set): appended.
        ("ADD", Value::Array(items), Some(v)) => {
            items.push(v.clone());
            true
        }
        ("ADD" | "NOT_EQUAL", Value::Object(map), Some(v)) => {
            map.insert(last, v.clone());
            true
        }
        ("NOT_EQUAL", Value::Array(items), Some(v)) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items[i] = v.clone();
                true
            }
            _ => false,
        },
        ("REMOVE", Value::Array(items), _) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        ("REMOVE", Value::Object(map), _) => map.remove(&last).is_some(),
        _ => false,
    }
}

/// The findings on the live state that the deployed template does not have: what was
/// changed outside stackgate and breaks a policy.
pub fn new_findings<'a>(live: &'a Report, deployed: &Report) -> Vec<&'a Finding> {
    let known = |f: &Finding| {
        deployed.findings().any(|g| {
            (&g.policy, &g.rule, &g.resource, &g.message)
                == (&f.policy, &f.rule, &f.resource, &f.message)
        })
    };
    live.findings().filter(|f| !known(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::drift::Difference;
    use serde_json::json;

    fn sg_template() -> Value {
        json!({"Resources": {
            "AlbSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
                "GroupDescription": "alb",
                "VpcId": {"Ref": "Vpc"},
                "SecurityGroupIngress": [
                    {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0"}
                ]
            }},
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"MemorySize": 128}}
        }})
    }

    fn modified(id: &str, diffs: Vec<Difference>, actual: Option<Value>) -> ResourceDrift {
        ResourceDrift {
            logical_id: id.into(),
            physical_id: Some("sg-1".into()),
            resource_type: "AWS::EC2::SecurityGroup".into(),
            status: "MODIFIED".into(),
            actual,
            differences: diffs,
        }
    }

    fn diff(path: &str, kind: &str, actual: Option<Value>) -> Difference {
        Difference {
            path: path.into(),
            kind: kind.into(),
            expected: None,
            actual,
        }
    }

    #[test]
    fn an_added_rule_joins_the_template_and_keeps_its_references() {
        let mut t = sg_template();
        let ssh = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"});
        let d = modified(
            "AlbSecurityGroup",
            vec![diff("/SecurityGroupIngress/1", "ADD", Some(ssh.clone()))],
            None,
        );
        assert!(overlay(&mut t, &[d]).is_empty());
        let props = &t["Resources"]["AlbSecurityGroup"]["Properties"];
        assert_eq!(props["SecurityGroupIngress"][1], ssh);
        assert_eq!(props["VpcId"], json!({"Ref": "Vpc"}));
    }

    #[test]
    fn changed_and_removed_values_replace_and_leave() {
        let mut t = sg_template();
        let d = ResourceDrift {
            logical_id: "Fn".into(),
            ..modified(
                "Fn",
                vec![diff("/MemorySize", "NOT_EQUAL", Some(json!(512)))],
                None,
            )
        };
        let gone = modified(
            "AlbSecurityGroup",
            vec![diff("/SecurityGroupIngress/0", "REMOVE", None)],
            None,
        );
        assert!(overlay(&mut t, &[d, gone]).is_empty());
        assert_eq!(t["Resources"]["Fn"]["Properties"]["MemorySize"], 512);
        assert_eq!(
            t["Resources"]["AlbSecurityGroup"]["Properties"]["SecurityGroupIngress"],
            json!([])
        );
    }

    #[test]
    fn a_difference_with_no_place_takes_the_whole_live_properties_or_is_unseen() {
        let mut t = sg_template();
        let actual = json!({"GroupDescription": "alb", "SecurityGroupEgress": []});
        let d = modified(
            "AlbSecurityGroup",
            vec![diff("/Tags/0/Value", "NOT_EQUAL", Some(json!("x")))],
            Some(actual.clone()),
        );
        assert!(overlay(&mut t, std::slice::from_ref(&d)).is_empty());
        assert_eq!(t["Resources"]["AlbSecurityGroup"]["Properties"], actual);

        let mut t = sg_template();
        let blind = ResourceDrift { actual: None, ..d };
        assert_eq!(overlay(&mut t, &[blind]), ["AlbSecurityGroup"]);
        // Nothing half-applied.
        assert_eq!(t, sg_template());
    }

    #[test]
    fn a_status_without_an_answer_is_unseen() {
        let mut t = sg_template();
        let mut d = modified("AlbSecurityGroup", vec![], None);
        d.status = "UNKNOWN".into();
        assert_eq!(overlay(&mut t, &[d]), ["AlbSecurityGroup"]);
    }

    #[test]
    fn in_sync_and_deleted_resources_leave_the_template_alone() {
        let mut t = sg_template();
        let mut d = modified("AlbSecurityGroup", vec![], None);
        d.status = "DELETED".into();
        let mut s = d.clone();
        s.status = "IN_SYNC".into();
        assert!(overlay(&mut t, &[d, s]).is_empty());
        assert_eq!(t, sg_template());
    }
}
