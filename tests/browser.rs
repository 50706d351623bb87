//! The console in a real browser: Debian's Chromium, driven by Playwright's driver
//! (`tests/browser/console.mjs`, npm `playwright-core` without its bundled browsers), against
//! a real `stackgate serve` with `[auth]`, the OpenID provider of the login tests, the GitHub
//! stand-in and the AWS emulator, all on 127.0.0.1. The hybrid stack is deployed by a push;
//! then in the browser: otto logs in through the provider's form and sees the overview, a
//! pushed change's run page goes live to success by itself, otto redeploys, viola (a viewer)
//! sees no action and gets 403, and a port opened by hand shows as drift. axe-core runs in
//! every page visited; screenshots go to `target/browser-screenshots/`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::oidc::{OTTO, Provider, VIOLA};
use support::service::*;
use support::*;

const ZERO: &str = "0000000000000000000000000000000000000000";
const SESSION_KEY: &str = "browser-test-session-key-0123456789abcdef";
/// The whole test must end well within this (CI's budget is shared by every suite).
const BUDGET: Duration = Duration::from_secs(240);
const CHROMIUM: &str = "/usr/bin/chromium";

/// A server whose `[auth]` points at a provider on `provider_port`: `otto` (group
/// stackgate-operators) operates the repository, `viola` (by email) views.
fn server_with_login(repo: &GitRepo, gh: &StandIn, provider_port: u16) -> Server {
    let extra = format!(
        "[auth]\nissuer = \"http://127.0.0.1:{provider_port}\"\nclient_id = \"{client}\"\n\
         client_secret_env = \"SG_TEST_OIDC_SECRET\"\nsession_key_env = \"SG_TEST_SESSION_KEY\"\n\
         scopes = [\"email\", \"groups\"]\n\
         [[auth.roles]]\nrole = \"operator\"\nclaim = \"groups\"\nvalue = \"stackgate-operators\"\nrepos = [\"{REPO}\"]\n\
         [[auth.roles]]\nrole = \"viewer\"\nclaim = \"email\"\nvalue = \"viola@example.test\"\n",
        client = support::oidc::CLIENT_ID,
    );
    Server::start_opts(
        repo,
        gh,
        Opts {
            extra: &extra,
            env: vec![
                (
                    "SG_TEST_OIDC_SECRET",
                    support::oidc::CLIENT_SECRET.to_string(),
                ),
                ("SG_TEST_SESSION_KEY", SESSION_KEY.to_string()),
            ],
            ..Opts::default()
        },
    )
}

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

/// The browser driver: one `node tests/browser/console.mjs` process, one step at a time.
struct Chromium {
    child: Child,
    stdin: ChildStdin,
    results: Receiver<Value>,
    log: Arc<Mutex<String>>,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    fn start(base: &str, issuer: &str, shots: &std::path::Path) -> Self {
        let dir = root().join("tests/browser");
        assert!(
            dir.join("node_modules/playwright-core").is_dir()
                && dir.join("node_modules/axe-core").is_dir(),
            "{}: no node_modules; run deploy/local/setup.sh (npm ci in tests/browser)",
            dir.display()
        );
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing; run deploy/local/setup.sh (Debian's chromium)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("console.mjs"))
            .args(["--base", base, "--issuer", issuer, "--chromium", CHROMIUM])
            .arg("--shots")
            .arg(shots)
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node tests/browser/console.mjs");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, results) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix("RESULT ") {
                    Some(r) => {
                        let v = serde_json::from_str(r)
                            .unwrap_or_else(|e| json!({"ok": false, "error": format!("{e}: {r}")}));
                        let _ = tx.send(v);
                    }
                    None => out_log.lock().unwrap().push_str(&(line + "\n")),
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_log
                    .lock()
                    .unwrap()
                    .push_str(&format!("node stderr: {line}\n"));
            }
        });
        let stdin = child.stdin.take().expect("stdin");
        Self {
            child,
            stdin,
            results,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Runs step `name`; its data, or a panic naming the step (and the browser's log).
    fn step(&mut self, name: &str, args: Value, limit: Duration, server: &Server) -> Value {
        let started = Instant::now();
        let line = json!({"step": name, "args": args}).to_string();
        writeln!(self.stdin, "{line}").expect("write to console.mjs");
        self.stdin.flush().expect("flush");
        let answer = match self.results.recv_timeout(limit) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!(
                "browser step `{name}` did not end within {limit:?}\n--- browser log\n{}\n--- server log (tail)\n{}",
                self.log(),
                tail(&server.logs(), 60)
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "browser step `{name}`: console.mjs exited\n--- browser log\n{}",
                self.log()
            ),
        };
        if answer["ok"] != true {
            panic!(
                "browser step `{name}` failed: {}\n--- browser log\n{}\n--- server log (tail)\n{}",
                answer["error"].as_str().unwrap_or("?"),
                self.log(),
                tail(&server.logs(), 60)
            );
        }
        eprintln!(
            "step {name}: ok in {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            answer["data"]
        );
        answer["data"].clone()
    }
}

