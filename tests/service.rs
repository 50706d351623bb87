//! `stackgate serve` end to end: GitHub's webhook examples signed and sent to the real
//! server, a real git repository, the AWS emulator, and a GitHub stand-in that validates
//! every request against GitHub's OpenAPI description.

mod support;

use std::time::Duration;

use serde_json::json;
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn stack_exists(name: &str) -> Option<aws_sdk_cloudformation::types::Stack> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cfn().describe_stacks().stack_name(name).send())
        .ok()
        .and_then(|o| o.stacks().first().cloned())
        .filter(|s| s.stack_status().map(|st| st.as_str()) != Some("DELETE_COMPLETE"))
}

fn final_state(statuses: &[(String, String, String)], context: &str) -> Option<(String, String)> {
    statuses
        .iter()
        .rev()
        .find(|(c, s, _)| c == context && s != "pending")
        .map(|(_, s, d)| (s.clone(), d.clone()))
}

#[test]
fn push_deploys_a_violation_is_blocked_and_remove_removes() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-hybrid");
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    let sha1 = repo.commit("hybrid stack");
    let server = Server::start(&repo, &gh, "");

    let (code, body) = server.push(ZERO, &sha1, &["stacks/hybrid-alb/template.yaml"]);
    assert_eq!(code, 202, "{body}");
    let done = wait_for(60, "the hybrid stack's final status", || {
        final_state(&gh.statuses(&sha1), "stackgate/hybrid-alb")
    });
    assert_eq!(done.0, "success", "{done:?}\n{}", server.logs());
    let statuses = gh.statuses(&sha1);
    let policy: Vec<_> = statuses
        .iter()
        .filter(|s| s.0 == "stackgate/policy")
        .map(|s| s.1.as_str())
        .collect();
    assert_eq!(policy.first(), Some(&"pending"), "{statuses:?}");
    assert_eq!(policy.last(), Some(&"success"), "{statuses:?}");
    let stack: Vec<_> = statuses
        .iter()
        .filter(|s| s.0 == "stackgate/hybrid-alb")
        .map(|s| s.1.as_str())
        .collect();
    assert_eq!(stack.first(), Some(&"pending"));
    assert!(stack.iter().filter(|s| **s == "pending").count() >= 1);
    let deployed = stack_exists(&name).expect("the stack exists after the push");
    let tag = |k: &str| {
        deployed
            .tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(tag("stackgate:sha").as_deref(), Some(sha1.as_str()));

    // A second push that opens ssh to the world: blocked, and the stack is untouched.
    let tpl = repo.dir.join("stacks/hybrid-alb/template.yaml");
    let text = std::fs::read_to_string(&tpl).unwrap();
    let opened = text.replacen(
        "          CidrIp: 0.0.0.0/0\n",
        "          CidrIp: 0.0.0.0/0\n        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: 0.0.0.0/0\n",
        1,
    );
    assert_ne!(opened, text);
    std::fs::write(&tpl, opened).unwrap();
    let sha2 = repo.commit("open ssh");
    let (code, _) = server.push(&sha1, &sha2, &["stacks/hybrid-alb/template.yaml"]);
    assert_eq!(code, 202);
    let verdict = wait_for(60, "the policy verdict", || {
        final_state(&gh.statuses(&sha2), "stackgate/policy")
    });
    assert_eq!(verdict.0, "failure", "{verdict:?}");
    assert!(verdict.1.contains("hybrid-alb"), "{verdict:?}");
    let blocked = wait_for(30, "the blocked stack status", || {
        final_state(&gh.statuses(&sha2), "stackgate/hybrid-alb")
    });
    assert_eq!(blocked.0, "failure");
    assert!(blocked.1.starts_with("blocked by policy"), "{blocked:?}");
    std::thread::sleep(Duration::from_millis(500));
    let still = stack_exists(&name).unwrap();
    let tag = still
        .tags()
        .iter()
        .find(|t| t.key() == Some("stackgate:sha"))
        .and_then(|t| t.value())
        .unwrap_or("");
    assert_eq!(tag, sha1, "the blocked commit reached AWS");

    // Fix the template and mark the stack removed: it is removed.
    std::fs::write(&tpl, text).unwrap();
    let dep = repo.dir.join("stacks/hybrid-alb/deployment.yaml");
    let d = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, format!("{d}remove: true\n")).unwrap();
    let sha3 = repo.commit("remove the stack");
    let (code, _) = server.push(&sha2, &sha3, &["stacks/hybrid-alb/deployment.yaml"]);
    assert_eq!(code, 202);
    let removed = wait_for(60, "the removal", || {
        final_state(&gh.statuses(&sha3), "stackgate/hybrid-alb")
    });
    assert_eq!(
        removed,
        ("success".to_string(), "removed".to_string()),
        "{}",
        server.logs()
    );
    assert!(stack_exists(&name).is_none(), "the stack still exists");

    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

