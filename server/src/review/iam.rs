//! IAM: the actions each role, user, group or policy allows (wildcards expanded through the
//! SDK's action catalog, so `s3:Put*` → `s3:PutObject` and its siblings), which of them on
//! any resource (`*`) and which without a `Condition`; the managed policies attached; and
//! who a role trusts. Only statements that may `Allow` grant anything.

use serde_json::Value;
use stackgate_policy_sdk::iam::{self, Field, Statement};
use stackgate_policy_sdk::{Resolved, Resolver, catalog};

use super::{Fact, Grant, Grants, Kind};

/// The properties of each IAM type that hold documents, and how.
const INLINE_POLICIES: &[&str] = &["AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"];
const DOCUMENT: &[&str] = &[
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy",
];

pub(crate) fn grants(resolver: &Resolver<'_>, out: &mut Grants) -> Result<(), String> {
    for res in resolver.template().resources() {
        if INLINE_POLICIES.contains(&res.kind) {
            if let Some((value, ptr)) = res.property("Policies") {
                for p in resolver.elements(value, &ptr)? {
                    match p.value {
                        Resolved::Object(m) => {
                            if let Some(doc) = m.get("PolicyDocument") {
                                let at = stackgate_policy_sdk::pointer::child(
                                    &p.pointer,
                                    "PolicyDocument",
                                );
                                document(resolver, res.id, doc, &at, out)?;
                            }
                        }
                        other => out.push(unreadable(res.id, &other.describe())),
                    }
                }
            }
            if let Some((value, ptr)) = res.property("ManagedPolicyArns") {
                managed(resolver, res.id, value, &ptr, out)?;
            }
            if res.kind == "AWS::IAM::Role"
                && let Some((value, ptr)) = res.property("AssumeRolePolicyDocument")
            {
                trust(resolver, res.id, value, &ptr, out)?;
            }
        } else if DOCUMENT.contains(&res.kind)
            && let Some((value, ptr)) = res.property("PolicyDocument")
        {
            document(resolver, res.id, value, &ptr, out)?;
        }
    }
    Ok(())
}

fn unreadable(on: &str, what: &str) -> Grant {
    Grant::unresolved(
        Kind::IamAction,
        on,
        "a policy".into(),
        what.to_string(),
        format!("the policy is {what}"),
    )
}

fn document(
    resolver: &Resolver<'_>,
    on: &str,
    value: &Value,
    ptr: &str,
    out: &mut Grants,
) -> Result<(), String> {
    let (docs, unread) = iam::documents(resolver, value, ptr)?;
    for u in unread {
        out.push(unreadable(on, &u.reason));
    }
    for d in &docs {
        let statements = d.statements(resolver)?;
        for u in statements.unreadable {
            out.push(unreadable(on, &u.reason));
        }
        for s in statements.statements.iter().filter(|s| s.may_allow()) {
            statement(on, s, out);
        }
    }
    Ok(())
}

/// What one allowing statement grants.
fn statement(on: &str, s: &Statement<'_>, out: &mut Grants) {
    let any_resource = match (&s.resource, &s.not_resource) {
        (_, Some(_)) => Some(Ok(())),
        (Some(r), None) if r.has_star() => Some(Ok(())),
        (Some(r), None) => r
            .values
            .iter()
            .find(|p| p.value.is_unknown())
            .map(|p| Err(p.value.describe())),
        (None, None) => None,
    };
    if let Some(not) = &s.not_action {
        let text = listed(not);
        out.push(Grant {
            kind: Kind::IamAction,
            on: on.to_string(),
            what: format!("every action except {text}"),
            group: None,
            fact: Fact::Exact(format!("not-action {}", text.to_ascii_lowercase())),
        });
    }
    let Some(actions) = &s.action else { return };
    for p in &actions.values {
        let pattern = match &p.value {
            Resolved::Str(s) => s.trim().to_string(),
            other => {
                out.push(Grant::unresolved(
                    Kind::IamAction,
                    on,
                    "an action".into(),
                    other.describe(),
                    format!("an action is {}", other.describe()),
                ));
                continue;
            }
        };
        for (name, key) in expand(&pattern) {
            let group = Some(if pattern.contains(['*', '?']) {
                pattern.clone()
            } else {
                String::new()
            });
            let grant = |kind: Kind| Grant {
                kind,
                on: on.to_string(),
                what: name.clone(),
                group: group.clone(),
                fact: Fact::Action(key.clone()),
            };
            out.push(grant(Kind::IamAction));
            match &any_resource {
                Some(Ok(())) => out.push(grant(Kind::IamAnyResource)),
                Some(Err(why)) => out.push(Grant::unresolved(
                    Kind::IamAnyResource,
                    on,
                    format!("{name} on a resource it cannot resolve"),
                    format!("{key} {why}"),
                    format!("a resource is {why}"),
                )),
                None => {}
            }
            if !s.has_condition {
                out.push(grant(Kind::IamCondition));
            }
        }
    }
}

