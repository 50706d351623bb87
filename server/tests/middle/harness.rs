//! stackgate built in-process from a config in a temp dir: SQLite state and a local git
//! repository there, no GitHub (statuses and comments stay in state), and an AWS endpoint
//! nothing listens on (or, for the pipeline tests, the emulator). Requests go through the
//! router with `oneshot`, without a socket.
//!
//! Every use of the crate's API by the middle layer goes through this file, so that a move
//! inside `server/src` is re-pointed here once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

pub use stackgate::cloud::cfn::Change;
pub use stackgate::domain::Phase;
pub use stackgate::domain::{JobId, JobState, Kind, Trigger};
pub use stackgate::github::fake::{Call, FakeGithub};
pub use stackgate::policy::PolicyHost;
pub use stackgate::queue::{Job, NewJob, PendingStatus};
pub use stackgate::report::check;
pub use stackgate::report::render;

use stackgate::app::App;
use stackgate::config::Config;

/// The repository GitHub's example payloads name, and its default branch there.
pub const REPO: &str = "Codertocat/Hello-World";
pub const BRANCH: &str = "master";
pub const HOOK_SECRET: &str = "middle-layer-hook-secret-4b1d";
pub const API_TOKEN: &str = "middle-layer-api-token-9f3e";
/// Where run links point: fixed, so that snapshots are stable.
pub const PUBLIC_URL: &str = "https://stackgate.example.com";

/// GitHub's own example payloads (npm `@octokit/webhooks-examples`), from the repository
/// root. The one place to change if the GitHub test doubles move.
pub const WEBHOOK_EXAMPLES: &str =
    "tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The examples of one event, in the package's order.
pub fn examples(event: &str) -> Vec<Value> {
    static ALL: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| {
        let path = root().join(WEBHOOK_EXAMPLES);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run deploy/local/setup.sh (npm ci in tests/doubles/github)",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("examples JSON")
    });
    all.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == event))
        .and_then(|e| e["examples"].as_array().cloned())
        .unwrap_or_else(|| panic!("no examples of `{event}`"))
}

/// GitHub's pull_request `opened` example, pointed at `sha` as pull request `number`.
pub fn pr_opened(number: u64, sha: &str, fork: bool) -> Value {
    let mut p = examples("pull_request")
        .into_iter()
        .find(|e| e["action"] == "opened")
        .expect("an opened example");
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["sha"] = json!(sha);
    if fork {
        p["pull_request"]["head"]["repo"]["full_name"] = json!("someone-else/Hello-World");
    }
    p
}

/// A response as a client sees it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A throwaway PostgreSQL cluster of a test's own (`deploy/local/postgres.sh`), stopped and
/// removed when dropped.
pub struct Cluster {
    pub port: String,
}

