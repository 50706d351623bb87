//! The pull request comment of a dry run: one section per changed stack, with its policy
//! findings and its plan. Names and messages come from the pull request's files (a fork's
//! too): escaped, never rendered; values pass through the stack's redactor.

use crate::cloud::cfn::Change;
use crate::domain::{JobId, short};
use crate::policy::{Report, Severity};
use crate::report::redact::Redactor;
use crate::review::Review;

use super::render::{change_table_markdown, md_code, md_text};

/// Marks stackgate's own comment.
pub const MARKER: &str = "<!-- stackgate:preview -->";

/// What the plan of one stack came to.
pub enum Plan<'a> {
    /// The policy did not pass: CreateChangeSet runs macros, so no plan.
    NotRun,
    /// A pull request from a fork gets no AWS calls.
    Fork,
    Remove,
    NoChanges,
    Changes(&'a [Change]),
    /// The public reason (no AWS text).
    Failed(&'a str),
}

/// The section of a stack whose files do not load.
pub fn bad_input(name: &str, error: &str) -> String {
    format!(
        "### {}\n\n:x: bad input: {}\n",
        md_code(name),
        md_text(error)
    )
}

/// The section of a stack that loaded: its policy verdict, findings and plan.
pub fn stack_section(
    name: &str,
    template_file: &str,
    report: &Report,
    redact: &Redactor,
    plan: Plan<'_>,
) -> String {
    let public = |s: &str| md_text(&redact.text(s));
    let mut section = format!(
        "### {}\n\n**Policy:** {}\n",
        md_code(name),
        public(&report.summary())
    );
    for f in report.findings() {
        let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
        section.push_str(&format!(
            "- {} {} **{}** {}: {}\n",
            if f.severity == Severity::Error {
                ":x:"
            } else {
                ":warning:"
            },
            md_code(&f.rule),
            public(&f.resource),
            md_code(&format!(
                "{}{line}",
                f.file.as_deref().unwrap_or(template_file)
            )),
            public(&f.message)
        ));
    }
    section.push_str(&match plan {
        Plan::NotRun => "\n**Plan:** not run: the policy did not pass.\n".to_string(),
        Plan::Fork => "\n**Plan:** skipped for a pull request from a fork (no AWS calls).\n".into(),
        Plan::Remove => "\n**Plan:** the stack will be removed.\n".into(),
        Plan::NoChanges => "\n**Plan:** no changes.\n".into(),
        Plan::Changes(c) => format!(
            "\n**Plan:** {} change(s)\n\n{}",
            c.len(),
            change_table_markdown(c)
        ),
        Plan::Failed(reason) => format!("\n**Plan failed:** {}\n", md_text(reason)),
    });
    section
}

/// What each stack's change widens, for the top of the comment; empty without stacks.
pub fn widens(reviews: &[(String, Review)]) -> String {
    if reviews.is_empty() {
        return String::new();
    }
    let each: Vec<String> = reviews
        .iter()
        .map(|(name, r)| super::review::markdown(name, r))
        .collect();
    format!("### What the change widens\n\n{}\n", each.join("\n"))
}

/// The whole comment: what widens (`widens`), then each stack's section.
pub fn body(
    sha: &str,
    summary: &str,
    widens: &str,
    sections: &[String],
    job: JobId,
    run_url: &str,
) -> String {
    format!(
        "{MARKER}\n## stackgate dry run for {}\n\n{}\n\n{}{}\n\n[Run {}]({})\n",
        short(sha),
        summary,
        widens,
        sections.join("\n"),
        job,
        run_url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_named_stack_is_escaped_and_the_run_is_linked() {
        let sections = vec![bad_input("web", "<img src=x>")];
        let b = body(
            "0123456789abcdef",
            "1 stack(s) checked",
            "",
            &sections,
            JobId(42),
            "http://x/runs/42",
        );
        assert!(b.starts_with(MARKER));
        assert!(b.contains("dry run for 0123456"));
        assert!(b.contains(r"\<img"), "{b}");
        assert!(!b[MARKER.len()..].replace(r"\<", "").contains('<'), "{b}");
        assert!(b.ends_with("[Run 42](http://x/runs/42)\n"));
    }
}
