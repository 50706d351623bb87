//! `[[targets]]`: the AWS accounts stackgate deploys to, each through a role it assumes, and
//! which stack folders of which repository may use each (`[[repos]] targets`). The server
//! decides: a stack folder only names its target (`target: prod`), and is refused where the
//! configuration does not map that repository and path to that target.
//!
//! Patterns match a stack folder's path from the repository root (`stacks/prod-web`); `*`
//! matches any run of characters within one path segment. Where several patterns match,
//! the most specific wins: the one with the most characters other than `*`. Two patterns
//! of one repository that are equally specific and can match the same path are a
//! configuration error, so the winner is never a matter of order.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::{ConfigError, RepoConfig};
use crate::domain::Approval;

/// Targets one server may have.
pub const MAX_TARGETS: usize = 64;
/// Patterns one repository may map.
pub const MAX_PATTERNS: usize = 64;
const MAX_PATTERN_LEN: usize = 200;
const MAX_LABELS: usize = 32;
const MAX_LABEL_LEN: usize = 128;
/// Regions one target may list (each region's clients are built per job).
pub const MAX_TARGET_REGIONS: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What stack folders write as `target:`; also shown on statuses and the console.
    pub name: String,
    /// The account the role is in; the assumed credentials must belong to it.
    pub account_id: String,
    /// The role stackgate assumes (STS AssumeRole) for this target's stacks.
    pub role_arn: String,
    /// The role's external id, from this environment variable…
    #[serde(default)]
    pub external_id_env: Option<String>,
    /// …or this file.
    #[serde(default)]
    pub external_id_file: Option<PathBuf>,
    /// The regions its stacks may name; the first is theirs when they name none.
    pub regions: Vec<String>,
    /// Passed as `RoleARN` on every change set; a stack with another service role is
    /// refused.
    #[serde(default)]
    pub cloudformation_role_arn: Option<String>,
    /// Who must agree before its change sets execute; a stack may ask for more, never less.
    #[serde(default = "no_approval")]
    pub approval: Approval,
    /// Given to the policies beside the target's name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `[targets.policies.<policy>] settings = {…}`: merged over the policy's global
    /// settings, key by key, for this target's stacks.
    #[serde(default)]
    pub policies: BTreeMap<String, TargetPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    pub settings: Value,
}

fn no_approval() -> Approval {
    Approval::None
}

impl TargetConfig {
    /// The external id, when the target has one.
    pub fn external_id(&self) -> Result<Option<SecretString>, ConfigError> {
        if self.external_id_env.is_none() && self.external_id_file.is_none() {
            return Ok(None);
        }
        super::secret_from(
            &format!("targets[{}].external_id", self.name),
            self.external_id_env.as_deref(),
            self.external_id_file.as_deref(),
        )
        .map(Some)
    }

    /// The region of a stack that names `region` (or none): refused outside `regions`.
    pub fn region<'a>(&'a self, region: Option<&'a str>) -> Result<&'a str, TargetRefusal> {
        match region {
            None => Ok(self.regions.first().map_or("us-east-1", String::as_str)),
            Some(r) if self.regions.iter().any(|x| x == r) => Ok(r),
            Some(r) => Err(TargetRefusal::Region {
                target: self.name.clone(),
                region: r.to_string(),
                allowed: self.regions.join(", "),
            }),
        }
    }
}

/// Why a stack folder may not deploy where it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefusal {
    #[error(
        "target `{named}` is not allowed for {path} of {repo}: the server maps it to {}",
        allowed.as_deref().map_or("no target".to_string(), |t| format!("target `{t}`"))
    )]
    NotAllowed {
        repo: String,
        path: String,
        named: String,
        allowed: Option<String>,
    },
    #[error(
        "{path} of {repo} deploys to target `{allowed}`; write `target: {allowed}` in its \
         deployment file"
    )]
    Unnamed {
        repo: String,
        path: String,
        allowed: String,
    },
    #[error(
        "{path} of {repo} matches no pattern of the repository's `targets`; the server \
         deploys it nowhere"
    )]
    Unmapped { repo: String, path: String },
    #[error("target `{target}` does not deploy to region `{region}` (its regions: {allowed})")]
    Region {
        target: String,
        region: String,
        allowed: String,
    },
}

