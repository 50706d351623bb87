//! Shared parts of the end-to-end tests: the AWS emulator, temporary stack folders, and the
//! real `stackgate` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The AWS emulator's endpoint: `STACKGATE_TEST_AWS_ENDPOINT` when the test runner started
/// one, else one started here on a port of the tests' own.
pub fn aws_endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(e) = std::env::var("STACKGATE_TEST_AWS_ENDPOINT") {
                return e;
            }
            let port = "4599";
            let status = Command::new("bash")
                .arg(root().join("deploy/local/emulator.sh"))
                .arg("start")
                .env("STACKGATE_EMULATOR_PORT", port)
                .status()
                .expect("run deploy/local/emulator.sh");
            assert!(
                status.success(),
                "the AWS emulator did not start; run deploy/local/setup.sh first"
            );
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// The project's Python, with boto3 and the emulator installed.
pub fn python() -> PathBuf {
    root().join(".local/venv/bin/python")
}

/// Fake credentials: the emulator accepts any.
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "stackgate-test"),
    ("AWS_SECRET_ACCESS_KEY", "stackgate-test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The `stackgate` binary against the emulator.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackgate"));
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env(
            "STACKGATE_CACHE_DIR",
            root().join("target/test-policy-cache"),
        )
        .env_remove("AWS_PROFILE");
    for (k, v) in AWS_ENV {
        cmd.env(k, v);
    }
    cmd
}

fn echo(args: &[&str], out: &Output) {
    eprintln!(
        "$ stackgate {}\n--- exit {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `stackgate` binary against the emulator.
pub fn stackgate(args: &[&str]) -> Output {
    let out = command(args).output().expect("run stackgate");
    echo(args, &out);
    out
}

/// [`stackgate`], killed after `secs`: for input that used to run away. Its output is
/// small, so the pipes never fill while it runs.
pub fn stackgate_within(secs: u64, args: &[&str]) -> Output {
    let mut child = command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stackgate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stackgate {} ran past {secs} s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    echo(args, &out);
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary stack folder built from (path, contents) pairs.
pub fn stack_dir(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join(name);
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    }
    (tmp, dir)
}

/// A copy of a folder, e.g. `stacks/hybrid-alb`, to edit freely.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A unique suffix so that tests sharing one emulator never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}",
        nanos % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An S3 client on the emulator, for arranging and checking state from outside stackgate.
pub fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "stackgate-test",
            "stackgate-test",
            None,
            None,
            "tests",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A CloudFormation client on the emulator.
pub fn cfn() -> aws_sdk_cloudformation::Client {
    let conf = aws_sdk_cloudformation::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_cloudformation::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            "stackgate-test",
            "stackgate-test",
            None,
            None,
            "tests",
        ))
        .build();
    aws_sdk_cloudformation::Client::from_conf(conf)
}
pub mod service;
