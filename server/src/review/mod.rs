//! What a change widens: the template a change proposes against the one it replaces, both
//! as the policies see them (long form, parameters resolved by the SDK's resolver), listed
//! as what is newly allowed and what no longer is.
//!
//! Each category is a file that turns one template into [`Grant`]s: security-group ingress
//! (`ingress`), IAM actions, `*` resources, conditions and trust principals (`iam`), and
//! Lambda permissions (`lambda`). This file compares two lists of grants. A grant whose
//! value cannot be resolved on either side is never "no widening": it is listed as *may
//! widen*, with the reason (doubt fails closed). Pure functions, no AWS: the pipeline and
//! the CLI fetch the two sides (`baseline`).

pub mod baseline;
mod iam;
mod ingress;
mod lambda;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stackgate_policy_sdk::Input;

/// Grants one template may yield before the review gives up with doubt: `Action: "s3:*"`
/// expands to a few hundred, and a pull request can write many.
pub const MAX_GRANTS: usize = 100_000;
/// Deltas of one kind, on one resource, from one statement, shown before "and N more".
const SHOW: usize = 5;

/// What a change widens or narrows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A security-group ingress rule: protocol, ports and source.
    Ingress,
    /// IAM actions allowed (wildcards expanded through the catalog), managed policies.
    IamAction,
    /// IAM actions allowed on any resource (`Resource: "*"`).
    IamAnyResource,
    /// IAM actions allowed without the `Condition` they had.
    IamCondition,
    /// Who may assume a role.
    TrustPrincipal,
    /// `AWS::Lambda::Permission`: who may invoke a function, from where.
    LambdaPermission,
    /// What the review cannot look inside (transforms, nested stacks, an unreadable side).
    Template,
}

/// One thing that widens or narrows, in words. `on` is the logical id it is granted on;
/// `what` the grant: `tcp/22 from 0.0.0.0/0`. Both come from the template: escape them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub kind: Kind,
    pub on: String,
    pub what: String,
    /// Set on a widening that cannot be proven either way: why (it *may* widen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doubt: Option<String>,
}

/// What the proposed template was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "against", rename_all = "kebab-case")]
pub enum Baseline {
    /// The template CloudFormation runs now (GetTemplate), with the live parameters.
    Deployed { stack: String },
    /// The deployed commit's template from git: a fork's pull request gets no AWS calls.
    DeployedCommit { sha: String },
    /// A git revision the command line named.
    Revision { name: String, sha: String },
    /// Not deployed: everything it grants is new.
    NotDeployed,
}

/// The review of one stack's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub baseline: Baseline,
    /// Newly allowed, and what may be (`doubt` set). Empty means nothing widens.
    pub widens: Vec<Delta>,
    pub narrows: Vec<Delta>,
}

impl Review {
    /// Every string replaced by `f` (redaction of `NoEcho` values).
    pub fn map_text(mut self, f: impl Fn(&str) -> String) -> Self {
        for d in self.widens.iter_mut().chain(self.narrows.iter_mut()) {
            d.on = f(&d.on);
            d.what = f(&d.what);
            d.doubt = d.doubt.as_deref().map(&f);
        }
        self
    }

    /// A review that cannot compare at all: it may widen anything.
    pub fn unknown(baseline: Baseline, on: &str, why: String) -> Self {
        Self {
            baseline,
            widens: vec![Delta {
                kind: Kind::Template,
                on: on.to_string(),
                what: "anything in the template".into(),
                doubt: Some(why),
            }],
            narrows: Vec::new(),
        }
    }
}

/// A fact one template grants, compared by [`Fact`].
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub kind: Kind,
    pub on: String,
    /// Its words when it widens or narrows.
    pub what: String,
    /// Grants from one statement and pattern share it, so that a wildcard's hundred
    /// actions are one line.
    pub group: Option<String>,
    pub fact: Fact,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Fact {
    Ingress(ingress::Rule),
    /// An IAM action (lower case), or a pattern the catalog cannot expand (`*`).
    Action(String),
    /// Compared by equality: a managed policy ARN, a principal.
    Exact(String),
    /// A Lambda permission: covered by one with the same target and fewer restrictions.
    Permission(lambda::Permission),
    /// Cannot be resolved: `key` is its text (equal on both sides is no change), `why`
    /// the reason.
    Unresolved {
        key: String,
        why: String,
    },
}

