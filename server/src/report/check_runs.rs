//! The check runs of a pull request's dry run: one for the policy gate and one per changed
//! stack, named as their statuses are. Their summaries are the comment's stack sections
//! (findings, plan and change table); each finding is also an annotation at its template's
//! file and line, on the gate's check run. Text GitHub would refuse for its length is cut, with a link to the run
//! page, which has it all.

use crate::config::Config;
use crate::domain::{Annotation, AnnotationLevel, CheckRef, CheckState, Context, short};
use crate::policy::{Report, Severity, Verdict, truncate};
use crate::queue::{CheckUpdate, Job};
use crate::report::comment::Plan;
use crate::report::redact::Redactor;

/// GitHub refuses a longer check run `output.summary` or `output.text`.
pub const OUTPUT_MAX: usize = 65_535;
/// GitHub refuses a longer issue comment body.
pub const COMMENT_MAX: usize = 65_536;
/// The most annotations one check run gets (ten requests); the summary lists them all.
const ANNOTATIONS_MAX: usize = 500;
/// An annotation's title and message, at most (GitHub's own limit is 64 KB).
const ANNOTATION_TITLE_MAX: usize = 255;
const ANNOTATION_MESSAGE_MAX: usize = 4_000;

/// `text`, or its start cut to at most `max` characters at a line's end, closed by a link
/// to the run page.
pub fn fit(text: String, max: usize, run_url: &str) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let tail = format!(
        "\n\n**Cut here:** GitHub takes at most {max} characters. The whole report is on the [run page]({run_url}).\n"
    );
    let keep = max.saturating_sub(tail.chars().count());
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    let head = &text[..cut];
    // At a line's end, so that no table row or link is left half.
    let head = head.rfind('\n').map_or(head, |i| &head[..i]);
    format!("{head}{tail}")
}

/// The findings of one stack's report as annotations on its template files, redacted as
/// the comment is.
pub fn annotations(report: &Report, template_file: &str, redact: &Redactor) -> Vec<Annotation> {
    report
        .findings()
        .take(ANNOTATIONS_MAX)
        .map(|f| {
            // GitHub needs a line: a finding the template cannot place goes on the first.
            let (line, unplaced) = match f.line {
                Some(l) => (u32::try_from(l.max(1)).unwrap_or(u32::MAX), ""),
                None => (1, " (no line known)"),
            };
            Annotation {
                path: f
                    .file
                    .as_deref()
                    .unwrap_or(template_file)
                    .trim_start_matches("./")
                    .to_string(),
                start_line: line,
                end_line: line,
                annotation_level: match f.severity {
                    Severity::Error => AnnotationLevel::Failure,
                    _ => AnnotationLevel::Warning,
                },
                title: truncate(
                    &redact.text(&format!("{} on {}{unplaced}", f.rule, f.resource)),
                    ANNOTATION_TITLE_MAX,
                ),
                message: truncate(&redact.text(&f.message), ANNOTATION_MESSAGE_MAX),
            }
        })
        .collect()
}

/// A check run of the job's commit, as the dry run writes it.
pub fn check(
    cfg: &Config,
    job: &Job,
    context: Context,
    state: CheckState,
    title: &str,
    summary: String,
    annotations: Vec<Annotation>,
) -> CheckUpdate {
    let run_url = cfg.run_url(job.id);
    let mut annotations = annotations;
    annotations.truncate(ANNOTATIONS_MAX);
    CheckUpdate {
        repo: job.repo.clone(),
        sha: job.sha.clone(),
        context,
        state,
        title: truncate(title, ANNOTATION_TITLE_MAX),
        summary: fit(summary, OUTPUT_MAX, &run_url),
        annotations,
        external_id: CheckRef {
            pr: job.pr.unwrap_or_default(),
            fork: job.fork,
        }
        .to_string(),
        details_url: run_url,
    }
}

/// The title and summary a check run ends with when its job stops before its verdict, cut
/// as GitHub takes them.
pub fn ending(cfg: &Config, job: &Job, title: &str, summary: &str) -> (String, String) {
    (
        truncate(title, ANNOTATION_TITLE_MAX),
        fit(summary.to_string(), OUTPUT_MAX, &cfg.run_url(job.id)),
    )
}

/// A check run that has started: its summary links to the run page, which follows it live.
pub fn in_progress(cfg: &Config, job: &Job, context: Context) -> CheckUpdate {
    let summary = format!(
        "stackgate is checking {}. The [run page]({}) follows it live.",
        short(&job.sha),
        cfg.run_url(job.id)
    );
    check(
        cfg,
        job,
        context,
        CheckState::InProgress,
        "running",
        summary,
        Vec::new(),
    )
}

/// A gate's verdict as a check run's conclusion: doubt is a failure too.
pub fn verdict_state(v: Verdict) -> CheckState {
    match v {
        Verdict::Pass => CheckState::Success,
        Verdict::Fail | Verdict::Error => CheckState::Failure,
    }
}

/// The check runs of one dry run as it goes: none unless stackgate writes check runs.
pub struct DryRunChecks<'a> {
    cfg: &'a Config,
    job: &'a Job,
    on: bool,
    stacks: Vec<CheckUpdate>,
    annotations: Vec<Annotation>,
}

impl<'a> DryRunChecks<'a> {
    pub fn new(cfg: &'a Config, job: &'a Job) -> Self {
        DryRunChecks {
            cfg,
            job,
            on: cfg.check_runs(),
            stacks: Vec::new(),
            annotations: Vec::new(),
        }
    }

