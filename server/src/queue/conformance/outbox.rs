//! The outbox: statuses and comments in order, failures noted, unreadable rows given up on.

use crate::domain::{Annotation, AnnotationLevel, CheckState, Context, JobState, StatusState};
use crate::queue::conformance::*;
use crate::queue::*;

pub fn a_bad_status_is_given_up_on_and_the_rest_posts(h: &dyn Harness) {
    let s = h.open();
    let status = |sha: &str| StatusUpdate {
        repo: "acme/infra".into(),
        sha: sha.into(),
        context: Context::Policy,
        state: StatusState::Pending,
        description: "queued".into(),
        target_url: String::new(),
    };
    s.add_statuses(None, &[status("1"), status("2")]).unwrap();
    h.exec("UPDATE statuses SET state = 'neutral' WHERE sha = '1'");
    let left = s.unposted_statuses(10).unwrap();
    assert_eq!(
        left.iter().map(|p| p.sha.as_str()).collect::<Vec<_>>(),
        ["2"]
    );
    let mut row = h
        .query("SELECT CAST(posted_at AS TEXT), last_error FROM statuses WHERE sha = '1'")
        .remove(0);
    let (posted, error) = (row.remove(0).unwrap(), row.remove(0).unwrap());
    assert_eq!(posted, "-1", "given up on");
    for part in [
        "statuses row 1",
        "column state",
        "`neutral`",
        "another version of stackgate",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
}

fn status(sha: &str, description: &str) -> StatusUpdate {
    StatusUpdate {
        repo: "acme/infra".into(),
        sha: sha.into(),
        context: Context::Policy,
        state: StatusState::Success,
        description: description.into(),
        target_url: String::new(),
    }
}

pub fn a_comment_goes_after_the_statuses_before_it_and_remembers_its_id(h: &dyn Harness) {
    let s = h.open();
    let id = s.enqueue(&[preview("a")], &none, &superseded).unwrap()[0];
    s.claim(&lease(), 1).unwrap();
    s.add_statuses(Some(held(&*s, id)), &[status("a", "planning")])
        .unwrap();
    let comment = CommentUpdate {
        repo: "acme/infra".into(),
        pr: 7,
        body: "the plan".into(),
    };
    s.finish_with(
        held(&*s, id),
        JobState::Succeeded,
        &serde_json::json!({"plan": 1}),
        crate::queue::Outbound {
            comment: Some(&comment),
            statuses: &[status("a", "planned")],
            checks: &[],
        },
        None,
    )
    .unwrap();
    let st = s.unposted_statuses(10).unwrap();
    assert_eq!(
        st.iter()
            .map(|p| p.description.as_str())
            .collect::<Vec<_>>(),
        ["planning", "planned"]
    );
    assert!(st.iter().all(|p| p.pr == Some(7)), "{st:?}");
    let c = s.unposted_comments(10).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].body.as_str(), c[0].pr), ("the plan", 7));
    // Recorded before the job's last statuses: after "planning", before "planned".
    assert!(c[0].after_status >= st[0].id && c[0].after_status < st[1].id);
    assert_eq!(s.pr_comment("acme/infra", 7).unwrap(), None);
    s.comment_posted(c[0].id, Some(("acme/infra", 7, 4242)))
        .unwrap();
    s.statuses_posted(&[st[0].id, st[1].id]).unwrap();
    assert!(s.unposted_comments(10).unwrap().is_empty());
    assert!(s.unposted_statuses(10).unwrap().is_empty());
    assert_eq!(s.pr_comment("acme/infra", 7).unwrap(), Some(4242));
    // A later comment of the pull request updates the same one.
    s.comment_posted(c[0].id, Some(("acme/infra", 7, 4343)))
        .unwrap();
    assert_eq!(s.pr_comment("acme/infra", 7).unwrap(), Some(4343));
    assert_eq!(s.pr_comment("acme/infra", 8).unwrap(), None);
}

