//! Fuzzing entry points, shared by the `cargo fuzz` targets in `server/fuzz/` and by the
//! stable test below that replays their corpora and crash regressions. Each takes any
//! bytes and must neither panic nor run away; errors are the expected outcome.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use crate::git::checkout::{Snapshot, StackTree};
use crate::policy::input::PolicyInput;
use crate::stack::{Stack, Template, yaml};

/// The YAML/JSON loader: parse, then walk every recorded line back out and encode.
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = yaml::parse(text) {
        let _ = doc.line_of("");
        let _ = doc.line_of("/Resources/x/Properties");
        let _ = serde_json::to_string(&doc.value);
    }
}

/// The deployment-file parser.
pub fn deployment(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = yaml::parse(text) {
        let _ = crate::stack::Deployment::from_document("stacks/f/deployment.yaml", &doc);
    }
}

/// `Stack::load` on a folder. The input is `path\0contents\0path\0contents…`.
pub fn stack_folder(data: &[u8]) {
    let mut files = BTreeMap::new();
    let mut parts = data.split(|b| *b == 0);
    while let (Some(path), Some(contents)) = (parts.next(), parts.next()) {
        let path = String::from_utf8_lossy(path).into_owned();
        files.insert(path, (contents.to_vec(), false));
    }
    let snap = Snapshot {
        sha: "0".repeat(40),
        stacks_dir: "stacks".into(),
        stacks: BTreeMap::from([(
            "f".to_string(),
            StackTree {
                tree_id: String::new(),
                files,
                errors: Vec::new(),
                over: None,
            },
        )]),
    };
    let Some(folder) = snap.files("f") else {
        return;
    };
    if let Ok(stack) = Stack::load(&folder) {
        let _ = stack.resolved_parameters();
        let _ = stack.template.resources();
        for a in &stack.deployment.artifacts {
            let _ = crate::stack::StackFiles::walk(&folder, &a.path);
        }
    }
}

/// The policy input builder: the JSON text a policy receives for a template, if it loads.
/// The policies themselves are run on it natively by the callers.
pub fn policy_input(data: &[u8]) -> Option<String> {
    let template = Template::parse("f/template.yaml", data.to_vec()).ok()?;
    let input = PolicyInput::for_template(&template, "f", "us-east-1");
    input.to_json(&Value::Object(Default::default())).ok()
}

/// The secret the webhook harness's one repository signs with.
pub const WEBHOOK_SECRET: &str = "fuzz-webhook-secret";
/// The repository the harness configures, as webhook payloads name it.
pub const WEBHOOK_REPO: &str = "Codertocat/Hello-World";
/// Deliveries recorded before the harness starts over on a fresh state file.
const DELIVERIES_PER_STATE: usize = 20_000;

/// The harness's state folder: one per process, so that parallel fuzz jobs never share.
fn harness_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("stackgate-fuzz-{}", std::process::id()))
}

struct Harness {
    rt: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
    router: Option<axum::Router>,
    generation: usize,
    served: usize,
}

impl Harness {
    fn new() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let dir = harness_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("secret"), WEBHOOK_SECRET)?;
        let mut h = Self {
            rt,
            dir,
            router: None,
            generation: 0,
            served: 0,
        };
        h.restart()?;
        Ok(h)
    }

    /// A fresh App on a fresh state file (the policy cache beside it is kept).
    fn restart(&mut self) -> anyhow::Result<()> {
        self.router = None;
        let old = self.dir.join(format!("state-{}.db", self.generation));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", old.display()));
        }
        self.generation += 1;
        self.served = 0;
        let config = self.dir.join("stackgate.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n[state]\npath = \"{dir}/state-{n}.db\"\nsynchronous = \"normal\"\n\
                 [aws]\nendpoint_url = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n\
                 [[repos]]\nname = \"{WEBHOOK_REPO}\"\nurl = \"{dir}/none.git\"\nbranch = \"master\"\nwebhook_secret_file = \"{dir}/secret\"\n",
                dir = self.dir.display(),
                n = self.generation,
            ),
        )?;
        let cfg = crate::config::Config::load(Some(&config))?;
        let app = self.rt.block_on(crate::app::build(cfg))?;
        self.router = Some(app.router());
        Ok(())
    }
}

/// The webhook handler through the real router. The input is a first byte (bit 0: sign
/// the body with the configured secret, as GitHub would), then `Name: value` header
/// lines, an empty line, and the body. The answer's status, if the harness could start.
pub fn webhook(data: &[u8]) -> Option<axum::http::StatusCode> {
    static HARNESS: OnceLock<Option<Mutex<Harness>>> = OnceLock::new();
    let harness = HARNESS
        .get_or_init(|| Harness::new().ok().map(Mutex::new))
        .as_ref()?;
    let mut h = harness.lock().unwrap_or_else(|p| p.into_inner());
    let (&flags, rest) = data.split_first()?;
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut req = axum::http::Request::post("/webhooks/github");
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name),
            axum::http::HeaderValue::from_bytes(value),
        ) {
            req = req.header(n, v);
        }
    }
    if flags & 1 == 1 {
        let sig = crate::intake::signature::sign(WEBHOOK_SECRET.as_bytes(), body);
        req = req.header("x-hub-signature-256", sig);
    }
    let req = req.body(axum::body::Body::from(body.to_vec())).ok()?;
    let router = h.router.clone()?;
    let status = h.rt.block_on(async move {
        use tower::ServiceExt;
        router.oneshot(req).await.map(|r| r.status())
    });
    h.served += 1;
    // A server error is a bug; anything else (accepted, refused, malformed) is fine.
    let Ok(status) = status;
    assert!(!status.is_server_error(), "webhook answered {status}");
    if h.served >= DELIVERIES_PER_STATE {
        let _ = h.restart();
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `server/fuzz/{corpus,regressions}/<target>/*`, every file.
    fn inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut out = Vec::new();
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            for e in dir.flatten() {
                let bytes = std::fs::read(e.path()).unwrap();
                out.push((e.path(), bytes));
            }
        }
        out.sort();
        out
    }

    /// What the `policies` target runs: the input builder, then both policies natively
    /// on the JSON text, parsed as a guest parses it.
    pub(crate) fn policies(data: &[u8]) {
        if let Some(json) = policy_input(data)
            && let Ok(input) = serde_json::from_str::<Value>(&json)
        {
            let _ = policy_open_ingress::evaluate(&input);
            let _ = policy_least_privilege_iam::evaluate(&input);
        }
    }

    fn replay(target: &str, mut run: impl FnMut(&[u8])) {
        let all = inputs(target);
        assert!(!all.is_empty(), "no corpus for {target}");
        for (path, bytes) in all {
            eprintln!("{}", path.display());
            run(&bytes);
        }
    }

    #[test]
    fn the_fuzz_corpora_and_regressions_replay_cleanly() {
        replay("yaml", yaml);
        replay("deployment", deployment);
        replay("stack_folder", stack_folder);
        replay("policies", policies);
        let mut accepted = 0;
        replay("webhook", |data| {
            let status = webhook(data).expect("the webhook harness starts");
            accepted += usize::from(status == axum::http::StatusCode::ACCEPTED);
        });
        assert!(accepted > 0, "no seed was accepted");
        let _ = std::fs::remove_dir_all(harness_dir());
    }
}