    /// The check runs that start now: the gate's and each changed stack's plan, in progress.
    /// A fork's change is never planned, so it gets no plan check runs (nor statuses).
    pub fn started<'s>(&self, stacks: impl Iterator<Item = &'s String>) -> Vec<CheckUpdate> {
        if !self.on {
            return Vec::new();
        }
        let plans = (!self.job.fork).then_some(stacks).into_iter().flatten();
        std::iter::once(Context::Policy)
            .chain(plans.map(|s| Context::Plan(s.clone())))
            .map(|c| in_progress(self.cfg, self.job, c))
            .collect()
    }

    /// A stack whose files do not load.
    pub fn bad_input(&mut self, name: &str, error: &str, section: &str) {
        if self.on && !self.job.fork {
            let title = format!("bad input: {error}");
            let c = check(
                self.cfg,
                self.job,
                Context::Plan(name.into()),
                CheckState::Failure,
                &title,
                section.to_string(),
                Vec::new(),
            );
            self.stacks.push(c);
        }
    }

    /// What a loaded stack's plan check run concludes from its verdict and plan; a fork's
    /// has none.
    pub fn concluded(&self, report: &Report, plan: &Plan<'_>) -> Option<(CheckState, String)> {
        if self.job.fork {
            return None;
        }
        Some(match plan {
            Plan::NotRun => (CheckState::Failure, report.summary()),
            Plan::Fork => return None,
            Plan::Remove => (CheckState::Success, "will remove the stack".into()),
            Plan::NoChanges => (CheckState::Success, "no changes".into()),
            Plan::Changes(c) => (CheckState::Success, format!("{} change(s)", c.len())),
            Plan::Failed(reason) => (CheckState::Failure, reason.to_string()),
        })
    }

    /// A loaded stack's findings, as the gate's annotations, and its plan check run with
    /// its comment section, if it has one.
    pub fn stack(
        &mut self,
        name: &str,
        concluded: Option<(CheckState, String)>,
        report: &Report,
        template_file: &str,
        redact: &Redactor,
        section: &str,
    ) {
        if !self.on {
            return;
        }
        // On the gate's only: a pull request's diff shows every check run's annotations,
        // and one finding twice is noise.
        self.annotations
            .extend(annotations(report, template_file, redact));
        let Some((state, title)) = concluded else {
            return;
        };
        let context = Context::Plan(name.into());
        let c = check(
            self.cfg,
            self.job,
            context,
            state,
            &title,
            section.into(),
            Vec::new(),
        );
        self.stacks.push(c);
    }

    /// Every check run to end the dry run with: the gate's first, with every finding.
    pub fn gate(
        self,
        verdict: Verdict,
        title: &str,
        summary: &str,
        sections: &[String],
    ) -> Vec<CheckUpdate> {
        if !self.on {
            return Vec::new();
        }
        let whole = format!("{summary}\n\n{}", sections.join("\n"));
        let gate = check(
            self.cfg,
            self.job,
            Context::Policy,
            verdict_state(verdict),
            title,
            whole,
            self.annotations,
        );
        std::iter::once(gate).chain(self.stacks).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Finding, Outcome};

    fn finding(line: Option<usize>, file: Option<&str>, message: &str) -> Finding {
        Finding {
            policy: "p".into(),
            rule: "no-public-bucket".into(),
            severity: Severity::Error,
            resource: "Bucket".into(),
            path: "/Resources/Bucket".into(),
            message: message.into(),
            remediation: String::new(),
            line,
            file: file.map(str::to_string),
        }
    }

    #[test]
    fn a_finding_is_an_annotation_at_its_file_and_line_and_its_secrets_are_hidden() {
        let report = Report::from_outcomes(vec![Outcome {
            policy: "p".into(),
            digest: String::new(),
            verdict: Verdict::Fail,
            findings: vec![
                finding(Some(12), None, "opens s3cret to the world"),
                finding(Some(3), Some("stacks/web/child.yaml"), "child"),
                finding(None, None, "somewhere"),
            ],
            error: None,
            micros: 0,
        }]);
        let redact = Redactor::default().and(&["s3cret".to_string()]);
        let notes = annotations(&report, "stacks/web/template.yaml", &redact);
        let at: Vec<(&str, u32, u32)> = notes
            .iter()
            .map(|a| (a.path.as_str(), a.start_line, a.end_line))
            .collect();
        assert_eq!(
            at,
            [
                ("stacks/web/template.yaml", 12, 12),
                ("stacks/web/child.yaml", 3, 3),
                ("stacks/web/template.yaml", 1, 1),
            ]
        );
        assert!(!notes[0].message.contains("s3cret"), "{}", notes[0].message);
        assert_eq!(notes[0].annotation_level, AnnotationLevel::Failure);
        assert!(
            notes[2].title.contains("no line known"),
            "{}",
            notes[2].title
        );
    }

    #[test]
    fn a_long_text_is_cut_to_what_github_takes_with_a_link_to_the_run_page() {
        let long = "| a | b |\n".repeat(10_000);
        let out = fit(long.clone(), OUTPUT_MAX, "http://x/runs/9");
        assert!(out.chars().count() <= OUTPUT_MAX, "{}", out.chars().count());
        assert!(
            out.ends_with("[run page](http://x/runs/9).\n"),
            "{}",
            &out[out.len() - 200..]
        );
        assert!(
            out.contains("| a | b |\n\n**Cut here:**"),
            "cut at a line's end"
        );
        let short = "fits".to_string();
        assert_eq!(fit(short.clone(), OUTPUT_MAX, "u"), short);
        // Characters, not bytes, as GitHub counts.
        let wide = "é".repeat(OUTPUT_MAX);
        assert_eq!(fit(wide.clone(), OUTPUT_MAX, "u"), wide);
    }
}
