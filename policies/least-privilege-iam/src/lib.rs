//! Policy `least-privilege-iam`: IAM in a template grants no more than it must.
//!
//! Covered: `AWS::IAM::Role` (`Policies`, `AssumeRolePolicyDocument`, `ManagedPolicyArns`),
//! `AWS::IAM::User` / `AWS::IAM::Group` (`Policies`, `ManagedPolicyArns`),
//! `AWS::IAM::Policy` / `AWS::IAM::ManagedPolicy` / `AWS::IAM::{Role,User,Group}Policy`
//! (`PolicyDocument`), and `AWS::Lambda::Permission`.
//!
//! Only statements that may `Allow` can violate; a `Condition` does not exempt. Access
//! levels come from the AWS Service Authorization Reference (see `README.md`); an action
//! the catalog does not know counts as Write, so a typo or a new action fails closed. A
//! value CloudFormation fetches from elsewhere at deploy time (SSM, dynamic references,
//! imports) where a rule needs to see it is an error: doubt fails closed.

/// The catalog lives in the SDK: the host expands IAM wildcards with it too.
pub use stackgate_policy_sdk::catalog;

use serde_json::Value;
use stackgate_policy_sdk::iam::{self, Field, Statement};
use stackgate_policy_sdk::{Doubt, Finding, Findings, Input, Part, Resolved, Resolver, Resource};

use crate::catalog::Action;

pub const NAME: &str = "least-privilege-iam";

/// `Action: "*"`.
pub const RULE_ACTION_WILDCARD: &str = "least-privilege-iam/action-wildcard";
/// `service:*`, whatever the resource.
pub const RULE_SERVICE_WILDCARD: &str = "least-privilege-iam/service-wildcard";
/// `Allow` with `NotAction`.
pub const RULE_NOT_ACTION: &str = "least-privilege-iam/allow-not-action";
/// `Allow` with `NotResource`.
pub const RULE_NOT_RESOURCE: &str = "least-privilege-iam/allow-not-resource";
/// A Write or Permissions-management action (or one the catalog does not know) on `*`.
pub const RULE_WRITE_ANY_RESOURCE: &str = "least-privilege-iam/write-on-any-resource";
/// `iam:PassRole` on `*`: any role, so any privilege, to any service.
pub const RULE_PASS_ROLE: &str = "least-privilege-iam/pass-role-any-resource";
/// `AdministratorAccess*`, `PowerUserAccess`, `IAMFullAccess`.
pub const RULE_ADMIN_POLICY: &str = "least-privilege-iam/admin-managed-policy";
/// Any other AWS managed `*FullAccess` policy.
pub const RULE_FULL_ACCESS_POLICY: &str = "least-privilege-iam/full-access-managed-policy";
/// A trust policy that lets anyone assume the role.
pub const RULE_PUBLIC_TRUST: &str = "least-privilege-iam/public-trust";
/// `AWS::Lambda::Permission` with `Principal: "*"`.
pub const RULE_LAMBDA_PUBLIC: &str = "least-privilege-iam/lambda-public-permission";
/// Warning: a service principal may invoke the function on behalf of any account or source.
pub const RULE_LAMBDA_NO_SOURCE: &str = "least-privilege-iam/lambda-permission-no-source";
/// Warning: a write action on a resource the policy cannot resolve.
pub const RULE_UNRESOLVED_RESOURCE: &str = "least-privilege-iam/unresolved-resource";
/// Warning: an action the policy cannot resolve, on `*`.
pub const RULE_UNRESOLVED_ACTION: &str = "least-privilege-iam/unresolved-action";
/// Warning: a document, statement, principal or managed policy ARN it cannot resolve.
pub const RULE_UNRESOLVED: &str = "least-privilege-iam/unresolved";

/// Every rule id this policy may report.
pub const RULES: &[&str] = &[
    RULE_ACTION_WILDCARD,
    RULE_SERVICE_WILDCARD,
    RULE_NOT_ACTION,
    RULE_NOT_RESOURCE,
    RULE_WRITE_ANY_RESOURCE,
    RULE_PASS_ROLE,
    RULE_ADMIN_POLICY,
    RULE_FULL_ACCESS_POLICY,
    RULE_PUBLIC_TRUST,
    RULE_LAMBDA_PUBLIC,
    RULE_LAMBDA_NO_SOURCE,
    RULE_UNRESOLVED_RESOURCE,
    RULE_UNRESOLVED_ACTION,
    RULE_UNRESOLVED,
];

