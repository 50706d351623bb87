//! claims: which stack folder claims which CloudFormation stack at a commit. Two claimants
//! of one stack, in one repository or two, are refused at sync, naming both; and prune is
//! bounded, so that a missing or renamed stacks folder removes nothing.

use std::collections::BTreeMap;

use crate::domain::StackIdentity;
use crate::stack::Stack;
use crate::stack::ownership::{self, Owner};

/// A stack's identity: the deployment file's region, else the server's.
pub fn identity(account: &str, default_region: &str, stack: &Stack) -> StackIdentity {
    StackIdentity {
        account: account.to_string(),
        region: stack
            .deployment
            .region
            .clone()
            .unwrap_or_else(|| default_region.to_string()),
        name: stack.name.clone(),
    }
}

/// The claims of one commit of one repository, against every other live stack in the
/// ledger.
#[derive(Debug, Default)]
pub struct Claims {
    /// Folder of this repository → the identity it claims (now, or in the ledger if gone).
    by_folder: BTreeMap<String, StackIdentity>,
    collisions: BTreeMap<StackIdentity, Vec<Owner>>,
    /// Gone folder → the one folder of the commit that now names its stack.
    moves: BTreeMap<String, String>,
}

impl Claims {
    /// `current`: each folder of the commit that loads, and its identity; `present`:
    /// whether a folder is in the commit at all. `ledger`: the live stacks stackgate
    /// deployed, as (identity, repo, folder). `path` names a folder of a repository from
    /// its root.
    pub fn find(
        repo: &str,
        current: &[(String, StackIdentity)],
        present: &dyn Fn(&str) -> bool,
        ledger: &[(StackIdentity, String, String)],
        path: &dyn Fn(&str, &str) -> String,
    ) -> Self {
        let owner = |r: &str, folder: &str| Owner {
            repo: Some(r.to_string()),
            path: path(r, folder),
        };
        let mut by_folder: BTreeMap<String, StackIdentity> = current.iter().cloned().collect();
        let mut moves = BTreeMap::new();
        let mut all: Vec<(StackIdentity, Owner)> = current
            .iter()
            .map(|(f, id)| (id.clone(), owner(repo, f)))
            .collect();
        for (id, r, folder) in ledger {
            let ours = r.eq_ignore_ascii_case(repo);
            // A folder of this commit claims what it says now, not what it deployed.
            if ours && by_folder.contains_key(folder) {
                continue;
            }
            if ours {
                by_folder.insert(folder.clone(), id.clone());
            }
            // Gone, and exactly one folder of the commit names its stack: a move. A folder
            // still there that does not load keeps its claim.
            if ours && !present(folder) {
                let now: Vec<&String> = current
                    .iter()
                    .filter(|(_, i)| i == id)
                    .map(|(f, _)| f)
                    .collect();
                if let [to] = now.as_slice() {
                    moves.insert(folder.clone(), (*to).clone());
                    continue;
                }
            }
            all.push((id.clone(), owner(r, folder)));
        }
        let collisions = ownership::collisions(all.iter().map(|(id, o)| (id, o)))
            .into_iter()
            .map(|(id, owners)| (id.clone(), owners.into_iter().cloned().collect()))
            .collect();
        Self {
            by_folder,
            collisions,
            moves,
        }
    }

    /// The folder a gone folder's stack moved to, at this commit.
    pub fn moved_to(&self, folder: &str) -> Option<&str> {
        self.moves.get(folder).map(String::as_str)
    }

    /// The gone folder whose stack moved to `folder`, at this commit.
    pub fn moved_from(&self, folder: &str) -> Option<&str> {
        self.moves
            .iter()
            .find(|(_, to)| *to == folder)
            .map(|(from, _)| from.as_str())
    }

    /// Why `folder` may not deploy (or be pruned): its stack has another claimant.
    pub fn refusal(&self, folder: &str) -> Option<Refusal> {
        let id = self.by_folder.get(folder)?;
        let owners = self.collisions.get(id)?;
        Some(Refusal {
            status: ownership::collision_status(id),
            detail: ownership::collision_message(id, &owners.iter().collect::<Vec<_>>()),
        })
    }
}

/// A refusal said twice: briefly in the public commit status, in full on the run page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub status: String,
    pub detail: String,
}

impl Refusal {
    /// A refusal with nothing to hide: the same words in both places.
    pub fn public(text: String) -> Self {
        Self {
            status: text.clone(),
            detail: text,
        }
    }
}