/// The target a stack folder may use, the one function that decides it. `path` is the
/// folder from the repository root; `named` what its deployment file says. `None`: the
/// server's own credentials, for a repository that maps no targets.
pub fn allowed<'a>(
    repo: &'a RepoConfig,
    path: &str,
    named: Option<&str>,
) -> Result<Option<&'a str>, TargetRefusal> {
    let mapped = choose(&repo.targets, path);
    let (who, at) = (repo.name.clone(), path.to_string());
    match (named, mapped) {
        (None, None) if repo.targets.is_empty() => Ok(None),
        (None, None) => Err(TargetRefusal::Unmapped {
            repo: who,
            path: at,
        }),
        (None, Some(t)) => Err(TargetRefusal::Unnamed {
            repo: who,
            path: at,
            allowed: t.to_string(),
        }),
        (Some(n), Some(t)) if n == t => Ok(Some(t)),
        (Some(n), allowed) => Err(TargetRefusal::NotAllowed {
            repo: who,
            path: at,
            named: n.to_string(),
            allowed: allowed.map(str::to_string),
        }),
    }
}

/// The target a pattern of `patterns` maps `path` to: the most specific match.
pub fn choose<'a>(patterns: &'a BTreeMap<String, String>, path: &str) -> Option<&'a str> {
    patterns
        .iter()
        .filter(|(p, _)| matches(p, path))
        .max_by_key(|(p, _)| specificity(p))
        .map(|(_, t)| t.as_str())
}

/// Whether a folder path matches a pattern: segment by segment, `*` within one segment.
pub fn matches(pattern: &str, path: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == s.len()
        && p.iter()
            .zip(&s)
            .all(|(p, s)| glob(p.as_bytes(), s.as_bytes()))
}

/// `*` matches any run of bytes; everything else itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative, with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

fn specificity(pattern: &str) -> usize {
    pattern.bytes().filter(|&b| b != b'*').count()
}

/// Whether some path matches both patterns.
fn overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| segments_overlap(x.as_bytes(), y.as_bytes()))
}

