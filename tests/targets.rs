//! `[[targets]]` end to end: two targets in two emulated accounts (moto keeps accounts
//! apart by the credentials AssumeRole returns), a real `stackgate serve`, a real git
//! repository and the GitHub stand-in. Each stack goes into its own target's account
//! through the assumed role; a folder that names a target the server does not map it to
//! is refused, and nothing of it reaches any account.

mod support;

use serde_json::Value;
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";
const PROD: &str = "111111111111";
const DEV: &str = "222222222222";
const EXTERNAL_ID: &str = "prod-external-id-4b1f";
const CFN_ROLE: &str = "arn:aws:iam::111111111111:role/cfn-exec";

/// The two targets, with port 443 open to the world allowed on ALB groups everywhere but
/// in prod.
fn targets_config() -> String {
    format!(
        r#"[[targets]]
name = "prod"
account_id = "{PROD}"
role_arn = "arn:aws:iam::{PROD}:role/stackgate-deployer"
external_id_env = "TEST_PROD_EXTERNAL_ID"
regions = ["us-east-1"]
cloudformation_role_arn = "{CFN_ROLE}"
labels = {{ env = "prod" }}
[targets.policies.open-ingress]
settings = {{ alb_world_ports = [80] }}

[[targets]]
name = "dev"
account_id = "{DEV}"
role_arn = "arn:aws:iam::{DEV}:role/stackgate-deployer"
regions = ["us-east-1", "eu-west-1"]

[policies.policy.open-ingress]
settings = {{ alb_world_ports = [80, 443] }}
"#
    )
}

const REPO_TARGETS: &str = r#"targets = { "stacks/prod-*" = "prod", "stacks/*" = "dev" }"#;

fn start(repo: &GitRepo, gh: &StandIn) -> Server {
    let config = targets_config();
    Server::start_opts(
        repo,
        gh,
        Opts {
            extra: &config,
            repo_extra: REPO_TARGETS,
            env: vec![("TEST_PROD_EXTERNAL_ID", EXTERNAL_ID.into())],
            ..Opts::default()
        },
    )
}

