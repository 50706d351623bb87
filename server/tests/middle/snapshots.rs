//! Snapshots of what people read: the pull-request comment, commit statuses, `stackgate
//! check` output (text, JSON, SARIF), change tables and the pages. Inputs are fixed (commit
//! dates, ids from a fresh database), so a snapshot changes only when the words do.
//! A changed snapshot fails and leaves a `.snap.new` to review (`cargo insta review`, or
//! `INSTA_UPDATE=always` and the git diff); under `CI=true` it fails and writes nothing.

use std::path::Path;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

/// A stack that fails the gate: SSH open to the world and an IAM role that may do anything.
const OPEN_ADMIN: &str = include_str!("fixtures/open-admin.yaml");

fn comment(job: &Value) -> String {
    job["detail"]["comment"]
        .as_str()
        .unwrap_or_else(|| panic!("no comment in {job}"))
        .to_string()
}

pub fn failing_stack(folder: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("stacks/{folder}/deployment.yaml"),
            format!("template-file-path: template.yaml\nstack-name: {folder}\n"),
        ),
        (format!("stacks/{folder}/template.yaml"), OPEN_ADMIN.into()),
    ]
}

/// A deployment file with a key the format does not have.
fn broken_stack(folder: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("stacks/{folder}/deployment.yaml"),
            format!(
                "template-file-path: template.yaml\nstack-name: {folder}\nnotification-arns-for-every-single-stack-event-of-this-deployment: []\n"
            ),
        ),
        (
            format!("stacks/{folder}/template.yaml"),
            "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_when_every_stack_passes() {
    // From a fork: no plan (no AWS calls for a fork's pull request).
    let (_t, _, job) = dry_run(&passing_stack("web"), true).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    insta::assert_snapshot!(comment(&job));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_with_policy_findings() {
    let (_t, _, job) = dry_run(&failing_stack("admin"), false).await;
    assert_eq!(job["state"], "failed", "{job}");
    insta::assert_snapshot!(comment(&job));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_with_bad_input_beside_a_passing_stack() {
    let mut stacks = broken_stack("broken");
    stacks.extend(passing_stack("web"));
    let (_t, _, job) = dry_run(&stacks, true).await;
    assert_eq!(job["state"], "failed", "{job}");
    insta::assert_snapshot!(comment(&job));
}

/// A fork controls its folder names, resource ids and values: the comment renders none of
/// them (no link, image, HTML, mention or emphasis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_comment_from_a_hostile_fork() {
    let folder = "pwn-@octocat-#1-**bold**";
    let template = OPEN_ADMIN
        .replace(
            "AdminSg:",
            "\"Sg](https://evil.example)<img src=x onerror=alert(1)>\":",
        )
        .replace(
            "GroupDescription: admin access",
            "GroupDescription: \"@octocat www.evil.example\"",
        );
    let stacks = vec![
        (
            format!("stacks/{folder}/deployment.yaml"),
            "template-file-path: template.yaml\nstack-name: pwn\n".to_string(),
        ),
        (format!("stacks/{folder}/template.yaml"), template),
    ];
    let (_t, _, job) = dry_run(&stacks, true).await;
    assert_eq!(job["state"], "failed", "{job}");
    let comment = comment(&job);
    // Every `<` and `]` the fork wrote is escaped, so nothing opens a tag or a link.
    assert!(
        comment.matches("<img").count() == comment.matches("\\<img").count(),
        "{comment}"
    );
    assert!(!comment.contains("](https://evil"), "{comment}");
    insta::assert_snapshot!(comment);
}

/// The change tables a plan shows: Markdown in the PR comment, text in `stackgate plan`.
/// (The AWS emulator always answers `Replacement: False`, so replacements come from here.)
#[test]
fn change_set_preview_with_replacements() {
    let change = |action: &str, id: &str, ty: &str, replacement: &str| Change {
        action: action.into(),
        logical_id: id.into(),
        resource_type: ty.into(),
        replacement: replacement.into(),
        scope: Vec::new(),
    };
    let changes = [
        change("Add", "AppBucket", "AWS::S3::Bucket", "-"),
        change("Modify", "Database", "AWS::RDS::DBInstance", "True"),
        change(
            "Modify",
            "Alb",
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Conditional",
        ),
        change("Modify", "Fn", "AWS::Lambda::Function", "False"),
        change("Remove", "OldQueue", "AWS::SQS::Queue", "-"),
        // A fork names its resources: nothing in a name may render.
        change("Add", "Evil|<b>x</b>`", "AWS::SSM::Parameter", "-"),
    ];
    insta::assert_snapshot!(
        "change_table_markdown",
        format!(
            "**Plan:** {} change(s)\n\n{}",
            changes.len(),
            render::change_table_markdown(&changes)
        )
    );
    insta::assert_snapshot!("change_table_text", render::change_table(&changes));
}

/// Every commit status the three dry runs above leave, as GitHub shows them: none over
/// GitHub's 140 characters, and a long one cut with an ellipsis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_status_descriptions() {
    let mut out = String::new();
    let mut longest = 0;
    let mut broken = broken_stack("a-stack-folder-with-a-rather-long-name-as-monorepos-have");
    broken.extend(passing_stack("web"));
    let cases = [
        ("pass", passing_stack("web").to_vec(), true),
        ("findings", failing_stack("admin"), false),
        ("bad input", broken, true),
    ];
    for (what, stacks, fork) in cases {
        let (t, sha, _) = dry_run(&stacks, fork).await;
        out.push_str(&format!("## {what}\n"));
        for s in t.statuses(&sha) {
            let n = s.description.chars().count();
            longest = longest.max(n);
            out.push_str(&format!(
                "{} {} ({n}): {}\n  -> {}\n",
                s.context, s.state, s.description, s.target_url
            ));
        }
    }
    // A queued deploy that a newer commit of its stack replaces says so on its commit.
    let t = TestApp::new(&[]).await;
    t.enqueue(&[job(Kind::Deploy, Some("web"), sha(3))]);
    t.enqueue(&[job(Kind::Deploy, Some("web"), sha(4))]);
    out.push_str("## superseded\n");
    for s in t.statuses(&sha(3)) {
        out.push_str(&format!(
            "{} {}: {}\n  -> {}\n",
            s.context, s.state, s.description, s.target_url
        ));
    }
    assert!(longest <= 140, "{out}");
    assert_eq!(longest, 140, "no description was cut:\n{out}");
    insta::assert_snapshot!(out);
}