#[test]
fn a_pull_request_gets_a_dry_run_and_one_comment() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-pr");
    param_stack(&repo, "app", &name, "one");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    param_stack(&repo, "app", &name, "two");
    let head1 = repo.commit("change the value");
    let server = Server::start(&repo, &gh, "");

    let (code, body) = server.webhook(
        "pull_request",
        &delivery_id(),
        &pr_payload("opened", 7, &head1, "feature", false),
        Some(HOOK_SECRET),
    );
    assert_eq!(code, 202, "{body}");
    let plan = wait_for(60, "the plan status", || {
        final_state(&gh.statuses(&head1), "stackgate/plan/app")
    });
    assert_eq!(plan.0, "success", "{plan:?}\n{}", server.logs());
    assert_eq!(
        final_state(&gh.statuses(&head1), "stackgate/policy").map(|s| s.0),
        Some("success".into())
    );
    // Nothing deployed, no review stack or change set left behind.
    assert!(stack_exists(&name).is_none(), "a dry run left a stack");
    let comments = |gh: &StandIn| -> Vec<serde_json::Value> {
        gh.requests()
            .into_iter()
            .filter(|r| {
                r["status"].as_u64().is_some_and(|s| s < 300)
                    && (r["operation"] == "issues/create-comment"
                        || r["operation"] == "issues/update-comment")
            })
            .collect()
    };
    let first = comments(&gh);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["operation"], "issues/create-comment");
    let text = first[0]["body"]["body"].as_str().unwrap();
    assert!(
        text.contains("| Add | `Param` | `AWS::SSM::Parameter` |"),
        "{text}"
    );

    // A new push to the branch updates the same comment.
    param_stack(&repo, "app", &name, "three");
    let head2 = repo.commit("again");
    let (code, _) = server.webhook(
        "pull_request",
        &delivery_id(),
        &pr_payload("synchronize", 7, &head2, "feature", false),
        Some(HOOK_SECRET),
    );
    assert_eq!(code, 202);
    wait_for(60, "the second plan", || {
        final_state(&gh.statuses(&head2), "stackgate/plan/app")
    });
    let all = wait_for(10, "the comment update", || {
        let c = comments(&gh);
        (c.len() == 2).then_some(c)
    });
    assert_eq!(
        all[1]["operation"],
        "issues/update-comment",
        "{}",
        server.logs()
    );
    assert!(
        all[1]["body"]["body"]
            .as_str()
            .unwrap()
            .contains(&head2[..7])
    );
    assert!(stack_exists(&name).is_none());

    // From a fork: the policy only, no AWS calls, no plan status.
    let head3 = head2.clone();
    let (code, _) = server.webhook(
        "pull_request",
        &delivery_id(),
        &pr_payload("reopened", 8, &head3, "feature", true),
        Some(HOOK_SECRET),
    );
    assert_eq!(code, 202);
    let c = wait_for(60, "the fork's comment", || {
        let c = comments(&gh);
        (c.len() == 3).then_some(c)
    });
    assert!(
        c[2]["body"]["body"]
            .as_str()
            .unwrap()
            .contains("skipped for a pull request from a fork")
    );
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

