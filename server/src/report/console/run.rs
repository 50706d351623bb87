//! The run page (`/runs/{id}`, `GET /api/v1/runs/{id}`): what a job did, from its detail:
//! the change set, findings linked to their lines, outputs as recorded (redacted at the
//! deploy), a timeline of the stack events, the log; and its progress while it is live.

use serde::Serialize;
use serde_json::Value;

use super::timeline::{self, EventView, Timeline};
use super::view::{
    ChangeView, CommitView, FindingView, OutputView, changes, duration, findings, github_pull,
    outputs, pull_href, stack_href, when,
};
use crate::domain::{JobId, JobState, Kind, Phase, Trigger};
use crate::git::commits::CommitInfo;
use crate::policy::Verdict;
use crate::queue::Job;
use crate::report::review::{self, Verb};
use crate::review::Review;

/// How far a live run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub state: JobState,
    pub phase: Option<Phase>,
    pub done: usize,
    pub total: usize,
    pub label: String,
    /// Queued or running: the page follows it.
    pub live: bool,
}

/// The steps a deploy goes through, for progress before CloudFormation counts resources.
const STEPS: [Phase; 5] = [
    Phase::Checkout,
    Phase::Policy,
    Phase::Planning,
    Phase::Executing,
    Phase::Done,
];

impl Progress {
    pub fn of(job: &Job) -> Progress {
        let live = matches!(job.state, JobState::Queued | JobState::Running);
        // The resources CloudFormation reported done: as a running deploy records them,
        // or from the events of one that ended.
        let count = |e: &Value| {
            let n = |k: &str| e[k].as_u64().unwrap_or(0) as usize;
            (n("done"), n("total"))
        };
        let counted = match job.detail.get("progress") {
            Some(p) if live => Some(count(p)),
            _ => job.detail["events"]
                .as_array()
                .and_then(|es| es.iter().rev().find(|e| e["total"].as_u64().is_some()))
                .map(count),
        };
        let (done, total, label) = match (counted, job.phase) {
            (Some((done, total)), _) if total > 0 => (
                done.min(total),
                total,
                format!("{done} of {total} resources"),
            ),
            (_, _) if !live => (1, 1, job.state.as_str().to_string()),
            (_, Some(phase)) => {
                let at = STEPS.iter().position(|p| *p == phase).unwrap_or(0);
                (
                    at,
                    STEPS.len(),
                    format!("{phase} (step {} of {})", at + 1, STEPS.len()),
                )
            }
            (_, None) => (0, STEPS.len(), job.state.as_str().to_string()),
        };
        Progress {
            state: job.state,
            phase: job.phase,
            done,
            total,
            label,
            live,
        }
    }
}

/// A stack's part of a run: a deploy has one, a preview one per changed stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StackPart {
    pub name: String,
    pub href: String,
    pub template: Option<String>,
    pub verdict: Option<Verdict>,
    pub findings: Vec<FindingView>,
    /// `None`: no change set (not planned, or no changes).
    pub changes: Option<Vec<ChangeView>>,
    pub plan_error: Option<String>,
    /// What the change widens and narrows, when the job reviewed it.
    pub review: Option<ReviewView>,
}

/// A stack's review on the run page: what it was compared with, one sentence a delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReviewView {
    pub against: String,
    pub nothing_widens: bool,
    pub lines: Vec<ReviewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReviewLine {
    pub verb: Verb,
    /// `widens: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup`
    pub text: String,
}

impl ReviewView {
    fn from_json(v: &Value) -> Option<Self> {
        let r: Review = serde_json::from_value(v.clone()).ok()?;
        Some(ReviewView {
            against: review::against(&r),
            nothing_widens: r.widens.is_empty(),
            lines: review::deltas(&r)
                .map(|(verb, d)| ReviewLine {
                    verb,
                    text: review::sentence(verb, d),
                })
                .collect(),
        })
    }
}

