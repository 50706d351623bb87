//! `AWS::Lambda::Permission`: who may call a function, and from where. A permission widens
//! unless the other side has one for the same function, action and principal whose every
//! restriction (`SourceArn`, `SourceAccount`, `PrincipalOrgID`, …) it keeps.

use stackgate_policy_sdk::{Resolved, Resolver};

use super::{Fact, Grant, Grants, Kind};

const PERMISSION: &str = "AWS::Lambda::Permission";
/// The properties that narrow who may call, in the order they are shown.
const RESTRICTIONS: &[&str] = &[
    "SourceArn",
    "SourceAccount",
    "PrincipalOrgID",
    "EventSourceToken",
    "FunctionUrlAuthType",
];
/// Combinations of one permission's `Fn::If` branches judged before it is doubt.
const MAX_COMBINATIONS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Permission {
    action: String,
    principal: String,
    /// (property, value), only those set.
    restrictions: Vec<(String, Restriction)>,
}

/// A restriction's value: known, or an expression only deploy time resolves (the same
/// expression on both sides is the same value: `${AWS::AccountId}` is one account).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Restriction {
    Known(String),
    Unresolved(String),
}

impl Restriction {
    fn text(&self) -> &str {
        match self {
            Restriction::Known(s) | Restriction::Unresolved(s) => s,
        }
    }
}

impl Permission {
    /// Whether whoever `other` lets call, this lets call too: `Err` with the reason when
    /// that hangs on a value only deploy time knows.
    pub fn covers(&self, other: &Permission) -> Result<bool, String> {
        if self.action != other.action || self.principal != other.principal {
            return Ok(false);
        }
        let mut doubt = None;
        for (key, mine) in &self.restrictions {
            match other.restrictions.iter().find(|(k, _)| k == key) {
                None => return Ok(false),
                Some((_, theirs)) if theirs == mine => {}
                Some((_, theirs)) => match (mine, theirs) {
                    (Restriction::Known(_), Restriction::Known(_)) => return Ok(false),
                    _ => {
                        doubt.get_or_insert_with(|| {
                            format!("{key} is {} or {}", mine.text(), theirs.text())
                        });
                    }
                },
            }
        }
        match doubt {
            Some(why) => Err(why),
            None => Ok(true),
        }
    }

    fn describe(&self) -> String {
        let from = if self.restrictions.is_empty() {
            " from any source or account".to_string()
        } else {
            let r: Vec<String> = self
                .restrictions
                .iter()
                .map(|(k, v)| format!("{k} {}", v.text()))
                .collect();
            format!(" with {}", r.join(", "))
        };
        format!("{} by {}{from}", self.action, self.principal)
    }
}

pub(crate) fn grants(resolver: &Resolver<'_>, out: &mut Grants) -> Result<(), String> {
    for res in resolver.template().resources_of_type(PERMISSION) {
        let Some(props) = res.properties else {
            continue;
        };
        let ptr = res.properties_pointer();
        let values = |key: &str| resolver.property_values(props, &ptr, key);
        let mut fields = vec![
            ("FunctionName", values("FunctionName")?),
            ("Action", values("Action")?),
            ("Principal", values("Principal")?),
        ];
        for key in RESTRICTIONS {
            fields.push((*key, values(key)?));
        }
        let count: usize = fields.iter().map(|(_, v)| v.len().max(1)).product();
        if count > MAX_COMBINATIONS {
            out.push(Grant::unresolved(
                Kind::LambdaPermission,
                res.id,
                "a Lambda permission".into(),
                format!("{props:?}"),
                format!("it may take more than {MAX_COMBINATIONS} combinations of values"),
            ));
            continue;
        }
        let mut combos: Vec<Vec<&Resolved<'_>>> = vec![Vec::new()];
        for (_, vs) in &fields {
            combos = combos
                .iter()
                .flat_map(|c| {
                    vs.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push(v);
                        c
                    })
                })
                .collect();
        }
        for combo in combos {
            out.push(one(res.id, &fields, &combo));
        }
    }
    Ok(())
}

/// A value as the permission shows it; `None` when absent.
fn shown(r: &Resolved<'_>) -> Option<String> {
    match r {
        Resolved::Absent => None,
        Resolved::Str(s) => Some(s.clone()),
        Resolved::Resource {
            id,
            attribute: Some(a),
        } => Some(format!("{id}.{a}")),
        Resolved::Resource {
            id,
            attribute: None,
        } => Some(id.clone()),
        other => Some(other.describe()),
    }
}