/// A job through the API, with the admin token (the server has `[auth]`).
fn api_job(server: &Server, id: i64) -> Value {
    let (_, body) = http(
        "GET",
        &format!("{}/api/v1/jobs/{id}", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The newest run of the stack folder `hybrid-alb`: (id, commit).
fn newest_run(server: &Server) -> Option<(i64, String)> {
    let (code, body) = http(
        "GET",
        &format!("{}/api/v1/stacks/{REPO}/hybrid-alb", server.url),
        &[("Authorization", format!("Bearer {API_TOKEN}"))],
        None,
    );
    let page: Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
    let run = page["runs"].get(0)?;
    Some((run["id"].as_i64()?, run["sha"].as_str()?.to_string()))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn the_console_in_chromium_login_live_run_redeploy_roles_and_drift() {
    let started = Instant::now();
    let minute = Duration::from_secs(60);

    // 1. The provider, the GitHub stand-in, a repository with the hybrid stack, and
    // `stackgate serve` with `[auth]`; the stack deployed by a push.
    let gh = StandIn::start();
    let repo = GitRepo::new();
    let name = unique("browser");
    repo.add_stack_copy("hybrid-alb", &root().join("stacks/hybrid-alb"), &name);
    let sha1 = repo.commit("hybrid stack");
    let port = free_port();
    let server = server_with_login(&repo, &gh, port);
    let provider = Provider::start(port, &[&format!("{}/auth/callback", server.url)]);
    let (code, body) = server.push(ZERO, &sha1, &["stacks/hybrid-alb/template.yaml"]);
    assert_eq!(code, 202, "{body}");
    let shots = root().join("target/browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let mut chrome = Chromium::start(&server.url, &provider.issuer, &shots);
    let first = wait_for(120, "the first deploy", || {
        final_state(&gh.statuses(&sha1), "stackgate/hybrid-alb")
    });
    assert_eq!(first.0, "success", "{first:?}\n{}", server.logs());

    // 2. otto logs in through the provider's form and sees the overview.
    let me = chrome.step(
        "login",
        json!({"who": "otto", "user": OTTO.0, "password": OTTO.1}),
        minute,
        &server,
    );
    assert_eq!(me["roles"], json!([{"role": "operator", "repos": [REPO]}]));
    chrome.step(
        "overview",
        json!({"who": "otto", "folder": "hybrid-alb", "stack_name": name, "state": "in sync",
               "counts": {"all": 1, "in sync": 1}, "drift": "not checked", "name": "overview"}),
        minute,
        &server,
    );

    // The first deploy's run, from the overview's link: its change set adds every resource,
    // and it has a timeline (the emulator records stack-level events only: one bar).
    let created = chrome.step(
        "last_run",
        json!({"who": "otto", "folder": "hybrid-alb", "name": "run-create"}),
        minute,
        &server,
    );
    assert_eq!(created["changes"], 26, "the create's change set: {created}");
    assert!(
        created["timeline_bars"].as_u64().unwrap_or(0) >= 1,
        "the create's timeline: {created}"
    );

    // 3. A pushed change: its run page is live, its progress advances, and it settles to
    // succeeded by itself. The emulator answers the change set's creation 4 s late (the page
    // opens while the run is planning) and holds the update in progress for 6 s.
    let handler = repo.dir.join("stacks/hybrid-alb/lambda/handler.py");
    let code = std::fs::read_to_string(&handler).expect("handler.py");
    std::fs::write(&handler, format!("{code}\n_VERSION = \"2\"\n")).expect("write handler.py");
    let sha2 = repo.commit("lambda: version 2");
    slow_call(&name, "CreateChangeSet", 4.0);
    slow_stack(&name, 6.0);
    let (code, body) = server.push(&sha1, &sha2, &["stacks/hybrid-alb/lambda/handler.py"]);
    assert_eq!(code, 202, "{body}");
    let sync = body["jobs"][0].as_i64().expect("the push's sync job");
    // The push's sync job queues the stack's deploy.
    let id = wait_for(30, "the deploy of the change", || {
        newest_run(&server).filter(|(id, sha)| *id > sync && *sha == sha2)
    })
    .0;
    let run = chrome.step(
        "watch_run",
        json!({"who": "otto", "id": id, "expect": "succeeded", "live": true}),
        Duration::from_secs(120),
        &server,
    );
    slow_call(&name, "CreateChangeSet", 0.0);
    slow_stack(&name, 0.0);
    assert_eq!(run["reloaded_itself"], true, "{run}");
    assert!(
        run["timeline_bars"].as_u64().unwrap_or(0) > 0,
        "the update's run page has a timeline: {run}"
    );

    // 4. otto redeploys from the stack page: 303 to the new run, which succeeds.
    let redeploy = chrome.step(
        "redeploy",
        json!({"who": "otto", "repo": REPO, "folder": "hybrid-alb"}),
        Duration::from_secs(120),
        &server,
    );
    assert!(redeploy["id"].as_i64() > Some(id), "{redeploy}");
    let job = api_job(&server, redeploy["id"].as_i64().expect("id"));
    assert_eq!(
        (job["kind"].as_str(), job["trigger"].as_str()),
        (Some("deploy"), Some("manual")),
        "{job}"
    );

    // 5. viola, a viewer in a context of her own: no action, and 403 on their POSTs.
    let her = chrome.step(
        "login",
        json!({"who": "viola", "user": VIOLA.0, "password": VIOLA.1}),
        minute,
        &server,
    );
    assert_eq!(her["roles"], json!([{"role": "viewer"}]), "{her}");
    let refused = chrome.step(
        "viewer_stack",
        json!({"who": "viola", "repo": REPO, "folder": "hybrid-alb"}),
        minute,
        &server,
    );
    assert_eq!(
        (refused["redeploy"].as_u64(), refused["drift"].as_u64()),
        (Some(403), Some(403))
    );

    // 6. Someone opens ssh to the world on the load balancer's group, by hand; otto asks for
    // a check on the stack page, and the overview shows the drift.
    let group = boto(&format!(
        "cfn = boto3.client('cloudformation', **kw)\n\
         r = cfn.describe_stack_resource(StackName={name:?}, LogicalResourceId='AlbSecurityGroup')\n\
         print(r['StackResourceDetail']['PhysicalResourceId'])"
    ));
    boto(&format!(
        "ec2 = boto3.client('ec2', **kw)\n\
         ec2.authorize_security_group_ingress(GroupId={group:?}, IpPermissions=[\
         {{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{{'CidrIp': '0.0.0.0/0'}}]}}])"
    ));
    let check = chrome.step(
        "check_drift",
        json!({"who": "otto", "repo": REPO, "folder": "hybrid-alb"}),
        Duration::from_secs(150),
        &server,
    );
    let job = api_job(&server, check["id"].as_i64().expect("id"));
    assert_eq!(job["detail"]["drift"]["state"], "drifted", "{job:#}");
    chrome.step(
        "overview",
        json!({"who": "otto", "folder": "hybrid-alb", "stack_name": name, "state": "drifted",
               "counts": {"all": 1, "drifted": 1}, "drift": "drifted (1)", "name": "overview-drifted"}),
        minute,
        &server,
    );

    // axe-core: no serious or critical violation on any page visited.
    let axe = chrome.step("finish", json!({}), minute, &server);
    eprintln!("{}", chrome.log());
    eprintln!("axe per page: {axe:#}");
    gh.assert_all_valid();
    server.assert_no_secret_in_logs();
    let took = started.elapsed();
    eprintln!("the browser test took {:.1} s", took.as_secs_f64());
    assert!(took < BUDGET, "the browser test took {took:?}");
}
