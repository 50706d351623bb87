//! Policy `open-ingress`: no security group is open to the world, except tcp port 80 on a
//! security group used only by an Application Load Balancer.
//!
//! - World: any IPv4 or IPv6 CIDR with prefix length 0, in any spelling (`0.0.0.0/0`,
//!   `10.0.0.0/0`, `::/0`, `0000::/0`), in `CidrIp` / `CidrIpv6` of `SecurityGroupIngress`
//!   entries of `AWS::EC2::SecurityGroup` and of standalone `AWS::EC2::SecurityGroupIngress`
//!   resources, and in the entries of an `AWS::EC2::PrefixList` of this template named by
//!   `SourcePrefixListId`. Values go through intrinsics; every `Fn::If` branch counts.
//! - Exception, only when all hold for every branch: protocol tcp, `FromPort == ToPort`, the
//!   port is in setting `alb_world_ports` (default `[80]`), every group the rule applies to is
//!   in `SecurityGroups` of an `AWS::ElasticLoadBalancingV2::LoadBalancer` whose `Type` is
//!   `application` or absent, and no other resource uses that group.
//! - A CIDR that cannot be resolved is a warning: it cannot be proven not to be world-open.
//!   One CloudFormation fetches from elsewhere at deploy time (an SSM parameter, a dynamic
//!   reference, an import) is an error: doubt fails closed.

use serde_json::{Map, Value};
use stackgate_policy_sdk::cidr;
use stackgate_policy_sdk::pointer;
use stackgate_policy_sdk::refs::{GroupUses, rule_targets};
use stackgate_policy_sdk::{Doubt, Finding, Findings, Input, Resolved, Resolver};

pub const NAME: &str = "open-ingress";

/// An ingress rule opens a port range to a /0 block and no exception applies.
pub const RULE_WORLD_OPEN: &str = "open-ingress/world-open";
/// A CIDR (or prefix-list entry) cannot be resolved before deploy.
pub const RULE_UNRESOLVED_CIDR: &str = "open-ingress/unresolved-cidr";
/// A whole `SecurityGroupIngress` list or entry cannot be resolved before deploy.
pub const RULE_UNRESOLVED_RULE: &str = "open-ingress/unresolved-rule";

/// Every rule id this policy may report.
pub const RULES: &[&str] = &[RULE_WORLD_OPEN, RULE_UNRESOLVED_CIDR, RULE_UNRESOLVED_RULE];

const SECURITY_GROUP: &str = "AWS::EC2::SecurityGroup";
const INGRESS: &str = "AWS::EC2::SecurityGroupIngress";
const LOAD_BALANCER: &str = "AWS::ElasticLoadBalancingV2::LoadBalancer";
const PREFIX_LIST: &str = "AWS::EC2::PrefixList";

const REMEDIATION_WORLD: &str = "Restrict the source to the networks that need access (a VPN or \
office range, or a source security group). Only tcp ports in `alb_world_ports` (default 80) may \
be open to the world, and only on a security group used by nothing but an Application Load Balancer.";
const REMEDIATION_UNRESOLVED: &str = "Give the CIDR a value the policy can see (a literal, or a \
parameter with a value or Default), or restrict the rule to a source security group.";

stackgate_policy_sdk::export_policy!(NAME, evaluate);

/// Evaluates the policy on one input document (see `policies/README.md`).
pub fn evaluate(input: &Value) -> Result<Vec<Finding>, String> {
    let input = Input::parse(input)?;
    let alb_ports = input
        .settings
        .int_list("alb_world_ports", 0, 65535, &[80])?;
    let resolver = input.resolver();
    let uses = GroupUses::build(&resolver)?;
    let check = Check {
        resolver: &resolver,
        uses: &uses,
        alb_ports: &alb_ports,
    };
    let mut out = Findings::for_input(&input)?;
    for res in input.template.resources() {
        match res.kind {
            SECURITY_GROUP => {
                let Some((value, ptr)) = res.property("SecurityGroupIngress") else {
                    continue;
                };
                for entry in resolver.elements(value, &ptr)? {
                    match entry.value {
                        Resolved::Object(props) => check.rule(
                            &Rule {
                                props,
                                pointer: entry.pointer,
                                resource: res.id,
                                groups: vec![Group::InTemplate(res.id.to_string())],
                            },
                            &mut out,
                        )?,
                        other if other.is_unresolved() => out.unresolved(
                            other.doubt(),
                            RULE_UNRESOLVED_RULE,
                            res.id,
                            &entry.pointer,
                            format!(
                                "Security group `{}` has an ingress rule that is {}, so the policy \
                                 cannot prove it is not open to the world.",
                                res.id,
                                other.describe()
                            ),
                            REMEDIATION_UNRESOLVED,
                        ),
                        other => {
                            return Err(format!(
                                "SecurityGroupIngress entry at {} must be an object, not {}",
                                entry.pointer,
                                other.describe()
                            ));
                        }
                    }
                }
            }
            INGRESS => {
                let Some(props) = res.properties else {
                    continue;
                };
                let groups = check.targets(props, &res.properties_pointer())?;
                check.rule(
                    &Rule {
                        props,
                        pointer: res.properties_pointer(),
                        resource: res.id,
                        groups,
                    },
                    &mut out,
                )?;
            }
            _ => {}
        }
    }
    Ok(out.into_vec())
}