pub fn a_failed_comment_is_noted_on_its_job_until_posted(h: &dyn Harness) {
    let s = h.open();
    let id = s.enqueue(&[preview("a")], &none, &superseded).unwrap()[0];
    s.claim(&lease(), 1).unwrap();
    let comment = CommentUpdate {
        repo: "acme/infra".into(),
        pr: 7,
        body: "the plan".into(),
    };
    s.finish_with(
        held(&*s, id),
        JobState::Succeeded,
        &serde_json::json!({"plan": 1}),
        crate::queue::Outbound {
            comment: Some(&comment),
            statuses: &[],
            checks: &[],
        },
        None,
    )
    .unwrap();
    let c = s.unposted_comments(10).unwrap().remove(0);
    s.comment_failed(c.id, "502 bad gateway", false).unwrap();
    let detail = s.job(id).unwrap().unwrap().detail;
    assert_eq!(detail["comment_error"], "502 bad gateway");
    assert_eq!(detail["plan"], 1);
    let again = s.unposted_comments(10).unwrap().remove(0);
    assert_eq!(again.attempts, 1);
    s.comment_posted(c.id, None).unwrap();
    let detail = s.job(id).unwrap().unwrap().detail;
    assert!(detail.get("comment_error").is_none(), "{detail}");
    assert_eq!(detail["plan"], 1);
    // Given up on: not posted again. (A job ends once: the next plan's comment.)
    let next = s.enqueue(&[preview("b")], &none, &superseded).unwrap()[0];
    s.claim(&lease(), 1).unwrap();
    s.finish_with(
        held(&*s, next),
        JobState::Succeeded,
        &detail,
        crate::queue::Outbound {
            comment: Some(&comment),
            statuses: &[],
            checks: &[],
        },
        None,
    )
    .unwrap();
    let c = s.unposted_comments(10).unwrap().remove(0);
    s.comment_failed(c.id, "422 no", true).unwrap();
    assert!(s.unposted_comments(10).unwrap().is_empty());
}

fn check_run(context: Context, state: CheckState, lines: &[u32]) -> CheckUpdate {
    CheckUpdate {
        repo: "acme/infra".into(),
        sha: "a".into(),
        context,
        state,
        title: format!("{state}"),
        summary: "the plan".into(),
        annotations: lines
            .iter()
            .map(|l| Annotation {
                path: "stacks/web/template.yaml".into(),
                start_line: *l,
                end_line: *l,
                annotation_level: AnnotationLevel::Failure,
                title: "no-public-bucket on Bucket".into(),
                message: "public".into(),
            })
            .collect(),
        details_url: "http://x/runs/1".into(),
        external_id: "pr/7/fork".into(),
    }
}

/// A running preview that started the gate's and stack `web`'s check runs.
fn started_preview(s: &dyn Queue) -> (JobId, [CheckUpdate; 2]) {
    let id = s.enqueue(&[preview("a")], &none, &superseded).unwrap()[0];
    s.claim(&lease(), 1).unwrap();
    let started = [
        check_run(Context::Policy, CheckState::InProgress, &[]),
        check_run(Context::Plan("web".into()), CheckState::InProgress, &[]),
    ];
    s.add_checks(held(s, id), &started).unwrap();
    (id, started)
}

pub fn check_runs_are_written_in_order_and_keep_the_id_github_gave(h: &dyn Harness) {
    let s = h.open();
    let (id, started) = started_preview(&*s);
    let done = [check_run(Context::Policy, CheckState::Failure, &[12, 3])];
    s.finish_with(
        held(&*s, id),
        JobState::Failed,
        &serde_json::json!({}),
        Outbound {
            checks: &done,
            ..Outbound::default()
        },
        None,
    )
    .unwrap();
    let waiting = s.unposted_checks(10, &[]).unwrap();
    let said: Vec<(&str, CheckState)> =
        waiting.iter().map(|c| (c.name.as_str(), c.state)).collect();
    assert_eq!(
        said,
        [
            ("stackgate/policy", CheckState::InProgress),
            ("stackgate/plan/web", CheckState::InProgress),
            ("stackgate/policy", CheckState::Failure),
            ("stackgate/plan/web", CheckState::Cancelled),
        ],
        "the run it did not end, ended"
    );
    let others: Vec<String> = s
        .unposted_checks(10, &[waiting[0].id])
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        others,
        ["stackgate/plan/web", "stackgate/plan/web"],
        "a check run whose write waits is left out, all its writes"
    );
    let last = &waiting[2];
    assert_eq!(last.job, id);
    assert_eq!(last.annotations, done[0].annotations, "read back whole");
    assert_eq!(
        (last.external_id.as_str(), last.details_url.as_str()),
        ("pr/7/fork", "http://x/runs/1")
    );
    assert_eq!(s.check_run(id, "stackgate/policy").unwrap(), None);
    s.keep_check_run(id, "stackgate/policy", 77).unwrap();
    s.keep_check_run(id, "stackgate/policy", 78).unwrap();
    assert_eq!(s.check_run(id, "stackgate/policy").unwrap(), Some(78));
    assert_eq!(s.check_run(id, "stackgate/plan/web").unwrap(), None);
    s.check_posted(waiting[0].id).unwrap();
    s.check_failed(waiting[1].id, "502", false).unwrap();
    s.check_failed(waiting[2].id, "422", true).unwrap();
    let left = s.unposted_checks(10, &[]).unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!((left[0].id, left[0].attempts), (waiting[1].id, 1));
    // A lost claim writes nothing.
    let stale = crate::queue::lease::Claim { job: id, fence: 0 };
    assert!(matches!(
        s.add_checks(stale, &started),
        Err(StoreError::LeaseLost(_))
    ));
}

