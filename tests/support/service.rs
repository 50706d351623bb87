//! The service under test: a real `stackgate serve` process, a real git repository, the
//! GitHub stand-in (validating against GitHub's OpenAPI description) and GitHub's own
//! webhook examples.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

pub const HOOK_SECRET: &str = "whsec-stackgate-test-3f9a1c";
pub const GH_TOKEN: &str = "ghp_stackgateTestToken0123456789abcdef";
pub const API_TOKEN: &str = "sg-api-token-test-7d2e9b41";
pub const REPO: &str = "Codertocat/Hello-World";

/// The secrets the logs must never contain.
pub const SECRETS: &[&str] = &[HOOK_SECRET, GH_TOKEN, API_TOKEN];

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The GitHub API stand-in process.
pub struct StandIn {
    pub url: String,
    child: Child,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(root().join("tests/doubles/github/standin.py"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tests/doubles/github/standin.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("LISTENING line");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .expect("LISTENING <port>")
            .to_string();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        let (_, body) = http("GET", &format!("{}/_standin/requests", self.url), &[], None);
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v.as_array()
                    .cloned()
                    .or_else(|| v["requests"].as_array().cloned())
            })
            .unwrap_or_default()
    }

    /// Statuses GitHub accepted for `sha`, in the order they were posted: (context, state, description).
    pub fn statuses(&self, sha: &str) -> Vec<(String, String, String)> {
        self.requests()
            .iter()
            .filter(|r| r["operation"] == "repos/create-commit-status" && r["status"] == 201)
            .filter(|r| r["path_params"]["sha"] == sha)
            .map(|r| {
                (
                    r["body"]["context"].as_str().unwrap_or("").to_string(),
                    r["body"]["state"].as_str().unwrap_or("").to_string(),
                    r["body"]["description"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The check runs GitHub has, oldest first: each with `check_run` (as GitHub answers
    /// it) and every `annotations` its writes added.
    pub fn check_runs(&self) -> Vec<Value> {
        let (_, body) = http("GET", &format!("{}/_standin/state", self.url), &[], None);
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["check_runs"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The check run named `name` of commit `sha`, once it is completed.
    pub fn completed_check_run(&self, sha: &str, name: &str) -> Option<Value> {
        self.check_runs().into_iter().rev().find(|c| {
            c["check_run"]["head_sha"] == sha
                && c["check_run"]["name"] == name
                && c["check_run"]["status"] == "completed"
        })
    }

    pub fn invalid_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["valid"] == false && r["injected"] != true)
            .collect()
    }

    /// Every request stackgate sent is one GitHub would accept.
    pub fn assert_all_valid(&self) {
        let invalid = self.invalid_requests();
        assert!(invalid.is_empty(), "GitHub would refuse: {invalid:?}");
    }

    pub fn fail(&self, rule: Value) {
        let (code, body) = http(
            "POST",
            &format!("{}/_standin/fail", self.url),
            &[],
            Some(rule.to_string().as_bytes()),
        );
        assert!(code < 300, "{code} {body}");
    }
}

/// `curl`: status code and body. Headers as (name, value).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-S",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--max-time",
        "30",
        url,
    ]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let tmp;
    if let Some(b) = body {
        tmp = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(tmp.path(), b).expect("write body");
        cmd.arg("--data-binary")
            .arg(format!("@{}", tmp.path().display()));
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A git repository with a `stacks/` folder, committed to with the git CLI.
pub struct GitRepo {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl GitRepo {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("infra");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let r = Self { dir, _tmp: tmp };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, contents: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write");
    }

    pub fn add_stack_copy(&self, folder: &str, from: &Path, stack_name: &str) {
        let dest = self.dir.join("stacks").join(folder);
        copy_dir(from, &dest);
        let dep = std::fs::read_to_string(dest.join("deployment.yaml")).expect("deployment.yaml");
        let dep = dep
            .lines()
            .filter(|l| !l.starts_with("stack-name:"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(
            dest.join("deployment.yaml"),
            format!("{dep}\nstack-name: {stack_name}\n"),
        )
        .expect("write");
    }

    /// Points `refs/pull/<n>/head` at `sha`, as GitHub does for an open pull request.
    pub fn set_pull_head(&self, n: u64, sha: &str) {
        self.git(&["update-ref", &format!("refs/pull/{n}/head"), sha]);
    }

    /// The refs of a bare clone (e.g. stackgate's mirror), one `refs/...` name each.
    pub fn refs_of(dir: &Path) -> Vec<String> {
        let out = Command::new("git")
            .args(["for-each-ref", "--format=%(refname)"])
            .current_dir(dir)
            .output()
            .expect("git for-each-ref");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Commits everything; returns the sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A small, quick stack: one SSM parameter whose value comes from the deployment file.
pub fn param_stack(repo: &GitRepo, folder: &str, stack_name: &str, value: &str) {
    repo.write(
        &format!("stacks/{folder}/deployment.yaml"),
        &format!("template-file-path: template.yaml\nstack-name: {stack_name}\nparameters:\n  Value: {value}\n"),
    );
    repo.write(
        &format!("stacks/{folder}/template.yaml"),
        "Parameters:\n  Value:\n    Type: String\nResources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /stackgate-test/${AWS::StackName}\n      Type: String\n      Value: !Ref Value\n",
    );
}

/// What [`Server::start_opts`] takes beyond the repository and the stand-in.
#[derive(Default)]
pub struct Opts<'a> {
    /// Top-level config lines.
    pub extra: &'a str,
    /// Lines for the `[state]` table.
    pub state_extra: &'a str,
    /// Lines for the repository's `[[repos]]` table.
    pub repo_extra: &'a str,
    /// `ulimit -v` for the process, in KiB.
    pub address_space_kib: Option<u64>,
    /// Environment for every spawn.
    pub env: Vec<(&'static str, String)>,
}

/// A running `stackgate serve`.
pub struct Server {
    pub url: String,
    pub log: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
    pub state: PathBuf,
    /// `ulimit -v` for the process, in KiB.
    pub address_space_kib: Option<u64>,
    /// Extra environment for the next `spawn`.
    pub env: Vec<(&'static str, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Server {
    pub fn start(repo: &GitRepo, standin: &StandIn, extra: &str) -> Self {
        Self::start_limited(repo, standin, extra, None)
    }

    /// Started under `ulimit -v address_space_kib`.
    pub fn start_limited(
        repo: &GitRepo,
        standin: &StandIn,
        extra: &str,
        address_space_kib: Option<u64>,
    ) -> Self {
        Self::start_opts(
            repo,
            standin,
            Opts {
                extra,
                address_space_kib,
                ..Opts::default()
            },
        )
    }

    /// Started with more options: lines for `[state]` and environment for the process.
    pub fn start_opts(repo: &GitRepo, standin: &StandIn, opts: Opts<'_>) -> Self {
        let Opts {
            extra,
            state_extra,
            repo_extra,
            address_space_kib,
            env,
        } = opts;
        let tmp = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let state = tmp.path().join("state");
        let api_hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
        };
        let config = tmp.path().join("stackgate.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\napi_tokens = [\"{api_hash}\"]\nmax_parallel_jobs = 4\n{extra}\n\
                 [state]\npath = \"{state}/stackgate.db\"\n{state_extra}\n\
                 [github]\napi_url = \"{gh}\"\ntoken_env = \"TEST_GH_TOKEN\"\n\
                 [aws]\nendpoint_url = \"{aws}\"\nregion = \"us-east-1\"\npoll_seconds = 0.1\n\
                 [drift]\ninterval_seconds = 0\n\
                 [[repos]]\nname = \"{REPO}\"\nurl = \"{url}\"\nbranch = \"main\"\nwebhook_secret_env = \"TEST_HOOK_SECRET\"\nprune = true\n{repo_extra}\n",
                state = state.display(),
                gh = standin.url,
                aws = aws_endpoint(),
                url = repo.dir.display(),
            ),
        )
        .expect("config");
        let mut s = Self {
            url: format!("http://127.0.0.1:{port}"),
            log: tmp.path().join("server.log"),
            config,
            child: None,
            _tmp: tmp,
            state,
            address_space_kib,
            env,
        };
        s.spawn();
        s
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut cmd = match self.address_space_kib {
            Some(kib) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_stackgate"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_stackgate")),
        };
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .env("TEST_GH_TOKEN", GH_TOKEN)
            .env("TEST_HOOK_SECRET", HOOK_SECRET)
            .env("STACKGATE_LOG", "info,stackgate=debug")
            .env(
                "STACKGATE_CACHE_DIR",
                root().join("target/test-policy-cache"),
            )
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in AWS_ENV {
            cmd.env(k, v);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn stackgate serve"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http("GET", &format!("{}/healthz", self.url), &[], None).0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("stackgate serve did not start:\n{}", self.logs());
    }

    /// Rewrites the configuration and restarts the server with it.
    pub fn reconfigure(&mut self, edit: impl Fn(&str) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        std::fs::write(&self.config, edit(&text)).expect("config");
        self.kill();
        self.spawn();
    }

    /// SIGTERM, then the exit status within `within` (None: still running, then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGKILL: no graceful shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running (it never exited or crashed).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process's peak resident memory in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts a webhook signed with `secret` (exactly the bytes sent).
    pub fn webhook(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        secret: Option<&str>,
    ) -> (u16, Value) {
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-GitHub-Event", event.to_string()),
            ("X-GitHub-Delivery", delivery.to_string()),
            ("User-Agent", "GitHub-Hookshot/test".to_string()),
        ];
        if let Some(s) = secret {
            headers.push((
                "X-Hub-Signature-256",
                stackgate::intake::signature::sign(s.as_bytes(), body),
            ));
        }
        let (code, text) = http(
            "POST",
            &format!("{}/webhooks/github", self.url),
            &headers,
            Some(body),
        );
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A signed push of `sha` (after `before`) touching `paths`.
    pub fn push(&self, before: &str, sha: &str, paths: &[&str]) -> (u16, Value) {
        let body = push_payload(before, sha, paths, false);
        self.webhook("push", &delivery_id(), &body, Some(HOOK_SECRET))
    }

    pub fn job(&self, id: i64) -> Value {
        let (_, body) = http("GET", &format!("{}/api/v1/jobs/{id}", self.url), &[], None);
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    pub fn assert_no_secret_in_logs(&self) {
        let logs = self.logs();
        for s in SECRETS {
            assert!(!logs.contains(s), "a secret appears in the server log");
        }
    }
}

/// The last state and description a context reached, pending aside.
pub fn final_state(
    statuses: &[(String, String, String)],
    context: &str,
) -> Option<(String, String)> {
    statuses
        .iter()
        .rev()
        .find(|(c, s, _)| c == context && s != "pending")
        .map(|(_, s, d)| (s.clone(), d.clone()))
}

/// Waits until `f` returns Some, or panics with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn examples(event: &str) -> Vec<Value> {
    let path = root().join(
        "tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json",
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run deploy/local/setup.sh (npm ci in tests/doubles/github)",
            path.display()
        )
    }))
    .expect("examples JSON");
    all.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == event))
        .and_then(|e| e["examples"].as_array().cloned())
        .expect("event examples")
}

/// GitHub's branch-push example, edited into an ordinary push of `sha` touching `paths`.
pub fn push_payload(before: &str, sha: &str, paths: &[&str], forced: bool) -> Vec<u8> {
    let mut p = examples("push")[4].clone();
    p["ref"] = json!("refs/heads/main");
    p["before"] = json!(before);
    p["after"] = json!(sha);
    p["created"] = json!(false);
    p["forced"] = json!(forced);
    p["base_ref"] = Value::Null;
    if let Some(c) = p["commits"].get_mut(0) {
        c["id"] = json!(sha);
        c["modified"] = json!(paths);
        c["added"] = json!([]);
        c["removed"] = json!([]);
    }
    p["head_commit"]["id"] = json!(sha);
    p["head_commit"]["modified"] = json!(paths);
    serde_json::to_vec(&p).expect("json")
}

/// GitHub's pull_request example for `action`, edited to point at `sha` on `branch`.
pub fn pr_payload(action: &str, number: u64, sha: &str, branch: &str, fork: bool) -> Vec<u8> {
    let mut p = examples("pull_request")
        .into_iter()
        .find(|e| e["action"] == action && e.get("installation").is_some())
        .or_else(|| {
            examples("pull_request")
                .into_iter()
                .find(|e| e["action"] == action)
        })
        .expect("example");
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["sha"] = json!(sha);
    p["pull_request"]["head"]["ref"] = json!(branch);
    p["pull_request"]["base"]["ref"] = json!("main");
    if fork {
        p["pull_request"]["head"]["repo"]["full_name"] = json!("someone-else/Hello-World");
    }
    serde_json::to_vec(&p).expect("json")
}

/// A stand-in that knows a GitHub App (id 4242, installation 77) and the App's private
/// key, in the directory returned with it.
pub fn app_standin() -> (StandIn, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("tmp");
    let key = keys.path().join("app.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl genrsa");
    let gh = StandIn::start_with(&[
        "--app-public-key",
        key.to_str().expect("utf-8 path"),
        "--app-id",
        "4242",
        "--installation-id",
        "77",
    ]);
    (gh, keys)
}

/// The config edit that makes a server of [`Server::start`] the App of [`app_standin`].
pub fn as_app(keys: &tempfile::TempDir) -> impl Fn(&str) -> String {
    let key = keys.path().join("app.pem").display().to_string();
    move |c: &str| {
        c.replace(
            "token_env = \"TEST_GH_TOKEN\"",
            &format!("app_id = 4242\nprivate_key_file = \"{key}\"\ninstallation_id = 77"),
        )
    }
}

/// GitHub's `check_run` `rerequested` example (a user pressed "Re-run"), edited to be a
/// run of App `app` on `sha` of this repository, carrying `external_id`.
pub fn check_run_rerequested(app: u64, sha: &str, external_id: &str) -> Vec<u8> {
    let mut p = examples("check_run")
        .into_iter()
        .find(|e| e["action"] == "rerequested")
        .expect("a check_run rerequested example");
    p["check_run"]["app"]["id"] = json!(app);
    p["check_run"]["head_sha"] = json!(sha);
    p["check_run"]["external_id"] = json!(external_id);
    p["repository"]["full_name"] = json!(REPO);
    serde_json::to_vec(&p).expect("json")
}

pub fn delivery_id() -> String {
    unique("delivery")
}

/// The emulator's slow-operation knob (deploy/local/emulator/slow.py): `stack`'s creates,
/// updates and deletes stay in progress for `seconds` (0 switches it off).
pub fn slow_stack(stack: &str, seconds: f64) {
    slow_rule(json!({"stack": stack, "seconds": seconds}));
}

/// The same knob for one CloudFormation call (e.g. `DescribeStacks`) naming `stack`: its
/// answer comes `seconds` late (0 switches it off).
pub fn slow_call(stack: &str, operation: &str, seconds: f64) {
    slow_rule(json!({"stack": stack, "seconds": seconds, "operation": operation}));
}

fn slow_rule(rule: Value) {
    let (code, body) = http(
        "POST",
        &format!("{}/stackgate-api/slow", aws_endpoint()),
        &[("Content-Type", "application/json".into())],
        Some(rule.to_string().as_bytes()),
    );
    assert_eq!(code, 200, "the emulator's slow knob: {body}");
}

/// A stack's parameter value, as CloudFormation has it now.
pub fn stack_parameter(stack: &str, key: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt
        .block_on(cfn().describe_stacks().stack_name(stack).send())
        .ok()?;
    let s = out.stacks().first()?;
    if s.stack_status().map(|x| x.as_str()) == Some("DELETE_COMPLETE") {
        return None;
    }
    s.parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(key))
        .and_then(|p| p.parameter_value())
        .map(str::to_string)
}
