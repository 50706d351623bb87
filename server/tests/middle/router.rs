//! The HTTP surface, request by request, as GitHub, an operator and a browser meet it.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::harness::*;

/// GitHub's branch-push example (refs/heads/master of Codertocat/Hello-World).
fn push_example() -> Value {
    examples("push")
        .into_iter()
        .find(|e| e["ref"] == "refs/heads/master")
        .expect("a branch push example")
}

/// An example payload of `event` that names the configured repository.
fn naming_repo(event: &str) -> Value {
    let mut p = examples(event).remove(0);
    p["repository"]["full_name"] = json!(REPO);
    p
}

async fn app() -> TestApp {
    TestApp::new(&files(&passing_stack("web"))).await
}

/// While the state database is away a delivery is refused with 503 and Retry-After, never
/// accepted without its row; once it is back, GitHub's redelivery is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_while_postgres_is_down_gets_503_and_its_redelivery_is_recorded() {
    let db = Cluster::start("STACKGATE_TEST_PG_HTTP_OUTAGE_PORT", "5495");
    let t = TestApp::with_state(&files(&passing_stack("web")), Some(&db.url())).await;
    let mut push = push_example();
    let r = t.deliver("push", "d-up-1", &push).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let first = r.json()["jobs"][0].as_i64().expect("a job id");

    db.run("pause");
    push["after"] = json!("0000000000000000000000000000000000000002");
    let r = t.deliver("push", "d-down-2", &push).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.headers[header::RETRY_AFTER], "10");
    assert_eq!(r.json()["result"], "error");
    assert!(r.body.contains("redeliver"), "{}", r.body);

    db.run("resume");
    let r = t.deliver("push", "d-down-2", &push).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "the redelivery is new: {}",
        r.body
    );
    let second = r.json()["jobs"][0].as_i64().expect("a job id");
    assert!(second > first);
    let r = t.deliver("push", "d-up-1", &push_example()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "kept across the outage: {}",
        r.body
    );
    assert_eq!(r.json()["result"], "duplicate");
    assert_eq!(t.job(first).await["state"], "superseded");
}

#[tokio::test]
async fn a_signed_push_is_accepted_with_its_job() {
    let t = app().await;
    let push = push_example();
    let r = t.deliver("push", "d-push-1", &push).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let body = r.json();
    assert_eq!(body["result"], "accepted");
    let ids = body["jobs"].as_array().expect("jobs");
    assert_eq!(ids.len(), 1, "{body}");
    let id = ids[0].as_i64().expect("a job id");
    assert_eq!(body["urls"], json!([format!("{PUBLIC_URL}/runs/{id}")]));

    let job = t.job(id).await;
    assert_eq!(job["kind"], "sync");
    assert_eq!(job["repo"], REPO);
    assert_eq!(job["sha"], push["after"]);
    assert_eq!(job["trigger"], "push");
    assert_eq!(job["state"], "queued");
    // Its commit already says so on GitHub.
    let statuses = t.statuses(push["after"].as_str().expect("after"));
    let said: Vec<_> = statuses
        .iter()
        .map(|s| (s.context.as_str(), s.state.as_str(), s.description.as_str()))
        .collect();
    assert_eq!(said, [("stackgate/policy", "pending", "queued")]);
}