#[test]
fn a_duplicate_delivery_deploys_once_and_quick_pushes_supersede() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-dup");
    // The hybrid stack: its deploy outlasts three quick webhooks, as real deploys do.
    repo.add_stack_copy("app", &root().join("stacks/hybrid-alb"), &name);
    let sha0 = repo.commit("v0");
    let server = Server::start(&repo, &gh, "");

    let body = push_payload(ZERO, &sha0, &["stacks/app/template.yaml"], false);
    let id = delivery_id();
    assert_eq!(server.webhook("push", &id, &body, Some(HOOK_SECRET)).0, 202);
    let (code, reply) = server.webhook("push", &id, &body, Some(HOOK_SECRET));
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["result"], "duplicate");
    wait_for(60, "the first deploy", || {
        final_state(&gh.statuses(&sha0), "stackgate/app")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let successes = gh
        .statuses(&sha0)
        .iter()
        .filter(|s| s.0 == "stackgate/app" && s.1 == "success")
        .count();
    assert_eq!(successes, 1, "{:?}", gh.statuses(&sha0));

    // Three quick pushes: the middle one is superseded, at most two deploys run.
    let mut shas = Vec::new();
    for v in ["t3.small", "t3a.micro", "t3a.small"] {
        let dep = repo.dir.join("stacks/app/deployment.yaml");
        let text = std::fs::read_to_string(&dep).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("InstanceType:"))
            .unwrap()
            .to_string();
        std::fs::write(&dep, text.replace(&line, &format!("  InstanceType: {v}"))).unwrap();
        shas.push(repo.commit(v));
    }
    // Sent together, in order, each a few milliseconds after the last: quicker than a deploy.
    let bodies: Vec<Vec<u8>> = shas
        .iter()
        .enumerate()
        .map(|(i, sha)| {
            let before = if i == 0 { &sha0 } else { &shas[i - 1] };
            push_payload(before, sha, &["stacks/app/deployment.yaml"], false)
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let server = &server;
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(5 * i as u64));
                    server
                        .webhook("push", &delivery_id(), body, Some(HOOK_SECRET))
                        .0
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 202);
        }
    });
    let last = wait_for(60, "the last push's deploy", || {
        final_state(&gh.statuses(&shas[2]), "stackgate/app")
    });
    assert_eq!(last.0, "success", "{last:?}");
    std::thread::sleep(Duration::from_millis(1000));
    let deployed: Vec<&String> = shas
        .iter()
        .filter(|s| {
            gh.statuses(s)
                .iter()
                .any(|st| st.0 == "stackgate/app" && st.1 == "success")
        })
        .collect();
    assert!(deployed.len() <= 2, "{} deploys ran", deployed.len());
    let middle = gh.statuses(&shas[1]);
    assert!(
        middle
            .iter()
            .any(|s| s.1 == "error" && s.2.contains("superseded")),
        "{middle:?}"
    );
    // The last commit's content is what runs.
    let p = stack_exists(&name).expect("stack");
    let it = p
        .parameters()
        .iter()
        .find(|x| x.parameter_key() == Some("InstanceType"))
        .and_then(|x| x.parameter_value());
    assert_eq!(it, Some("t3a.small"));
    server.assert_no_secret_in_logs();
}