/// Why prune must not remove the `gone` folders at this commit: the stacks folder holds no
/// stack at all (missing, renamed, or `stacks_dir` wrong), or more are gone than
/// `max_prune` allows.
pub fn prune_refusal(
    stacks_dir: &str,
    present: usize,
    gone: &[String],
    max_prune: usize,
) -> Option<String> {
    if gone.is_empty() {
        return None;
    }
    if present == 0 {
        return Some(format!(
            "prune refused: `{stacks_dir}` holds no stack folder at this commit (missing, renamed, \
             or stacks_dir is wrong); nothing removed. To remove the last stack, set `remove: true`"
        ));
    }
    (gone.len() > max_prune).then(|| {
        format!(
            "prune refused: {} stack folders are gone ({}), more than max_prune = {max_prune}; \
             nothing removed. Set `remove: true` in each, or raise max_prune",
            gone.len(),
            gone.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> StackIdentity {
        StackIdentity {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: name.into(),
        }
    }

    fn present(f: &str) -> bool {
        ["a", "b", "c", "broken"].contains(&f)
    }

    fn path(_: &str, f: &str) -> String {
        format!("stacks/{f}")
    }

    #[test]
    fn two_folders_or_two_repositories_on_one_stack_are_refused() {
        let current = vec![
            ("a".to_string(), id("shared")),
            ("b".to_string(), id("shared")),
            ("c".to_string(), id("alone")),
        ];
        let c = Claims::find("acme/infra", &current, &present, &[], &path);
        let msg = c.refusal("a").unwrap();
        assert!(
            msg.detail.contains("acme/infra stacks/a and stacks/b"),
            "{msg:?}"
        );
        assert!(!msg.status.contains("acme/infra"), "{msg:?}");
        assert!(c.refusal("b").is_some());
        assert!(c.refusal("c").is_none());

        // Another repository deployed it first.
        let ledger = vec![(id("alone"), "acme/other".to_string(), "x".to_string())];
        let c = Claims::find("acme/infra", &current, &present, &ledger, &path);
        let msg = c.refusal("c").unwrap();
        assert!(msg.detail.contains("acme/other stacks/x"), "{msg:?}");
        assert!(!msg.status.contains("acme/other"), "{msg:?}");

        // This repository's own ledger row for a present folder is not a second claimant,
        // even when the folder now names another stack.
        let ledger = vec![(id("old-name"), "acme/infra".to_string(), "c".to_string())];
        let c = Claims::find("acme/infra", &current, &present, &ledger, &path);
        assert!(c.refusal("c").is_none());

        // A gone folder's stack, named by one folder of the commit: it moved.
        let ledger = vec![(id("alone"), "acme/infra".to_string(), "old".to_string())];
        let c = Claims::find("acme/infra", &current, &present, &ledger, &path);
        assert!(c.refusal("c").is_none());
        assert!(c.refusal("old").is_none());
        assert_eq!(c.moved_to("old"), Some("c"));
        assert_eq!(c.moved_from("c"), Some("old"));
        // A folder still there that does not load keeps its stack: no move, a collision.
        let ledger = vec![(id("alone"), "acme/infra".to_string(), "broken".to_string())];
        let c = Claims::find("acme/infra", &current, &present, &ledger, &path);
        assert_eq!(c.moved_from("c"), None);
        assert!(c.refusal("c").unwrap().detail.contains("stacks/broken"));
        // Named by two folders of the commit: a collision, no move.
        let ledger = vec![(id("shared"), "acme/infra".to_string(), "old".to_string())];
        let c = Claims::find("acme/infra", &current, &present, &ledger, &path);
        assert_eq!(c.moved_to("old"), None);
        assert!(c.refusal("old").unwrap().detail.contains("stacks/old"));
    }

    #[test]
    fn prune_is_bounded() {
        let gone = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
        assert_eq!(prune_refusal("stacks", 3, &gone(1), 1), None);
        assert_eq!(prune_refusal("stacks", 0, &[], 1), None);
        let msg = prune_refusal("stacks", 0, &gone(1), 5).unwrap();
        assert!(msg.contains("`stacks` holds no stack folder"), "{msg}");
        let msg = prune_refusal("stacks", 2, &gone(3), 2).unwrap();
        assert!(
            msg.contains("3 stack folders are gone (s0, s1, s2)"),
            "{msg}"
        );
        assert_eq!(prune_refusal("stacks", 2, &gone(3), 3), None);
    }
}