impl Cluster {
    /// On port `$var`, else `default`.
    pub fn start(var: &str, default: &str) -> Cluster {
        let c = Cluster {
            port: std::env::var(var).unwrap_or_else(|_| default.to_string()),
        };
        c.run("start");
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pause` (the server stops, its data stays) or `resume`.
    pub fn run(&self, cmd: &str) {
        let status = Command::new("bash")
            .arg(root().join("deploy/local/postgres.sh"))
            .args([cmd, &self.port])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run deploy/local/postgres.sh");
        assert!(status.success(), "postgres.sh {cmd} {}", self.port);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.run("stop");
    }
}

/// One stackgate, its state and its git remote in a temp dir.
pub struct TestApp {
    pub app: Arc<App>,
    router: Router,
    pub origin: PathBuf,
    _tmp: tempfile::TempDir,
}

impl TestApp {
    /// A remote whose `master` holds `files` (paths from the repository root), and stackgate
    /// configured for it.
    pub async fn new(files: &[(&str, &str)]) -> Self {
        // Nothing listens here: no call of these tests can reach a real AWS account.
        Self::build(files, "http://127.0.0.1:9", "").await
    }

    /// As [`TestApp::new`], its queue in the PostgreSQL database at `state_url` if given.
    pub async fn with_state(files: &[(&str, &str)], state_url: Option<&str>) -> Self {
        let url = state_url
            .map(|u| format!("url = \"{u}\""))
            .unwrap_or_default();
        Self::build(files, "http://127.0.0.1:9", &url).await
    }

    /// The same on the AWS emulator, with `state` added to the `[state]` section.
    pub async fn on_emulator(files: &[(&str, &str)], state: &str) -> Self {
        Self::build(files, &aws_endpoint(), state).await
    }

    async fn build(files: &[(&str, &str)], endpoint: &str, state_extra: &str) -> Self {
        static CREDENTIALS: std::sync::Once = std::sync::Once::new();
        // The emulator's fake credentials, for every app of this binary. Set first thing
        // of the first build: every test that builds an app (and so an AWS client, or a
        // git repository, whose C code reads the environment) waits here until it is set.
        CREDENTIALS.call_once(|| {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "stackgate-test"),
                ("AWS_SECRET_ACCESS_KEY", "stackgate-test"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ] {
                // SAFETY: see above; the other tests of this binary read the environment
                // through std (which locks it) or only after their own build passed here.
                unsafe { std::env::set_var(k, v) };
            }
        });
        let tmp = tempfile::tempdir().expect("tempdir");
        let origin = tmp.path().join("origin");
        std::fs::create_dir_all(&origin).expect("mkdir");
        git(&origin, &["init", "-q", "-b", BRANCH]);
        let secret = tmp.path().join("hook-secret");
        std::fs::write(&secret, HOOK_SECRET).expect("write secret");
        let config = tmp.path().join("stackgate.toml");
        let toml = format!(
            r#"listen = "127.0.0.1:0"
public_url = "{PUBLIC_URL}"
api_tokens = ["{token}"]

[state]
path = "{state}"
synchronous = "normal"
{state_extra}

[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_seconds = 0.1

[[repos]]
name = "{REPO}"
url = "{origin}"
branch = "{BRANCH}"
webhook_secret_file = "{secret}"
"#,
            token = hex::encode(Sha256::digest(API_TOKEN.as_bytes())),
            state = tmp.path().join("state/stackgate.db").display(),
            origin = origin.display(),
            secret = secret.display(),
        );
        std::fs::write(&config, toml).expect("write config");
        // Policies compiled once for every test: the cache is keyed by digest and engine.
        let cache = root().join("target/middle-policy-cache");
        std::fs::create_dir_all(&cache).expect("mkdir the policy cache");
        std::fs::create_dir_all(tmp.path().join("state")).expect("mkdir state");
        std::os::unix::fs::symlink(&cache, tmp.path().join("state/policy-cache"))
            .expect("link the policy cache");
        let cfg = Config::load(Some(&config)).expect("config");
        // The first build compiles the policies into the cache while the others wait.
        static WARM: AtomicBool = AtomicBool::new(false);
        static FIRST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let first = match WARM.load(Ordering::Acquire) {
            true => None,
            false => Some(FIRST.lock().await),
        };
        let app = Arc::new(stackgate::app::build(cfg).await.expect("build the app"));
        if first.is_some() {
            WARM.store(true, Ordering::Release);
        }
        let router = app.router();
        let t = Self {
            app,
            router,
            origin,
            _tmp: tmp,
        };
        if !files.is_empty() {
            t.commit(files, "initial");
        }
        t
    }

    /// Writes `files` into the remote and commits them on `master`; the new sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, contents) in files {
            let p = self.origin.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, contents).expect("write");
        }
        git(&self.origin, &["add", "-A"]);
        git(&self.origin, &["commit", "-q", "-m", message]);
        git(&self.origin, &["rev-parse", "HEAD"])
    }

    /// Points `refs/pull/<n>/head` at `sha`, as GitHub does for an open pull request.
    pub fn set_pull_head(&self, n: u64, sha: &str) {
        git(
            &self.origin,
            &["update-ref", &format!("refs/pull/{n}/head"), sha],
        );
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// Posts `body` as GitHub would: signed with `secret` when one is given.
    pub async fn webhook(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        secret: Option<&str>,
    ) -> Reply {
        let mut req = Request::post("/webhooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("user-agent", "GitHub-Hookshot/middle");
        if let Some(s) = secret {
            req = req.header("x-hub-signature-256", signature(s, body));
        }
        self.send(req.body(Body::from(body.to_vec())).expect("request"))
            .await
    }

    /// A signed delivery of `payload`.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> Reply {
        let body = serde_json::to_vec(payload).expect("json");
        self.webhook(event, delivery, &body, Some(HOOK_SECRET))
            .await
    }

    /// The job as `GET /api/v1/jobs/<id>` shows it.
    pub async fn job(&self, id: i64) -> Value {
        let r = self.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()
    }

    /// Queues jobs as the poller and the API do (their queued statuses too); their ids.
    pub fn enqueue(&self, jobs: &[NewJob]) -> Vec<JobId> {
        self.app.pipeline.enqueue(jobs).expect("enqueue")
    }

    /// Claims every runnable job and runs each to its end, as the dispatcher does.
    pub async fn run_queued(&self) {
        loop {
            let jobs = self.app.pipeline.claim(16).expect("claim");
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                stackgate::pipeline::run(self.app.pipeline.clone(), job).await;
            }
        }
    }

    /// Claims every runnable job, and ends each in `state` with `detail`, as a pipeline step
    /// would have (no statuses, no ledger).
    pub fn finish_queued(&self, state: JobState, detail: &Value) -> Vec<JobId> {
        let jobs = self.app.pipeline.claim(16).expect("claim");
        for j in &jobs {
            self.app
                .pipeline
                .queue
                .finish(j.claim(), state, detail, &[], None)
                .expect("finish");
        }
        jobs.iter().map(|j| j.id).collect()
    }

    /// Claims the runnable jobs and leaves them running.
    pub fn start_queued(&self) -> Vec<JobId> {
        let jobs = self.app.pipeline.claim(16).expect("claim");
        jobs.iter().map(|j| j.id).collect()
    }

    /// Claims the runnable jobs into this replica's leases, as the dispatcher does.
    pub fn claim(&self) -> Vec<Job> {
        self.app.pipeline.claim(16).expect("claim")
    }

    /// Runs a claimed job in its own task, as the dispatcher does.
    pub fn spawn_run(&self, job: Job) -> tokio::task::JoinHandle<()> {
        tokio::spawn(stackgate::pipeline::run(self.app.pipeline.clone(), job))
    }

    /// A job as stored.
    pub fn stored(&self, id: JobId) -> Job {
        self.app
            .pipeline
            .queue
            .job(id)
            .expect("read the job")
            .expect("the job")
    }

    /// Another replica, `name`, takes over the running jobs whose lease expired.
    pub fn take_over_as(&self, name: &str) -> Vec<Job> {
        let other = stackgate::queue::lease::Lease {
            owner: stackgate::queue::lease::Replica::named(name),
            length: std::time::Duration::from_secs(60),
        };
        self.app
            .pipeline
            .queue
            .take_over(&other, stackgate::queue::lease::Orphans::Expired)
            .expect("take over")
    }

    /// Whether CloudFormation has a stack `name` (in any state but deleted).
    pub async fn stack_exists(&self, name: &str) -> bool {
        stackgate::cloud::cfn::describe_stack(&self.app.pipeline.deployer.aws.cfn, name)
            .await
            .expect("DescribeStacks")
            .is_some()
    }

    /// Posts the outbox to `github` until nothing is left in it.
    pub async fn post_outbox(&self, github: &FakeGithub) {
        let mut poster = stackgate::report::outbox::Poster::default();
        for _ in 0..20 {
            poster.round(&self.app.pipeline.queue, github).await;
            let queue = &self.app.pipeline.queue;
            if queue.unposted_statuses(1).expect("statuses").is_empty()
                && queue.unposted_comments(1).expect("comments").is_empty()
            {
                return;
            }
        }
        panic!("the outbox did not empty");
    }

    /// Commit statuses waiting for GitHub for `sha`, in order: what GitHub will show.
    pub fn statuses(&self, sha: &str) -> Vec<PendingStatus> {
        self.app
            .pipeline
            .queue
            .unposted_statuses(1000)
            .expect("statuses")
            .into_iter()
            .filter(|s| s.sha == sha)
            .collect()
    }

    /// The state file.
    pub fn state_db(&self) -> PathBuf {
        self._tmp.path().join("state/stackgate.db")
    }

    /// Fixes the time the pages tell ages by at `now`, and every job's and ledger line's
    /// times before it (job `n` queued `60 - n` minutes earlier, started a second later,
    /// finished 45 s after that), so that a page is the same every run.
    pub fn fix_times(&self, now: i64) {
        self.app.http.clock.fix(now);
        let db = rusqlite::Connection::open(self.state_db()).expect("open the state file");
        db.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        db.execute_batch(&format!(
            "UPDATE jobs SET created_at = {now} - 3600000 + id * 60000,
                 started_at = CASE WHEN started_at IS NULL THEN NULL
                              ELSE {now} - 3600000 + id * 60000 + 1000 END,
                 finished_at = CASE WHEN finished_at IS NULL THEN NULL
                               ELSE {now} - 3600000 + id * 60000 + 46000 END;
             UPDATE deployed SET at = {now} - 1800000;"
        ))
        .expect("fix the times");
    }

    /// Fetches the branch into the mirror, as a sync does: the pages then know its commits.
    pub async fn fetch(&self) {
        let repo = self.app.pipeline.cfg.repos[0].clone();
        self.app
            .http
            .mirrors
            .fetch(&repo, None)
            .await
            .expect("fetch the branch");
    }

    /// Claims every runnable job and ends each in `state` with `detail`, writing its
    /// ledger line as a deploy that succeeded does (`removed`: as a removal).
    pub fn finish_deployed(&self, state: JobState, detail: &Value, removed: bool) -> Vec<JobId> {
        let identity: Option<stackgate::domain::StackIdentity> =
            serde_json::from_value(detail["identity"].clone()).ok();
        let jobs = self.app.pipeline.claim(16).expect("claim");
        for j in &jobs {
            let stack = j.stack.clone().expect("a deploy names its stack");
            self.app
                .pipeline
                .queue
                .finish(
                    j.claim(),
                    state,
                    detail,
                    &[],
                    Some(stackgate::queue::LedgerEntry {
                        repo: &j.repo,
                        stack: &stack,
                        sha: &j.sha,
                        removed,
                        identity: identity.as_ref(),
                    }),
                )
                .expect("finish");
        }
        jobs.iter().map(|j| j.id).collect()
    }

    /// The policies the app loaded.
    pub fn policies(&self) -> &PolicyHost {
        &self.app.pipeline.policies
    }
}

/// The AWS emulator tests/run.sh started (`STACKGATE_TEST_AWS_ENDPOINT`), or one started
/// here on the shared port, as the end-to-end tests do.
pub fn aws_endpoint() -> String {
    static ENDPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(e) = std::env::var("STACKGATE_TEST_AWS_ENDPOINT") {
                return e;
            }
            let port = "4599";
            let ok = Command::new("bash")
                .arg(root().join("deploy/local/emulator.sh"))
                .arg("start")
                .env("STACKGATE_EMULATOR_PORT", port)
                .status()
                .expect("run deploy/local/emulator.sh")
                .success();
            assert!(
                ok,
                "the AWS emulator did not start; run deploy/local/setup.sh"
            );
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// The emulator's slow knob: its answer to CloudFormation's `operation` naming `stack`
/// comes `seconds` late (0 switches it off).
pub fn slow_call(stack: &str, operation: &str, seconds: f64) {
    let rule = json!({"stack": stack, "operation": operation, "seconds": seconds});
    let out = Command::new("curl")
        .args([
            "-s",
            "-f",
            "--max-time",
            "10",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["--data-binary", &rule.to_string()])
        .arg(format!("{}/stackgate-api/slow", aws_endpoint()))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "the emulator's slow knob: {out:?}");
}

/// Runs a pull request's dry run of a commit holding `stacks` through the pipeline (the
/// comment goes nowhere: no GitHub is configured); the app, the commit and the job's JSON.
pub async fn dry_run(stacks: &[(String, String)], fork: bool) -> (TestApp, String, Value) {
    let t = TestApp::new(&files(stacks)).await;
    let sha = git(&t.origin, &["rev-parse", "HEAD"]);
    t.set_pull_head(7, &sha);
    let r = t
        .deliver("pull_request", "d-preview", &pr_opened(7, &sha, fork))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    t.run_queued().await;
    let job = t.job(1).await;
    (t, sha, job)
}

/// `X-Hub-Signature-256` for `body` signed with `secret`, as GitHub computes it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    stackgate::intake::signature::sign(secret.as_bytes(), body)
}

/// Runs git with a fixed author and dates, so that commit ids are the same every run.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A small stack folder that passes every policy: one SSM parameter.
pub fn passing_stack(folder: &str) -> [(String, String); 2] {
    [
        (
            format!("stacks/{folder}/deployment.yaml"),
            format!("template-file-path: template.yaml\nstack-name: {folder}\nparameters:\n  Value: hello\n"),
        ),
        (
            format!("stacks/{folder}/template.yaml"),
            "Parameters:\n  Value:\n    Type: String\nResources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Type: String\n      Value: !Ref Value\n".into(),
        ),
    ]
}

/// Borrowed pairs of owned ones, for `TestApp::new` and `commit`.
pub fn files(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect()
}
