//! Held change sets end to end: `approval: required` keeps a passing change set until an
//! operator approves it through the API (it then executes, and the approver is recorded),
//! rejects it, or it expires; a newer commit supersedes a held one and deletes it; an
//! approval runs only on the stack as it was held.

mod support;

use serde_json::Value;
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn stack_status(name: &str) -> Option<String> {
    block_on(cfn().describe_stacks().stack_name(name).send())
        .ok()
        .and_then(|o| o.stacks().first().cloned())
        .and_then(|s| s.stack_status().map(|st| st.as_str().to_string()))
        .filter(|s| s != "DELETE_COMPLETE")
}

/// The ids of the stack's change sets, as CloudFormation lists them. (The emulator lists
/// every stack's, so they are filtered by name as CloudFormation does.)
fn change_sets(name: &str) -> Vec<String> {
    block_on(cfn().list_change_sets().stack_name(name).send())
        .map(|o| {
            o.summaries()
                .iter()
                .filter(|s| s.stack_name() == Some(name))
                .filter_map(|s| s.change_set_id().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The SSM parameter stack of `param_stack`, asking for an approval.
fn held_stack(repo: &GitRepo, folder: &str, name: &str, value: &str) {
    param_stack(repo, folder, name, value);
    let path = format!("stacks/{folder}/deployment.yaml");
    let text = std::fs::read_to_string(repo.dir.join(&path)).unwrap();
    repo.write(&path, &format!("{text}approval: required\n"));
}

/// The run of `stackgate/<folder>` on `sha` once it is held (or ended).
fn settled_run(server: &Server, gh: &StandIn, sha: &str, folder: &str) -> Value {
    let context = format!("stackgate/{folder}");
    let id = wait_for(60, "the deploy job", || {
        gh.requests()
            .iter()
            .filter(|r| r["operation"] == "repos/create-commit-status")
            .filter(|r| r["path_params"]["sha"] == sha && r["body"]["context"] == context.as_str())
            .filter_map(|r| r["body"]["target_url"].as_str())
            .filter_map(|u| u.rsplit('/').next()?.parse::<i64>().ok())
            .next_back()
    });
    settled(server, id, "the deploy to hold or end")
}

/// Job `id` once it is neither queued nor running.
fn settled(server: &Server, id: i64, what: &str) -> Value {
    wait_for(90, what, || {
        let j = server.job(id);
        (j["state"] != "queued" && j["state"] != "running").then_some(j)
    })
}

fn decide(server: &Server, id: i64, action: &str) -> (u16, Value) {
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/runs/{id}/{action}", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn a_held_change_set_waits_and_an_approval_executes_exactly_it() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-approve");
    held_stack(&repo, "app", &name, "v1");
    let sha = repo.commit("v1, held");
    let server = Server::start(&repo, &gh, "");
    let (code, _) = server.push(ZERO, &sha, &["stacks/app/deployment.yaml"]);
    assert_eq!(code, 202);

    let held = settled_run(&server, &gh, &sha, "app");
    assert_eq!(held["state"], "held", "{held:#}");
    let id = held["id"].as_i64().unwrap();
    let change_set = held["detail"]["hold"]["change_set_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Nothing ran: the stack only holds the change set for review.
    assert_eq!(stack_status(&name).as_deref(), Some("REVIEW_IN_PROGRESS"));
    assert_eq!(change_sets(&name), std::slice::from_ref(&change_set));
    let (state, description) = gh
        .statuses(&sha)
        .into_iter()
        .rev()
        .find(|(c, _, _)| c == "stackgate/app")
        .map(|(_, s, d)| (s, d))
        .unwrap();
    assert_eq!(
        (state.as_str(), description.as_str()),
        ("pending", "awaiting approval: 1 change")
    );
    // The console's run page offers the decision to an operator (here the local user,
    // with its CSRF token) and takes it through its form.
    let browser = support::oidc::Browser::new();
    let run_page = format!("{}/runs/{id}", server.url);
    let page = browser.get(&run_page);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Awaiting approval"), "{}", page.body);
    assert!(
        page.body.contains("1 change held (approval: required)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Approve and execute"), "{}", page.body);
    let me = browser.get(&format!("{}/auth/session", server.url)).json();
    let csrf = me["csrf"].as_str().expect("csrf").to_string();
    let approve = format!("{run_page}/approve");
    assert_eq!(browser.post(&approve, &[("csrf", "wrong")]).status, 403);
    let answer = browser.post(&approve, &[("csrf", &csrf)]);
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(answer.location(), format!("/runs/{id}"));
    let done = settled(&server, id, "the approved deploy");
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["detail"]["decision"]["decision"], "approved");
    assert_eq!(done["change_set_id"].as_str(), Some(change_set.as_str()));
    assert_eq!(stack_status(&name).as_deref(), Some("CREATE_COMPLETE"));
    assert_eq!(
        final_state(&gh.statuses(&sha), "stackgate/app").map(|s| s.0),
        Some("success".into())
    );
    assert_eq!(done["detail"]["decision"]["by"], "the local user");
    let page = browser.get(&run_page);
    assert!(
        page.body
            .contains("<strong>approved</strong> by the local user"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Approve and execute"), "{}", page.body);
    // Decided once; and the API needs its token, which gives the operator role.
    let (code, _) = http(
        "POST",
        &format!("{}/api/v1/runs/{id}/approve", server.url),
        &[],
        None,
    );
    assert_eq!(code, 401);
    let (code, reply) = decide(&server, id, "approve");
    assert_eq!(code, 409, "{reply}");
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
}

#[test]
fn a_newer_commit_supersedes_a_held_change_set_and_a_rejection_deletes_its_own() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-supersede");
    held_stack(&repo, "app", &name, "v1");
    let first = repo.commit("v1, held");
    let server = Server::start(&repo, &gh, "");
    server.push(ZERO, &first, &["stacks/app/deployment.yaml"]);
    let old = settled_run(&server, &gh, &first, "app");
    assert_eq!(old["state"], "held", "{old:#}");
    let old_id = old["id"].as_i64().unwrap();

    held_stack(&repo, "app", &name, "v2");
    let second = repo.commit("v2, held");
    server.push(&first, &second, &["stacks/app/deployment.yaml"]);
    let new = settled_run(&server, &gh, &second, "app");
    assert_eq!(new["state"], "held", "{new:#}");
    let new_id = new["id"].as_i64().unwrap();
    let old = server.job(old_id);
    assert_eq!(old["state"], "superseded", "{old:#}");
    assert_eq!(old["superseded_by"], new_id);
    // Only the newer change set is left.
    let new_set = new["detail"]["hold"]["change_set_id"].as_str().unwrap();
    assert_eq!(change_sets(&name), [new_set.to_string()]);
    let (state, description) = final_state(&gh.statuses(&first), "stackgate/app").unwrap();
    assert_eq!(state, "error");
    assert!(
        description.contains("its held change set was deleted"),
        "{description}"
    );
    // The old one can no longer be approved.
    let (code, reply) = decide(&server, old_id, "approve");
    assert_eq!(code, 409, "{reply}");

    let (code, reply) = decide(&server, new_id, "reject");
    assert_eq!(code, 202, "{reply}");
    let done = settled(&server, new_id, "the rejection");
    assert_eq!(done["state"], "rejected", "{done:#}");
    // Its change set is gone, and with it the stack made only to hold it.
    assert!(change_sets(&name).is_empty());
    assert_eq!(stack_status(&name), None);
    let (state, description) = final_state(&gh.statuses(&second), "stackgate/app").unwrap();
    assert_eq!(state, "failure");
    assert_eq!(description, "rejected by an API token; change set deleted");
    gh.assert_all_valid();
}

#[test]
fn a_held_change_set_nobody_approves_expires() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-expire");
    held_stack(&repo, "app", &name, "v1");
    let sha = repo.commit("v1, held");
    let server = Server::start(&repo, &gh, "[approvals]\nexpire_after_seconds = 2\n");
    server.push(ZERO, &sha, &["stacks/app/deployment.yaml"]);
    let held = settled_run(&server, &gh, &sha, "app");
    assert_eq!(held["state"], "held", "{held:#}");
    let id = held["id"].as_i64().unwrap();
    let done = wait_for(60, "the expiry", || {
        let j = server.job(id);
        (j["state"] == "rejected").then_some(j)
    });
    assert_eq!(done["detail"]["decision"]["decision"], "expired");
    assert_eq!(done["detail"]["decision"]["by"], "stackgate");
    assert!(change_sets(&name).is_empty());
    let (code, reply) = decide(&server, id, "approve");
    assert_eq!(code, 409, "{reply}");
}

#[test]
fn an_approval_does_not_run_on_a_stack_changed_since_the_hold() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-moved");
    // Deployed without an approval first.
    param_stack(&repo, "app", &name, "v1");
    let first = repo.commit("v1");
    let server = Server::start(&repo, &gh, "");
    server.push(ZERO, &first, &["stacks/app/deployment.yaml"]);
    let done = settled_run(&server, &gh, &first, "app");
    assert_eq!(done["state"], "succeeded", "{done:#}");

    held_stack(&repo, "app", &name, "v2");
    let second = repo.commit("v2, held");
    server.push(&first, &second, &["stacks/app/deployment.yaml"]);
    let held = settled_run(&server, &gh, &second, "app");
    assert_eq!(held["state"], "held", "{held:#}");
    let id = held["id"].as_i64().unwrap();
    // Someone updates the stack by hand meanwhile.
    block_on(
        cfn()
            .update_stack()
            .stack_name(&name)
            .use_previous_template(true)
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("Value")
                    .parameter_value("by-hand")
                    .build(),
            )
            .send(),
    )
    .unwrap();
    wait_for(30, "the update by hand", || {
        stack_status(&name).filter(|s| s == "UPDATE_COMPLETE")
    });

    let (code, reply) = decide(&server, id, "approve");
    assert_eq!(code, 202, "{reply}");
    let done = settled(&server, id, "the approved deploy");
    assert_eq!(done["state"], "failed", "{done:#}");
    let error = done["detail"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("approved, but the stack changed since the hold"),
        "{error}"
    );
    // Not executed: the value is still the one set by hand.
    assert_eq!(stack_parameter(&name, "Value").as_deref(), Some("by-hand"));
}

#[test]
fn on_broadening_holds_only_a_change_that_widens_access() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("gitops-broaden");
    // v1 grants nothing: it deploys at once.
    param_stack(&repo, "app", &name, "v1");
    let path = "stacks/app/deployment.yaml";
    let text = std::fs::read_to_string(repo.dir.join(path)).unwrap();
    repo.write(path, &format!("{text}approval: on-broadening\n"));
    let first = repo.commit("v1 grants nothing");
    let server = Server::start(&repo, &gh, "");
    server.push(ZERO, &first, &[path]);
    let done = settled_run(&server, &gh, &first, "app");
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["detail"]["review"]["widens"], serde_json::json!([]));

    // v2 opens a port to a private range: the gate passes, and the change widens.
    let template = std::fs::read_to_string(repo.dir.join("stacks/app/template.yaml")).unwrap();
    repo.write(
        "stacks/app/template.yaml",
        &format!(
            "{template}  Db:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: db\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 5432\n          ToPort: 5432\n          CidrIp: 10.0.0.0/8\n"
        ),
    );
    let second = repo.commit("v2 opens 5432 to 10/8");
    server.push(&first, &second, &["stacks/app/template.yaml"]);
    let held = settled_run(&server, &gh, &second, "app");
    assert_eq!(held["state"], "held", "{held:#}");
    assert_eq!(held["detail"]["hold"]["approval"], "on-broadening");
    let widens = held["detail"]["review"]["widens"].to_string();
    assert!(widens.contains("5432"), "{widens}");
}