#[tokio::test]
async fn a_pull_request_queues_a_preview_and_a_fork_is_marked() {
    let t = app().await;
    let sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let r = t
        .deliver("pull_request", "d-pr-1", &pr_opened(2, sha, false))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let own = t.job(r.json()["jobs"][0].as_i64().expect("id")).await;
    assert_eq!(
        (own["kind"].as_str(), own["pr"].as_u64()),
        (Some("preview"), Some(2))
    );
    assert_eq!(own["fork"], false);

    let r = t
        .deliver("pull_request", "d-pr-2", &pr_opened(3, sha, true))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let fork = t.job(r.json()["jobs"][0].as_i64().expect("id")).await;
    assert_eq!(fork["fork"], true);
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_and_queues_nothing() {
    let t = app().await;
    let body = serde_json::to_vec(&push_example()).expect("json");
    let missing = t.webhook("push", "d-1", &body, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json()["result"], "unsigned");

    let wrong = t
        .webhook("push", "d-2", &body, Some("not-the-secret"))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["result"], "bad_signature");

    // Signed, then changed on the way: the signature covers the raw bytes.
    let mut req = Request::post("/webhooks/github")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-3")
        .header("x-hub-signature-256", signature(HOOK_SECRET, &body));
    req = req.header("content-type", "application/json");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = t
        .send(req.body(Body::from(tampered)).expect("request"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    assert_eq!(t.get("/api/v1/jobs/1").await.status, StatusCode::NOT_FOUND);
    assert!(!t.get("/").await.body.contains("/runs/1"));
}

#[tokio::test]
async fn the_same_delivery_twice_makes_one_job() {
    let t = app().await;
    let push = push_example();
    let first = t.deliver("push", "d-same", &push).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.json()["jobs"], json!([1]));
    let again = t.deliver("push", "d-same", &push).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let body = again.json();
    assert_eq!(body["result"], "duplicate");
    assert_eq!(body["message"], "delivery d-same was already received");
    assert_eq!(t.get("/api/v1/jobs/2").await.status, StatusCode::NOT_FOUND);
    assert_eq!(t.get("/").await.body.matches("href=\"/runs/").count(), 1);
}

#[tokio::test]
async fn a_ping_is_answered() {
    let t = app().await;
    let r = t.deliver("ping", "d-ping", &naming_repo("ping")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json(), json!({"result": "ping", "message": "pong"}));
}

#[tokio::test]
async fn events_that_need_nothing_are_ignored() {
    let t = app().await;
    let r = t
        .deliver("issues", "d-issues", &naming_repo("issues"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"result": "ignored", "message": "event `issues` is not handled"})
    );

    let mut tag = examples("push").remove(0);
    assert_eq!(tag["ref"], "refs/tags/simple-tag");
    tag["repository"]["full_name"] = json!(REPO);
    let r = t.deliver("push", "d-tag", &tag).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["message"], "not a push to master");

    let mut closed = pr_opened(2, "ec26c3e57ca3a959ca5aad62de7213c562f8c821", false);
    closed["action"] = json!("closed");
    let r = t.deliver("pull_request", "d-closed", &closed).await;
    assert_eq!(r.json()["message"], "pull_request closed needs no dry run");
    assert_eq!(t.get("/api/v1/jobs/1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_repository_that_is_not_configured_is_forbidden() {
    let t = app().await;
    let mut p = push_example();
    p["repository"]["full_name"] = json!("someone/else");
    let r = t.deliver("push", "d-other", &p).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["result"], "unknown_repo");
}

#[tokio::test]
async fn a_body_over_githubs_25_mb_is_too_large() {
    let t = app().await;
    let body = vec![b' '; 25 * 1024 * 1024 + 1];
    let r = t.webhook("push", "d-big", &body, Some(HOOK_SECRET)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

#[tokio::test]
async fn a_large_push_under_the_limit_is_accepted() {
    // Over the other routes' 1 MiB, and checked on the blocking pool (over 64 KiB).
    let t = app().await;
    let mut push = push_example();
    push["padding"] = json!("x".repeat(2 * 1024 * 1024));
    let r = t.deliver("push", "d-large", &push).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.json()["jobs"], json!([1]));
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_that_names_the_problem() {
    let t = app().await;
    let r = t
        .webhook(
            "push",
            "d-bad",
            br#"{"ref": "refs/heads/master", "#,
            Some(HOOK_SECRET),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let body = r.json();
    assert_eq!(body["result"], "malformed");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with("malformed push payload: ") && message.contains("line 1 column"),
        "{message}"
    );

    // Well-formed JSON, but not a push: the missing field is named.
    let mut p = push_example();
    p.as_object_mut().expect("object").remove("after");
    let r = t.deliver("push", "d-no-after", &p).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let message = r.json()["message"].as_str().expect("message").to_string();
    assert!(message.contains("missing field `after`"), "{message}");

    // Signed and well-formed, but with no delivery id.
    let body = serde_json::to_vec(&push_example()).expect("json");
    let req = Request::post("/webhooks/github")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature(HOOK_SECRET, &body))
        .body(Body::from(body))
        .expect("request");
    let r = t.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "missing X-GitHub-Delivery");
}

fn redeploy(token: Option<&str>, stack: &str) -> Request<Body> {
    redeploy_with(token, stack, Vec::new())
}