/// A line of the log: a note, or a stack event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub note: Option<String>,
    pub event: Option<EventView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    pub id: JobId,
    pub kind: Kind,
    pub state: JobState,
    pub phase: Option<Phase>,
    pub trigger: Trigger,
    /// Who or what asked for it, in words.
    pub triggered_by: String,
    pub repo: String,
    pub stack: Option<String>,
    pub stack_href: Option<String>,
    pub commit: CommitView,
    pub pr: Option<u64>,
    pub pr_href: Option<String>,
    pub pr_github: Option<String>,
    pub fork: bool,
    pub created: String,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub took: Option<String>,
    pub attempts: i64,
    pub superseded_by: Option<JobId>,
    pub progress: Progress,
    pub events_href: String,
    pub parts: Vec<StackPart>,
    /// Some part has a review: the page opens with what the change widens.
    pub reviewed: bool,
    pub outputs: Vec<OutputView>,
    pub timeline: Option<Timeline>,
    pub log: Vec<LogLine>,
    pub message: Option<String>,
    pub error: Option<String>,
    pub comment_error: Option<String>,
    /// A change set held for approval, or one that was.
    pub hold: Option<HoldView>,
    /// What was decided on it, by whom and when.
    pub decision: Option<DecisionView>,
    /// The detail as stored (already redacted), for whoever needs all of it.
    pub detail: String,
}

/// A held change set, as the run page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HoldView {
    /// "3 changes, 1 replacement".
    pub summary: String,
    /// The approval that held it (`required`, `on-broadening`).
    pub approval: String,
    pub held: String,
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DecisionView {
    pub decision: crate::domain::Decision,
    pub by: String,
    pub at: String,
}