/// A CloudFormation client acting in `account`, through an assumed role as stackgate's.
fn cfn_as(account: &str, region: &str) -> aws_sdk_cloudformation::Client {
    runtime().block_on(async {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(aws_endpoint())
            .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                "stackgate-test",
                "stackgate-test",
                None,
                None,
                "tests",
            ))
            .load()
            .await;
        let role = aws_config::sts::AssumeRoleProvider::builder(format!(
            "arn:aws:iam::{account}:role/test-reader"
        ))
        .configure(&base)
        .session_name("stackgate-test")
        .build()
        .await;
        let conf = aws_sdk_cloudformation::config::Builder::from(&base)
            .credentials_provider(role)
            .build();
        aws_sdk_cloudformation::Client::from_conf(conf)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The live stack `name` in one account and region, if it is there.
fn stack_in(
    account: &str,
    region: &str,
    name: &str,
) -> Option<aws_sdk_cloudformation::types::Stack> {
    let cfn = cfn_as(account, region);
    runtime()
        .block_on(cfn.describe_stacks().stack_name(name).send())
        .ok()
        .and_then(|o| o.stacks().first().cloned())
        .filter(|s| s.stack_status().map(|st| st.as_str()) != Some("DELETE_COMPLETE"))
}

fn add_line(repo: &GitRepo, folder: &str, line: &str) {
    let path = repo.dir.join(format!("stacks/{folder}/deployment.yaml"));
    let text = std::fs::read_to_string(&path).expect("deployment file");
    std::fs::write(&path, format!("{text}{line}\n")).expect("deployment file");
}

/// A security group open to the world on 443, used only by an ALB: passes with
/// `alb_world_ports = [80, 443]`, fails with `[80]`. `remove: true`, so nothing is created.
fn alb_stack(repo: &GitRepo, folder: &str, target: &str) {
    repo.write(
        &format!("stacks/{folder}/deployment.yaml"),
        &format!(
            "template-file-path: template.yaml\nstack-name: {}\ntarget: {target}\nremove: true\n",
            unique(folder)
        ),
    );
    repo.write(
        &format!("stacks/{folder}/template.yaml"),
        "Resources:\n  AlbSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: alb\n      VpcId: vpc-123\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 443\n          ToPort: 443\n          CidrIp: 0.0.0.0/0\n  Alb:\n    Type: AWS::ElasticLoadBalancingV2::LoadBalancer\n    Properties:\n      Subnets: [subnet-1, subnet-2]\n      SecurityGroups: [!Ref AlbSg]\n",
    );
}

fn sync_detail(server: &Server, push: &Value) -> Value {
    let id = push["jobs"][0].as_i64().expect("the push's sync job");
    wait_for(60, "the sync to end", || {
        let j = server.job(id);
        matches!(j["state"].as_str(), Some("succeeded" | "failed" | "error")).then_some(j)
    })["detail"]
        .clone()
}

#[test]
fn each_stack_deploys_into_its_own_target_and_a_forbidden_target_is_refused() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let (prod_name, dev_name, sneaky_name) =
        (unique("tg-prod"), unique("tg-dev"), unique("tg-sneaky"));
    param_stack(&repo, "prod-web", &prod_name, "p");
    add_line(&repo, "prod-web", "target: prod");
    param_stack(&repo, "web", &dev_name, "d");
    add_line(&repo, "web", "target: dev\nregion: eu-west-1");
    // Maps to dev, names prod: project A must not use project B's account.
    param_stack(&repo, "sneaky", &sneaky_name, "s");
    add_line(&repo, "sneaky", "target: prod");
    alb_stack(&repo, "prod-alb", "prod");
    alb_stack(&repo, "alb", "dev");
    let sha = repo.commit("two targets");
    let server = start(&repo, &gh);

    let (code, push) = server.push(ZERO, &sha, &["stacks/prod-web/deployment.yaml"]);
    assert_eq!(code, 202, "{push}");
    let detail = sync_detail(&server, &push);
    for (folder, want) in [
        ("prod-web", "success"),
        ("web", "success"),
        ("sneaky", "failure"),
        ("prod-alb", "failure"),
        ("alb", "success"),
    ] {
        let context = format!("stackgate/{folder}");
        let (state, description) =
            wait_for(90, &context, || final_state(&gh.statuses(&sha), &context));
        assert_eq!(state, want, "{folder}: {description}\n{}", server.logs());
        if folder == "prod-web" {
            assert_eq!(description, "CREATE_COMPLETE in prod");
        }
        if folder == "web" {
            assert_eq!(description, "CREATE_COMPLETE in dev");
        }
        if folder == "sneaky" {
            assert!(description.contains("not allowed"), "{description}");
        }
    }

    // Each stack in its own account and region, and nowhere else.
    let prod = stack_in(PROD, "us-east-1", &prod_name).expect("prod-web in the prod account");
    assert_eq!(prod.role_arn(), Some(CFN_ROLE), "the pinned service role");
    assert!(stack_in(DEV, "us-east-1", &prod_name).is_none());
    assert!(
        stack_parameter(&prod_name, "Value").is_none(),
        "not in the server's own account"
    );
    assert!(
        stack_in(DEV, "eu-west-1", &dev_name).is_some(),
        "web in dev, eu-west-1"
    );
    assert!(stack_in(PROD, "eu-west-1", &dev_name).is_none());
    assert!(stack_in(DEV, "us-east-1", &dev_name).is_none());
    // The refused folder reached no account.
    for (account, region) in [(PROD, "us-east-1"), (DEV, "us-east-1"), (DEV, "eu-west-1")] {
        assert!(
            stack_in(account, region, &sneaky_name).is_none(),
            "{account} {region}"
        );
    }
    assert!(stack_parameter(&sneaky_name, "Value").is_none());
    let refusal = detail["stacks"]["sneaky"]["policy"].to_string();
    assert!(
        refusal.contains(
            "stacks/sneaky/deployment.yaml:5: target `prod` is not allowed for stacks/sneaky of \
             Codertocat/Hello-World: the server maps it to target `dev`"
        ),
        "{refusal}"
    );

    // Policy settings per target: 443 to the world is fine in dev, not in prod.
    assert_eq!(detail["stacks"]["alb"]["policy"]["verdict"], "pass");
    assert_eq!(detail["stacks"]["prod-alb"]["policy"]["verdict"], "fail");
    assert!(
        detail["stacks"]["prod-alb"]["policy"]
            .to_string()
            .contains("open-ingress/world-open"),
        "{}",
        detail["stacks"]["prod-alb"]
    );

    // The overview shows each stack's target, and the accounts stackgate saw.
    let (code, body) = http("GET", &format!("{}/api/v1/stacks", server.url), &[], None);
    assert_eq!(code, 200, "{body}");
    let overview: Value = serde_json::from_str(&body).expect("overview JSON");
    let row = |folder: &str| {
        overview["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["folder"] == folder))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(row("prod-web")["target"], "prod", "{overview}");
    assert_eq!(row("prod-web")["account"], PROD);
    assert_eq!(row("web")["target"], "dev");
    assert_eq!(row("web")["account"], DEV);
    assert_eq!(row("web")["region"], "eu-west-1");

    // CloudTrail would name the job: the assumed role's session is the deploy job's.
    let logs = server.logs();
    assert!(
        !logs.contains(EXTERNAL_ID),
        "the external id shows in the log"
    );
    server.assert_no_secret_in_logs();
    gh.assert_all_valid();
}

#[test]
fn a_stack_acting_as_another_service_role_is_refused() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("tg-role");
    // Made outside stackgate, as stackgate's own, but acting as another role.
    let cfn = cfn_as(PROD, "us-east-1");
    runtime()
        .block_on(
            cfn.create_stack()
                .stack_name(&name)
                .template_body("{\"Resources\":{\"Q\":{\"Type\":\"AWS::SQS::Queue\"}}}")
                .role_arn("arn:aws:iam::111111111111:role/someone-elses")
                .tags(tag("managed-by", "stackgate"))
                .tags(tag("stackgate:repo", REPO))
                .tags(tag("stackgate:path", "stacks/prod-role"))
                .send(),
        )
        .expect("create the stack");
    param_stack(&repo, "prod-role", &name, "r");
    add_line(&repo, "prod-role", "target: prod");
    let sha = repo.commit("a stack with another role");
    let server = start(&repo, &gh);
    let (code, push) = server.push(ZERO, &sha, &["stacks/prod-role/deployment.yaml"]);
    assert_eq!(code, 202, "{push}");
    let (state, description) = wait_for(90, "the stack's status", || {
        final_state(&gh.statuses(&sha), "stackgate/prod-role")
    });
    assert_eq!(state, "failure", "{description}\n{}", server.logs());
    assert!(
        description.contains("another service role") && !description.contains(PROD),
        "{description}"
    );
    let live = stack_in(PROD, "us-east-1", &name).expect("the stack is still there");
    assert!(
        live.parameters().is_empty(),
        "the stack was not changed: {:?}",
        live.parameters()
    );
}

fn tag(k: &str, v: &str) -> aws_sdk_cloudformation::types::Tag {
    aws_sdk_cloudformation::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

#[test]
fn a_target_that_requires_approval_holds_its_change_sets_until_an_operator_approves() {
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let (prod_name, dev_name) = (unique("tg-held"), unique("tg-free"));
    param_stack(&repo, "prod-web", &prod_name, "p");
    add_line(&repo, "prod-web", "target: prod");
    param_stack(&repo, "web", &dev_name, "d");
    add_line(&repo, "web", "target: dev");
    let sha = repo.commit("prod holds, dev does not");
    let config = targets_config().replacen(
        "labels = { env = \"prod\" }",
        "labels = { env = \"prod\" }\napproval = \"required\"",
        1,
    );
    assert!(config.contains("approval = \"required\""));
    let server = Server::start_opts(
        &repo,
        &gh,
        Opts {
            extra: &config,
            repo_extra: REPO_TARGETS,
            env: vec![("TEST_PROD_EXTERNAL_ID", EXTERNAL_ID.into())],
            ..Opts::default()
        },
    );
    server.push(ZERO, &sha, &["stacks/prod-web/deployment.yaml"]);
    // dev deploys at once; prod waits, nothing executed in its account.
    let (state, _) = wait_for(90, "dev", || {
        final_state(&gh.statuses(&sha), "stackgate/web")
    });
    assert_eq!(state, "success");
    let held = wait_for(90, "the prod hold", || {
        gh.statuses(&sha)
            .into_iter()
            .rev()
            .find(|(c, _, _)| c == "stackgate/prod-web")
            .filter(|(_, s, d)| s == "pending" && d.starts_with("awaiting approval"))
    });
    assert_eq!(held.2, "awaiting approval: 1 change");
    let status = |name: &str| {
        stack_in(PROD, "us-east-1", name)
            .and_then(|s| s.stack_status().map(|x| x.as_str().to_string()))
    };
    assert_eq!(status(&prod_name).as_deref(), Some("REVIEW_IN_PROGRESS"));
    let id = gh
        .requests()
        .iter()
        .filter(|r| r["operation"] == "repos/create-commit-status")
        .filter(|r| r["body"]["context"] == "stackgate/prod-web")
        .filter_map(|r| {
            r["body"]["target_url"]
                .as_str()?
                .rsplit('/')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .next_back()
        .expect("the prod deploy's run");
    let (code, body) = http(
        "POST",
        &format!("{}/api/v1/runs/{id}/approve", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    assert_eq!(code, 202, "{body}");
    let (state, description) = wait_for(90, "the approved prod deploy", || {
        final_state(&gh.statuses(&sha), "stackgate/prod-web")
    });
    assert_eq!(
        (state.as_str(), description.as_str()),
        ("success", "CREATE_COMPLETE in prod")
    );
    let prod = stack_in(PROD, "us-east-1", &prod_name).expect("prod-web in the prod account");
    assert_eq!(prod.role_arn(), Some(CFN_ROLE), "the pinned service role");
}