/// How many matched actions a message names before "and N more".
const SHOW_ACTIONS: usize = 5;

stackgate_policy_sdk::export_policy!(NAME, evaluate);

/// Evaluates the policy on one input document (see `policies/README.md`).
pub fn evaluate(input: &Value) -> Result<Vec<Finding>, String> {
    let input = Input::parse(input)?;
    // Write actions that AWS lets you grant only on `*` (cloudwatch:PutMetricData, ...).
    let allow_unscopable = input.settings.bool("allow_unscopable_writes", false)?;
    let resolver = input.resolver();
    let check = Check {
        r: &resolver,
        allow_unscopable,
    };
    let mut out = Findings::for_input(&input)?;
    for res in input.template.resources() {
        match res.kind {
            "AWS::IAM::Role" => {
                check.inline_policies(&res, &mut out)?;
                check.trust(&res, &mut out)?;
                check.managed_arns(&res, &mut out)?;
            }
            "AWS::IAM::User" | "AWS::IAM::Group" => {
                check.inline_policies(&res, &mut out)?;
                check.managed_arns(&res, &mut out)?;
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::IAM::RolePolicy"
            | "AWS::IAM::UserPolicy"
            | "AWS::IAM::GroupPolicy" => {
                if let Some((doc, ptr)) = res.property("PolicyDocument") {
                    check.identity_document(&res, doc, &ptr, &mut out)?;
                }
            }
            "AWS::Lambda::Permission" => check.lambda_permission(&res, &mut out)?,
            _ => {}
        }
    }
    Ok(out.into_vec())
}

struct Check<'c, 'a> {
    r: &'c Resolver<'a>,
    allow_unscopable: bool,
}

impl Check<'_, '_> {
    /// `Policies: [{PolicyName, PolicyDocument}]` of a role, user or group.
    fn inline_policies(&self, res: &Resource<'_>, out: &mut Findings) -> Result<(), String> {
        let Some((policies, ptr)) = res.property("Policies") else {
            return Ok(());
        };
        for p in self.r.elements(policies, &ptr)? {
            match &p.value {
                Resolved::Object(m) => {
                    if let Some(doc) = m.get("PolicyDocument") {
                        let doc_ptr =
                            stackgate_policy_sdk::pointer::child(&p.pointer, "PolicyDocument");
                        self.identity_document(res, doc, &doc_ptr, out)?;
                    }
                }
                other if other.is_unresolved() => {
                    unreadable(out, res.id, &p.pointer, &other.describe(), other.doubt())
                }
                other => {
                    return Err(format!(
                        "Policies entry at {} must be an object, not {}",
                        p.pointer,
                        other.describe()
                    ));
                }
            }
        }
        Ok(())
    }

    fn identity_document(
        &self,
        res: &Resource<'_>,
        doc: &Value,
        ptr: &str,
        out: &mut Findings,
    ) -> Result<(), String> {
        let (docs, unread) = iam::documents(self.r, doc, ptr)?;
        for u in unread {
            unreadable(out, res.id, &u.pointer, &u.reason, u.doubt.as_ref());
        }
        for d in &docs {
            let s = d.statements(self.r)?;
            for u in s.unreadable {
                unreadable(out, res.id, &u.pointer, &u.reason, u.doubt.as_ref());
            }
            for st in s.statements.iter().filter(|st| st.may_allow()) {
                self.identity_statement(res.id, st, out);
            }
        }
        Ok(())
    }

    fn identity_statement(&self, id: &str, st: &Statement<'_>, out: &mut Findings) {
        if let Some(f) = &st.not_action {
            out.error(
                RULE_NOT_ACTION,
                id,
                &f.pointer,
                format!(
                    "`{id}` has an Allow statement with NotAction: it grants every action except the \
                     listed ones, including actions AWS adds later{}.",
                    condition_note(st)
                ),
                "Replace NotAction with an Action list of exactly what is needed; to carve out \
                 exceptions, add a separate Deny statement.",
            );
        }
        if let Some(f) = &st.not_resource {
            out.error(
                RULE_NOT_RESOURCE,
                id,
                &f.pointer,
                format!(
                    "`{id}` has an Allow statement with NotResource: it applies to every resource \
                     except the listed ones, including resources created later{}.",
                    condition_note(st)
                ),
                "Replace NotResource with a Resource list of the ARNs needed; to carve out \
                 exceptions, add a separate Deny statement.",
            );
        }
        let Some(actions) = &st.action else { return };
        // No Resource at all is invalid IAM; judge it as the broadest reading.
        let (any_resource, unresolved_resource) = match &st.resource {
            Some(f) => (f.has_star(), unresolved_field(f)),
            None => (st.not_resource.is_none(), None),
        };
        for a in &actions.values {
            let text = match &a.value {
                Resolved::Str(s) => s.clone(),
                other => {
                    // Unknown parts become `*`: if even that matches nothing writable, it is fine.
                    let pattern = other.glob_pattern().unwrap_or_else(|| "*".to_string());
                    if (any_resource || unresolved_resource.is_some()) && grants_write(&pattern) {
                        out.unresolved(
                            other.doubt().or(unresolved_resource.as_ref().and_then(|u| u.1.as_ref())),
                            RULE_UNRESOLVED_ACTION,
                            id,
                            &a.pointer,
                            format!(
                                "`{id}` allows an action that is {} on {}; it may be a write \
                                 action, so the policy cannot prove this statement is least-privilege.",
                                other.describe(),
                                if any_resource { "every resource (`*`)" } else { "a resource it cannot resolve" }
                            ),
                            "Spell the actions out literally, or name the resources they apply to.",
                        );
                    }
                    continue;
                }
            };
            let (svc, name) = text.split_once(':').unwrap_or(("", text.as_str()));
            if text.chars().all(|c| c == '*') || (is_stars(svc) && is_stars(name)) {
                out.error(
                    RULE_ACTION_WILDCARD,
                    id,
                    &a.pointer,
                    format!(
                        "`{id}` allows Action `{text}`: every action of every AWS service, which \
                         is administrator access{}.",
                        condition_note(st)
                    ),
                    "List the actions the workload calls (e.g. `s3:GetObject`), on the resources \
                     it uses.",
                );
                continue;
            }
            if !svc.is_empty() && is_stars(name) {
                out.error(
                    RULE_SERVICE_WILDCARD,
                    id,
                    &a.pointer,
                    format!(
                        "`{id}` allows `{text}`: every {svc} action, including destructive and \
                         permission-changing ones and those AWS adds later{}.",
                        condition_note(st)
                    ),
                    format!("List the {svc} actions the workload calls instead of `{text}`."),
                );
                continue;
            }
            if !any_resource && unresolved_resource.is_none() {
                continue;
            }
            let matched = catalog::expand(&text);
            let pass_role = matched.iter().any(|m| m.is("iam", "PassRole"));
            let writes: Vec<&Action> = matched
                .iter()
                .filter(|m| m.level.is_write() && !m.is("iam", "PassRole"))
                .filter(|m| m.scopable || !self.allow_unscopable)
                .collect();
            let unknown = matched.is_empty();
            if any_resource {
                if pass_role {
                    out.error(
                        RULE_PASS_ROLE,
                        id,
                        &a.pointer,
                        format!(
                            "`{id}` allows `{text}`{} on every resource: whoever holds it can hand \
                             any role in the account, and so any permission, to a service it \
                             controls{}.",
                            if text.eq_ignore_ascii_case("iam:PassRole") { "" } else { " (matches iam:PassRole)" },
                            condition_note(st)
                        ),
                        "Limit iam:PassRole to the ARNs of the roles that must be passed, and add an \
                         `iam:PassedToService` condition.",
                    );
                }
                if unknown || !writes.is_empty() {
                    out.error(
                        RULE_WRITE_ANY_RESOURCE,
                        id,
                        &a.pointer,
                        format!(
                            "`{id}` allows `{text}` on every resource (`Resource: \"*\"`){}; \
                             write and permissions-management actions must name the resources \
                             they act on{}.",
                            describe_writes(&text, &writes, unknown),
                            condition_note(st)
                        ),
                        "Put the ARNs the action needs in Resource (e.g. `!Sub \"${Bucket.Arn}/*\"`), \
                         or keep only Read, List and Tagging actions on `*`.",
                    );
                }
            } else if let Some((why, doubt)) = &unresolved_resource
                && (pass_role || unknown || !writes.is_empty())
            {
                out.unresolved(
                    doubt.as_ref(),
                    RULE_UNRESOLVED_RESOURCE,
                    id,
                    &a.pointer,
                    format!(
                        "`{id}` allows `{text}`{} on a resource that is {why}; the policy cannot \
                         prove it is not `*`.",
                        describe_writes(&text, &writes, unknown),
                    ),
                    "Name the resource in the template (a literal ARN, `!GetAtt`, or `!Sub` with \
                     literal text) instead of a value known only at deploy time.",
                );
            }
        }
    }

    /// `AssumeRolePolicyDocument`: nobody outside may assume the role.
    fn trust(&self, res: &Resource<'_>, out: &mut Findings) -> Result<(), String> {
        let Some((doc, ptr)) = res.property("AssumeRolePolicyDocument") else {
            return Ok(());
        };
        let (docs, unread) = iam::documents(self.r, doc, &ptr)?;
        for u in unread {
            unreadable(out, res.id, &u.pointer, &u.reason, u.doubt.as_ref());
        }
        let id = res.id;
        for d in &docs {
            let s = d.statements(self.r)?;
            for u in s.unreadable {
                unreadable(out, id, &u.pointer, &u.reason, u.doubt.as_ref());
            }
            for st in s.statements.iter().filter(|st| st.may_allow()) {
                for e in st.principal.iter().flatten() {
                    let public = e.value.value.as_str() == Some("*")
                        && e.kind
                            .as_deref()
                            .is_none_or(|k| k.eq_ignore_ascii_case("AWS"));
                    if public {
                        out.error(
                            RULE_PUBLIC_TRUST,
                            id,
                            &e.value.pointer,
                            format!(
                                "`{id}` can be assumed by any AWS principal in any account \
                                 (Principal {}){}.",
                                match &e.kind {
                                    Some(k) => format!("`{{\"{k}\": \"*\"}}`"),
                                    None => "`\"*\"`".to_string(),
                                },
                                condition_note(st)
                            ),
                            "Name the accounts, roles or services that may assume the role in \
                             Principal.",
                        );
                    } else if e.value.value.is_unknown() || e.value.value.doubt().is_some() {
                        out.unresolved(
                            e.value.value.doubt(),
                            RULE_UNRESOLVED,
                            id,
                            &e.value.pointer,
                            format!(
                                "`{id}` trusts a principal that is {}; the policy cannot prove it is \
                                 not `*`.",
                                e.value.value.describe()
                            ),
                            "Name the trusted principal in the template.",
                        );
                    }
                }
                if let Some(np) = &st.not_principal {
                    let ptr = np
                        .first()
                        .map_or_else(|| st.pointer.clone(), |e| e.value.pointer.clone());
                    out.error(
                        RULE_PUBLIC_TRUST,
                        id,
                        &ptr,
                        format!(
                            "`{id}` has a trust statement that allows NotPrincipal: everyone except \
                             the listed principals may assume the role."
                        ),
                        "Use Principal with the accounts, roles or services that may assume the role.",
                    );
                }
            }
        }
        Ok(())
    }

    /// `ManagedPolicyArns`: no AWS managed admin or full-access policies.
    fn managed_arns(&self, res: &Resource<'_>, out: &mut Findings) -> Result<(), String> {
        let Some((arns, ptr)) = res.property("ManagedPolicyArns") else {
            return Ok(());
        };
        let id = res.id;
        for p in self.r.elements(arns, &ptr)? {
            let parts: Vec<Part> = match &p.value {
                Resolved::Str(s) => vec![Part::Text(s.clone())],
                Resolved::Partial(parts) => parts.clone(),
                Resolved::Unknown(_) | Resolved::Doubt(_) => {
                    out.unresolved(
                        p.value.doubt(),
                        RULE_UNRESOLVED,
                        id,
                        &p.pointer,
                        format!(
                            "`{id}` attaches a managed policy that is {}; the policy cannot prove \
                             it is not AdministratorAccess.",
                            p.value.describe()
                        ),
                        "Attach managed policies by literal ARN or by reference to an \
                         AWS::IAM::ManagedPolicy in this template.",
                    );
                    continue;
                }
                // A Ref to an AWS::IAM::ManagedPolicy here is checked as its own resource.
                _ => continue,
            };
            match aws_managed_name(&parts) {
                AwsManaged::No => {}
                AwsManaged::UnknownName => out.unresolved(
                    p.value.doubt(),
                    RULE_UNRESOLVED,
                    id,
                    &p.pointer,
                    format!(
                        "`{id}` attaches the AWS managed policy {}, whose name is known only at \
                         deploy time; the policy cannot prove it is not AdministratorAccess.",
                        p.value.describe()
                    ),
                    "Write the managed policy name literally.",
                ),
                AwsManaged::Named(name) => {
                    let admin = name.starts_with("AdministratorAccess")
                        || name == "PowerUserAccess"
                        || name == "IAMFullAccess";
                    if admin {
                        out.error(
                            RULE_ADMIN_POLICY,
                            id,
                            &p.pointer,
                            format!(
                                "`{id}` attaches the AWS managed policy `{name}`, which grants \
                                 administrator-level access (or the means to get it)."
                            ),
                            "Attach a customer managed or inline policy that lists the actions and \
                             resources the workload needs.",
                        );
                    } else if name.ends_with("FullAccess") {
                        out.error(
                            RULE_FULL_ACCESS_POLICY,
                            id,
                            &p.pointer,
                            format!(
                                "`{id}` attaches the AWS managed policy `{name}`, which allows every \
                                 action of its service on every resource."
                            ),
                            "Use the service's ReadOnly managed policy or a policy listing the \
                             actions and resources the workload needs.",
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// `AWS::Lambda::Permission`: not invokable by anyone, nor by a service for anyone.
    fn lambda_permission(&self, res: &Resource<'_>, out: &mut Findings) -> Result<(), String> {
        let Some((principal, ptr)) = res.property("Principal") else {
            return Ok(());
        };
        let id = res.id;
        let absent_somewhere = |key: &str| -> Result<bool, String> {
            Ok(match res.property(key) {
                None => true,
                Some((v, p)) => self.r.resolve(v, &p)?.iter().any(|p| p.value.is_absent()),
            })
        };
        let no_source = absent_somewhere("SourceArn")? && absent_somewhere("SourceAccount")?;
        for p in self.r.resolve(principal, &ptr)? {
            match &p.value {
                Resolved::Str(s) if s.trim() == "*" => out.error(
                    RULE_LAMBDA_PUBLIC,
                    id,
                    &p.pointer,
                    format!("`{id}` lets anyone, in any AWS account or none, invoke the function (Principal `*`)."),
                    "Name the account or service principal that invokes the function, with \
                     SourceArn or SourceAccount for a service.",
                ),
                Resolved::Str(s) if s.ends_with(".amazonaws.com") && no_source => out.warning(
                    RULE_LAMBDA_NO_SOURCE,
                    id,
                    &p.pointer,
                    format!(
                        "`{id}` lets `{s}` invoke the function without SourceArn or SourceAccount: \
                         the service may invoke it on behalf of any account (confused deputy)."
                    ),
                    "Add SourceArn (the bucket, topic, rule or API that invokes the function) or \
                     SourceAccount.",
                ),
                value if value.is_unknown() || value.doubt().is_some() => out.unresolved(
                    value.doubt(),
                    RULE_UNRESOLVED,
                    id,
                    &p.pointer,
                    format!(
                        "`{id}` grants invoke to a principal that is {}; the policy cannot prove it \
                         is not `*`.",
                        p.value.describe()
                    ),
                    "Name the principal in the template.",
                ),
                _ => {}
            }
        }
        Ok(())
    }
}

fn is_stars(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c == '*')
}

/// Why a Resource field may be anything: a value that is fully unknown, or one that
/// CloudFormation fetches from elsewhere at deploy time (then with its doubt).
fn unresolved_field(f: &Field<'_>) -> Option<(String, Option<Doubt>)> {
    f.values
        .iter()
        .find(|p| p.value.doubt().is_some())
        .or_else(|| f.values.iter().find(|p| p.value.is_unknown()))
        .map(|p| (p.value.describe(), p.value.doubt().cloned()))
}

/// True when a pattern may match a write action (or matches nothing known: fail closed).
fn grants_write(pattern: &str) -> bool {
    let matched = catalog::expand(pattern);
    matched.is_empty() || matched.iter().any(|m| m.level.is_write())
}

fn describe_writes(text: &str, writes: &[&Action], unknown: bool) -> String {
    let base = describe_matches(text, writes, unknown);
    if !unknown && !writes.is_empty() && writes.iter().all(|a| !a.scopable) {
        // Naming resources cannot fix these; say so rather than send people hunting.
        return format!(
            "{base} (AWS supports only `*` for {}; the `allow_unscopable_writes` setting \
             accepts such actions)",
            if writes.len() == 1 { "it" } else { "these" }
        );
    }
    base
}

fn describe_matches(text: &str, writes: &[&Action], unknown: bool) -> String {
    if unknown {
        return format!(
            ", and `{text}` is not in the IAM action catalog ({} actions), so it counts as Write",
            catalog::len()
        );
    }
    if writes.is_empty() {
        return String::new();
    }
    let single = writes.len() == 1 && writes[0].is_named(text);
    if single {
        return format!(", a {} action", writes[0].level.name());
    }
    let shown: Vec<String> = writes
        .iter()
        .take(SHOW_ACTIONS)
        .map(|a| format!("{}:{} ({})", a.service, a.name, a.level.name()))
        .collect();
    let more = writes.len().saturating_sub(SHOW_ACTIONS);
    format!(
        ", which matches {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn condition_note(st: &Statement<'_>) -> &'static str {
    if st.has_condition {
        " (a Condition narrows when, not what: it does not make this least-privilege)"
    } else {
        ""
    }
}

fn unreadable(out: &mut Findings, id: &str, ptr: &str, why: &str, doubt: Option<&Doubt>) {
    out.unresolved(
        doubt,
        RULE_UNRESOLVED,
        id,
        ptr,
        format!(
            "`{id}` has a policy document or statement that is {why}; the policy cannot check it."
        ),
        "Write the policy document in the template rather than importing it.",
    );
}

enum AwsManaged {
    No,
    UnknownName,
    Named(String),
}

/// Whether an ARN names an AWS managed policy (`arn:<partition>:iam::aws:policy/[path/]Name`).
fn aws_managed_name(parts: &[Part]) -> AwsManaged {
    const MARKER: &str = ":iam::aws:policy/";
    // Unknown parts become NUL, which no ARN contains, so they never match literal text.
    let text: String = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.as_str(),
            Part::Unknown(_) | Part::Doubt(_) => "\0",
        })
        .collect();
    let Some(at) = text.find(MARKER) else {
        return AwsManaged::No;
    };
    let rest = &text[at + MARKER.len()..];
    let name = rest.rsplit('/').next().unwrap_or(rest);
    if name.contains('\0') || name.is_empty() {
        AwsManaged::UnknownName
    } else {
        AwsManaged::Named(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<Part> {
        vec![Part::Text(s.to_string())]
    }

    #[test]
    fn managed_policy_names() {
        assert!(matches!(
            aws_managed_name(&parts("arn:aws:iam::aws:policy/AdministratorAccess")),
            AwsManaged::Named(n) if n == "AdministratorAccess"
        ));
        assert!(matches!(
            aws_managed_name(&parts("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")),
            AwsManaged::Named(n) if n == "AmazonECSTaskExecutionRolePolicy"
        ));
        assert!(matches!(
            aws_managed_name(&parts("arn:aws:iam::123456789012:policy/Mine")),
            AwsManaged::No
        ));
        let unknown_name = vec![
            Part::Text("arn:aws:iam::aws:policy/".into()),
            Part::Unknown("p".into()),
        ];
        assert!(matches!(
            aws_managed_name(&unknown_name),
            AwsManaged::UnknownName
        ));
        let unknown_partition = vec![
            Part::Text("arn:".into()),
            Part::Unknown("AWS::Partition".into()),
            Part::Text(":iam::aws:policy/PowerUserAccess".into()),
        ];
        assert!(
            matches!(aws_managed_name(&unknown_partition), AwsManaged::Named(n) if n == "PowerUserAccess")
        );
    }

    #[test]
    fn write_patterns() {
        assert!(grants_write("s3:Put*"));
        assert!(!grants_write("s3:Get*"));
        assert!(grants_write("s3:NoSuchThing*"));
        assert!(grants_write("*"));
    }
}

#[cfg(test)]
mod evaluate_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_every_rule_id_from_the_list() {
        let input = json!({"template": {"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": ["*", "s3:*", "s3:Put*", "iam:PassRole"], "Resource": "*"}
            ]}}]
        }}}}});
        let f = evaluate(&input).unwrap();
        let rules: Vec<&str> = f.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec![
                RULE_ACTION_WILDCARD,
                RULE_SERVICE_WILDCARD,
                RULE_WRITE_ANY_RESOURCE,
                RULE_PASS_ROLE,
                RULE_PUBLIC_TRUST
            ]
        );
        assert!(rules.iter().all(|r| RULES.contains(r)));
        assert_eq!(
            f[3].path,
            "/Resources/R/Properties/Policies/0/PolicyDocument/Statement/0/Action/3"
        );
    }
}