impl Grant {
    fn unresolved(kind: Kind, on: &str, what: String, key: String, why: String) -> Self {
        Grant {
            kind,
            on: on.to_string(),
            what,
            group: None,
            fact: Fact::Unresolved { key, why },
        }
    }
}

/// Collects grants up to [`MAX_GRANTS`].
#[derive(Default)]
pub(crate) struct Grants {
    pub items: Vec<Grant>,
    pub over: bool,
}

impl Grants {
    pub fn push(&mut self, g: Grant) {
        if self.items.len() >= MAX_GRANTS {
            self.over = true;
        } else {
            self.items.push(g);
        }
    }
}

/// Every grant of one template (a policy-input document: template, parameters, stack).
pub(crate) fn grants(doc: &Value) -> Result<Grants, String> {
    let input = Input::parse(doc)?;
    let resolver = input.resolver();
    let mut out = Grants::default();
    ingress::grants(&resolver, &mut out)?;
    iam::grants(&resolver, &mut out)?;
    lambda::grants(&resolver, &mut out)?;
    unreviewed(&input, &mut out);
    Ok(out)
}

/// Transforms and nested stacks: CloudFormation expands them, the review does not (yet).
fn unreviewed(input: &Input<'_>, out: &mut Grants) {
    if let Some(t) = input.template.root().get("Transform") {
        let key = format!("Transform {t}");
        out.push(Grant::unresolved(
            Kind::Template,
            "Transform",
            "what the transform produces".into(),
            key,
            "CloudFormation runs the transform at deploy time".into(),
        ));
    }
    for r in input.template.resources() {
        if r.kind == "AWS::CloudFormation::Stack" {
            let key = format!(
                "{:?}",
                r.properties
                    .and_then(|p| p.get("Parameters"))
                    .map(Value::to_string)
            );
            out.push(Grant::unresolved(
                Kind::Template,
                r.id,
                "the nested stack's resources".into(),
                key,
                "nested stacks are not compared".into(),
            ));
        }
    }
}

/// Compares `proposed` with `base` (`None`: not deployed, an empty template). Both are
/// policy-input documents. An error is a template the resolver refuses (malformed
/// intrinsics): the caller lists it as doubt.
pub fn compare(baseline: Baseline, base: Option<&Value>, proposed: &Value) -> Review {
    let on_error = |side: &str, e: String| {
        Review::unknown(
            baseline.clone(),
            "template",
            format!("the {side} template cannot be read: {e}"),
        )
    };
    let new = match grants(proposed) {
        Ok(g) => g,
        Err(e) => return on_error("proposed", e),
    };
    let old = match base.map(grants).transpose() {
        Ok(g) => g.unwrap_or_default(),
        Err(e) => return on_error("deployed", e),
    };
    if new.over || old.over {
        return Review::unknown(
            baseline,
            "template",
            format!("it grants more than {MAX_GRANTS} things to compare"),
        );
    }
    let old_index = Index::new(&old.items);
    let new_index = Index::new(&new.items);
    let mut widens = Vec::new();
    for g in &new.items {
        match old_index.covers(g) {
            Cover::Yes => {}
            Cover::No => widens.push((g, None)),
            Cover::Maybe(why) => widens.push((g, Some(why))),
        }
    }
    let narrows: Vec<_> = old
        .items
        .iter()
        .filter(|g| !matches!(g.fact, Fact::Unresolved { .. }))
        .filter(|g| matches!(new_index.covers(g), Cover::No))
        .map(|g| (g, None))
        .collect();
    let (widens, narrows) = (drop_implied(widens), drop_implied(narrows));
    Review {
        baseline,
        widens: merge(widens),
        narrows: merge(narrows),
    }
}

