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
    stackgate_within(args, std::time::Duration::from_secs(600))
}

/// Runs the `stackgate` binary against the emulator, killed after `limit` (its exit code
/// is then `None`): for input that used to run away.
pub fn stackgate_within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stackgate");
    // Read both pipes meanwhile, so that a full pipe never stalls the child.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out_reader = drain(Box::new(child.stdout.take().expect("stdout")));
    let err_reader = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
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

/// The emulator's fake credentials, for the SDK clients below (one type for all).
fn credentials() -> aws_sdk_s3::config::Credentials {
    aws_sdk_s3::config::Credentials::new("stackgate-test", "stackgate-test", None, None, "tests")
}

/// An S3 client on the emulator, for arranging and checking state from outside stackgate.
pub fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A CloudFormation client on the emulator.
pub fn cfn() -> aws_sdk_cloudformation::Client {
    cfn_in("us-east-1")
}

/// A CloudFormation client on the emulator, in `region`.
pub fn cfn_in(region: &str) -> aws_sdk_cloudformation::Client {
    let conf = aws_sdk_cloudformation::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_cloudformation::config::Region::new(
            region.to_string(),
        ))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .build();
    aws_sdk_cloudformation::Client::from_conf(conf)
}
/// An SSM client on the emulator, for arranging parameters the gate must look up.
pub fn ssm() -> aws_sdk_ssm::Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

/// The three expansion cases and two doubt cases, each as a small stack folder:
/// (what, template, the rule that must refuse it, its severity, the verdict).
pub const GATE_CASES: &[(&str, &str, &str, &str)] = &[
    (
        "SAM transform with AdministratorAccess",
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: index.handler\n      InlineCode: 'def handler(e, c): pass'\n      Policies: AdministratorAccess\n",
        "stackgate/transform",
        "error",
    ),
    (
        "nested stack with a remote TemplateURL",
        "Resources:\n  Child:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: https://s3.amazonaws.com/someone-elses-bucket/child.yaml\n",
        "stackgate/nested-stack",
        "error",
    ),
    (
        "Fn::Transform AWS::Include inside a security group",
        "Resources:\n  Sg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: included rules\n      Fn::Transform:\n        Name: AWS::Include\n        Parameters:\n          Location: s3://someone-elses-bucket/rules.yaml\n",
        "stackgate/fn-transform",
        "error",
    ),
    (
        "port 22 open to a CIDR from an SSM parameter",
        "Parameters:\n  AdminCidr:\n    Type: AWS::SSM::Parameter::Value<String>\n    Default: /stackgate-test/admin-cidr\nResources:\n  AdminSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: ssh\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: !Ref AdminCidr\n",
        "open-ingress/unresolved-cidr",
        "fail",
    ),
    (
        "port 3389 open to a dynamic reference",
        "Resources:\n  RdpSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: rdp\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 3389\n          ToPort: 3389\n          CidrIp: '{{resolve:ssm:/stackgate-test/rdp-cidr}}'\n",
        "open-ingress/unresolved-cidr",
        "fail",
    ),
];

pub mod oidc;
pub mod postgres;
pub mod service;
pub mod slack;
