//! Security-group ingress: inline `SecurityGroupIngress` entries of
//! `AWS::EC2::SecurityGroup` and standalone `AWS::EC2::SecurityGroupIngress` resources, as
//! (group, protocol, ports, source) rules. A rule widens when no rule of the other side on
//! the same group covers it: same protocol (or all traffic), a port range holding its
//! ports, a source block holding its block (or the same group or prefix list).

use serde_json::{Map, Value};
use stackgate_policy_sdk::cidr::{self, Cidr};
use stackgate_policy_sdk::refs::{group_reference, rule_targets};
use stackgate_policy_sdk::{Resolved, Resolver};

use super::{Fact, Grant, Grants, Kind};

const SECURITY_GROUP: &str = "AWS::EC2::SecurityGroup";
const INGRESS: &str = "AWS::EC2::SecurityGroupIngress";
/// Combinations of one rule's `Fn::If` branches judged before it is doubt.
const MAX_COMBINATIONS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    /// `-1`: every protocol and port.
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Another IP protocol, by number or name as written (lower case).
    Other(String),
}

impl Protocol {
    fn parse(s: &str) -> Protocol {
        match s.trim().to_ascii_lowercase().as_str() {
            "-1" | "all" => Protocol::All,
            "tcp" | "6" => Protocol::Tcp,
            "udp" | "17" => Protocol::Udp,
            "icmp" | "1" => Protocol::Icmp,
            "icmpv6" | "58" => Protocol::Icmpv6,
            other => Protocol::Other(other.to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Protocol::All => "all traffic",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
            Protocol::Other(s) => s,
        }
    }

    fn has_ports(&self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Cidr(Cidr),
    /// A source security group or prefix list, as the template names it.
    Named(String),
}

/// One ingress rule, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Rule {
    protocol: Protocol,
    /// Inclusive; `0..=65535` for every port (and for protocols without ports).
    from: i64,
    to: i64,
    source: Source,
}

impl Rule {
    /// True when every packet `other` lets in, this lets in too.
    pub fn covers(&self, other: &Rule) -> bool {
        let protocol = self.protocol == Protocol::All || self.protocol == other.protocol;
        let ports = self.from <= other.from && other.to <= self.to;
        let source = match (&self.source, &other.source) {
            (Source::Cidr(a), Source::Cidr(b)) => a.contains(b),
            (a, b) => a == b,
        };
        protocol && ports && source
    }

