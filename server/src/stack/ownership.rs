//! ownership: which stacks stackgate may change. A stack is known by (account, region,
//! name). stackgate tags what it creates with the repository and stack folder that own it,
//! and updates or removes only stacks whose tags name that very owner.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::StackIdentity;

pub const MANAGED_BY: &str = "managed-by";
pub const STACKGATE: &str = "stackgate";
pub const REPO_TAG: &str = "stackgate:repo";
pub const PATH_TAG: &str = "stackgate:path";
pub const SHA_TAG: &str = "stackgate:sha";

/// Tag keys a deployment file may not set: they say who owns the stack.
pub fn reserved_tag(key: &str) -> bool {
    key == MANAGED_BY || key.starts_with("stackgate:")
}

/// The repository (when known) and stack folder that own a stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub repo: Option<String>,
    /// The stack folder, from the repository root: `stacks/web`.
    pub path: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(r) => write!(f, "{r} {}", self.path),
            None => write!(f, "{} (no repository)", self.path),
        }
    }
}

/// How a stack came to be this owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Its tags name this owner.
    Owned,
    /// Tagged by stackgate for this repository before paths were tagged; the deploy adds
    /// the path.
    Legacy,
    /// Untagged, and the operator asked to take it over.
    Adopted,
    /// Tagged for a folder of this repository that is gone at this commit: the folder
    /// moved, and the stack moves with it.
    Moved,
}

/// A stack that belongs to someone else. Names the stack and its tags' owner, nothing else
/// of it (never its outputs).
#[derive(Debug, Clone, thiserror::Error)]
#[error("stack `{stack}` is not stackgate's to change from {claimant}: {held}")]
pub struct NotOwned {
    pub stack: String,
    pub claimant: String,
    pub held: String,
}

impl Owner {
    /// The tags that say this owner's (the commit's sha is added by the deployer).
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![(MANAGED_BY.to_string(), STACKGATE.to_string())];
        if let Some(r) = &self.repo {
            tags.push((REPO_TAG.into(), r.clone()));
        }
        tags.push((PATH_TAG.into(), self.path.clone()));
        tags
    }

    /// Whether an existing stack with these tags is this owner's to change.
    pub fn check(
        &self,
        stack: &str,
        tags: &[(String, String)],
        adopt: bool,
    ) -> Result<Claim, NotOwned> {
        let tag = |k: &str| tags.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let refuse = |held: String| NotOwned {
            stack: stack.to_string(),
            claimant: self.to_string(),
            held,
        };
        if tag(MANAGED_BY).map(String::as_str) != Some(STACKGATE) {
            return if adopt {
                Ok(Claim::Adopted)
            } else {
                Err(refuse(
                    "it has no managed-by=stackgate tag, so stackgate did not create it; \
                     to take it over, deploy it once with `stackgate deploy --adopt`"
                        .into(),
                ))
            };
        }
        let same_repo = self.same_repo(tag(REPO_TAG));
        match tag(PATH_TAG) {
            Some(p) if same_repo && *p == self.path => Ok(Claim::Owned),
            None if same_repo => Ok(Claim::Legacy),
            path => Err(refuse(format!(
                "its tags say it belongs to {}; change `stack-name`, or remove it from its owner",
                Owner {
                    repo: tag(REPO_TAG).cloned(),
                    path: path.cloned().unwrap_or_else(|| "(no path tag)".into()),
                }
            ))),
        }
    }
}

impl Owner {
    /// Whether the tags name `from_path` of this owner's repository.
    pub fn moved_from(&self, tags: &[(String, String)], from_path: &str) -> bool {
        let tag = |k: &str| tags.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        tag(MANAGED_BY).map(String::as_str) == Some(STACKGATE)
            && self.same_repo(tag(REPO_TAG))
            && tag(PATH_TAG).map(String::as_str) == Some(from_path)
    }

    /// Whether a repository tag names this owner's repository. GitHub names are not case
    /// sensitive, and the CLI's comes from the remote URL, not the service's config.
    fn same_repo(&self, tag: Option<&String>) -> bool {
        match (tag, &self.repo) {
            (Some(t), Some(r)) => t.eq_ignore_ascii_case(r),
            (t, r) => t.is_none() && r.is_none(),
        }
    }
}