pub fn a_job_that_stops_ends_the_check_runs_it_started_once(h: &dyn Harness) {
    let s = h.open();
    let (id, started) = started_preview(&*s);
    // Started again (a requeued job runs once more), then one of them ended.
    s.add_checks(held(&*s, id), &started[..1]).unwrap();
    s.add_checks(
        held(&*s, id),
        &[check_run(
            Context::Plan("web".into()),
            CheckState::Success,
            &[],
        )],
    )
    .unwrap();
    s.end_checks(held(&*s, id), CheckState::Cancelled, "superseded", "by b")
        .unwrap();
    let ended: Vec<(String, CheckState, String)> = s
        .unposted_checks(10, &[])
        .unwrap()
        .into_iter()
        .skip(4)
        .map(|c| (c.name, c.state, c.summary))
        .collect();
    assert_eq!(
        ended,
        [(
            "stackgate/policy".to_string(),
            CheckState::Cancelled,
            "by b".to_string()
        )],
        "only the one still in progress, once"
    );
    h.exec("UPDATE check_runs SET state = 'stale' WHERE id = 1");
    assert_eq!(
        s.unposted_checks(10, &[]).unwrap().len(),
        4,
        "another version's row is given up on, the rest read"
    );
}

/// The check runs job `id` ends, as (name, state, summary), after the first `skip` writes.
fn ended(s: &dyn Queue, id: JobId, skip: usize) -> Vec<(String, CheckState, String)> {
    s.unposted_checks(100, &[])
        .unwrap()
        .into_iter()
        .filter(|c| c.job == id)
        .skip(skip)
        .map(|c| (c.name, c.state, c.summary))
        .collect()
}

pub fn a_preview_superseded_while_queued_again_ends_the_check_runs_it_started(h: &dyn Harness) {
    let s = h.open();
    let (id, _) = started_preview(&*s);
    // Queued again (the job's deadline, a restart), then a newer head supersedes it there.
    s.requeue(held(&*s, id)).unwrap();
    s.enqueue(&[preview("b")], &none, &superseded).unwrap();
    assert_eq!(s.job(id).unwrap().unwrap().state, JobState::Superseded);
    let why = "superseded by b".to_string();
    assert_eq!(
        ended(&*s, id, 2),
        [
            (
                "stackgate/plan/web".to_string(),
                CheckState::Cancelled,
                why.clone()
            ),
            ("stackgate/policy".to_string(), CheckState::Cancelled, why),
        ],
        "no check run left in progress"
    );
}

pub fn a_job_s_end_ends_the_check_runs_it_started_and_did_not_end(h: &dyn Harness) {
    let s = h.open();
    let (id, _) = started_preview(&*s);
    // Run again, its changed stacks no longer include `web`: only the gate's run ends.
    let done = [check_run(Context::Policy, CheckState::Success, &[])];
    s.finish_with(
        held(&*s, id),
        JobState::Succeeded,
        &serde_json::json!({}),
        Outbound {
            checks: &done,
            ..Outbound::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(
        ended(&*s, id, 2),
        [
            (
                "stackgate/policy".to_string(),
                CheckState::Success,
                "the plan".to_string()
            ),
            (
                "stackgate/plan/web".to_string(),
                CheckState::Cancelled,
                NOT_IN_RUN.to_string()
            ),
        ]
    );
}