/// An action on `*` or without a condition is not listed again when the action itself is.
fn drop_implied(mut items: Vec<(&Grant, Option<String>)>) -> Vec<(&Grant, Option<String>)> {
    let actions: HashSet<(String, String)> = items
        .iter()
        .filter_map(|(g, _)| match (&g.kind, &g.fact) {
            (Kind::IamAction, Fact::Action(a)) => Some((g.on.clone(), a.clone())),
            _ => None,
        })
        .collect();
    items.retain(|(g, _)| match (&g.kind, &g.fact) {
        (Kind::IamAnyResource | Kind::IamCondition, Fact::Action(a)) => {
            !actions.contains(&(g.on.clone(), a.clone()))
        }
        _ => true,
    });
    items
}

enum Cover {
    Yes,
    No,
    Maybe(String),
}

/// One side's grants, indexed by where they are granted.
struct Index<'g> {
    by_on: HashMap<(Kind, &'g str), Vec<&'g Grant>>,
    exact: HashSet<(Kind, &'g str, &'g Fact)>,
}

impl<'g> Index<'g> {
    fn new(items: &'g [Grant]) -> Self {
        let mut by_on: HashMap<(Kind, &str), Vec<&Grant>> = HashMap::new();
        let mut exact = HashSet::new();
        for g in items {
            exact.insert((g.kind, g.on.as_str(), &g.fact));
            // Concrete actions are found by `exact`; only patterns and rules are scanned.
            let scanned = match &g.fact {
                Fact::Action(a) => a.contains(['*', '?']),
                Fact::Exact(_) => false,
                _ => true,
            };
            if scanned {
                by_on.entry((g.kind, g.on.as_str())).or_default().push(g);
            }
            // An action it cannot resolve may be any action, on `*`, without a condition.
            if g.kind == Kind::IamAction && matches!(g.fact, Fact::Unresolved { .. }) {
                for k in [Kind::IamAnyResource, Kind::IamCondition] {
                    by_on.entry((k, g.on.as_str())).or_default().push(g);
                }
            }
        }
        Self { by_on, exact }
    }

    fn covers(&self, g: &Grant) -> Cover {
        if self.exact.contains(&(g.kind, g.on.as_str(), &g.fact)) {
            return Cover::Yes;
        }
        let others = self
            .by_on
            .get(&(g.kind, g.on.as_str()))
            .map_or(&[][..], Vec::as_slice);
        let mut maybe = None;
        for o in others {
            match (&o.fact, &g.fact) {
                (Fact::Ingress(a), Fact::Ingress(b)) if a.covers(b) => return Cover::Yes,
                (Fact::Action(p), Fact::Action(a))
                    if stackgate_policy_sdk::iam::glob_match(p, a) =>
                {
                    return Cover::Yes;
                }
                (Fact::Permission(a), Fact::Permission(b)) => match a.covers(b) {
                    Ok(true) => return Cover::Yes,
                    Ok(false) => {}
                    Err(why) => {
                        maybe.get_or_insert(why);
                    }
                },
                (Fact::Unresolved { why, .. }, _) => {
                    maybe.get_or_insert_with(|| format!("the deployed side: {why}"));
                }
                _ => {}
            }
        }
        match (&g.fact, maybe) {
            (Fact::Unresolved { why, .. }, _) => Cover::Maybe(why.clone()),
            (_, Some(why)) => Cover::Maybe(why),
            (_, None) => Cover::No,
        }
    }
}