/// The identities claimed by more than one owner, each with all its claimants.
pub fn collisions<'a>(
    claims: impl IntoIterator<Item = (&'a StackIdentity, &'a Owner)>,
) -> BTreeMap<&'a StackIdentity, Vec<&'a Owner>> {
    let mut by_id: BTreeMap<&StackIdentity, Vec<&Owner>> = BTreeMap::new();
    for (id, owner) in claims {
        let owners = by_id.entry(id).or_default();
        if !owners.contains(&owner) {
            owners.push(owner);
        }
    }
    by_id.retain(|_, owners| owners.len() > 1);
    by_id
}

/// What a commit status says of a collision. Statuses are public on public repositories:
/// no account id, and no other claimant (its repository may be private).
pub fn collision_status(id: &StackIdentity) -> String {
    format!(
        "stack `{}` ({}) is claimed by more than one folder; see the run page",
        id.name, id.region
    )
}

/// "stack X (account/region) is claimed by A and B", for the run page.
pub fn collision_message(id: &StackIdentity, owners: &[&Owner]) -> String {
    let one_repo = owners.windows(2).all(|w| w[0].repo == w[1].repo);
    let names: Vec<String> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if one_repo && i > 0 {
                o.path.clone()
            } else {
                o.to_string()
            }
        })
        .collect();
    format!(
        "stack {id} is claimed by {}; give each folder its own `stack-name`",
        names.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn web() -> Owner {
        Owner {
            repo: Some("acme/infra".into()),
            path: "stacks/web".into(),
        }
    }

    #[test]
    fn only_the_tagged_owner_may_change_a_stack() {
        let own = web().tags();
        assert_eq!(web().check("web", &own, false).unwrap(), Claim::Owned);

        let other_path = tags(&[
            ("managed-by", "stackgate"),
            ("stackgate:repo", "acme/infra"),
            ("stackgate:path", "stacks/api"),
        ]);
        let err = web().check("web", &other_path, true).unwrap_err();
        assert!(err.to_string().contains("acme/infra stacks/api"), "{err}");

        let other_repo = tags(&[
            ("managed-by", "stackgate"),
            ("stackgate:repo", "evil/fork"),
            ("stackgate:path", "stacks/web"),
        ]);
        let err = web().check("web", &other_repo, true).unwrap_err();
        assert!(
            err.to_string().contains("evil/fork") && err.to_string().contains("`web`"),
            "{err}"
        );

        // Untagged: refused unless adopted.
        let plain = tags(&[("team", "payments")]);
        let err = web().check("web", &plain, false).unwrap_err();
        assert!(err.to_string().contains("--adopt"), "{err}");
        assert_eq!(web().check("web", &plain, true).unwrap(), Claim::Adopted);

        // Tagged before paths were: the same repository keeps it.
        let legacy = tags(&[
            ("managed-by", "stackgate"),
            ("stackgate:repo", "acme/infra"),
        ]);
        assert_eq!(web().check("web", &legacy, false).unwrap(), Claim::Legacy);

        // GitHub names are not case sensitive: the CLI's tag from the remote URL is ours.
        let cli = tags(&[
            ("managed-by", "stackgate"),
            ("stackgate:repo", "ACME/Infra"),
            ("stackgate:path", "stacks/web"),
        ]);
        assert_eq!(web().check("web", &cli, false).unwrap(), Claim::Owned);
        assert!(
            Owner {
                path: "stacks/new".into(),
                ..web()
            }
            .moved_from(&cli, "stacks/web")
        );

        // A move within the repository, and only within it.
        assert!(web().moved_from(&other_path, "stacks/api"));
        assert!(!web().moved_from(&other_path, "stacks/web"));
        assert!(!web().moved_from(&other_repo, "stacks/web"));
    }

    #[test]
    fn collisions_name_every_claimant() {
        let x = StackIdentity {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: "shared".into(),
        };
        let y = StackIdentity {
            name: "alone".into(),
            ..x.clone()
        };
        let api = Owner {
            repo: Some("acme/other".into()),
            path: "stacks/api".into(),
        };
        let (w, a) = (web(), api);
        let found = collisions([(&x, &w), (&y, &w), (&x, &a), (&x, &w)]);
        assert_eq!(found.len(), 1);
        let msg = collision_message(&x, &found[&x]);
        assert!(
            msg.contains("acme/infra stacks/web") && msg.contains("acme/other stacks/api"),
            "{msg}"
        );
        assert!(
            msg.contains("123456789012") && msg.contains("us-east-1"),
            "{msg}"
        );
        let status = collision_status(&x);
        assert!(
            status.contains("`shared` (us-east-1)") && !status.contains("123456789012"),
            "{status}"
        );
    }
}
