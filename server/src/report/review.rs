//! What a change widens, for people: one sentence per delta (`widens: tcp/22 from
//! 0.0.0.0/0 on AlbSecurityGroup`), as text for `stackgate diff` and the run page, as
//! Markdown for the pull-request comment and the check run, and as JSON. Every name comes
//! from a template a pull request wrote: Markdown escapes it ([`md_literal`]); values pass
//! through the stack's redactor before they get here (`Review::map_text`).

use serde_json::{Value, json};

use crate::domain::short;
use crate::review::{Baseline, Delta, Review};

use super::render::md_literal;

/// How a delta reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    Widens,
    MayWiden,
    Narrows,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Widens => "widens",
            Verb::MayWiden => "may widen",
            Verb::Narrows => "narrows",
        }
    }
}

/// Every delta with its verb: widenings first, then narrowings.
pub fn deltas(review: &Review) -> impl Iterator<Item = (Verb, &Delta)> {
    let widens = review.widens.iter().map(|d| {
        let verb = if d.doubt.is_some() {
            Verb::MayWiden
        } else {
            Verb::Widens
        };
        (verb, d)
    });
    widens.chain(review.narrows.iter().map(|d| (Verb::Narrows, d)))
}

/// `widens: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup`, as plain text.
pub fn sentence(verb: Verb, d: &Delta) -> String {
    let why = d
        .doubt
        .as_deref()
        .map(|w| format!(" (cannot be resolved: {w})"))
        .unwrap_or_default();
    format!("{}: {} on {}{why}", verb.as_str(), d.what, d.on)
}

/// What the review compared with, in words.
pub fn against(review: &Review) -> String {
    match &review.baseline {
        Baseline::Deployed { stack } => format!("compared with the deployed stack {stack}"),
        Baseline::DeployedCommit { sha } => format!(
            "compared with the deployed commit {} from git: a pull request from a fork gets \
             no AWS calls",
            short(sha)
        ),
        Baseline::Revision { name, sha } => {
            format!("compared with {name} ({}) from git", short(sha))
        }
        Baseline::NotDeployed => "not deployed yet: everything it grants is new".to_string(),
    }
}

/// The review of one stack for the command line.
pub fn text(stack: &str, review: &Review) -> String {
    let mut out = format!("{stack}: {}\n", against(review));
    if review.widens.is_empty() {
        out.push_str("  nothing widens\n");
    }
    for (verb, d) in deltas(review) {
        out.push_str(&format!("  {}\n", sentence(verb, d)));
    }
    out
}

pub fn json(stack: &str, review: &Review) -> Value {
    json!({"stack": stack, "review": review})
}

/// The review of one stack as Markdown: the PR comment's top and the check run's summary.
pub fn markdown(stack: &str, review: &Review) -> String {
    let mut out = format!(
        "**{}**: {}\n\n",
        md_literal(stack),
        md_literal(&against(review))
    );
    if review.widens.is_empty() {
        out.push_str("- nothing widens\n");
    }
    for (verb, d) in deltas(review) {
        let mark = match verb {
            Verb::Widens => ":warning: ",
            Verb::MayWiden => ":grey_question: ",
            Verb::Narrows => "",
        };
        let why = d
            .doubt
            .as_deref()
            .map(|w| format!(" (cannot be resolved: {})", md_literal(w)))
            .unwrap_or_default();
        out.push_str(&format!(
            "- {mark}{}: {} on {}{why}\n",
            verb.as_str(),
            md_literal(&d.what),
            md_literal(&d.on)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Kind;

    fn delta(what: &str, on: &str, doubt: Option<&str>) -> Delta {
        Delta {
            kind: Kind::Ingress,
            on: on.into(),
            what: what.into(),
            doubt: doubt.map(str::to_string),
        }
    }

    #[test]
    fn each_verb_reads_as_a_sentence_and_markdown_escapes_names() {
        let r = Review {
            baseline: Baseline::DeployedCommit {
                sha: "0123456789abcdef".into(),
            },
            widens: vec![
                delta("tcp/22 from 0.0.0.0/0", "AlbSecurityGroup", None),
                delta("an ingress rule", "<img src=x>", Some("CidrIp is `x`")),
            ],
            narrows: vec![delta("tcp/80 from 10.0.0.0/8", "Sg", None)],
        };
        let t = text("web", &r);
        assert!(t.contains("deployed commit 0123456 from git"), "{t}");
        assert!(
            t.contains("  widens: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "  may widen: an ingress rule on <img src=x> (cannot be resolved: CidrIp is `x`)\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("  narrows: tcp/80 from 10.0.0.0/8 on Sg\n"),
            "{t}"
        );
        let m = markdown("web", &r);
        assert!(
            m.contains("- :warning: widens: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup\n"),
            "{m}"
        );
        assert!(m.contains("on \\<img src\\=x\\>"), "{m}");
        assert!(m.contains("(cannot be resolved: CidrIp is \\`x\\`)"), "{m}");
        assert!(!m.contains("nothing widens"), "{m}");
    }
}