/// One delta per grant, but the many actions of one statement's pattern as one line.
fn merge(items: Vec<(&Grant, Option<String>)>) -> Vec<Delta> {
    let mut out: Vec<Delta> = Vec::new();
    // (kind, on, pattern, doubt) → where its delta is, and the names it holds.
    type Group = (Kind, String, String, Option<String>);
    let mut groups: HashMap<Group, (usize, Vec<String>)> = HashMap::new();
    for (g, doubt) in items {
        let Some(group) = &g.group else {
            out.push(Delta {
                kind: g.kind,
                on: g.on.clone(),
                what: g.what.clone(),
                doubt,
            });
            continue;
        };
        let key = (g.kind, g.on.clone(), group.clone(), doubt.clone());
        match groups.get_mut(&key) {
            Some((_, names)) => names.push(g.what.clone()),
            None => {
                groups.insert(key, (out.len(), vec![g.what.clone()]));
                out.push(Delta {
                    kind: g.kind,
                    on: g.on.clone(),
                    what: String::new(),
                    doubt,
                });
            }
        }
    }
    for ((kind, _, group, _), (at, names)) in groups {
        out[at].what = iam::grouped(kind, &group, &names, SHOW);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A policy-input document for a template in long form.
    pub fn doc(template: Value, parameters: Value) -> Value {
        json!({"template": template, "parameters": parameters,
               "stack": {"name": "web", "region": "us-east-1"}})
    }

    pub fn review(old: Value, new: Value) -> Review {
        let (o, n) = (doc(old, json!({})), doc(new, json!({})));
        compare(
            Baseline::Deployed {
                stack: "web".into(),
            },
            Some(&o),
            &n,
        )
    }

    pub fn lines(ds: &[Delta]) -> Vec<String> {
        ds.iter()
            .map(|d| match &d.doubt {
                None => format!("{} on {}", d.what, d.on),
                Some(why) => format!("maybe {} on {} ({why})", d.what, d.on),
            })
            .collect()
    }

    #[test]
    fn a_new_stack_widens_by_everything_it_grants() {
        let t = json!({"Resources": {"Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                      "CidrIp": "10.0.0.0/8"}]}}}});
        let r = compare(Baseline::NotDeployed, None, &doc(t, json!({})));
        assert_eq!(lines(&r.widens), ["tcp/443 from 10.0.0.0/8 on Sg"]);
        assert!(r.narrows.is_empty());
    }

    #[test]
    fn an_unchanged_template_widens_nothing_even_where_it_cannot_be_resolved() {
        let t = json!({"Parameters": {"Cidr": {"Type": "String"}},
            "Resources": {"Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                      "CidrIp": {"Ref": "Cidr"}}]}}}});
        let r = review(t.clone(), t);
        assert!(r.widens.is_empty(), "{r:?}");
        assert!(r.narrows.is_empty(), "{r:?}");
    }

    #[test]
    fn a_malformed_side_is_doubt_not_silence() {
        let bad = json!({"Resources": {"Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "SecurityGroupIngress": {"Fn::If": ["C", "a"]}}}}});
        let ok = json!({"Resources": {"B": {"Type": "AWS::S3::Bucket"}}});
        let r = review(ok, bad);
        assert_eq!(r.widens.len(), 1);
        assert!(
            r.widens[0].doubt.as_deref().unwrap().contains("proposed"),
            "{r:?}"
        );
    }

    #[test]
    fn nested_stacks_and_transforms_may_widen() {
        let t = json!({"Transform": "AWS::Serverless-2016-10-31", "Resources": {
            "Child": {"Type": "AWS::CloudFormation::Stack", "Properties": {"TemplateURL": "x"}}}});
        let r = compare(Baseline::NotDeployed, None, &doc(t, json!({})));
        let l = lines(&r.widens);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l.iter().all(|l| l.starts_with("maybe ")), "{l:?}");
    }

    #[test]
    fn redaction_reaches_every_text() {
        let r = Review {
            baseline: Baseline::NotDeployed,
            widens: vec![Delta {
                kind: Kind::Ingress,
                on: "Sg".into(),
                what: "tcp/22 from 10.9.9.9/32".into(),
                doubt: Some("10.9.9.9".into()),
            }],
            narrows: Vec::new(),
        }
        .map_text(|s| s.replace("10.9.9.9", "[redacted]"));
        assert_eq!(r.widens[0].what, "tcp/22 from [redacted]/32");
        assert_eq!(r.widens[0].doubt.as_deref(), Some("[redacted]"));
    }
}