#[test]
fn bad_webhooks_are_refused_and_enqueue_nothing() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    param_stack(&repo, "app", &unique("gitops-bad"), "x");
    let sha = repo.commit("x");
    let server = Server::start(&repo, &gh, "");
    let body = push_payload(ZERO, &sha, &["stacks/app/template.yaml"], false);

    assert_eq!(
        server.webhook("push", &delivery_id(), &body, None).0,
        401,
        "unsigned"
    );
    assert_eq!(
        server
            .webhook("push", &delivery_id(), &body, Some("wrong secret"))
            .0,
        401,
        "wrong secret"
    );
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] = b' ';
    let sig = stackgate::intake::signature::sign(HOOK_SECRET.as_bytes(), &body);
    for header in [
        sig.replace("sha256=", "sha1="),
        "sha256=nothex".into(),
        String::new(),
        sig.clone(),
    ] {
        let headers = vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-GitHub-Delivery", delivery_id()),
            ("X-Hub-Signature-256", header.clone()),
        ];
        let (code, _) = http(
            "POST",
            &format!("{}/webhooks/github", server.url),
            &headers,
            Some(&tampered),
        );
        assert_eq!(code, 401, "signature `{header}` on a tampered body");
    }
    let big = vec![b'x'; 26 * 1024 * 1024];
    assert_eq!(
        server
            .webhook("push", &delivery_id(), &big, Some(HOOK_SECRET))
            .0,
        413,
        "oversize"
    );
    let (code, reply) = server.webhook("push", &delivery_id(), b"{\"ref\": ", Some(HOOK_SECRET));
    assert_eq!(code, 400, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("malformed push payload"),
        "{reply}"
    );
    // Signed with the right secret, but for a repository that is not configured.
    let mut foreign: serde_json::Value = serde_json::from_slice(&body).unwrap();
    foreign["repository"]["full_name"] = json!("someone/else");
    let foreign = serde_json::to_vec(&foreign).unwrap();
    let (code, reply) = server.webhook("push", &delivery_id(), &foreign, Some(HOOK_SECRET));
    assert_eq!(code, 403, "{reply}");
    // A ping is answered; an event stackgate does not handle is accepted and ignored.
    assert_eq!(
        server
            .webhook(
                "ping",
                &delivery_id(),
                b"{\"zen\":\"x\"}",
                Some(HOOK_SECRET)
            )
            .0,
        200
    );
    assert_eq!(
        server
            .webhook("issues", &delivery_id(), b"{}", Some(HOOK_SECRET))
            .0,
        202
    );
    // A push that touches nothing under stacks/ enqueues nothing.
    let other = push_payload(ZERO, &sha, &["README.md"], false);
    let (code, reply) = server.webhook("push", &delivery_id(), &other, Some(HOOK_SECRET));
    assert_eq!((code, reply["result"].as_str()), (202, Some("ignored")));

    assert_eq!(
        server.job(1),
        json!({"error": "no job 1"}),
        "something was enqueued"
    );
    let (_, metrics) = http("GET", &format!("{}/metrics", server.url), &[], None);
    assert!(
        metrics.contains("stackgate_deliveries_total{result=\"bad_signature\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stackgate_deliveries_total{result=\"unsigned\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stackgate_queue_depth{state=\"queued\"} 0"),
        "{metrics}"
    );
    server.assert_no_secret_in_logs();
}