/// One ingress rule: an inline entry or a standalone resource's properties.
struct Rule<'a> {
    props: &'a Map<String, Value>,
    /// Pointer to the rule object.
    pointer: String,
    /// The resource a finding is reported on.
    resource: &'a str,
    /// The groups the rule applies to (every `Fn::If` branch).
    groups: Vec<Group>,
}

enum Group {
    InTemplate(String),
    /// Not a security group of this template; the text says what it is.
    Elsewhere(String),
}

struct Check<'c, 'a> {
    resolver: &'c Resolver<'a>,
    uses: &'c GroupUses,
    alb_ports: &'c [i64],
}

/// A CIDR the rule opens, and where it is written.
struct Source {
    pointer: String,
    text: String,
    /// Set when CloudFormation fetches the value from elsewhere at deploy time.
    doubt: Option<Doubt>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    All,
    Other,
}

fn protocol(s: &str) -> Protocol {
    match s.trim().to_ascii_lowercase().as_str() {
        "tcp" | "6" => Protocol::Tcp,
        "udp" | "17" => Protocol::Udp,
        "icmp" | "1" => Protocol::Icmp,
        "icmpv6" | "58" => Protocol::Icmpv6,
        "-1" | "all" => Protocol::All,
        _ => Protocol::Other,
    }
}

/// A port bound; `None` means every port (missing or -1).
fn port(r: &Resolved<'_>) -> Result<Option<i64>, String> {
    match r {
        Resolved::Absent => Ok(None),
        Resolved::Str(s) => match s.trim().parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!("port {}", r.describe())),
        },
        other => Err(format!("port {}", other.describe())),
    }
}

impl Check<'_, '_> {
    /// The groups a standalone ingress applies to, from `GroupId` or `GroupName`.
    fn targets(&self, props: &Map<String, Value>, ptr: &str) -> Result<Vec<Group>, String> {
        let mut groups: Vec<Group> = rule_targets(self.resolver, props, ptr)?
            .into_iter()
            .map(|g| match g {
                Ok(id) => Group::InTemplate(id),
                Err(what) => Group::Elsewhere(what),
            })
            .collect();
        if groups.is_empty() {
            groups.push(Group::Elsewhere("no GroupId or GroupName".to_string()));
        }
        Ok(groups)
    }

    fn rule(&self, rule: &Rule<'_>, out: &mut Findings) -> Result<(), String> {
        let mut world = Vec::new();
        let mut unresolved = Vec::new();
        for field in ["CidrIp", "CidrIpv6"] {
            let Some(v) = rule.props.get(field) else {
                continue;
            };
            for p in self
                .resolver
                .resolve(v, &pointer::child(&rule.pointer, field))?
            {
                match &p.value {
                    Resolved::Absent => {}
                    Resolved::Str(s) => match cidr::parse(s) {
                        Ok(c) if c.is_world() => world.push(Source {
                            pointer: p.pointer,
                            text: format!("`{s}`"),
                            doubt: None,
                        }),
                        Ok(_) => {}
                        Err(e) => unresolved.push(Source {
                            pointer: p.pointer,
                            text: e,
                            doubt: None,
                        }),
                    },
                    other => unresolved.push(Source {
                        pointer: p.pointer.clone(),
                        text: format!("{field} is {}", other.describe()),
                        doubt: other.doubt().cloned(),
                    }),
                }
            }
        }
        self.prefix_lists(rule, &mut world, &mut unresolved)?;
        if world.is_empty() && unresolved.is_empty() {
            return Ok(());
        }
        let traffic = self.traffic(rule)?;
        let Err(why_not) = self.exception(rule, &traffic)? else {
            // Port 80 on an ALB-only group may be open to anything, resolved or not.
            return Ok(());
        };
        let allows = traffic.describe();
        for s in &world {
            out.error(
                RULE_WORLD_OPEN,
                rule.resource,
                &s.pointer,
                format!(
                    "`{}` allows {allows} from {}, which is the whole internet; {why_not}.",
                    rule.resource, s.text
                ),
                REMEDIATION_WORLD,
            );
        }
        for s in &unresolved {
            out.unresolved(
                s.doubt.as_ref(),
                RULE_UNRESOLVED_CIDR,
                rule.resource,
                &s.pointer,
                format!(
                    "`{}` allows {allows} from a source the policy cannot resolve ({}), so it \
                     cannot prove it is not world-open; {why_not}.",
                    rule.resource, s.text
                ),
                REMEDIATION_UNRESOLVED,
            );
        }
        Ok(())
    }