/// An action pattern as (name shown, key compared): each catalog action it matches, or
/// the pattern itself when the catalog knows none (a typo, a new service) or for `*`.
fn expand(pattern: &str) -> Vec<(String, String)> {
    let literal = || vec![(pattern.to_string(), pattern.to_ascii_lowercase())];
    if pattern == "*" {
        return literal();
    }
    let found = catalog::expand(pattern);
    if found.is_empty() {
        return literal();
    }
    found
        .into_iter()
        .map(|a| {
            let name = format!("{}:{}", a.service, a.name);
            let key = name.to_ascii_lowercase();
            (name, key)
        })
        .collect()
}

fn listed(f: &Field<'_>) -> String {
    f.values
        .iter()
        .map(|p| {
            p.value
                .as_str()
                .map_or_else(|| p.value.describe(), str::to_string)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn managed(
    resolver: &Resolver<'_>,
    on: &str,
    value: &Value,
    ptr: &str,
    out: &mut Grants,
) -> Result<(), String> {
    for p in resolver.elements(value, ptr)? {
        let name = match &p.value {
            Resolved::Str(arn) => arn.clone(),
            Resolved::Resource { id, .. } => format!("{id} of this template"),
            Resolved::Absent => continue,
            other => {
                out.push(Grant::unresolved(
                    Kind::IamAction,
                    on,
                    "a managed policy".into(),
                    other.describe(),
                    format!("a managed policy ARN is {}", other.describe()),
                ));
                continue;
            }
        };
        out.push(Grant {
            kind: Kind::IamAction,
            on: on.to_string(),
            what: format!("managed policy {name}"),
            group: None,
            fact: Fact::Exact(format!("managed {}", name.to_ascii_lowercase())),
        });
    }
    Ok(())
}

fn trust(
    resolver: &Resolver<'_>,
    on: &str,
    value: &Value,
    ptr: &str,
    out: &mut Grants,
) -> Result<(), String> {
    let (docs, unread) = iam::documents(resolver, value, ptr)?;
    let doubt = |what: &str| {
        Grant::unresolved(
            Kind::TrustPrincipal,
            on,
            "a trust principal".into(),
            what.to_string(),
            format!("the trust policy holds {what}"),
        )
    };
    for u in unread {
        out.push(doubt(&u.reason));
    }
    for d in &docs {
        let statements = d.statements(resolver)?;
        for u in statements.unreadable {
            out.push(doubt(&u.reason));
        }
        for s in statements.statements.iter().filter(|s| s.may_allow()) {
            for (entries, except) in [(&s.principal, false), (&s.not_principal, true)] {
                for e in entries.iter().flatten() {
                    let Some(value) = e.value.value.as_str() else {
                        out.push(doubt(&e.value.value.describe()));
                        continue;
                    };
                    let who = match (e.kind.as_deref(), value) {
                        (None, _) | (Some(_), "*") => "anyone (*)".to_string(),
                        (Some(k), v) => format!("{k} {v}"),
                    };
                    let who = if except {
                        format!("everyone except {who}")
                    } else {
                        who
                    };
                    let condition = if s.has_condition {
                        " (with a condition)"
                    } else {
                        ""
                    };
                    out.push(Grant {
                        kind: Kind::TrustPrincipal,
                        on: on.to_string(),
                        what: format!("trusts {who}{condition}"),
                        group: None,
                        fact: Fact::Exact(format!("{who}{condition}").to_ascii_lowercase()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The words for the grants of one pattern: `allows s3:PutObject, … and 28 more (s3:Put*)`.
pub(crate) fn grouped(kind: Kind, pattern: &str, names: &[String], show: usize) -> String {
    let mut list = names
        .iter()
        .take(show)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > show {
        list.push_str(&format!(" and {} more", names.len() - show));
    }
    let from = if pattern.is_empty() || (names.len() == 1 && names[0] == pattern) {
        String::new()
    } else {
        format!(" (from {pattern})")
    };
    match kind {
        Kind::IamAnyResource => format!("{list} on any resource{from}"),
        Kind::IamCondition => format!("{list} without a condition{from}"),
        _ => format!("{list}{from}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{lines, review};
    use serde_json::{Value, json};

    fn role(statements: Value) -> Value {
        json!({"Resources": {"AppRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": statements}}]}}}})
    }

    fn allow(action: Value, resource: &str) -> Value {
        json!({"Effect": "Allow", "Action": action, "Resource": resource})
    }

    #[test]
    fn new_actions_are_expanded_through_the_catalog() {
        let r = review(
            role(json!([allow(json!("s3:GetObject"), "arn:aws:s3:::b/*")])),
            role(json!([allow(
                json!(["s3:GetObject", "s3:Put*"]),
                "arn:aws:s3:::b/*"
            )])),
        );
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("s3:Put"), "{l:?}");
        assert!(l[0].contains("more (from s3:Put*) on AppRole"), "{l:?}");
        assert!(!l.iter().any(|l| l.contains("GetObject")), "{l:?}");
        // Narrowing: the wildcard goes again.
        let back = review(
            role(json!([allow(
                json!(["s3:GetObject", "s3:Put*"]),
                "arn:aws:s3:::b/*"
            )])),
            role(json!([allow(json!("s3:GetObject"), "arn:aws:s3:::b/*")])),
        );
        assert!(back.widens.is_empty(), "{back:?}");
        let l = lines(&back.narrows);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].contains("(from s3:Put*)"), "{l:?}");
    }

    #[test]
    fn a_wildcard_that_covers_the_old_actions_is_no_widening_of_them() {
        let r = review(
            role(json!([allow(json!("s3:*"), "arn:aws:s3:::b/*")])),
            role(json!([allow(json!("s3:GetObject"), "arn:aws:s3:::b/*")])),
        );
        assert!(r.widens.is_empty(), "{r:?}");
        let r = review(
            role(json!([allow(json!("s3:GetObject"), "arn:aws:s3:::b/*")])),
            role(json!([allow(json!("*"), "arn:aws:s3:::b/*")])),
        );
        assert_eq!(lines(&r.widens)[0], "* on AppRole");
    }

    #[test]
    fn resources_widened_to_star_and_conditions_removed() {
        let r = review(
            role(json!([allow(json!("s3:GetObject"), "arn:aws:s3:::b/*")])),
            role(json!([allow(json!("s3:GetObject"), "*")])),
        );
        assert_eq!(
            lines(&r.widens),
            ["s3:GetObject on any resource on AppRole"]
        );
        let mut conditioned = allow(json!("s3:GetObject"), "*");
        conditioned["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}});
        let r = review(
            role(json!([conditioned.clone()])),
            role(json!([allow(json!("s3:GetObject"), "*")])),
        );
        assert_eq!(
            lines(&r.widens),
            ["s3:GetObject without a condition on AppRole"]
        );
        let r = review(
            role(json!([allow(json!("s3:GetObject"), "*")])),
            role(json!([conditioned])),
        );
        assert!(r.widens.is_empty(), "{r:?}");
        assert_eq!(
            lines(&r.narrows),
            ["s3:GetObject without a condition on AppRole"]
        );
    }

    #[test]
    fn new_trust_principals_and_managed_policies() {
        let base = role(json!([allow(json!("s3:GetObject"), "*")]));
        let mut wider = base.clone();
        wider["Resources"]["AppRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] =
            json!({"Service": "lambda.amazonaws.com", "AWS": "arn:aws:iam::111122223333:root"});
        wider["Resources"]["AppRole"]["Properties"]["ManagedPolicyArns"] =
            json!(["arn:aws:iam::aws:policy/AdministratorAccess"]);
        let r = review(base, wider);
        assert_eq!(
            lines(&r.widens),
            [
                "managed policy arn:aws:iam::aws:policy/AdministratorAccess on AppRole",
                "trusts AWS arn:aws:iam::111122223333:root on AppRole"
            ]
        );
    }

    #[test]
    fn an_action_that_cannot_be_resolved_may_widen() {
        let r = review(
            role(json!([allow(json!("s3:GetObject"), "*")])),
            role(json!([allow(json!({"Fn::ImportValue": "action"}), "*")])),
        );
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("maybe an action on AppRole"), "{l:?}");
        // Nor is anything proven gone.
        assert!(r.narrows.is_empty(), "{r:?}");
    }
}