/// The paths as a user passes them, from `server/` (where cargo runs the tests).
const HYBRID: &str = "../stacks/hybrid-alb";
const FAILING: &str = "tests/middle/fixtures/open-admin.yaml";

async fn checked() -> Vec<check::PathResult> {
    let t = TestApp::new(&[]).await;
    let mut results = Vec::new();
    for p in [HYBRID, FAILING] {
        results.push(check::check_path(t.policies(), Path::new(p), "us-east-1").await);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_output_as_text_json_and_sarif() {
    let results = checked().await;
    assert_eq!(check::exit_code(&results[..1]), 0, "hybrid-alb passes");
    assert_eq!(check::exit_code(&results), 1, "the open template fails");
    insta::assert_snapshot!("check_text", check::text(&results));
    insta::assert_snapshot!(
        "check_json",
        serde_json::to_string_pretty(&check::json(&results)).expect("json")
    );
    insta::assert_snapshot!(
        "check_sarif",
        serde_json::to_string_pretty(&check::sarif(&results)).expect("json")
    );
}

/// One line per row or heading, so that a changed word shows as a changed line.
pub fn lines(html: &str) -> String {
    let mut s = html.to_string();
    for end in [
        "</style>",
        "</p>",
        "</h1>",
        "</h2>",
        "</h3>",
        "</tr>",
        "</table>",
        "</dd>",
        "</li>",
        "</rect>",
        "</text>",
        "</script>",
    ] {
        s = s.replace(end, &format!("{end}\n"));
    }
    // A form's CSRF token is made from a key each process makes at start.
    let key = "name=\"csrf\" value=\"";
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(at) = rest.find(key) {
        let (head, tail) = rest.split_at(at + key.len());
        out.push_str(head);
        out.push_str("[csrf]");
        rest = &tail[tail.find('"').unwrap_or(tail.len())..];
    }
    out.push_str(rest);
    out
}

/// `text` with the hex (or decimal) word after each `key` replaced: run times differ every
/// run, and policy digests with every change to a policy.
pub fn masked_after(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let (head, tail) = rest.split_at(at + key.len());
        out.push_str(head);
        let digits = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_hexdigit())
                .len();
        out.push_str("[masked]");
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// The time pages tell ages by in snapshots: 2026-01-02T00:00:00Z, a day after the
/// fixtures' commits.
pub const NOW: i64 = 1_767_312_000_000;

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)
}

fn job(kind: Kind, stack: Option<&str>, sha: String) -> NewJob {
    NewJob {
        kind,
        repo: REPO.into(),
        stack: stack.map(str::to_string),
        sha,
        trigger: Trigger::Push,
        pr: None,
        fork: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_page_with_runs_in_every_state() {
    let t = TestApp::new(&[]).await;
    // Jobs 1-3 end as a step would end them; 4 runs; 5 is superseded by 6, which waits;
    // 7, a sync, waits for its debounce.
    let end = |j: NewJob, state: JobState| {
        t.enqueue(&[j]);
        assert_eq!(t.finish_queued(state, &json!({})).len(), 1, "{state}");
    };
    end(job(Kind::Deploy, Some("web"), sha(1)), JobState::Succeeded);
    end(job(Kind::Deploy, Some("api"), sha(1)), JobState::Failed);
    let mut pr = job(Kind::Preview, None, sha(2));
    pr.pr = Some(12);
    pr.trigger = Trigger::PullRequest;
    end(pr, JobState::Error);
    t.enqueue(&[job(Kind::Deploy, Some("api"), sha(3))]);
    assert_eq!(t.start_queued().len(), 1);
    t.enqueue(&[job(Kind::Deploy, Some("<script>db</script>"), sha(3))]);
    t.enqueue(&[job(Kind::Deploy, Some("<script>db</script>"), sha(4))]);
    let mut poll = job(Kind::Sync, None, sha(4));
    poll.trigger = Trigger::Poll;
    t.enqueue(&[poll]);
    t.fix_times(NOW);
    let page = t.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    insta::assert_snapshot!(lines(&page.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_of_a_dry_run_with_findings() {
    let (t, _, job) = dry_run(&failing_stack("admin"), false).await;
    assert_eq!(job["state"], "failed", "{job}");
    t.fix_times(NOW);
    let page = t.get("/runs/1").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = masked_after(&lines(&page.body), "&quot;micros&quot;: ");
    insta::assert_snapshot!(masked_after(&page, "&quot;digest&quot;: &quot;"));
}