    /// `SourcePrefixListId` naming an `AWS::EC2::PrefixList` of this template: its entries
    /// are the sources. Prefix lists defined elsewhere are out of reach and not reported.
    fn prefix_lists(
        &self,
        rule: &Rule<'_>,
        world: &mut Vec<Source>,
        unresolved: &mut Vec<Source>,
    ) -> Result<(), String> {
        let Some(v) = rule.props.get("SourcePrefixListId") else {
            return Ok(());
        };
        let template = self.resolver.template();
        let field_ptr = pointer::child(&rule.pointer, "SourcePrefixListId");
        for p in self.resolver.resolve(v, &field_ptr)? {
            let Resolved::Resource { id, .. } = &p.value else {
                continue;
            };
            let Some(list) = template.resource(id).filter(|r| r.kind == PREFIX_LIST) else {
                continue;
            };
            let Some((entries, entries_ptr)) = list.property("Entries") else {
                continue;
            };
            for entry in self.resolver.elements(entries, &entries_ptr)? {
                let Resolved::Object(e) = entry.value else {
                    continue;
                };
                let Some(c) = e.get("Cidr") else { continue };
                for cp in self
                    .resolver
                    .resolve(c, &pointer::child(&entry.pointer, "Cidr"))?
                {
                    match &cp.value {
                        Resolved::Str(s) => match cidr::parse(s) {
                            Ok(c) if c.is_world() => world.push(Source {
                                pointer: p.pointer.clone(),
                                text: format!("prefix list `{id}` entry `{s}`"),
                                doubt: None,
                            }),
                            Ok(_) => {}
                            Err(e) => unresolved.push(Source {
                                pointer: p.pointer.clone(),
                                text: format!("prefix list `{id}`: {e}"),
                                doubt: None,
                            }),
                        },
                        Resolved::Absent => {}
                        other => unresolved.push(Source {
                            pointer: p.pointer.clone(),
                            text: format!("prefix list `{id}` entry {}", other.describe()),
                            doubt: other.doubt().cloned(),
                        }),
                    }
                }
            }
        }
        Ok(())
    }

    /// Every (protocol, from, to) the rule may allow.
    fn traffic(&self, rule: &Rule<'_>) -> Result<Traffic, String> {
        let get = |key: &str| {
            self.resolver
                .property_values(rule.props, &rule.pointer, key)
        };
        let protocols = get("IpProtocol")?;
        let froms = get("FromPort")?;
        let tos = get("ToPort")?;
        let mut options = Vec::new();
        for p in &protocols {
            let (proto, name) = match p {
                Resolved::Str(s) => (Some(protocol(s)), s.clone()),
                other => (None, other.describe()),
            };
            for f in &froms {
                for t in &tos {
                    options.push(Combo {
                        protocol: proto,
                        protocol_text: name.clone(),
                        from: port(f),
                        to: port(t),
                    });
                }
            }
        }
        Ok(Traffic { options })
    }

    /// `Ok(Ok(()))` when the ALB exception covers the rule on every branch, else
    /// `Ok(Err(reason))` saying which condition fails.
    fn exception(&self, rule: &Rule<'_>, traffic: &Traffic) -> Result<Result<(), String>, String> {
        let allowed = |o: &Combo| match (o.protocol, &o.from, &o.to) {
            (Some(Protocol::Tcp), Ok(Some(f)), Ok(Some(t))) => f == t && self.alb_ports.contains(f),
            _ => false,
        };
        if !traffic.options.iter().all(allowed) {
            let ports: Vec<String> = self.alb_ports.iter().map(i64::to_string).collect();
            let ports = if ports.is_empty() {
                "none".to_string()
            } else {
                ports.join(", ")
            };
            return Ok(Err(format!(
                "only single tcp ports in `alb_world_ports` ({ports}) may be open to the world"
            )));
        }
        let template = self.resolver.template();
        for group in &rule.groups {
            let id = match group {
                Group::InTemplate(id) => id,
                Group::Elsewhere(what) => {
                    return Ok(Err(format!(
                        "the rule applies to {what}, not a security group of this template, so \
                         the policy cannot see that only an Application Load Balancer uses it"
                    )));
                }
            };
            let mut albs = 0;
            for u in self.uses.users(id) {
                let user = template.resource(&u.user);
                let alb = match user.filter(|r| r.kind == LOAD_BALANCER) {
                    Some(lb) => self.is_application(&lb)?,
                    None => Err(format!("type `{}`", u.user_type)),
                };
                match alb {
                    Ok(()) => albs += 1,
                    Err(what) => {
                        return Ok(Err(format!(
                            "security group `{id}` is also used by `{}` ({what}), and the ALB \
                             exception is only for a group used by nothing but an Application \
                             Load Balancer",
                            u.user
                        )));
                    }
                }
            }
            if albs == 0 {
                return Ok(Err(format!(
                    "security group `{id}` is not used by an Application Load Balancer, which is \
                     the only place the exception applies"
                )));
            }
        }
        Ok(Ok(()))
    }

