//! IAM action access levels from the AWS Service Authorization Reference
//! (`catalog/access-levels.tsv`, compiled into a sorted table by `build.rs`).
//!
//! Shared by the `least-privilege-iam` policy (access levels) and the host's review of what
//! a change widens (wildcards expanded to the actions they grant).

use std::cmp::Ordering;

use crate::iam::glob_match;

/// The access level AWS documents for an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    List,
    Read,
    Write,
    PermissionsManagement,
    Tagging,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::List => "List",
            Level::Read => "Read",
            Level::Write => "Write",
            Level::PermissionsManagement => "Permissions management",
            Level::Tagging => "Tagging",
        }
    }

    /// The levels that must not be granted on `Resource: "*"`.
    pub fn is_write(self) -> bool {
        matches!(self, Level::Write | Level::PermissionsManagement)
    }
}

impl Level {
    /// The level number `build.rs` packs (0 List .. 4 Tagging).
    fn from_bits(bits: u32) -> Level {
        match bits {
            0 => Level::List,
            1 => Level::Read,
            2 => Level::Write,
            3 => Level::PermissionsManagement,
            // 4, and anything build.rs never writes, as the least alarming level that
            // still cannot pass for Write: a bad table must not turn writes into reads.
            _ => Level::Tagging,
        }
    }
}

/// One service in the packed table (see `build.rs`).
struct Service {
    prefix: &'static str,
    /// Every action name, concatenated in sorted order.
    names: &'static str,
    /// Per action: offset into `names` << 16 | length << 8 | level << 1 | scopable.
    entries: &'static [u32],
}

impl Service {
    fn name(&self, entry: u32) -> &'static str {
        let start = (entry >> 16) as usize;
        let len = ((entry >> 8) & 0xff) as usize;
        self.names.get(start..start + len).unwrap_or("")
    }

    fn action(&self, entry: u32) -> Action {
        Action {
            service: self.prefix,
            name: self.name(entry),
            level: Level::from_bits((entry >> 1) & 0x7),
            scopable: entry & 1 == 1,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// One catalog action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub service: &'static str,
    pub name: &'static str,
    pub level: Level,
    /// False when the action supports no resource-level permissions: only `*` works.
    pub scopable: bool,
}

impl Action {
    pub fn is(&self, service: &str, name: &str) -> bool {
        self.service.eq_ignore_ascii_case(service) && self.name.eq_ignore_ascii_case(name)
    }

    /// True when `text` is exactly this action (`service:Name`, any case).
    pub fn is_named(&self, text: &str) -> bool {
        text.split_once(':').is_some_and(|(s, n)| self.is(s, n))
    }
}

/// Compares as if both were lower case, without allocating.
fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

fn service(prefix: &str) -> Option<&'static Service> {
    let i = SERVICES
        .binary_search_by(|s| cmp_ci(s.prefix, prefix))
        .ok()?;
    SERVICES.get(i)
}

/// `service:Action`, case-insensitive.
pub fn lookup(action: &str) -> Option<Action> {
    let (prefix, name) = action.split_once(':')?;
    let s = service(prefix)?;
    let i = s
        .entries
        .binary_search_by(|&e| cmp_ci(s.name(e), name))
        .ok()?;
    Some(s.action(s.entries[i]))
}

/// Every catalog action an IAM action pattern (`s3:Put*`, `ec2:*Instance*`) matches.
pub fn expand(pattern: &str) -> Vec<Action> {
    let Some((svc_pat, name_pat)) = pattern.split_once(':') else {
        return Vec::new();
    };
    if !has_wildcard(pattern) {
        return lookup(pattern).into_iter().collect();
    }
    let services: Vec<&Service> = if has_wildcard(svc_pat) {
        SERVICES
            .iter()
            .filter(|s| glob_match(svc_pat, s.prefix))
            .collect()
    } else {
        service(svc_pat).into_iter().collect()
    };
    let mut out = Vec::new();
    for s in services {
        for &e in s.entries {
            if glob_match(name_pat, s.name(e)) {
                out.push(s.action(e));
            }
        }
    }
    out
}

/// Number of actions in the catalog.
pub fn len() -> usize {
    ACTION_COUNT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_case_insensitively() {
        assert_eq!(lookup("s3:GetObject").unwrap().level, Level::Read);
        assert_eq!(lookup("S3:putobject").unwrap().level, Level::Write);
        assert_eq!(lookup("s3:ListBucket").unwrap().level, Level::List);
        assert_eq!(
            lookup("iam:CreateRole").unwrap().level,
            Level::PermissionsManagement
        );
        assert_eq!(lookup("iam:TagRole").unwrap().level, Level::Tagging);
        assert_eq!(lookup("ec2:RunInstances").unwrap().level, Level::Write);
        assert_eq!(
            lookup("iam:PutRolePolicy").unwrap().level,
            Level::PermissionsManagement
        );
        assert!(lookup("iam:PassRole").unwrap().level.is_write());
        assert_eq!(lookup("s3:PutObject").unwrap().name, "PutObject");
        assert!(lookup("s3:PutObject").unwrap().scopable);
        assert!(!lookup("cloudwatch:PutMetricData").unwrap().scopable);
        assert!(lookup("s3:NoSuchAction").is_none());
        assert!(lookup("nosuchservice:GetObject").is_none());
        assert!(lookup("s3").is_none());
    }

    #[test]
    fn expands_wildcards() {
        let put = expand("s3:Put*");
        assert!(put.len() > 20);
        assert!(put.iter().all(|a| a.name.starts_with("Put")));
        assert!(put.iter().any(|a| a.is("s3", "PutBucketPolicy")));
        let inst = expand("ec2:*Instance*");
        assert!(inst.iter().any(|a| a.is("ec2", "RunInstances")));
        assert!(inst.iter().any(|a| a.is("ec2", "DescribeInstances")));
        assert!(expand("s3:Get*").iter().all(|a| !a.level.is_write()));
        assert_eq!(expand("s3:GetObjec?").len(), 1);
        assert!(expand("s3:Nothing*").is_empty());
        assert!(expand("*:GetObject").len() > 1);
    }

    #[test]
    fn table_is_sorted_and_matches_header() {
        let header = include_str!("../catalog/access-levels.tsv")
            .lines()
            .find_map(|l| l.strip_prefix("# ").filter(|l| l.ends_with(" actions")))
            .unwrap()
            .to_string();
        assert!(
            header.ends_with(&format!(", {} actions", len())),
            "{header}"
        );
        assert!(
            SERVICES
                .windows(2)
                .all(|w| cmp_ci(w[0].prefix, w[1].prefix).is_lt())
        );
        let mut total = 0;
        for s in SERVICES {
            let names: Vec<&str> = s.entries.iter().map(|&e| s.name(e)).collect();
            assert!(names.windows(2).all(|w| cmp_ci(w[0], w[1]).is_lt()));
            assert!(names.iter().all(|n| !n.is_empty()));
            assert_eq!(names.concat(), s.names);
            total += names.len();
        }
        assert_eq!(total, len());
    }
}
