//! The policy gate end to end: `stackgate check` on the hybrid stack and on variants that
//! break a rule, and the sandbox against hostile guests.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use stackgate::policy::input::PolicyInput;
use stackgate::policy::{Limits, PolicyHost, PolicySource, Verdict};
use stackgate::stack::{DirFiles, Stack};
use support::*;

fn check_json(dir: &Path) -> (Option<i32>, Value) {
    let out = stackgate(&["check", "--format", "json", dir.to_str().unwrap()]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json)
}

#[test]
fn the_hybrid_stack_passes_both_policies() {
    let out = stackgate(&["check", root().join("stacks/hybrid-alb").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("pass (0 error(s)"),
        "{}",
        stdout(&out)
    );
}

/// A copy of the hybrid stack with `edit` applied to its template text.
fn variant(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hybrid-alb");
    copy_dir(&root().join("stacks/hybrid-alb"), &dir);
    let tpl = std::fs::read_to_string(dir.join("template.yaml")).unwrap();
    let edited = edit(&tpl);
    assert_ne!(edited, tpl, "the edit changed nothing");
    std::fs::write(dir.join("template.yaml"), edited).unwrap();
    (tmp, dir)
}

const ALB_RULE: &str = "        - IpProtocol: tcp\n          FromPort: 80\n          ToPort: 80\n          CidrIp: 0.0.0.0/0\n";

fn add_resource(tpl: &str, yaml: &str) -> String {
    tpl.replacen("Resources:\n", &format!("Resources:\n{yaml}\n"), 1)
}

#[test]
fn each_broken_variant_fails_naming_the_resource() {
    // (what, edit of the template text, policy that must fail, resource it must name)
    type Case = (
        &'static str,
        Box<dyn Fn(&str) -> String>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "tcp 22 to the world",
            Box::new(|t: &str| {
                t.replacen(ALB_RULE, &format!("{ALB_RULE}        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: 0.0.0.0/0\n"), 1)
            }),
            "open-ingress",
            "AlbSecurityGroup",
        ),
        (
            "443 on the ALB group",
            Box::new(|t: &str| t.replacen(ALB_RULE, &ALB_RULE.replace("80", "443"), 1)),
            "open-ingress",
            "AlbSecurityGroup",
        ),
        (
            "protocol -1",
            Box::new(|t: &str| {
                t.replacen(
                    ALB_RULE,
                    "        - IpProtocol: \"-1\"\n          CidrIp: 0.0.0.0/0\n",
                    1,
                )
            }),
            "open-ingress",
            "AlbSecurityGroup",
        ),
        (
            "world CIDR from a parameter default",
            Box::new(|t: &str| {
                let t = t.replacen(
                    "Parameters:\n",
                    "Parameters:\n  AdminCidr:\n    Type: String\n    Default: 0.0.0.0/0\n",
                    1,
                );
                add_resource(
                    &t,
                    "  SshIn:\n    Type: AWS::EC2::SecurityGroupIngress\n    Properties:\n      GroupId: !GetAtt Ec2SecurityGroup.GroupId\n      IpProtocol: tcp\n      FromPort: 22\n      ToPort: 22\n      CidrIp: !Ref AdminCidr\n",
                )
            }),
            "open-ingress",
            "SshIn",
        ),
        (
            "s3:*",
            Box::new(|t: &str| {
                t.replacen(
                    "                  - logs:PutLogEvents\n",
                    "                  - logs:PutLogEvents\n                  - s3:*\n",
                    1,
                )
            }),
            "least-privilege-iam",
            "LambdaRole",
        ),
        (
            "write on *",
            Box::new(|t: &str| {
                t.replacen(
                    "                Resource: !GetAtt LambdaLogGroup.Arn\n",
                    "                Resource: \"*\"\n",
                    1,
                )
            }),
            "least-privilege-iam",
            "LambdaRole",
        ),
        (
            "iam:PassRole on *",
            Box::new(|t: &str| {
                add_resource(
                    t,
                    "  PassAnything:\n    Type: AWS::IAM::Policy\n    Properties:\n      PolicyName: pass\n      Roles: [!Ref LambdaRole]\n      PolicyDocument:\n        Version: \"2012-10-17\"\n        Statement:\n          - Effect: Allow\n            Action: iam:PassRole\n            Resource: \"*\"\n",
                )
            }),
            "least-privilege-iam",
            "PassAnything",
        ),
        (
            "AdministratorAccess",
            Box::new(|t: &str| {
                t.replacen("      Description: hybrid-alb Lambda - write to its own log group only\n", "      Description: hybrid-alb Lambda - write to its own log group only\n      ManagedPolicyArns:\n        - arn:aws:iam::aws:policy/AdministratorAccess\n", 1)
            }),
            "least-privilege-iam",
            "LambdaRole",
        ),
    ];
    for (what, edit, policy, resource) in cases {
        let (_tmp, dir) = variant(edit);
        let (code, json) = check_json(&dir);
        assert_eq!(code, Some(1), "{what}: {json:#}");
        let result = &json["results"][0];
        assert_eq!(result["verdict"], "fail", "{what}");
        let hit = result["findings"].as_array().unwrap().iter().any(|f| {
            f["policy"] == policy && f["resource"] == resource && f["severity"] == "error"
        });
        assert!(
            hit,
            "{what}: no error from {policy} on {resource}: {json:#}"
        );
        // Every finding points at a line of the template.
        for f in result["findings"].as_array().unwrap() {
            assert!(f["line"].as_u64().is_some_and(|l| l > 1), "{what}: {f}");
        }
    }
}