    /// An ELBv2 load balancer is an ALB when `Type` is `application` or absent, on every branch.
    fn is_application(
        &self,
        lb: &stackgate_policy_sdk::Resource<'_>,
    ) -> Result<Result<(), String>, String> {
        let Some((v, ptr)) = lb.property("Type") else {
            return Ok(Ok(()));
        };
        for p in self.resolver.resolve(v, &ptr)? {
            match &p.value {
                Resolved::Absent => {}
                Resolved::Str(s) if s.eq_ignore_ascii_case("application") => {}
                Resolved::Str(s) => return Ok(Err(format!("a load balancer of type `{s}`"))),
                other => {
                    return Ok(Err(format!(
                        "a load balancer whose type is {}",
                        other.describe()
                    )));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// One combination of protocol and ports a rule may take.
struct Combo {
    protocol: Option<Protocol>,
    protocol_text: String,
    from: Result<Option<i64>, String>,
    to: Result<Option<i64>, String>,
}

struct Traffic {
    options: Vec<Combo>,
}

impl Traffic {
    fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for o in &self.options {
            let text = match o.protocol {
                Some(Protocol::All) => "all traffic (every protocol and port)".to_string(),
                Some(Protocol::Other) => format!("IP protocol {} on every port", o.protocol_text),
                None => format!("protocol {}", o.protocol_text),
                Some(p) => {
                    let name = match p {
                        Protocol::Tcp => "tcp",
                        Protocol::Udp => "udp",
                        Protocol::Icmp => "icmp",
                        _ => "icmpv6",
                    };
                    let (what, all) = if matches!(p, Protocol::Icmp | Protocol::Icmpv6) {
                        ("type", "every type")
                    } else {
                        ("port", "every port")
                    };
                    match (&o.from, &o.to) {
                        (Ok(Some(f)), Ok(Some(t))) if f == t => format!("{name} {what} {f}"),
                        (Ok(Some(f)), Ok(Some(t))) => format!("{name} {what}s {f}-{t}"),
                        (Ok(_), Ok(_)) => format!("{name} on {all}"),
                        (Err(e), _) | (_, Err(e)) => format!("{name} with {e}"),
                    }
                }
            };
            if !parts.contains(&text) {
                parts.push(text);
            }
        }
        parts.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protocols_by_name_or_number() {
        assert!(protocol("TCP") == Protocol::Tcp && protocol("6") == Protocol::Tcp);
        assert!(protocol("udp") == Protocol::Udp && protocol("17") == Protocol::Udp);
        assert!(protocol("icmp") == Protocol::Icmp && protocol("1") == Protocol::Icmp);
        assert!(protocol("icmpv6") == Protocol::Icmpv6 && protocol("58") == Protocol::Icmpv6);
        assert!(protocol("-1") == Protocol::All && protocol("all") == Protocol::All);
        assert!(protocol("50") == Protocol::Other);
    }

    #[test]
    fn ports() {
        assert_eq!(port(&Resolved::Str("22".into())), Ok(Some(22)));
        assert_eq!(port(&Resolved::Str("-1".into())), Ok(None));
        assert_eq!(port(&Resolved::Absent), Ok(None));
        assert!(port(&Resolved::Unknown("x".into())).is_err());
    }

    #[test]
    fn findings_carry_path_message_and_remediation() {
        let input = json!({"template": {"Resources": {"Sg": {"Type": "AWS::EC2::SecurityGroup",
        "Properties": {"SecurityGroupIngress": [
            {"IpProtocol": "tcp", "FromPort": 20, "ToPort": 23, "CidrIp": "0.0.0.0/0"}
        ]}}}}});
        let f = evaluate(&input).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RULE_WORLD_OPEN);
        assert_eq!(
            f[0].path,
            "/Resources/Sg/Properties/SecurityGroupIngress/0/CidrIp"
        );
        assert!(f[0].message.contains("tcp ports 20-23"), "{}", f[0].message);
        assert!(!f[0].remediation.is_empty());
        assert!(RULES.contains(&f[0].rule.as_str()));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(evaluate(&json!({"template": []})).is_err());
        assert!(stackgate_policy_sdk::evaluate_json("{", evaluate).is_err());
    }
}
