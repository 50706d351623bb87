//! Drift end to end: the hybrid stack deployed by a push, then changed by hand through the
//! EC2 API (boto3, against the emulator's drift patch), then checked: the drift, the live
//! finding, the commit status, the gauge, the notification and the revert.

mod support;

use std::process::Command;

use support::service::*;
use support::slack::Slack;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

/// Runs a boto3 script against the emulator; its stdout.
fn boto(script: &str) -> String {
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(format!(
            "import boto3, json, sys\nkw = dict(endpoint_url={:?}, region_name='us-east-1')\n{script}",
            aws_endpoint()
        ))
        .env_remove("AWS_PROFILE");
    for (k, v) in AWS_ENV {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The physical id of a stack's resource.
fn physical(stack: &str, logical: &str) -> String {
    boto(&format!(
        "cfn = boto3.client('cloudformation', **kw)\n\
         r = cfn.describe_stack_resource(StackName={stack:?}, LogicalResourceId={logical:?})\n\
         print(r['StackResourceDetail']['PhysicalResourceId'])"
    ))
}

/// The (protocol, from port, cidr) of a security group's ingress rules.
fn ingress(group: &str) -> Vec<(String, i64, String)> {
    let out = boto(&format!(
        "ec2 = boto3.client('ec2', **kw)\n\
         g = ec2.describe_security_groups(GroupIds=[{group:?}])['SecurityGroups'][0]\n\
         print(json.dumps([[p['IpProtocol'], p.get('FromPort', -1), r['CidrIp']] \
             for p in g['IpPermissions'] for r in p.get('IpRanges', [])]))"
    ));
    serde_json::from_str(&out).expect("rules")
}

/// Asks for a drift check now and waits for its job to end.
fn check_now(server: &Server) -> serde_json::Value {
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/stacks/{REPO}/hybrid-alb/drift", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["job"]
        .as_i64()
        .unwrap();
    wait_for(120, "the drift check", || {
        let j = server.job(id);
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
}

fn gauge(server: &Server, name: &str) -> Option<String> {
    let (_, text) = http("GET", &format!("{}/metrics", server.url), &[], None);
    let prefix = format!("{name}{{repo=\"{REPO}\",stack=\"hybrid-alb\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn ssh_opened_by_hand_is_a_live_finding_notified_once_and_reverted() {
    let gh = StandIn::start();
    let slack = Slack::start();
    let repo = GitRepo::new();
    let name = unique("drift-rev");
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    let dep = repo.dir.join("stacks/hybrid-alb/deployment.yaml");
    let d = std::fs::read_to_string(&dep).unwrap();
    std::fs::write(&dep, format!("{d}drift: revert\n")).unwrap();
    let sha = repo.commit("hybrid stack, drift reverted");
    let server = Server::start_opts(
        &repo,
        &gh,
        Opts {
            env: vec![
                ("STACKGATE_DRIFT_NOTIFY_URL_ENV", "TEST_NOTIFY_URL".into()),
                ("TEST_NOTIFY_URL", slack.url.clone()),
            ],
            ..Opts::default()
        },
    );
    let context = "stackgate/drift/hybrid-alb";

    // Nothing deployed yet: nothing to check.
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/stacks/{REPO}/hybrid-alb/drift", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    assert_eq!(code, 404, "{body}");
    let (code, _) = http(
        "POST",
        &format!("{}/api/v1/stacks/{REPO}/hybrid-alb/drift", server.url),
        &[],
        None,
    );
    assert_eq!(code, 401);

    let (code, body) = server.push(ZERO, &sha, &["stacks/hybrid-alb/template.yaml"]);
    assert_eq!(code, 202, "{body}");
    let deployed = wait_for(90, "the deploy", || {
        final_state(&gh.statuses(&sha), "stackgate/hybrid-alb")
    });
    assert_eq!(deployed.0, "success", "{deployed:?}\n{}", server.logs());

    // Freshly deployed: in sync, said on the deployed commit.
    let job = check_now(&server);
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", server.logs());
    assert_eq!(job["detail"]["drift"]["state"], "in_sync", "{job:#}");
    let in_sync = wait_for(10, "the drift status", || {
        final_state(&gh.statuses(&sha), context)
    });
    assert_eq!(
        in_sync,
        ("success".into(), "in sync with this commit".into())
    );
    assert_eq!(
        gauge(&server, "stackgate_stack_drifted").as_deref(),
        Some("0")
    );

    // Someone opens ssh to the world on the load balancer's group, by hand.
    let group = physical(&name, "AlbSecurityGroup");
    boto(&format!(
        "ec2 = boto3.client('ec2', **kw)\n\
         ec2.authorize_security_group_ingress(GroupId={group:?}, IpPermissions=[\
         {{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{{'CidrIp': '0.0.0.0/0'}}]}}])"
    ));
    assert!(ingress(&group).contains(&("tcp".into(), 22, "0.0.0.0/0".into())));

    let job = check_now(&server);
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", server.logs());
    let drift = &job["detail"]["drift"];
    assert_eq!(drift["state"], "drifted", "{job:#}");
    let sg = drift["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["logical_id"] == "AlbSecurityGroup")
        .expect("the group's drift");
    assert_eq!(sg["status"], "MODIFIED", "{sg:#}");
    let finding = &drift["live_findings"][0];
    assert_eq!(finding["resource"], "AlbSecurityGroup", "{drift:#}");
    let (state, description) = wait_for(10, "the failed drift status", || {
        final_state(&gh.statuses(&sha), context).filter(|s| s.0 != "success")
    });
    assert_eq!(state, "failure");
    assert!(
        description.starts_with("live finding, changed outside stackgate: ")
            && description.contains("AlbSecurityGroup")
            && description.contains("22"),
        "{description}"
    );
    assert_eq!(
        gauge(&server, "stackgate_stack_drifted").as_deref(),
        Some("1")
    );
    assert_eq!(
        gauge(&server, "stackgate_stack_drifted_resources").as_deref(),
        Some("1")
    );
    let notes = wait_for(10, "the notification", || {
        let m = slack.messages();
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("hybrid-alb") && notes[0].contains("drifted"),
        "{notes:?}"
    );

    // drift: revert: the deployed commit is redeployed through the gate, and ssh is shut.
    wait_for(120, "ssh shut again", || {
        ingress(&group).iter().all(|r| r.1 != 22).then_some(())
    });
    let revert_job = wait_for(60, "the revert deploy's end", || {
        let (_, body) = http(
            "GET",
            &format!(
                "{}/api/v1/jobs/{}",
                server.url,
                job["id"].as_i64().unwrap() + 1
            ),
            &[],
            None,
        );
        let j: serde_json::Value = serde_json::from_str(&body).ok()?;
        (j["state"] == "succeeded" || j["state"] == "failed").then_some(j)
    });
    assert_eq!(revert_job["kind"], "deploy", "{revert_job:#}");
    assert_eq!(revert_job["trigger"], "drift", "{revert_job:#}");
    assert_eq!(revert_job["state"], "succeeded", "{revert_job:#}");
    assert_eq!(revert_job["detail"]["policy"]["verdict"], "pass");

    // Checked again: in sync, the status says so, and no second notification.
    let job = check_now(&server);
    assert_eq!(job["detail"]["drift"]["state"], "in_sync", "{job:#}");
    wait_for(10, "the drift status back to success", || {
        final_state(&gh.statuses(&sha), context).filter(|s| s.0 == "success")
    });
    assert_eq!(
        gauge(&server, "stackgate_stack_drifted").as_deref(),
        Some("0")
    );
    assert_eq!(slack.messages().len(), 1, "{:?}", slack.messages());

    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
    assert!(
        !server.logs().contains(&slack.url),
        "the webhook URL is in the log"
    );
}

#[test]
fn a_drifted_stack_set_to_report_is_not_redeployed_and_its_status_is_posted_once() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("drift-rep");
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    let sha = repo.commit("hybrid stack");
    let server = Server::start(&repo, &gh, "");
    let (code, body) = server.push(ZERO, &sha, &["stacks/hybrid-alb/template.yaml"]);
    assert_eq!(code, 202, "{body}");
    let deployed = wait_for(90, "the deploy", || {
        final_state(&gh.statuses(&sha), "stackgate/hybrid-alb")
    });
    assert_eq!(deployed.0, "success", "{deployed:?}\n{}", server.logs());

    // Bucket versioning suspended by hand: drift, though no policy minds.
    let bucket = physical(&name, "LogsBucket");
    boto(&format!(
        "s3 = boto3.client('s3', **kw)\n\
         s3.put_bucket_versioning(Bucket={bucket:?}, VersioningConfiguration={{'Status': 'Suspended'}})"
    ));
    let context = "stackgate/drift/hybrid-alb";
    let first = check_now(&server);
    let second = check_now(&server);
    for j in [&first, &second] {
        assert_eq!(j["detail"]["drift"]["state"], "drifted", "{j:#}");
        assert_eq!(j["detail"]["drift"]["live_findings"], serde_json::json!([]));
    }
    wait_for(10, "the drift status", || {
        final_state(&gh.statuses(&sha), context)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let drift_statuses: Vec<_> = gh
        .statuses(&sha)
        .into_iter()
        .filter(|s| s.0 == context)
        .collect();
    assert_eq!(drift_statuses.len(), 1, "{drift_statuses:?}");
    assert_eq!(drift_statuses[0].1, "failure");
    assert!(
        drift_statuses[0].2.contains("LogsBucket"),
        "{drift_statuses:?}"
    );
    // The overview shows it drifted, with the check's time and its run.
    let (code, body) = http("GET", &format!("{}/api/v1/stacks", server.url), &[], None);
    assert_eq!(code, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = overview["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["folder"] == "hybrid-alb"))
        .unwrap_or_else(|| panic!("{overview:#}"));
    assert_eq!(row["state"], "drifted", "{row:#}");
    assert_eq!(row["drift"]["drifted_resources"], 1, "{row:#}");
    assert_eq!(
        row["drift"]["run_href"],
        format!("/runs/{}", second["id"]),
        "{row:#}"
    );
    // report: nothing redeploys.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (_, body) = http(
        "GET",
        &format!(
            "{}/api/v1/jobs/{}",
            server.url,
            second["id"].as_i64().unwrap() + 1
        ),
        &[],
        None,
    );
    assert!(
        !body.contains("\"trigger\":\"drift\""),
        "a report stack was redeployed: {body}"
    );
    gh.assert_all_valid();
}