/// Whether two segment globs share a match: a walk over both, memoised (segments are
/// short, so the table is small).
fn segments_overlap(a: &[u8], b: &[u8]) -> bool {
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(a: &[u8], b: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(v) = memo[i][j] {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
            }
            (_, Some(b'*')) => {
                go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo))
            }
            (Some(x), Some(y)) => x == y && go(a, b, i + 1, j + 1, memo),
            _ => false,
        };
        memo[i][j] = Some(v);
        v
    }
    go(a, b, 0, 0, &mut memo)
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    let ok = !pattern.is_empty()
        && pattern.len() <= MAX_PATTERN_LEN
        && pattern
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains("**"))
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{pattern}`: a folder path from the repository root, such as `stacks/prod-*` \
             (letters, digits, - _ . and `*` within one segment; at most {MAX_PATTERN_LEN} \
             characters)"
        ))
    }
}

/// `arn:aws:iam::<account>:role/<name>`: the account it names, or why it is not one.
fn role_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && resource
                    .strip_prefix("role/")
                    .is_some_and(|r| !r.is_empty()) =>
        {
            Some(account)
        }
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Checks the targets and every repository's patterns; each error names the key.
pub fn validate(targets: &[TargetConfig], repos: &[RepoConfig]) -> Result<(), String> {
    if targets.len() > MAX_TARGETS {
        return Err(format!("targets: at most {MAX_TARGETS}"));
    }
    for (i, t) in targets.iter().enumerate() {
        let at = format!("targets[{i}]");
        if !valid_name(&t.name) {
            return Err(format!(
                "{at}.name = `{}`: 1 to 32 lowercase letters, digits, - or _",
                t.name
            ));
        }
        if targets[..i].iter().any(|o| o.name == t.name) {
            return Err(format!("{at}.name = `{}`: named twice", t.name));
        }
        let at = format!("targets[{}]", t.name);
        if t.account_id.len() != 12 || !t.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{at}.account_id = `{}`: the 12 digits of an AWS account",
                t.account_id
            ));
        }
        for (key, arn) in [
            ("role_arn", Some(&t.role_arn)),
            (
                "cloudformation_role_arn",
                t.cloudformation_role_arn.as_ref(),
            ),
        ] {
            let Some(arn) = arn else { continue };
            match role_account(arn) {
                Some(a) if a == t.account_id => {}
                Some(a) => {
                    return Err(format!(
                        "{at}.{key}: the role is in account {a}, not the target's {}",
                        t.account_id
                    ));
                }
                None => {
                    return Err(format!(
                        "{at}.{key} = `{arn}`: an IAM role ARN, arn:aws:iam::<account>:role/<name>"
                    ));
                }
            }
        }
        if t.external_id_env.is_some() && t.external_id_file.is_some() {
            return Err(format!(
                "{at}: give one of external_id_env and external_id_file"
            ));
        }
        if t.regions.is_empty() || t.regions.len() > MAX_TARGET_REGIONS {
            return Err(format!(
                "{at}.regions: 1 to {MAX_TARGET_REGIONS} regions its stacks may name"
            ));
        }
        for r in &t.regions {
            if !crate::stack::deployment::valid_region(r) {
                return Err(format!(
                    "{at}.regions: `{r}` is not an AWS region name (like eu-west-1)"
                ));
            }
        }
        if t.labels.len() > MAX_LABELS
            || t.labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN)
        {
            return Err(format!(
                "{at}.labels: at most {MAX_LABELS}, each key 1 to {MAX_LABEL_LEN} characters \
                 and each value at most {MAX_LABEL_LEN}"
            ));
        }
        for (policy, p) in &t.policies {
            if !p.settings.is_object() {
                return Err(format!(
                    "{at}.policies.{policy}.settings: a table, merged over the policy's own"
                ));
            }
        }
    }
    for r in repos {
        let at = format!("repos[{}].targets", r.name);
        if r.targets.len() > MAX_PATTERNS {
            return Err(format!("{at}: at most {MAX_PATTERNS} patterns"));
        }
        for (pattern, target) in &r.targets {
            check_pattern(pattern).map_err(|e| format!("{at}: {e}"))?;
            if !targets.iter().any(|t| &t.name == target) {
                return Err(format!(
                    "{at}: `{pattern}` maps to target `{target}`, which no [[targets]] names"
                ));
            }
        }
        let patterns: Vec<&String> = r.targets.keys().collect();
        for (i, a) in patterns.iter().enumerate() {
            for b in &patterns[i + 1..] {
                if specificity(a) == specificity(b) && overlap(a, b) {
                    return Err(format!(
                        "{at}: `{a}` and `{b}` are equally specific and can match the same \
                         folder; make one more specific (the most specific match wins)"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(patterns: &[(&str, &str)]) -> RepoConfig {
        let text = format!(
            "name = 'acme/infra'\nurl = 'x'\n[targets]\n{}",
            patterns
                .iter()
                .map(|(p, t)| format!("'{p}' = '{t}'\n"))
                .collect::<String>()
        );
        toml::from_str(&text).unwrap()
    }

    fn target(name: &str) -> TargetConfig {
        toml::from_str(&format!(
            "name = '{name}'\naccount_id = '111111111111'\n\
             role_arn = 'arn:aws:iam::111111111111:role/deployer'\nregions = ['us-east-1']\n"
        ))
        .unwrap()
    }

    #[test]
    fn globs_stay_within_one_segment() {
        assert!(matches("stacks/prod-*", "stacks/prod-web"));
        assert!(matches("stacks/*", "stacks/prod-web"));
        assert!(matches("stacks/*-web", "stacks/prod-web"));
        assert!(matches("*/*", "infra/web"));
        assert!(matches("stacks/a*b*c", "stacks/aXbYbZc"));
        assert!(!matches("stacks/*", "stacks/a/b"));
        assert!(!matches("stacks/prod-*", "stacks/dev-web"));
        assert!(!matches("stacks/prod-*", "other/prod-web"));
        assert!(!matches("stacks", "stacks/web"));
        // A pathological pattern is still quick.
        let long = format!("stacks/{}b", "*a".repeat(40));
        assert!(!matches(&long, &format!("stacks/{}", "a".repeat(150))));
    }

    #[test]
    fn the_most_specific_pattern_wins_whatever_the_order() {
        let r = repo(&[("stacks/*", "dev"), ("stacks/prod-*", "prod")]);
        assert_eq!(choose(&r.targets, "stacks/prod-web"), Some("prod"));
        assert_eq!(choose(&r.targets, "stacks/web"), Some("dev"));
        assert_eq!(choose(&r.targets, "stacks/a/b"), None);
        let r = repo(&[("stacks/prod-*", "prod"), ("stacks/*", "dev")]);
        assert_eq!(choose(&r.targets, "stacks/prod-web"), Some("prod"));
        // An exact path is more specific than any glob over it.
        let r = repo(&[("stacks/prod-*", "prod"), ("stacks/prod-sandbox", "dev")]);
        assert_eq!(choose(&r.targets, "stacks/prod-sandbox"), Some("dev"));
    }

    #[test]
    fn a_folder_may_use_only_the_target_the_server_maps_it_to() {
        let r = repo(&[("stacks/prod-*", "prod"), ("stacks/*", "dev")]);
        assert_eq!(
            allowed(&r, "stacks/prod-web", Some("prod")),
            Ok(Some("prod"))
        );
        assert_eq!(allowed(&r, "stacks/web", Some("dev")), Ok(Some("dev")));
        // Project A cannot borrow project B's account (runatlantis/atlantis#1902).
        let e = allowed(&r, "stacks/web", Some("prod")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "target `prod` is not allowed for stacks/web of acme/infra: the server maps it to \
             target `dev`"
        );
        let e = allowed(&r, "stacks/prod-web", None).unwrap_err();
        assert!(e.to_string().contains("write `target: prod`"), "{e}");
        let e = allowed(&r, "other/web", Some("dev")).unwrap_err();
        assert!(e.to_string().contains("maps it to no target"), "{e}");
        let e = allowed(&r, "other/web", None).unwrap_err();
        assert!(matches!(e, TargetRefusal::Unmapped { .. }), "{e}");
        // A repository without targets keeps the server's own account, and names none.
        let plain = repo(&[]);
        assert_eq!(allowed(&plain, "stacks/web", None), Ok(None));
        assert!(allowed(&plain, "stacks/web", Some("prod")).is_err());
    }

    #[test]
    fn ambiguous_or_dangling_patterns_are_config_errors() {
        let targets = [target("prod"), target("dev")];
        let ok = repo(&[("stacks/prod-*", "prod"), ("stacks/*", "dev")]);
        assert_eq!(validate(&targets, &[ok]), Ok(()));
        // Equally specific, and both match stacks/web-web.
        let r = repo(&[("stacks/web-*", "prod"), ("stacks/*-web", "dev")]);
        let e = validate(&targets, &[r]).unwrap_err();
        assert!(e.contains("equally specific"), "{e}");
        // Equally specific but disjoint: fine.
        let disjoint = repo(&[("stacks/prod-*", "prod"), ("stacks/test-*", "dev")]);
        assert_eq!(validate(&targets, &[disjoint]), Ok(()));
        let dangling = repo(&[("stacks/*", "staging")]);
        let e = validate(&targets, &[dangling]).unwrap_err();
        assert!(e.contains("`staging`"), "{e}");
        for p in [
            "",
            "/stacks/*",
            "stacks/../x",
            "stacks/**",
            "stacks//x",
            "stacks/$x",
        ] {
            let e = validate(&targets, &[repo(&[(p, "dev")])]).unwrap_err();
            assert!(e.contains("repos[acme/infra].targets"), "{p}: {e}");
        }
    }

    #[test]
    fn segment_overlap_is_exact() {
        for (a, b, want) in [
            ("prod-*", "*-web", true),
            ("prod-*", "test-*", false),
            ("a*", "*b", true),
            ("abc", "a*c", true),
            ("abc", "a*d", false),
            ("*", "x", true),
            ("x*y", "x*z", false),
        ] {
            assert_eq!(
                segments_overlap(a.as_bytes(), b.as_bytes()),
                want,
                "{a} {b}"
            );
        }
    }

    #[test]
    fn targets_are_checked_at_load() {
        let base = "name = 'prod'\naccount_id = '111111111111'\n\
                    role_arn = 'arn:aws:iam::111111111111:role/deployer'\nregions = ['us-east-1']\n";
        let check = |extra: &str, replace: (&str, &str)| {
            let text = format!("{}{extra}", base.replace(replace.0, replace.1));
            let t: Result<TargetConfig, _> = toml::from_str(&text);
            match t {
                Ok(t) => validate(&[t], &[]),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(check("", ("", "")), Ok(()));
        for (extra, replace, want) in [
            ("", ("'111111111111'\n", "'1111'\n"), "account_id"),
            ("", (":role/deployer", ":user/deployer"), "role_arn"),
            (
                "",
                ("iam::111111111111:role", "iam::222222222222:role"),
                "in account 222222222222",
            ),
            (
                "cloudformation_role_arn = 'arn:aws:iam::333333333333:role/cfn'\n",
                ("", ""),
                "cloudformation_role_arn",
            ),
            ("", ("['us-east-1']", "[]"), "regions"),
            (
                "",
                ("['us-east-1']", "['evil.example.com']"),
                "not an AWS region",
            ),
            ("", ("'prod'", "'Prod!'"), "name"),
            ("approval = 'sometimes'\n", ("", ""), "sometimes"),
            ("role = 'x'\n", ("", ""), "role"),
            (
                "[policies.open-ingress]\nsettings = 3\n",
                ("", ""),
                "settings",
            ),
        ] {
            let e = check(extra, replace).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let t = target("prod");
        assert_eq!(t.region(None), Ok("us-east-1"));
        assert!(t.region(Some("eu-west-1")).is_err());
        assert!(validate(&[target("prod"), target("prod")], &[]).is_err());
    }
}