fn hold(d: &Value) -> Option<HoldView> {
    let h = d.get("hold")?;
    let changes = h["changes"].as_array().map(Vec::len).unwrap_or(0);
    let replaced = h["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["replacement"] == "True")
        .count();
    let mut summary = format!("{changes} change{}", if changes == 1 { "" } else { "s" });
    if replaced > 0 {
        summary.push_str(&format!(
            ", {replaced} replacement{}",
            if replaced == 1 { "" } else { "s" }
        ));
    }
    Some(HoldView {
        summary,
        approval: text(&h["approval"]).unwrap_or_default(),
        held: when(h["held_at"].as_i64()?),
        expires: when(h["expires_at"].as_i64()?),
    })
}

fn decision(d: &Value) -> Option<DecisionView> {
    let v: crate::queue::Decided = serde_json::from_value(d.get("decision")?.clone()).ok()?;
    Some(DecisionView {
        decision: v.decision,
        by: v.by,
        at: when(v.at),
    })
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn triggered_by(job: &Job) -> String {
    match (job.trigger, job.pr) {
        (Trigger::Push, _) => "a push to the branch".into(),
        (Trigger::Poll, _) => "the poller, which saw a new commit".into(),
        (Trigger::PullRequest, Some(pr)) if job.fork => format!("pull request #{pr} (from a fork)"),
        (Trigger::PullRequest, Some(pr)) => format!("pull request #{pr}"),
        (Trigger::PullRequest, None) => "a pull request".into(),
        (Trigger::Manual, _) if job.kind == crate::domain::Kind::Drift => {
            "a drift check asked for by an operator".into()
        }
        (Trigger::Manual, _) => "a manual redeploy by an operator".into(),
        (Trigger::Schedule, _) => "the drift scheduler".into(),
        (Trigger::Drift, _) => "a drift check that found the stack changed (drift: revert)".into(),
    }
}

/// The parts of a job: its own stack (a deploy) or each stack of a preview.
pub fn parts(job: &Job) -> Vec<StackPart> {
    let part = |name: &str, d: &Value| {
        let template = text(&d["template"]);
        let report = findings(&d["policy"], &job.repo, &job.sha, template.as_deref());
        StackPart {
            name: name.to_string(),
            href: stack_href(&job.repo, name),
            verdict: report.verdict,
            findings: report.findings,
            changes: changes(&d["changes"]),
            plan_error: text(&d["plan_error"]),
            review: ReviewView::from_json(&d["review"]),
            template,
        }
    };
    match (&job.stack, job.detail["stacks"].as_object()) {
        (Some(stack), _) => vec![part(stack, &job.detail)],
        (None, Some(stacks)) => stacks.iter().map(|(name, d)| part(name, d)).collect(),
        (None, None) => Vec::new(),
    }
}

pub fn events(detail: &Value) -> (Vec<EventView>, Vec<LogLine>) {
    let mut events = Vec::new();
    let mut log = Vec::new();
    for e in detail["events"].as_array().into_iter().flatten() {
        if let Some(n) = e["note"].as_str() {
            log.push(LogLine {
                note: Some(n.to_string()),
                event: None,
            });
        } else if let Some(ev) = EventView::from_json(&e["event"]) {
            events.push(ev.clone());
            log.push(LogLine {
                note: None,
                event: Some(ev),
            });
        }
    }
    (events, log)
}

pub fn build(job: &Job, commit: Option<&CommitInfo>, now: i64) -> RunPage {
    let (events, log) = events(&job.detail);
    let d = &job.detail;
    let parts = parts(job);
    RunPage {
        id: job.id,
        kind: job.kind,
        state: job.state,
        phase: job.phase,
        trigger: job.trigger,
        triggered_by: triggered_by(job),
        repo: job.repo.clone(),
        stack: job.stack.clone(),
        stack_href: job.stack.as_deref().map(|s| stack_href(&job.repo, s)),
        commit: CommitView::new(&job.repo, &job.sha, commit, now),
        pr: job.pr,
        pr_href: job.pr.map(|pr| pull_href(&job.repo, pr)),
        pr_github: job.pr.map(|pr| github_pull(&job.repo, pr)),
        fork: job.fork,
        created: when(job.created_at),
        started: job.started_at.map(when),
        finished: job.finished_at.map(when),
        took: job
            .started_at
            .zip(job.finished_at)
            .map(|(s, f)| duration(f - s)),
        attempts: job.attempts,
        superseded_by: job.superseded_by,
        progress: Progress::of(job),
        events_href: format!("/runs/{}/events", job.id),
        reviewed: parts.iter().any(|p| p.review.is_some()),
        parts,
        outputs: outputs(&d["outputs"]),
        timeline: timeline::build(&events),
        log,
        message: text(&d["message"]),
        error: text(&d["error"]),
        comment_error: text(&d["comment_error"]),
        hold: hold(d),
        decision: decision(d),
        detail: serde_json::to_string_pretty(d).unwrap_or_default(),
    }
}

/// The run page of `job` as HTML, its commit unknown and its ages told from now.
pub fn html(job: &Job) -> Result<String, super::templates::RenderError> {
    super::templates::render("run.html", &build(job, None, crate::queue::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobId;
    use serde_json::json;

    fn job(state: JobState, phase: Option<Phase>, detail: Value) -> Job {
        let mut j = Job::superseded(
            JobId(3),
            &crate::queue::NewJob {
                kind: Kind::Deploy,
                repo: "acme/infra".into(),
                stack: Some("web".into()),
                sha: "a".repeat(40),
                pr: None,
                fork: false,
                trigger: Trigger::Push,
            },
            JobId(4),
            0,
        );
        (j.state, j.phase, j.detail, j.superseded_by) = (state, phase, detail, None);
        j
    }

    #[test]
    fn progress_counts_resources_once_cloudformation_does_and_steps_before() {
        let p = Progress::of(&job(JobState::Queued, None, json!({})));
        assert_eq!(
            (p.done, p.total, p.live, p.label.as_str()),
            (0, 5, true, "queued")
        );
        let p = Progress::of(&job(JobState::Running, Some(Phase::Planning), json!({})));
        assert_eq!(
            (p.done, p.total, p.label.as_str()),
            (2, 5, "planning (step 3 of 5)")
        );
        let running = json!({"progress": {"done": 7, "total": 31}});
        let p = Progress::of(&job(JobState::Running, Some(Phase::Executing), running));
        assert_eq!(
            (p.done, p.total, p.label.as_str()),
            (7, 31, "7 of 31 resources")
        );
        let ended = json!({"progress": {"done": 7, "total": 31},
            "events": [{"event": {}, "done": 30, "total": 31}, {"note": "x"}]});
        let p = Progress::of(&job(JobState::Failed, Some(Phase::Done), ended));
        assert_eq!((p.done, p.total, p.live), (30, 31, false));
        let p = Progress::of(&job(JobState::Succeeded, Some(Phase::Done), json!({})));
        assert_eq!((p.done, p.total, p.label.as_str()), (1, 1, "succeeded"));
    }
}