#[test]
fn manual_redeploy_needs_the_right_token() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-manual");
    param_stack(&repo, "app", &name, "m1");
    let sha = repo.commit("m1");
    let server = Server::start(&repo, &gh, "");
    let url = format!("{}/api/v1/stacks/{REPO}/app/redeploy", server.url);

    let (code, _) = http("POST", &url, &[], None);
    assert_eq!(code, 401);
    let (code, _) = http(
        "POST",
        &url,
        &[("Authorization", "Bearer not-the-token".into())],
        None,
    );
    assert_eq!(code, 401);
    let auth = [("Authorization", format!("Bearer {API_TOKEN}"))];
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/stacks/{REPO}/nope/redeploy", server.url),
        &auth,
        None,
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("unknown stack"), "{body}");
    let (code, body) = http(
        "POST",
        &url,
        &auth,
        Some(format!("{{\"sha\":\"{}\"}}", "1".repeat(40)).as_bytes()),
    );
    assert_eq!(code, 422, "{body}");

    let (code, body) = http(
        "POST",
        &url,
        &auth,
        Some(format!("{{\"sha\":\"{sha}\"}}").as_bytes()),
    );
    assert_eq!(code, 202, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = reply["job"].as_i64().unwrap();
    assert!(
        reply["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runs/{id}"))
    );
    let job = wait_for(60, "the redeploy", || {
        let j = server.job(id);
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    });
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["detail"]["policy"]["verdict"], "pass");
    assert!(stack_exists(&name).is_some());
    assert_eq!(
        final_state(&gh.statuses(&sha), "stackgate/policy").map(|s| s.0),
        Some("success".into())
    );
    let (code, page) = http("GET", &format!("{}/runs/{id}", server.url), &[], None);
    assert_eq!(code, 200);
    assert!(page.contains("succeeded"));
    server.assert_no_secret_in_logs();
}