fn one(id: &str, fields: &[(&str, Vec<Resolved<'_>>)], combo: &[&Resolved<'_>]) -> Grant {
    let function = match combo[0] {
        Resolved::Resource { id, .. } => id.clone(),
        Resolved::Str(s) => s.clone(),
        _ => id.to_string(),
    };
    // Who and what must be known; what restricts is compared by its expression.
    let unresolved: Vec<String> = (0..3)
        .filter(|&i| combo[i].is_unresolved())
        .map(|i| format!("{} is {}", fields[i].0, combo[i].describe()))
        .collect();
    let action = shown(combo[1]).unwrap_or_default();
    let principal = shown(combo[2]).unwrap_or_default();
    let restrictions: Vec<(String, Restriction)> = (3..combo.len())
        .filter_map(|i| {
            let v = shown(combo[i])?;
            let v = if combo[i].is_unresolved() {
                Restriction::Unresolved(v)
            } else {
                Restriction::Known(v)
            };
            Some((fields[i].0.to_string(), v))
        })
        .collect();
    let permission = Permission {
        action,
        principal,
        restrictions,
    };
    let what = permission.describe();
    if !unresolved.is_empty() {
        return Grant::unresolved(
            Kind::LambdaPermission,
            &function,
            what.clone(),
            what,
            unresolved.join("; "),
        );
    }
    Grant {
        kind: Kind::LambdaPermission,
        on: function,
        what,
        group: None,
        fact: Fact::Permission(permission),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{lines, review};
    use serde_json::{Value, json};

    fn with(permission: Value) -> Value {
        json!({"Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
            "Invoke": {"Type": "AWS::Lambda::Permission", "Properties": permission}}})
    }

    fn from_alb(source: Option<&str>) -> Value {
        let mut p = json!({"FunctionName": {"Fn::GetAtt": ["Fn", "Arn"]},
            "Action": "lambda:InvokeFunction", "Principal": "elasticloadbalancing.amazonaws.com"});
        if let Some(s) = source {
            p["SourceArn"] = json!(s);
        }
        p
    }

    #[test]
    fn a_new_permission_widens_and_dropping_its_source_widens() {
        let empty = json!({"Resources": {"Fn": {"Type": "AWS::Lambda::Function"}}});
        let r = review(empty.clone(), with(from_alb(Some("arn:tg"))));
        assert_eq!(
            lines(&r.widens),
            [
                "lambda:InvokeFunction by elasticloadbalancing.amazonaws.com with SourceArn arn:tg on Fn"
            ]
        );
        let r = review(with(from_alb(Some("arn:tg"))), with(from_alb(None)));
        assert_eq!(
            lines(&r.widens),
            [
                "lambda:InvokeFunction by elasticloadbalancing.amazonaws.com from any source or account on Fn"
            ]
        );
        // Adding the restriction back narrows, and widens nothing.
        let r = review(with(from_alb(None)), with(from_alb(Some("arn:tg"))));
        assert!(r.widens.is_empty(), "{r:?}");
        assert_eq!(r.narrows.len(), 1);
        let r = review(with(from_alb(None)), empty);
        assert_eq!(r.narrows.len(), 1);
    }

    #[test]
    fn restrictions_known_only_at_deploy_time_compare_by_expression() {
        let mut scoped = from_alb(None);
        scoped["SourceArn"] = json!({"Fn::Sub": "arn:aws:elasticloadbalancing:us-east-1:${AWS::AccountId}:targetgroup/web/*"});
        scoped["SourceAccount"] = json!({"Ref": "AWS::AccountId"});
        let r = review(with(scoped.clone()), with(scoped.clone()));
        assert!(r.widens.is_empty() && r.narrows.is_empty(), "{r:?}");
        let mut dropped = scoped.clone();
        dropped.as_object_mut().unwrap().remove("SourceAccount");
        let r = review(with(scoped.clone()), with(dropped));
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].starts_with(
                "lambda:InvokeFunction by elasticloadbalancing.amazonaws.com with SourceArn"
            ),
            "{l:?}"
        );
        let mut other = scoped.clone();
        other["SourceArn"] = json!({"Fn::Sub": "arn:aws:elasticloadbalancing:us-east-1:${AWS::AccountId}:targetgroup/*"});
        let r = review(with(scoped), with(other));
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("maybe "), "{l:?}");
        assert!(l[0].contains("SourceArn is"), "{l:?}");
    }

    #[test]
    fn a_principal_it_cannot_resolve_may_widen() {
        let mut p = from_alb(None);
        p["Principal"] = json!({"Fn::ImportValue": "who"});
        let r = review(with(from_alb(None)), with(p));
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("maybe lambda:InvokeFunction by"), "{l:?}");
        assert!(l[0].contains("Principal is"), "{l:?}");
    }
}