    fn describe(&self) -> String {
        let traffic = if !self.protocol.has_ports() || (self.from, self.to) == (0, 65535) {
            match self.protocol {
                Protocol::All => "all traffic".to_string(),
                ref p if p.has_ports() => format!("{}/all ports", p.name()),
                ref p => p.name().to_string(),
            }
        } else if self.from == self.to {
            format!("{}/{}", self.protocol.name(), self.from)
        } else {
            format!("{}/{}-{}", self.protocol.name(), self.from, self.to)
        };
        let from = match &self.source {
            // Every spelling of the world (`10.0.0.0/0`) as the one everybody reads.
            Source::Cidr(c) if c.is_world() => {
                (if c.is_ipv6() { "::/0" } else { "0.0.0.0/0" }).to_string()
            }
            Source::Cidr(c) => c.to_string(),
            Source::Named(n) => n.clone(),
        };
        format!("{traffic} from {from}")
    }
}

pub(crate) fn grants(resolver: &Resolver<'_>, out: &mut Grants) -> Result<(), String> {
    let template = resolver.template();
    for res in template.resources() {
        match res.kind {
            SECURITY_GROUP => {
                let Some((value, ptr)) = res.property("SecurityGroupIngress") else {
                    continue;
                };
                for entry in resolver.elements(value, &ptr)? {
                    match entry.value {
                        Resolved::Object(props) => {
                            rule(resolver, res.id, props, &entry.pointer, out)?
                        }
                        other => out.push(Grant::unresolved(
                            Kind::Ingress,
                            res.id,
                            "an ingress rule".into(),
                            other.describe(),
                            format!("the rule is {}", other.describe()),
                        )),
                    }
                }
            }
            INGRESS => {
                let Some(props) = res.properties else {
                    continue;
                };
                let ptr = res.properties_pointer();
                let mut groups: Vec<String> = rule_targets(resolver, props, &ptr)?
                    .into_iter()
                    .map(|g| g.unwrap_or_else(|what| format!("{what} (via {})", res.id)))
                    .collect();
                if groups.is_empty() {
                    groups.push(res.id.to_string());
                }
                for g in groups {
                    rule(resolver, &g, props, &ptr, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every rule one entry may be (each `Fn::If` branch), on group `on`.
fn rule(
    resolver: &Resolver<'_>,
    on: &str,
    props: &Map<String, Value>,
    ptr: &str,
    out: &mut Grants,
) -> Result<(), String> {
    let get = |key: &str| resolver.property_values(props, ptr, key);
    let protocols = get("IpProtocol")?;
    let froms = get("FromPort")?;
    let tos = get("ToPort")?;
    let mut sources = Vec::new();
    for key in [
        "CidrIp",
        "CidrIpv6",
        "SourceSecurityGroupId",
        "SourceSecurityGroupName",
        "SourcePrefixListId",
    ] {
        if props.contains_key(key) {
            sources.extend(get(key)?.into_iter().map(|v| (key, v)));
        }
    }
    let count = protocols.len() * froms.len() * tos.len() * sources.len().max(1);
    if count > MAX_COMBINATIONS {
        out.push(Grant::unresolved(
            Kind::Ingress,
            on,
            "an ingress rule".into(),
            Value::Object(props.clone()).to_string(),
            format!("it may take more than {MAX_COMBINATIONS} combinations of values"),
        ));
        return Ok(());
    }
    for (key, src) in &sources {
        for p in &protocols {
            for f in &froms {
                for t in &tos {
                    out.push(one(on, p, f, t, key, src));
                }
            }
        }
    }
    Ok(())
}

fn one(
    on: &str,
    protocol: &Resolved<'_>,
    from: &Resolved<'_>,
    to: &Resolved<'_>,
    key: &str,
    source: &Resolved<'_>,
) -> Grant {
    let doubt = |why: String| {
        let text = format!(
            "{} {}-{} from {key} {}",
            protocol.describe(),
            from.describe(),
            to.describe(),
            source.describe()
        );
        Grant::unresolved(
            Kind::Ingress,
            on,
            format!("an ingress rule ({text})"),
            text,
            why,
        )
    };
    let Some(p) = protocol.as_str().map(Protocol::parse) else {
        return doubt(format!("IpProtocol is {}", protocol.describe()));
    };
    let (lo, hi) = if p.has_ports() {
        match (port(from), port(to)) {
            (Ok(f), Ok(t)) => (f.unwrap_or(0), t.unwrap_or(65535)),
            (Err(e), _) | (_, Err(e)) => return doubt(e),
        }
    } else {
        (0, 65535)
    };
    let source = match source {
        Resolved::Str(s) if key.starts_with("CidrIp") => match cidr::parse(s) {
            Ok(c) => Source::Cidr(c),
            Err(e) => return doubt(e),
        },
        Resolved::Str(s) => Source::Named(format!("{} {s}", source_kind(key))),
        r @ Resolved::Resource { .. } if !key.starts_with("CidrIp") => {
            let name = group_reference(r).map_or_else(|| r.describe(), str::to_string);
            Source::Named(format!("{} {name}", source_kind(key)))
        }
        other => return doubt(format!("{key} is {}", other.describe())),
    };
    let rule = Rule {
        protocol: p,
        from: lo,
        to: hi,
        source,
    };
    Grant {
        kind: Kind::Ingress,
        on: on.to_string(),
        what: rule.describe(),
        group: None,
        fact: Fact::Ingress(rule),
    }
}

fn source_kind(key: &str) -> &'static str {
    if key == "SourcePrefixListId" {
        "prefix list"
    } else {
        "security group"
    }
}

/// A port bound; `None` is every port (missing or -1).
fn port(r: &Resolved<'_>) -> Result<Option<i64>, String> {
    match r {
        Resolved::Absent => Ok(None),
        Resolved::Str(s) => match s.trim().parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if (0..=65535).contains(&n) => Ok(Some(n)),
            _ => Err(format!("port {} is not a port number", r.describe())),
        },
        other => Err(format!("a port is {}", other.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{doc, lines, review};
    use super::super::{Baseline, compare};
    use serde_json::{Value, json};

    fn sg(rules: Value) -> Value {
        json!({"Parameters": {"Admin": {"Type": "String", "NoEcho": true}},
            "Resources": {"AlbSecurityGroup": {"Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "x", "SecurityGroupIngress": rules}}}})
    }

    fn http() -> Value {
        json!({"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": "0.0.0.0/0"})
    }

    #[test]
    fn opening_ssh_to_the_world_widens() {
        let ssh = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"});
        let r = review(sg(json!([http()])), sg(json!([http(), ssh])));
        assert_eq!(
            lines(&r.widens),
            ["tcp/22 from 0.0.0.0/0 on AlbSecurityGroup"]
        );
        assert!(r.narrows.is_empty());
    }

    #[test]
    fn a_wider_source_or_range_widens_and_the_reverse_narrows() {
        let rule = |cidr: &str, from: i64, to: i64| json!({"IpProtocol": "6", "FromPort": from, "ToPort": to, "CidrIp": cidr});
        let r = review(
            sg(json!([rule("10.1.0.0/16", 443, 443)])),
            sg(json!([rule("10.0.0.0/8", 443, 443)])),
        );
        assert_eq!(
            lines(&r.widens),
            ["tcp/443 from 10.0.0.0/8 on AlbSecurityGroup"]
        );
        // The old block is inside the new one: nothing narrows.
        assert!(r.narrows.is_empty(), "{r:?}");
        // Narrower inside the old range: narrows only.
        let r = review(
            sg(json!([rule("10.0.0.0/8", 1000, 2000)])),
            sg(json!([rule("10.0.0.0/8", 1500, 1600)])),
        );
        assert!(r.widens.is_empty(), "{r:?}");
        assert_eq!(
            lines(&r.narrows),
            ["tcp/1000-2000 from 10.0.0.0/8 on AlbSecurityGroup"]
        );
        // All traffic covers any tcp rule; not the other way round.
        let all = json!({"IpProtocol": "-1", "CidrIp": "10.0.0.0/8"});
        let r = review(sg(json!([rule("10.0.0.0/8", 22, 22)])), sg(json!([all])));
        assert_eq!(
            lines(&r.widens),
            ["all traffic from 10.0.0.0/8 on AlbSecurityGroup"]
        );
    }

    #[test]
    fn a_standalone_ingress_counts_on_its_group() {
        let mut t = sg(json!([http()]));
        t["Resources"]["Ssh"] = json!({"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": {"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]},
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "SourceSecurityGroupId": {"Ref": "AlbSecurityGroup"}}});
        let r = review(sg(json!([http()])), t);
        assert_eq!(
            lines(&r.widens),
            ["tcp/22 from security group AlbSecurityGroup on AlbSecurityGroup"]
        );
    }

    #[test]
    fn every_branch_counts_and_what_cannot_be_resolved_may_widen() {
        let branch = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "CidrIp": {"Fn::If": ["Open", "0.0.0.0/0", "10.0.0.0/8"]}});
        let r = review(sg(json!([http()])), sg(json!([http(), branch])));
        assert_eq!(r.widens.len(), 2, "{r:?}");
        let hidden = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "CidrIp": {"Fn::ImportValue": "admin-cidr"}});
        let r = review(sg(json!([http()])), sg(json!([http(), hidden])));
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("maybe an ingress rule"), "{l:?}");
        assert!(l[0].contains("CidrIp is"), "{l:?}");
    }

    #[test]
    fn a_masked_live_value_is_doubt_on_the_deployed_side() {
        let admin = json!({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "CidrIp": {"Ref": "Admin"}});
        let old = doc(
            sg(json!([admin.clone()])),
            json!({"Admin": {"deploy_time": "the live value of NoEcho parameter `Admin`"}}),
        );
        let new = doc(sg(json!([admin])), json!({"Admin": "10.0.0.0/8"}));
        let r = compare(
            Baseline::Deployed {
                stack: "web".into(),
            },
            Some(&old),
            &new,
        );
        let l = lines(&r.widens);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("maybe tcp/22 from 10.0.0.0/8"), "{l:?}");
        assert!(l[0].contains("NoEcho"), "{l:?}");
        assert!(r.narrows.is_empty());
    }
}