#[test]
fn a_deploy_killed_mid_flight_finishes_after_restart_and_reports_once() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-kill");
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    let sha = repo.commit("hybrid");
    let mut server = Server::start(&repo, &gh, "");

    // Kill it once the change set is executing. The window is the length of one
    // ExecuteChangeSet call on the emulator, so if a deploy slips through, push again.
    let mut sha = sha;
    let mut before = ZERO.to_string();
    let mut next_id = 1;
    let mut caught = None;
    for attempt in 0..4 {
        if attempt > 0 {
            let dep = repo.dir.join("stacks/hybrid-alb/deployment.yaml");
            let text = std::fs::read_to_string(&dep).unwrap();
            let v = ["t3.small", "t3a.micro", "t3a.small"][attempt - 1];
            let line = text
                .lines()
                .find(|l| l.contains("InstanceType:"))
                .unwrap()
                .to_string();
            std::fs::write(&dep, text.replace(&line, &format!("  InstanceType: {v}"))).unwrap();
            before = sha.clone();
            sha = repo.commit(v);
        }
        let body = push_payload(&before, &sha, &["stacks/hybrid-alb/deployment.yaml"], false);
        assert_eq!(
            server
                .webhook("push", &delivery_id(), &body, Some(HOOK_SECRET))
                .0,
            202
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let j = server.job(next_id);
            let done = j["state"] != "queued" && j["state"] != "running" && !j["state"].is_null();
            if j["kind"] == "sync" && done {
                next_id += 1;
                continue;
            }
            if j["kind"] == "deploy" {
                if j["phase"] == "executing" && j["state"] == "running" {
                    server.kill();
                    caught = Some(j);
                    break;
                }
                if done {
                    next_id += 1;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if caught.is_some() {
            break;
        }
    }
    let job = caught.expect("a deploy caught while its change set was executing");
    assert_eq!(job["state"], "running");
    assert!(
        final_state(&gh.statuses(&sha), "stackgate/hybrid-alb").is_none(),
        "it finished before the kill"
    );

    server.spawn();
    let id = job["id"].as_i64().unwrap();
    let done = wait_for(60, "the resumed deploy", || {
        let j = server.job(id);
        (j["state"] != "running").then_some(j)
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", server.logs());
    assert!(
        server
            .logs()
            .contains("resuming a deploy that was in flight")
    );
    wait_for(30, "the final status", || {
        final_state(&gh.statuses(&sha), "stackgate/hybrid-alb")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let finals: Vec<_> = gh
        .statuses(&sha)
        .into_iter()
        .filter(|s| s.0 == "stackgate/hybrid-alb" && s.1 == "success")
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    let s = stack_exists(&name).expect("stack");
    assert_eq!(
        s.stack_status().map(|x| x.as_str()),
        Some("CREATE_COMPLETE")
    );
    server.assert_no_secret_in_logs();
}

#[test]
fn statuses_survive_github_failures() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    param_stack(&repo, "app", &unique("gitops-flaky"), "f");
    let sha = repo.commit("f");
    gh.fail(json!({"method": "POST", "path_regex": "/statuses/", "status": 502, "times": 3}));
    gh.fail(json!({"method": "POST", "path_regex": "/statuses/", "status": 403, "times": 1, "headers": {"retry-after": "1"}}));
    let server = Server::start(&repo, &gh, "");
    assert_eq!(
        server.push(ZERO, &sha, &["stacks/app/template.yaml"]).0,
        202
    );
    let done = wait_for(90, "the deploy's status despite GitHub failures", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(done.0, "success");
    let posted: Vec<String> = gh
        .statuses(&sha)
        .iter()
        .map(|s| format!("{}={}", s.0, s.1))
        .collect();
    // In order: the policy's pending and verdict before the stack's.
    let first_stack = posted
        .iter()
        .position(|s| s.starts_with("stackgate/app"))
        .unwrap();
    let policy_done = posted
        .iter()
        .position(|s| s == "stackgate/policy=success")
        .unwrap();
    assert!(policy_done < first_stack, "{posted:?}");
    server.assert_no_secret_in_logs();
}

#[test]
fn polling_deploys_without_any_webhook() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-poll");
    param_stack(&repo, "app", &name, "p1");
    let sha = repo.commit("p1");
    let mut server = Server::start(&repo, &gh, "");
    // [[repos]] is the last table of the configuration.
    server.reconfigure(|c| format!("{c}poll_interval = 1\n"));
    let done = wait_for(60, "a deploy found by polling", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(done.0, "success", "{}", server.logs());
    assert!(stack_exists(&name).is_some());
    server.assert_no_secret_in_logs();
}

#[test]
fn a_stack_deleted_behind_stackgates_back_is_deployed_again() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-drift");
    param_stack(&repo, "app", &name, "d1");
    let sha1 = repo.commit("d1");
    let server = Server::start(&repo, &gh, "");
    let (code, body) = server.push(ZERO, &sha1, &["stacks/app/template.yaml"]);
    assert_eq!(code, 202, "{body}");
    let done = wait_for(60, "the first deploy", || {
        final_state(&gh.statuses(&sha1), "stackgate/app")
    });
    assert_eq!(done.0, "success", "{}", server.logs());

    // Deleted in CloudFormation, not in git (by hand, or an emulator that restarted).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cfn().delete_stack().stack_name(&name).send())
        .unwrap();
    wait_for(60, "the stack to be gone", || {
        stack_exists(&name).is_none().then_some(())
    });

    // The next push leaves the stack's folder alone, but the stack is missing: it deploys.
    repo.write("stacks/README.md", "Stacks.\n");
    let sha2 = repo.commit("readme");
    let (code, _) = server.push(&sha1, &sha2, &["stacks/README.md"]);
    assert_eq!(code, 202);
    let again = wait_for(60, "the missing stack's deploy", || {
        final_state(&gh.statuses(&sha2), "stackgate/app")
    });
    assert_eq!(again.0, "success", "{again:?}\n{}", server.logs());
    assert!(
        stack_exists(&name).is_some(),
        "the stack was not deployed again"
    );

    // Present again: the next such push deploys nothing.
    repo.write("stacks/README.md", "Stacks, again.\n");
    let sha3 = repo.commit("readme again");
    let (code, _) = server.push(&sha2, &sha3, &["stacks/README.md"]);
    assert_eq!(code, 202);
    let policy = wait_for(60, "the sync's verdict", || {
        final_state(&gh.statuses(&sha3), "stackgate/policy")
    });
    assert_eq!(policy, ("success".into(), "no stack changed".into()));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(final_state(&gh.statuses(&sha3), "stackgate/app"), None);
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

#[test]
fn a_github_app_installation_posts_the_statuses() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("app.pem");
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let gh = StandIn::start_with(&[
        "--app-public-key",
        key.to_str().unwrap(),
        "--app-id",
        "4242",
        "--installation-id",
        "77",
    ]);
    let repo = GitRepo::new();
    param_stack(&repo, "app", &unique("gitops-app"), "a1");
    let sha = repo.commit("a1");
    let mut server = Server::start(&repo, &gh, "");
    let key_path = key.display().to_string();
    server.reconfigure(|c| {
        c.replace(
            "token_env = \"TEST_GH_TOKEN\"",
            &format!("app_id = 4242\nprivate_key_file = \"{key_path}\"\ninstallation_id = 77"),
        )
    });
    let body = push_payload(ZERO, &sha, &["stacks/app/template.yaml"], false);
    assert_eq!(
        server
            .webhook("push", &delivery_id(), &body, Some(HOOK_SECRET))
            .0,
        202
    );
    let done = wait_for(60, "statuses posted as the App", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(done.0, "success", "{}", server.logs());
    let reqs = gh.requests();
    let token = reqs
        .iter()
        .find(|r| r["operation"] == "apps/create-installation-access-token")
        .expect("an installation token was requested");
    assert_eq!(token["status"], 201, "{token}");
    assert_eq!(token["auth"], "jwt");
    let statuses: Vec<_> = reqs
        .iter()
        .filter(|r| r["operation"] == "repos/create-commit-status")
        .collect();
    assert!(
        statuses.iter().all(|r| r["auth"] == "installation_token"),
        "{statuses:?}"
    );
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

/// A stack folder `folder` whose template is `template`.
fn hostile_stack(repo: &GitRepo, folder: &str, template: &str) {
    repo.write(
        &format!("stacks/{folder}/deployment.yaml"),
        &format!(
            "template-file-path: template.yaml\nstack-name: {}\n",
            unique("gitops-hostile")
        ),
    );
    repo.write(&format!("stacks/{folder}/template.yaml"), template);
}

#[test]
fn hostile_fork_pull_requests_end_in_error_and_the_next_push_deploys() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-after");
    param_stack(&repo, "app", &name, "one");
    let base = repo.commit("base");
    let mut server = Server::start(&repo, &gh, "");

    // 596 bytes of nested aliases: 10^9 scalars once expanded.
    let mut bomb = String::from("Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n");
    bomb.push_str(&format!("  a0: &a0 [{}]\n", ["x"; 10].join(",")));
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    // 40 KB of compact nested block sequences, 20,000 levels.
    let deep = format!(
        "Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n  x:\n    {}x\n",
        "- ".repeat(20_000)
    );
    let plain = "Resources:\n  B:\n    Type: AWS::S3::Bucket\n";
    let cases: [(&str, &str, &str); 3] = [
        (
            "bomb",
            &bomb,
            "bomb: stacks/bomb/template.yaml:10: column 36: alias `*a4` expands the document past 1000000 nodes",
        ),
        (
            "deep",
            &deep,
            "deep: stacks/deep/template.yaml:6: column 129: nested deeper than 64 levels",
        ),
        (
            "big",
            plain,
            "big: stacks/big/data/f10: the stack folder passes 104857600 bytes",
        ),
    ];
    // One 10 MiB blob of zeros, named by eleven paths: a tiny pack, 110 MiB checked out.
    let zeros = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(zeros.path(), vec![0u8; 10 << 20]).unwrap();
    let blob = repo.git(&["hash-object", "-w", zeros.path().to_str().unwrap()]);

    for (i, (folder, template, want)) in cases.into_iter().enumerate() {
        let pr = 30 + i as u64;
        repo.git(&["checkout", "-q", "-f", "-b", folder, &base]);
        hostile_stack(&repo, folder, template);
        repo.git(&["add", "-A"]);
        if folder == "big" {
            for f in 0..11 {
                let info = format!("100644,{blob},stacks/big/data/f{f:02}");
                repo.git(&["update-index", "--add", "--cacheinfo", &info]);
            }
        }
        repo.git(&["commit", "-q", "-m", folder]);
        let head = repo.git(&["rev-parse", "HEAD"]);
        repo.git(&["update-ref", &format!("refs/pull/{pr}/head"), &head]);
        let (code, body) = server.webhook(
            "pull_request",
            &delivery_id(),
            &pr_payload("opened", pr, &head, folder, true),
            Some(HOOK_SECRET),
        );
        assert_eq!(code, 202, "{body}");
        let policy = wait_for(60, "the fork's policy status", || {
            final_state(&gh.statuses(&head), "stackgate/policy")
        });
        assert_eq!(policy.0, "error", "{policy:?}\n{}", server.logs());
        assert!(policy.1.starts_with(want), "{policy:?}");
        assert!(server.alive(), "the service died on {folder}");
        assert_eq!(
            http("GET", &format!("{}/healthz", server.url), &[], None).0,
            200
        );
    }
    let peak = server.peak_rss_kib().unwrap_or(0);
    eprintln!("peak RSS after the hostile pull requests: {peak} KiB");
    assert!(peak < 1 << 20, "the service peaked at {peak} KiB");

    // The next push to the branch deploys as ever.
    repo.git(&["checkout", "-q", "-f", "main"]);
    param_stack(&repo, "app", &name, "two");
    let sha = repo.commit("two");
    let (code, _) = server.push(&base, &sha, &["stacks/app/deployment.yaml"]);
    assert_eq!(code, 202);
    let done = wait_for(60, "the deploy after the hostile pull requests", || {
        final_state(&gh.statuses(&sha), "stackgate/app")
    });
    assert_eq!(done.0, "success", "{done:?}\n{}", server.logs());
    assert!(stack_exists(&name).is_some());
    assert!(server.alive());
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

/// Waits for job `id` to be running, then kills the server: a crash mid-job.
fn kill_while_running(server: &mut Server, id: i64) {
    let j = wait_for(60, "the job to run", || {
        let j = server.job(id);
        (j["state"] != "queued" && !j["state"].is_null()).then_some(j)
    });
    assert_eq!(j["state"], "running", "it ended before the kill: {j:#}");
    server.kill();
}

#[test]
fn a_job_that_takes_the_service_down_twice_is_failed_not_retried() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-poison");
    // The hybrid stack's plan (artifacts, a change set) outlasts the kill's poll.
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let dep = repo.dir.join("stacks/hybrid-alb/deployment.yaml");
    let text = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, format!("{text}tags:\n  round: one\n")).unwrap();
    let head = repo.commit("feature");
    repo.git(&["update-ref", "refs/pull/9/head", &head]);
    let mut server = Server::start(&repo, &gh, "");
    let (code, body) = server.webhook(
        "pull_request",
        &delivery_id(),
        &pr_payload("opened", 9, &head, "feature", false),
        Some(HOOK_SECRET),
    );
    assert_eq!(code, 202, "{body}");
    let id = body["jobs"][0].as_i64().unwrap_or(1);

    // Down once: run again. Down twice: failed, with an error status saying why.
    kill_while_running(&mut server, id);
    server.spawn();
    kill_while_running(&mut server, id);
    server.spawn();
    let job = wait_for(30, "the job's end", || {
        let j = server.job(id);
        (j["state"] != "running" && j["state"] != "queued").then_some(j)
    });
    assert_eq!(job["state"], "error", "{job:#}\n{}", server.logs());
    assert_eq!(job["attempts"], 2, "{job:#}");
    let policy = wait_for(30, "the error status", || {
        final_state(&gh.statuses(&head), "stackgate/policy")
    });
    assert_eq!(policy.0, "error");
    assert!(policy.1.contains("stopped its worker"), "{policy:?}");
    assert!(server.alive());
    assert!(stack_exists(&name).is_none());
}
