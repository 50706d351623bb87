//! The operator console through the router: the overview, a stack's page, a run's page
//! with its timeline and live events, a pull request's page, and their JSON; snapshots of
//! each page for one fixture, with the clock fixed.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::harness::*;
use crate::snapshots::{NOW, failing_stack, lines, masked_after};

fn deploy(stack: &str, sha: &str) -> NewJob {
    NewJob {
        kind: Kind::Deploy,
        repo: REPO.into(),
        stack: Some(stack.into()),
        sha: sha.into(),
        trigger: Trigger::Push,
        pr: None,
        fork: false,
    }
}

fn event(secs: u32, id: &str, ty: &str, status: &str, extra: Value) -> Value {
    let mut e = json!({
        "id": format!("e{secs}{id}"),
        "timestamp": format!("2026-01-01T12:{:02}:{:02}Z", secs / 60, secs % 60),
        "logical_id": id, "resource_type": ty, "status": status, "reason": null,
    });
    if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    json!({"event": e, "done": 0, "total": 2})
}

/// What a deploy that changed `web` records.
fn deployed_web() -> Value {
    json!({
        "template": "stacks/web/template.yaml",
        "identity": {"account": "123456789012", "region": "eu-west-1", "name": "web-prod"},
        "policy": {"verdict": "pass", "outcomes": [{"policy": "open-ingress", "digest": "d1",
            "verdict": "pass", "micros": 7, "findings": [{"policy": "open-ingress",
            "rule": "world-http", "severity": "warning", "resource": "Param",
            "path": "/Resources/Param/Properties", "message": "<b>port 80</b> is open",
            "remediation": "put it behind the ALB", "line": 7}]}]},
        "changes": [
            {"action": "Add", "logical_id": "Param", "resource_type": "AWS::SSM::Parameter", "replacement": "-"},
            {"action": "Modify", "logical_id": "Db", "resource_type": "AWS::RDS::DBInstance",
             "replacement": "True", "scope": ["Properties", "Tags"]}
        ],
        "outputs": {"Url": "https://web.example.com", "Password": "[redacted]"},
        "events": [
            {"note": "change set created: 2 change(s)"},
            event(0, "web-prod", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", json!({})),
            event(1, "Param", "AWS::SSM::Parameter", "CREATE_IN_PROGRESS", json!({})),
            event(5, "Param", "AWS::SSM::Parameter", "CREATE_COMPLETE", json!({"physical_id": "/web/param"})),
            event(2, "Db", "AWS::RDS::DBInstance", "UPDATE_IN_PROGRESS", json!({})),
            event(40, "Db", "AWS::RDS::DBInstance", "UPDATE_COMPLETE", json!({"physical_id": "web-db-1"})),
            event(42, "web-prod", "AWS::CloudFormation::Stack", "UPDATE_COMPLETE", json!({})),
        ],
    })
}

fn failed_db() -> Value {
    json!({
        "template": "stacks/db/template.yaml",
        "policy": {"verdict": "pass", "outcomes": []},
        "error": "UPDATE_ROLLBACK_COMPLETE: Db (AWS::RDS::DBInstance) UPDATE_FAILED",
        "events": [
            event(0, "db", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", json!({})),
            event(0, "Db", "AWS::RDS::DBInstance", "UPDATE_IN_PROGRESS", json!({})),
            event(30, "Db", "AWS::RDS::DBInstance", "UPDATE_FAILED",
                  json!({"reason": "<script>alert(1)</script> is too big"})),
            event(60, "db", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", json!({})),
        ],
    })
}

fn blocked() -> Value {
    json!({"template": "stacks/api/template.yaml", "policy": {"verdict": "fail", "outcomes": [
        {"policy": "open-ingress", "digest": "d1", "verdict": "fail", "micros": 3, "findings": [
            {"policy": "open-ingress", "rule": "world-ssh", "severity": "error", "resource": "Sg",
             "path": "/Resources/Sg", "message": "ssh open to the world", "remediation": "",
             "line": 12}]}]}})
}

/// Six stack folders, one in each state but drifted, and one whose name is markup; the
/// mirror fetched, the clock and times fixed. The app and its commit.
pub async fn fixture() -> (TestApp, String) {
    let t = TestApp::new(&files(&passing_stack("web"))).await;
    let sha = git(&t.origin, &["rev-parse", "HEAD"]);
    t.fetch().await;
    // 1: web deployed.
    t.enqueue(&[deploy("web", &sha)]);
    t.finish_deployed(JobState::Succeeded, &deployed_web(), false);
    // 2: api deployed, then 3: blocked by policy.
    t.enqueue(&[deploy("api", &sha)]);
    t.finish_deployed(
        JobState::Succeeded,
        &json!({"policy": {"verdict": "pass"}}),
        false,
    );
    t.enqueue(&[deploy("api", &sha)]);
    assert_eq!(t.finish_queued(JobState::Failed, &blocked()).len(), 1);
    // 4: db failed at CloudFormation, never deployed.
    t.enqueue(&[deploy("db", &sha)]);
    assert_eq!(t.finish_queued(JobState::Failed, &failed_db()).len(), 1);
    // 5: old removed.
    t.enqueue(&[deploy("old", &sha)]);
    t.finish_deployed(JobState::Succeeded, &json!({"removed": "NotFound"}), true);
    // 6: queue is deploying; 7: a name that is markup, also queued.
    t.enqueue(&[deploy("queue", &sha)]);
    t.enqueue(&[deploy("<script>x</script>", &sha)]);
    t.fix_times(NOW);
    (t, sha)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_every_stack_its_state_commit_and_last_run() {
    let (t, sha) = fixture().await;
    let page = t.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );
    let body = &page.body;
    // The counts at the top, per state.
    assert!(body.contains("<strong>6</strong> all</a>"), "{body}");
    for (n, state, label) in [
        (1, "in_sync", "in sync"),
        (2, "deploying", "deploying"),
        (1, "failed", "failed"),
        (1, "blocked_by_policy", "blocked by policy"),
        (0, "drifted", "drifted"),
        (1, "removed", "removed"),
    ] {
        let chip = format!(
            "<a href=\"/?state={state}\"><strong>{n}</strong> <span class=\"badge s-{state}\">{label}</span></a>"
        );
        assert!(body.contains(&chip), "{chip}\n{body}");
    }
    // web's row: its folder, its CloudFormation stack, the deployed commit from the mirror.
    let web = body
        .split("<tr>")
        .find(|r| r.contains("stacks/web<"))
        .expect("web's row");
    assert!(
        web.contains("href=\"/stacks/Codertocat/Hello-World/web\""),
        "{web}"
    );
    assert!(
        web.contains("web-prod") && web.contains("123456789012") && web.contains("eu-west-1"),
        "{web}"
    );
    assert!(web.contains("badge s-in_sync\">in sync<"), "{web}");
    assert!(
        web.contains(&format!(
            "<a class=\"mono\" href=\"https://github.com/{REPO}/commit/{sha}\">{}</a> initial",
            &sha[..7]
        )),
        "{web}"
    );
    assert!(web.contains("Test") && web.contains("1 day ago"), "{web}");
    assert!(web.contains("<a href=\"/runs/1\">run 1</a>"), "{web}");
    assert!(web.contains("badge v-pass"), "{web}");
    let api = body
        .split("<tr>")
        .find(|r| r.contains("stacks/api<"))
        .expect("api's row");
    assert!(
        api.contains("blocked by policy") && api.contains("run 3") && api.contains("v-fail"),
        "{api}"
    );
    // Markup in a name is text.
    assert!(!body.contains("<script>x"), "{body}");
    assert!(body.contains("&lt;script&gt;x&lt;/script&gt;"), "{body}");
    insta::assert_snapshot!("console_overview", lines(body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_filters_by_repository_state_and_text() {
    let (t, _) = fixture().await;
    let rows = |body: &str| {
        body.split("<th scope=\"row\"><a href=\"/stacks/")
            .skip(1)
            .map(|r| r.split('"').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let failed = t.get("/?state=failed").await;
    assert_eq!(rows(&failed.body), ["Codertocat/Hello-World/db"]);
    assert!(failed.body.contains("1 of 6 stacks"), "{}", failed.body);
    let search = t.get("/?q=WEB-PROD").await;
    assert_eq!(rows(&search.body), ["Codertocat/Hello-World/web"]);
    let repo = t
        .get(&format!(
            "/?repo={}&state=deploying",
            REPO.replace('/', "%2F")
        ))
        .await;
    assert_eq!(
        repo.body
            .matches("<td><span class=\"badge s-deploying\">")
            .count(),
        2,
        "{}",
        repo.body
    );
    let other = t.get("/?repo=someone%2Felse").await;
    assert!(rows(&other.body).is_empty());
    assert!(other.body.contains("No stack matches these filters."));
    // An empty filter is none.
    assert!(
        t.get("/?repo=&state=&q=")
            .await
            .body
            .contains("6 of 6 stacks")
    );

    let bad = t.get("/?state=broken").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("state: `broken`"), "{}", bad.body);
    let long = t.get(&format!("/?q={}", "x".repeat(101))).await;
    assert_eq!(
        (long.status, long.body.as_str()),
        (StatusCode::BAD_REQUEST, "q: at most 100 characters")
    );
    let api = t.get("/api/v1/stacks?state=blocked_by_policy").await;
    assert_eq!(api.status, StatusCode::OK);
    let v = api.json();
    assert_eq!(v["total"], 6);
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["rows"][0]["folder"], "api");
    assert_eq!(v["rows"][0]["state"], "blocked_by_policy");
    assert_eq!(v["rows"][0]["drift"], Value::Null);
    assert_eq!(
        t.get("/api/v1/stacks?state=nope").await.json(),
        json!({"error": "state: `nope` is none of in_sync, deploying, failed, blocked_by_policy, drifted, removed"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_page_shows_outputs_resources_findings_and_pages_of_runs() {
    let (t, sha) = fixture().await;
    let page = t.get("/stacks/Codertocat/Hello-World/web").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains("<code>https://web.example.com</code>"),
        "{body}"
    );
    assert!(
        body.contains("title=\"not a public output\">[redacted]</span>"),
        "{body}"
    );
    assert!(
        body.contains("<td class=\"mono\">/web/param</td>"),
        "{body}"
    );
    assert!(body.contains("web-db-1"), "{body}");
    // The stack itself is not one of its resources.
    assert!(
        !body.contains("<th scope=\"row\"><code>web-prod</code>"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "href=\"https://github.com/{REPO}/blob/{sha}/stacks/web/template.yaml#L7\">stacks/web/template.yaml:7</a>"
        )),
        "{body}"
    );
    assert!(
        body.contains("&lt;b&gt;port 80&lt;/b&gt; is open"),
        "{body}"
    );
    // The local user is an operator: both actions, each a form with its CSRF token.
    for action in ["/web/redeploy\"", "/web/drift\""] {
        let form = body
            .split("<form method=\"post\"")
            .find(|f| f.contains(action))
            .unwrap_or_else(|| panic!("no form for {action}: {body}"));
        assert!(form.contains("name=\"csrf\" value=\""), "{form}");
    }
    insta::assert_snapshot!("console_stack_page", lines(body));

    // Thirty more runs: the history comes in pages.
    for _ in 0..30 {
        t.enqueue(&[deploy("web", &sha)]);
        t.finish_queued(JobState::Succeeded, &json!({}));
    }
    let first = t.get("/stacks/Codertocat/Hello-World/web").await.body;
    assert_eq!(
        first.matches("<th scope=\"row\"><a href=\"/runs/").count(),
        25
    );
    assert!(first.contains("href=\"?page=1\" rel=\"next\""), "{first}");
    assert!(!first.contains("rel=\"prev\""));
    let second = t
        .get("/stacks/Codertocat/Hello-World/web?page=1")
        .await
        .body;
    assert_eq!(
        second.matches("<th scope=\"row\"><a href=\"/runs/").count(),
        6
    );
    assert!(second.contains("<a href=\"/runs/1\">1</a>"), "{second}");
    assert!(second.contains("href=\"?page=0\" rel=\"prev\"") && !second.contains("rel=\"next\""));
    // The newest run had no outputs: they still come from run 1.
    assert!(second.contains("From <a href=\"/runs/1\">run 1</a>, the latest deploy that changed"));

    let json = t
        .get("/api/v1/stacks/Codertocat/Hello-World/web")
        .await
        .json();
    assert_eq!(json["folder"], "web");
    assert_eq!(
        json["outputs"][0],
        json!({"name": "Url", "value": "https://web.example.com", "redacted": false})
    );
    assert_eq!(json["resources"][0]["physical_id"], "/web/param");
    let missing = t.get("/stacks/Codertocat/Hello-World/nothing").await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (
            StatusCode::NOT_FOUND,
            "no stack nothing in Codertocat/Hello-World"
        )
    );
    assert_eq!(
        t.get("/stacks/Codertocat/Hello-World/web?page=x")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // A folder holding `/` routes too, to its own (empty) page.
    assert_eq!(
        t.get("/stacks/Codertocat/Hello-World/a/b").await.body,
        "no stack a/b in Codertocat/Hello-World"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_shows_changes_findings_outputs_timeline_and_log() {
    let (t, sha) = fixture().await;
    let page = t.get("/runs/1").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("<td>Modify</td><th scope=\"row\"><code>Db</code></th><td><code>AWS::RDS::DBInstance</code></td><td>True</td><td>Properties, Tags</td>"), "{body}");
    assert!(
        body.contains(&format!("blob/{sha}/stacks/web/template.yaml#L7")),
        "{body}"
    );
    // One bar per resource, the stack's too, all complete; ticks every 5 s over 42 s.
    assert_eq!(
        body.matches("<rect class=\"bar complete\"").count(),
        3,
        "{body}"
    );
    assert!(
        body.contains(">40s</text>") && !body.contains(">45s</text>"),
        "{body}"
    );
    assert!(
        body.contains(
            "<title id=\"timeline-title\">Timeline: 3 resources over 42 s, 0 failed</title>"
        ),
        "{body}"
    );
    assert!(
        body.contains("12:00:05 CREATE_COMPLETE AWS::SSM::Parameter Param"),
        "{body}"
    );
    assert!(
        !body.contains("http-equiv=\"refresh\""),
        "a finished run does not reload"
    );
    insta::assert_snapshot!("console_run_page", lines(body));

    // The failed deploy: a red bar, the reason escaped.
    let failed = t.get("/runs/4").await.body;
    assert_eq!(
        failed.matches("<rect class=\"bar failed\"").count(),
        1,
        "{failed}"
    );
    assert!(failed.contains("class=\"bar rolled_back\""), "{failed}");
    assert!(failed.contains("&lt;script&gt;alert(1)"), "{failed}");
    assert!(!failed.contains("<script>alert"), "{failed}");

    let json = t.get("/api/v1/runs/1").await.json();
    assert_eq!(
        json["parts"][0]["changes"][1]["scope"],
        json!(["Properties", "Tags"])
    );
    assert_eq!(json["timeline"]["bars"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["outputs"][1]["redacted"], true);
    assert_eq!(t.get("/api/v1/jobs/1").await.json()["id"], 1);
    assert_eq!(
        t.get("/api/v1/runs/99").await.json(),
        json!({"error": "no job 99"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_refreshes_and_its_events_end_when_it_does() {
    let (t, _) = fixture().await;
    // Run 6 waits in the queue: its page follows it.
    let page = t.get("/runs/6").await.body;
    assert!(
        page.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"),
        "{page}"
    );
    assert!(page.contains("data-events=\"/runs/6/events\""), "{page}");
    assert!(page.contains("new EventSource("), "{page}");

    // Once it has ended, its stream says so in one event and closes.
    t.finish_queued(JobState::Succeeded, &json!({}));
    let r = t.get("/runs/6/events").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(r.body.starts_with("event: progress\ndata: {"), "{}", r.body);
    assert!(
        r.body.contains("\"live\":false") && r.body.contains("\"state\":\"succeeded\""),
        "{}",
        r.body
    );
    assert_eq!(r.body.matches("event: progress").count(), 1, "{}", r.body);
    assert!(!t.get("/runs/6").await.body.contains("EventSource"));

    assert_eq!(t.get("/runs/99/events").await.status, StatusCode::NOT_FOUND);
    // Every permit taken: the next stream is refused, not queued.
    let held = t
        .app
        .http
        .live_streams
        .clone()
        .try_acquire_many_owned(64)
        .expect("the permits");
    let full = t.get("/runs/6/events").await;
    assert_eq!(
        full.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        full.body
    );
    drop(held);
    assert_eq!(t.get("/runs/6/events").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_sends_progress_while_the_run_goes_on() {
    let (t, _) = fixture().await;
    let resp = {
        use tower::ServiceExt;
        t.app
            .router()
            .oneshot(
                Request::get("/runs/6/events")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible")
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("a first event")
        .expect("data")
        .expect("bytes");
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first.contains("\"state\":\"queued\"") && first.contains("\"live\":true"),
        "{first}"
    );
    // It starts running, then ends: two more events, then the end of the stream.
    let started = t.start_queued();
    assert!(started.contains(&JobId(6)), "{started:?}");
    let mut rest = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.expect("bytes")));
            if rest.contains("\"state\":\"running\"") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the running event");
    assert!(
        rest.contains("\"phase\":null") || rest.contains("\"phase\""),
        "{rest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_page_shows_each_previews_findings() {
    let (t, sha, job) = dry_run(&failing_stack("admin"), false).await;
    assert_eq!(job["state"], "failed", "{job}");
    t.fix_times(NOW);
    let page = t.get(&format!("/repos/{REPO}/pulls/7")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains("Stack admin <span class=\"badge v-fail\">fail</span>"),
        "{body}"
    );
    assert!(
        body.contains(&format!("blob/{sha}/stacks/admin/template.yaml#L")),
        "{body}"
    );
    assert!(body.contains("badge sev-error"), "{body}");
    insta::assert_snapshot!("console_pull_page", masked_after(&lines(body), "blob/"));
    let run = t.get("/runs/1").await.body;
    assert!(
        run.contains(&format!("href=\"/repos/{REPO}/pulls/7\"")),
        "{run}"
    );
    let none = t.get(&format!("/repos/{REPO}/pulls/8")).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

/// A real deploy on the AWS emulator: its run page draws the stack's events (the emulator
/// sends the stack's own only, so one bar), outputs as recorded, and the stack is in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_on_the_emulator_shows_its_timeline_and_outputs() {
    let folder = format!("console{}", std::process::id());
    let stack = [
        (
            format!("stacks/{folder}/deployment.yaml"),
            format!("template-file-path: template.yaml\nstack-name: {folder}\n"),
        ),
        (
            format!("stacks/{folder}/template.yaml"),
            "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\nOutputs:\n  TopicArn:\n    Value: !Ref Topic\n".to_string(),
        ),
    ];
    let t = TestApp::on_emulator(&files(&stack), "").await;
    let sha = git(&t.origin, &["rev-parse", "HEAD"]);
    t.enqueue(&[deploy(&folder, &sha)]);
    t.run_queued().await;
    let job = t.job(1).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(
        job["detail"].get("progress").is_none(),
        "the end replaces the progress"
    );
    let run = t.get("/runs/1").await.body;
    assert!(
        run.contains("<title id=\"timeline-title\">Timeline: "),
        "{run}"
    );
    assert!(run.contains("<rect class=\"bar complete\""), "{run}");
    assert!(!run.contains("class=\"bar failed\""), "{run}");
    assert!(
        run.contains(&format!(
            "CREATE_COMPLETE AWS::CloudFormation::Stack {folder}\n"
        )),
        "{run}"
    );
    // Not a public output: its name only.
    assert!(run.contains("<code>TopicArn</code></th><td><span class=\"muted\" title=\"not a public output\">[redacted]"), "{run}");
    let stack = t.get(&format!("/stacks/{REPO}/{folder}")).await.body;
    assert!(stack.contains("<code>TopicArn</code>"), "{stack}");
    assert!(stack.contains("No resource events recorded."), "{stack}");
    assert!(stack.contains("badge s-in_sync"), "{stack}");
    let overview = t.get("/").await.body;
    assert!(
        overview.contains(&format!("stacks/{folder}<")),
        "{overview}"
    );
}