#[test]
fn text_and_sarif_point_at_the_line() {
    let (_tmp, dir) = variant(|t| t.replacen(ALB_RULE, &ALB_RULE.replace("80", "22"), 1));
    let tpl = std::fs::read_to_string(dir.join("template.yaml")).unwrap();
    let line = tpl
        .lines()
        .position(|l| l.contains("FromPort: 22"))
        .unwrap()
        + 1;
    let out = stackgate(&["check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(first.contains("template.yaml:"), "{text}");
    let at: usize = first.split(':').nth(1).unwrap().parse().unwrap();
    assert!(
        (line - 3..=line + 3).contains(&at),
        "line {at}, rule at {line}: {text}"
    );

    let out = stackgate(&["check", "--format", "sarif", dir.to_str().unwrap()]);
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["level"], "error");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64(),
        Some(at as u64)
    );
}

#[test]
fn bad_input_and_settings_exit_2() {
    let (_tmp, dir) = stack_dir("x", &[("t.yaml", "Resources: [\n")]);
    let out = stackgate(&["check", dir.join("t.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("t.yaml:"), "{}", stdout(&out));

    std::fs::write(dir.join("s.json"), r#"{"no-such-policy": {}}"#).unwrap();
    let out = stackgate(&[
        "check",
        "--settings",
        dir.join("s.json").to_str().unwrap(),
        root().join("stacks/hybrid-alb").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-policy"));
}

/// The issue's hostile templates: each ends in `error` naming the file and the line, quickly.
#[test]
fn hostile_templates_are_an_error_naming_file_and_line() {
    let dep = ("deployment.yaml", "template-file-path: t.yaml\n");
    // 596 bytes: nine levels of ten aliases, 10^9 scalars once expanded.
    let mut bomb = String::from("Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n");
    bomb.push_str(&format!("  a0: &a0 [{}]\n", ["x"; 10].join(",")));
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    // 40 KB: 20,000 compact nested block sequences.
    let deep = format!(
        "Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n  x:\n    {}x\n",
        "- ".repeat(20_000)
    );
    for (tpl, want) in [
        (
            &bomb,
            "t.yaml:10: column 36: alias `*a4` expands the document past 1000000 nodes",
        ),
        (&deep, "t.yaml:6: column 129: nested deeper than 64 levels"),
    ] {
        let (_tmp, dir) = stack_dir("x", &[dep, ("t.yaml", tpl)]);
        let started = Instant::now();
        let out = stackgate_within(&["check", dir.to_str().unwrap()], Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert!(stdout(&out).contains(want), "{}", stdout(&out));
    }
}

#[test]
fn an_oversized_folder_is_an_error_naming_the_path() {
    let dep = ("deployment.yaml", "template-file-path: t.yaml\n");
    // Three paths naming one sparse 40 MiB file: 120 MiB of stack folder.
    let (_tmp, dir) = stack_dir(
        "x",
        &[
            dep,
            ("t.yaml", "Resources:\n  B:\n    Type: AWS::S3::Bucket\n"),
        ],
    );
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::File::create(dir.join("data/a"))
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    std::os::unix::fs::symlink("a", dir.join("data/b")).unwrap();
    std::os::unix::fs::symlink("a", dir.join("data/c")).unwrap();
    let out = stackgate_within(&["check", dir.to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("the stack folder passes 104857600 bytes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn settings_change_what_the_alb_may_open() {
    let (_tmp, dir) = variant(|t| t.replacen(ALB_RULE, &ALB_RULE.replace("80", "443"), 1));
    std::fs::write(
        dir.join("../s.toml"),
        "[open-ingress]\nalb_world_ports = [443]\n",
    )
    .unwrap();
    let out = stackgate(&[
        "check",
        "--settings",
        dir.join("../s.toml").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

fn hostile(mode: &str) -> PolicySource {
    let path = Path::new(stackgate::policy::host::TEST_GUEST_DIR).join("hostile-guest.wasm");
    PolicySource {
        name: format!("hostile-{mode}"),
        bytes: std::fs::read(path).unwrap(),
        pinned: None,
        settings: serde_json::json!({ "mode": mode }),
    }
}

fn hybrid_input(edit: Option<&dyn Fn(&str) -> String>) -> (Stack, PolicyInput) {
    let (_tmp, dir) = variant(|t| match edit {
        Some(f) => f(t),
        None => format!("{t}\n"),
    });
    let stack = Stack::load(&DirFiles::open(&dir).unwrap()).unwrap();
    let input = PolicyInput::for_stack(
        &stack,
        "us-east-1",
        stackgate::policy::input::EventInfo {
            kind: "check".into(),
            sha: None,
        },
    );
    (stack, input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_fail_closed_and_the_host_stays_healthy() {
    let modes = [
        ("loop", "deadline"),
        ("bomb", "memory limit"),
        ("panic", "trapped"),
        ("recurse", "call stack exhausted"),
        ("garbage", "malformed output"),
        ("error", "cannot decide"),
    ];
    let mut sources: Vec<PolicySource> = modes.iter().map(|(m, _)| hostile(m)).collect();
    sources.extend(PolicySource::embedded());
    let limits = Limits {
        deadline: Duration::from_millis(500),
        memory_bytes: 64 << 20,
        concurrency: 2,
    };
    let host = PolicyHost::load(sources, limits, None).unwrap();

    for round in 0..2 {
        let edit = |t: &str| t.replacen(ALB_RULE, &ALB_RULE.replace("80", "22"), 1);
        let (stack, input) = if round == 0 {
            hybrid_input(None)
        } else {
            hybrid_input(Some(&edit))
        };
        let started = Instant::now();
        let report = host.evaluate(&input, Some(&stack.template.doc)).await;
        // Six hostile guests, the loop bounded by the deadline: far under 10 s in all.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(report.verdict, Verdict::Error, "round {round}: fail closed");
        for (mode, why) in modes {
            let o = report
                .outcomes
                .iter()
                .find(|o| o.policy == format!("hostile-{mode}"))
                .unwrap();
            assert_eq!(o.verdict, Verdict::Error, "{mode}");
            let err = o.error.as_deref().unwrap_or_default();
            assert!(err.contains(why), "{mode}: {err}");
            if mode == "loop" {
                assert!(o.micros < 2_000_000, "the loop ran {} µs", o.micros);
            }
        }
        // The real policies, in the same host after every trap, still judge correctly.
        let open = report
            .outcomes
            .iter()
            .find(|o| o.policy == "open-ingress")
            .unwrap();
        let iam = report
            .outcomes
            .iter()
            .find(|o| o.policy == "least-privilege-iam")
            .unwrap();
        assert_eq!(iam.verdict, Verdict::Pass);
        if round == 0 {
            assert_eq!(open.verdict, Verdict::Pass, "{:?}", open.findings);
        } else {
            assert_eq!(open.verdict, Verdict::Fail);
            assert!(
                open.findings
                    .iter()
                    .any(|f| f.resource == "AlbSecurityGroup")
            );
        }
    }
}

#[test]
fn a_policy_whose_digest_differs_from_its_pin_is_refused() {
    let mut src = PolicySource::embedded().remove(0);
    src.pinned = Some("0".repeat(64));
    let err = PolicyHost::load(vec![src], Limits::default(), None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("refusing to load"), "{err}");
}

#[test]
fn precompiled_policies_are_cached_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let host = PolicyHost::load(
        PolicySource::embedded(),
        Limits::default(),
        Some(cache.path()),
    )
    .unwrap();
    let names: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for (_, digest) in host.policies() {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&digest) && n.ends_with(".cwasm")),
            "{names:?}"
        );
    }
    drop(host);
    // Loaded from the cache the second time, and still evaluates.
    let host = PolicyHost::load(
        PolicySource::embedded(),
        Limits::default(),
        Some(cache.path()),
    )
    .unwrap();
    let (_, input) = hybrid_input(None);
    assert_eq!(host.evaluate_blocking(&input).verdict, Verdict::Pass);
}

/// `ulimit -v` in KiB: 8 GiB, far more than stackgate needs and far less than the 129 GiB
/// wasmtime's pool used to reserve at start.
pub const ADDRESS_SPACE_KIB: u64 = 8 << 20;

#[test]
fn check_runs_under_an_address_space_limit() {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_stackgate"))
        .args(["check", "--format", "json"])
        .arg(root().join("stacks/hybrid-alb"))
        .env(
            "STACKGATE_CACHE_DIR",
            root().join("target/test-policy-cache"),
        )
        .output()
        .expect("run stackgate under ulimit -v");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(json["results"][0]["verdict"], "pass", "{json}\n{stderr}");
}

/// The line of the first template line containing `needle`.
fn line_of(template: &str, needle: &str) -> u64 {
    template
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in the template"))
}

#[test]
fn deploy_time_expansions_and_doubt_fail_closed_in_check() {
    let needles = [
        "Transform:",
        "Child:",
        "Fn::Transform:",
        "CidrIp:",
        "CidrIp:",
    ];
    for ((what, template, rule, verdict), needle) in GATE_CASES.iter().zip(needles) {
        let (_tmp, dir) = stack_dir(
            "gate",
            &[
                ("deployment.yaml", "template-file-path: template.yaml\n"),
                ("template.yaml", template),
            ],
        );
        let (code, json) = check_json(&dir);
        let result = &json["results"][0];
        assert_eq!(result["verdict"], *verdict, "{what}: {json:#}");
        assert_eq!(
            code,
            Some(if *verdict == "error" { 2 } else { 1 }),
            "{what}"
        );
        let hit = result["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == *rule && f["severity"] == "error")
            .unwrap_or_else(|| panic!("{what}: no error {rule}: {json:#}"));
        assert_eq!(
            hit["line"].as_u64(),
            Some(line_of(template, needle)),
            "{what}: {hit}"
        );

        // The text output names the file and line, and what to do about a transform.
        let out = stackgate(&["check", dir.to_str().unwrap()]);
        let text = stdout(&out);
        let at = format!(
            "template.yaml:{}: error [{rule}]",
            line_of(template, needle)
        );
        assert!(text.contains(&at), "{what}: no `{at}` in:\n{text}");
        if rule.ends_with("transform") {
            assert!(text.contains("needs `plan`"), "{what}:\n{text}");
        }
    }
}

#[test]
fn operators_relax_doubt_per_policy_in_settings_only() {
    let (_tmp, dir) = stack_dir(
        "gate",
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            ("template.yaml", GATE_CASES[4].1),
        ],
    );
    // Without the setting, the dynamic reference is an error...
    let (code, json) = check_json(&dir);
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["results"][0]["findings"][0]["severity"], "error");
    // ...and the operator's settings (never the repository) make it a warning.
    std::fs::write(
        dir.join("../s.toml"),
        "[open-ingress]\nallow_deploy_time_values = true\n",
    )
    .unwrap();
    let s = dir.join("../s.toml");
    let out = stackgate(&[
        "check",
        "--settings",
        s.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("warning [open-ingress/unresolved-cidr]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_parameter_without_a_value_is_an_error_for_a_stack_but_a_warning_for_a_bare_template() {
    let template = "Parameters:\n  AdminCidr:\n    Type: String\nResources:\n  AdminSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: ssh\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: !Ref AdminCidr\n";
    let (_tmp, dir) = stack_dir(
        "gate",
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            ("template.yaml", template),
        ],
    );
    let (code, json) = check_json(&dir);
    assert_eq!(code, Some(2), "{json:#}");
    let hit = json["results"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "stackgate/parameter-without-value")
        .cloned()
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(hit["line"].as_u64(), Some(2));

    let (code, json) = check_json(&dir.join("template.yaml"));
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["results"][0]["findings"][0]["severity"], "warning");
}

/// What server/build.rs embeds, read as it reads it.
#[path = "../server/build/policies.rs"]
mod registry;

#[test]
fn the_embedded_policies_are_the_workspace_list_in_order() {
    let reg = registry::read(&root()).unwrap();
    let listed: Vec<&str> = reg.policies.iter().map(|p| p.name.as_str()).collect();
    let embedded: Vec<String> = PolicySource::embedded()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, embedded);
    let guests: Vec<&str> = reg.test_guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(guests, ["hostile-guest"], "a test guest is never a policy");
    assert!(reg.unlisted.is_empty(), "{:?}", reg.unlisted);
}

#[test]
fn a_third_policy_is_its_folder_and_one_line() {
    let ws = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let p = ws.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let manifest = |policies: &str| {
        format!(
            "[workspace]\nmembers = [\"policies/*\"]\n[workspace.metadata.stackgate]\n\
             policies = [{policies}]\ntest-guests = [\"tests/guest\"]\n"
        )
    };
    for (dir, krate) in [
        ("policies/sdk", "stackgate-policy-sdk"),
        ("policies/open-ingress", "policy-open-ingress"),
        ("policies/least-privilege-iam", "policy-least-privilege-iam"),
        ("tests/guest", "policy-guest"),
    ] {
        write(
            &format!("{dir}/Cargo.toml"),
            &format!("[package]\nname = \"{krate}\"\n"),
        );
    }
    write(
        "Cargo.toml",
        &manifest(r#""open-ingress", "least-privilege-iam""#),
    );
    // The folder alone: a workspace member, not embedded, and the build says so.
    write(
        "policies/no-public-buckets/Cargo.toml",
        "[package]\nname = \"policy-no-public-buckets\"\n",
    );
    let reg = registry::read(ws.path()).unwrap();
    assert_eq!(reg.policies.len(), 2);
    assert_eq!(reg.unlisted, ["no-public-buckets"]);

    // Plus its name in the list: embedded, in list order, built by its package name.
    write(
        "Cargo.toml",
        &manifest(r#""open-ingress", "least-privilege-iam", "no-public-buckets""#),
    );
    let reg = registry::read(ws.path()).unwrap();
    let got: Vec<(&str, &str)> = reg
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.krate.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("open-ingress", "policy-open-ingress"),
            ("least-privilege-iam", "policy-least-privilege-iam"),
            ("no-public-buckets", "policy-no-public-buckets"),
        ]
    );
    assert!(reg.unlisted.is_empty());
    assert_eq!(reg.test_guests[0].krate, "policy-guest");

    // A name without its folder, the SDK, or a repeat is an error naming it.
    for (list, says) in [
        (
            r#""open-ingress", "missing""#,
            "policies/missing/Cargo.toml",
        ),
        (r#""sdk""#, "\"sdk\""),
        (r#""open-ingress", "open-ingress""#, "listed twice"),
    ] {
        write("Cargo.toml", &manifest(list));
        let err = registry::read(ws.path()).unwrap_err();
        assert!(err.contains(says), "{list}: {err}");
    }
}