fn redeploy_with(token: Option<&str>, stack: &str, body: Vec<u8>) -> Request<Body> {
    let mut req = Request::post(format!("/api/v1/stacks/{REPO}/{stack}/redeploy"));
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn a_manual_redeploy_needs_a_good_token() {
    let t = app().await;
    let head = git(&t.origin, &["rev-parse", "HEAD"]);

    let none = t.send(redeploy(None, "web")).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.body);
    let wrong = t.send(redeploy(Some("not-the-token"), "web")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(
        wrong.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("Bearer"))
    );
    assert_eq!(t.get("/api/v1/jobs/1").await.status, StatusCode::NOT_FOUND);

    let good = t.send(redeploy(Some(API_TOKEN), "web")).await;
    assert_eq!(good.status, StatusCode::ACCEPTED, "{}", good.body);
    let body = good.json();
    let id = body["job"].as_i64().expect("job id");
    assert_eq!(body["sha"], head.as_str());
    assert_eq!(body["url"], format!("{PUBLIC_URL}/runs/{id}"));
    assert_eq!(body["api"], format!("/api/v1/jobs/{id}"));
    let job = t.job(id).await;
    assert_eq!(job["kind"], "deploy");
    assert_eq!(job["stack"], "web");
    assert_eq!(job["trigger"], "manual");
    assert_eq!(job["state"], "queued");

    let unknown = t.send(redeploy(Some(API_TOKEN), "nope")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert!(
        unknown.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unknown stack `nope`")),
        "{}",
        unknown.body
    );
}

#[tokio::test]
async fn a_redeploy_body_is_checked() {
    let t = app().await;
    let head = git(&t.origin, &["rev-parse", "HEAD"]);
    let pinned = json!({"sha": head}).to_string().into_bytes();
    let r = t.send(redeploy_with(Some(API_TOKEN), "web", pinned)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.json()["sha"], head.as_str());

    let elsewhere = json!({"sha": "1".repeat(40)}).to_string().into_bytes();
    let r = t
        .send(redeploy_with(Some(API_TOKEN), "web", elsewhere))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        r.json()["error"],
        format!("{} is not a commit on master", "1".repeat(40))
    );

    let unknown = br#"{"ref": "main"}"#.to_vec();
    let r = t.send(redeploy_with(Some(API_TOKEN), "web", unknown)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let error = r.json()["error"].as_str().expect("error").to_string();
    assert!(error.contains("unknown field `ref`"), "{error}");

    // The API's bodies are small: 1 MiB at most (only webhooks may be larger).
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = t.send(redeploy_with(Some(API_TOKEN), "web", big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = app().await;
    let h = t.get("/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (StatusCode::OK, "ok\n"));
    let r = t.get("/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ready\n"));

    t.deliver("push", "d-m1", &push_example()).await;
    t.deliver("push", "d-m1", &push_example()).await;
    let m = t.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.headers[header::CONTENT_TYPE], "text/plain; version=0.0.4");
    for line in [
        "stackgate_deliveries_total{result=\"accepted\"} 1",
        "stackgate_deliveries_total{result=\"duplicate\"} 1",
        "stackgate_queue_depth{state=\"queued\"} 1",
        "stackgate_queue_depth{state=\"running\"} 0",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            m.body
        );
    }
}

#[tokio::test]
async fn job_json_and_pages_of_unknown_ids() {
    let t = app().await;
    let r = t.get("/api/v1/jobs/99").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"error": "no job 99"}));
    let r = t.get("/runs/99").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "no job 99")
    );
    assert_eq!(t.get("/runs/abc").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.get("/nowhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_pages_list_and_show_runs() {
    let t = app().await;
    let push = push_example();
    t.deliver("push", "d-page", &push).await;
    let index = t.get("/").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(
        index.headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html")),
    );
    let after = push["after"].as_str().expect("after");
    assert!(
        index.body.contains("<a href=\"/runs/1\">1</a>"),
        "{}",
        index.body
    );
    assert!(index.body.contains(&after[..7]), "{}", index.body);

    let run = t.get("/runs/1").await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(
        run.body
            .contains("Run 1: <span class=\"badge j-queued\">queued</span>"),
        "{}",
        run.body
    );
    assert!(run.body.contains(after), "{}", run.body);
}

/// A stack whose `NoEcho` parameter opens SSH to the world: the finding quotes the value.
fn no_echo_stack() -> Vec<(String, String)> {
    vec![
        (
            "stacks/admin/deployment.yaml".into(),
            "template-file-path: template.yaml\nstack-name: admin\nparameters:\n  AdminCidr: 0.0.0.0/0\n".into(),
        ),
        (
            "stacks/admin/template.yaml".into(),
            "Parameters:\n  AdminCidr:\n    Type: String\n    NoEcho: true\nResources:\n  AdminSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: ssh\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: !Ref AdminCidr\n".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_page_the_job_api_or_the_comment() {
    let (t, sha, job) = dry_run(&no_echo_stack(), true).await;
    assert_eq!(job["state"], "failed", "{job}");
    // The finding is there, with the value hidden (the comment escapes punctuation).
    let comment = job["detail"]["comment"].as_str().expect("the comment");
    let plain = comment.replace('\\', "");
    assert!(plain.contains("[redacted]"), "{comment}");
    assert!(!plain.contains("0.0.0.0/0"), "{comment}");

    let pages = [
        t.get("/").await.body,
        t.get("/runs/1").await.body,
        t.get("/api/v1/jobs/1").await.body,
        t.get("/metrics").await.body,
    ];
    for page in &pages {
        for secret in ["0.0.0.0/0", HOOK_SECRET, API_TOKEN] {
            assert!(!page.contains(secret), "{secret} shown in\n{page}");
        }
    }
    for s in t.statuses(&sha) {
        assert!(!s.description.contains("0.0.0.0/0"), "{}", s.description);
    }
}
