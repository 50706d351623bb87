//! The deployer end to end: the real binary against the AWS emulator, checked from outside
//! by the SDK and by a separate inventory program.

mod support;

use std::process::Command;

use support::*;

fn inventory(stack_template: &std::path::Path, stack: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(root().join("tests/tools/inventory.py"))
        .args([
            "--endpoint",
            &aws_endpoint(),
            "--stack",
            stack,
            "--template",
        ])
        .arg(stack_template)
        .envs(AWS_ENV.iter().copied())
        .output()
        .expect("run tests/tools/inventory.py");
    assert!(
        out.status.success(),
        "inventory failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inventory prints JSON")
}

#[test]
fn hybrid_stack_deploys_plans_clean_and_removes_without_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hybrid-alb");
    copy_dir(&root().join("stacks/hybrid-alb"), &dir);
    let name = unique("hybrid");
    let dep = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    std::fs::write(
        dir.join("deployment.yaml"),
        dep.replace("stack-name: hybrid-alb", &format!("stack-name: {name}")),
    )
    .unwrap();
    let d = dir.to_str().unwrap();

    let out = stackgate(&["deploy", d, "--poll-seconds", "0.2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("CREATE_COMPLETE"), "{text}");
    for output in ["AlbDnsName", "LambdaUrl", "Ec2Url"] {
        assert!(text.contains(output), "output {output} missing:\n{text}");
    }
    assert!(text.contains("artifact lambda: uploaded"), "{text}");

    // Another program lists what exists: every resource type of the template.
    let inv = inventory(&dir.join("template.yaml"), &name);
    let missing = inv["missing"].as_array().unwrap();
    assert!(
        missing.is_empty(),
        "resources missing after deploy: {missing:?}"
    );
    assert!(inv["present"].as_array().unwrap().len() >= 20, "{inv}");

    // Same source, same artifact key: nothing to change, the Lambda included.
    let out = stackgate(&["plan", d, "--poll-seconds", "0.2"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("plan: no changes"), "{text}");
    assert!(text.contains("artifact lambda: unchanged"), "{text}");

    let out = stackgate(&["remove", d, "--poll-seconds", "0.2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("DELETE_COMPLETE"));
    let inv = inventory(&dir.join("template.yaml"), &name);
    let present = inv["present"].as_array().unwrap();
    assert!(
        present.is_empty(),
        "resources left after remove: {present:?}"
    );

    let out = stackgate(&["remove", d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("does not exist; nothing to remove"));
}

const PARAM_TEMPLATE: &str = "\
Parameters:
  Greeting:
    Type: String
    Default: hello
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /stackgate-test/${AWS::StackName}
      Type: String
      Value: !Ref Greeting
Outputs:
  ParamName:
    Value: !Ref Param
";

#[test]
fn update_shows_the_change_in_plan_then_applies_it() {
    let name = unique("update");
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            (
                "deployment.yaml",
                "template-file-path: template.yaml\nparameters:\n  Greeting: hello\n",
            ),
            ("template.yaml", PARAM_TEMPLATE),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["plan", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Add"), "{}", stdout(&out));
    // A plan of a new stack leaves no review-only stack behind.
    let exists = tokio_rt().block_on(cfn().describe_stacks().stack_name(&name).send());
    assert!(exists.is_err(), "plan left a stack behind: {exists:?}");

    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("CREATE_COMPLETE"));

    std::fs::write(
        dir.join("deployment.yaml"),
        "template-file-path: template.yaml\nparameters:\n  Greeting: bonjour\n",
    )
    .unwrap();
    let out = stackgate(&["plan", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("Param") && l.contains("AWS::SSM::Parameter"))
        .unwrap_or_else(|| panic!("no change row for Param:\n{text}"));
    assert!(row.starts_with("Modify"), "{row}");

    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("UPDATE_COMPLETE"), "{}", stdout(&out));
    let out = stackgate(&["plan", d, "--poll-seconds", "0.1"]);
    assert!(
        stdout(&out).contains("plan: no changes"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stackgate(&["remove", d]).status.code(), Some(0));
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn remove_empties_a_versioned_bucket_first() {
    let name = unique("bucket");
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            (
                "template.yaml",
                "Resources:\n  Data:\n    Type: AWS::S3::Bucket\n    Properties:\n      VersioningConfiguration:\n        Status: Enabled\nOutputs:\n  Bucket:\n    Value: !Ref Data\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rt = tokio_rt();
    let bucket = bucket_of(&name, "Data");
    rt.block_on(async {
        let s3 = s3();
        // moto ignores VersioningConfiguration in templates; turn it on as AWS would have.
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for body in ["v1", "v2"] {
            s3.put_object()
                .bucket(&bucket)
                .key("report.txt")
                .body(body.as_bytes().to_vec().into())
                .send()
                .await
                .unwrap();
        }
        s3.delete_object()
            .bucket(&bucket)
            .key("report.txt")
            .send()
            .await
            .unwrap();
        let versions = s3
            .list_object_versions()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        assert_eq!(versions.versions().len(), 2);
        assert_eq!(versions.delete_markers().len(), 1);
    });

    let out = stackgate(&["remove", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 object versions"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("DELETE_COMPLETE"));
    let gone = rt.block_on(s3().head_bucket().bucket(&bucket).send());
    assert!(gone.is_err(), "bucket {bucket} still exists");
}

#[test]
fn a_template_over_51200_bytes_goes_through_s3() {
    let name = unique("big");
    let padding = "x".repeat(60_000);
    let template = format!(
        "Resources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Metadata:\n      Padding: {padding}\n    Properties:\n      Name: !Sub /stackgate-test/${{AWS::StackName}}\n      Type: String\n      Value: big\n"
    );
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            ("template.yaml", &template),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("passed by S3 URL"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("CREATE_COMPLETE"));
    assert_eq!(stackgate(&["remove", d]).status.code(), Some(0));
}

/// Each bad input: exit 2, the file (and line where there is one) named, nothing sent.
#[test]
fn bad_input_is_refused_with_file_and_line() {
    let ok_tpl = "Parameters:\n  P:\n    Type: String\n    Default: a\nResources:\n  B:\n    Type: AWS::S3::Bucket\n";
    // (what, the stack folder's files, what the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no deployment file",
            vec![("template.yaml", ok_tpl)],
            "no deployment file",
        ),
        (
            "unparsable template",
            vec![
                ("deployment.yaml", "template-file-path: template.yaml\n"),
                (
                    "template.yaml",
                    "Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties: {BucketName: [\n",
                ),
            ],
            "template.yaml:",
        ),
        (
            "unparsable deployment file",
            vec![
                (
                    "deployment.yaml",
                    "template-file-path: template.yaml\nparameters: [P: a\n",
                ),
                ("template.yaml", ok_tpl),
            ],
            "deployment.yaml:",
        ),
        (
            "unknown tag",
            vec![
                ("deployment.yaml", "template-file-path: template.yaml\n"),
                (
                    "template.yaml",
                    "Resources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Reff x\n",
                ),
            ],
            "template.yaml:5",
        ),
        (
            "missing template",
            vec![("deployment.yaml", "template-file-path: nope.yaml\n")],
            "nope.yaml",
        ),
        (
            "undeclared parameter",
            vec![
                (
                    "deployment.yaml",
                    "template-file-path: template.yaml\nparameters:\n  P: b\n  Q: c\n",
                ),
                ("template.yaml", ok_tpl),
            ],
            "deployment.yaml:4",
        ),
        (
            "unknown key",
            vec![
                (
                    "deployment.yaml",
                    "template-file-path: template.yaml\nstack_name: x\n",
                ),
                ("template.yaml", ok_tpl),
            ],
            "deployment.yaml:2: unknown key `stack_name`",
        ),
        (
            "dotdot template path",
            vec![("deployment.yaml", "template-file-path: ../template.yaml\n")],
            "leaves the stack folder",
        ),
        (
            "missing artifact folder",
            vec![
                (
                    "deployment.yaml",
                    "template-file-path: template.yaml\nartifacts:\n  - path: code\n    bucket-parameter: P\n    key-parameter: P\n",
                ),
                ("template.yaml", ok_tpl),
            ],
            "code",
        ),
    ];
    for (what, files, expect) in cases {
        let (_tmp, dir) = stack_dir("bad", &files);
        let out = stackgate(&["plan", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expect),
            "{what}: expected `{expect}` in:\n{}",
            stderr(&out)
        );
    }

    // A symlink out of the stack folder.
    let (tmp, dir) = stack_dir(
        "bad",
        &[("deployment.yaml", "template-file-path: template.yaml\n")],
    );
    std::fs::write(tmp.path().join("outside.yaml"), ok_tpl).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.yaml"), dir.join("template.yaml")).unwrap();
    let out = stackgate(&["plan", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("leaves the stack folder"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failed_create_rolls_back_and_names_the_resource_and_reason() {
    let name = unique("broken");
    let template = "\
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.20.0.0/16
  Subnet:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: 10.99.0.0/24
";
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            ("template.yaml", template),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ROLLBACK_COMPLETE"), "{err}");
    assert!(
        err.contains("Subnet (AWS::EC2::Subnet) CREATE_FAILED"),
        "{err}"
    );
    assert!(err.contains("The CIDR '10.99.0.0/24' is invalid."), "{err}");

    // The stack cannot be updated now; the deployer says what to do instead.
    let out = stackgate(&["plan", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("remove it"), "{}", stderr(&out));

    assert_eq!(
        stackgate(&["remove", d, "--poll-seconds", "0.1"])
            .status
            .code(),
        Some(0)
    );
    let out = stackgate(&["remove", d]);
    assert!(stdout(&out).contains("nothing to remove"));
}

fn tags_of(name: &str) -> Vec<(String, String)> {
    let out = tokio_rt()
        .block_on(cfn().describe_stacks().stack_name(name).send())
        .unwrap();
    out.stacks()[0]
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn stack_status(name: &str) -> Option<String> {
    tokio_rt()
        .block_on(cfn().describe_stacks().stack_name(name).send())
        .ok()
        .and_then(|o| o.stacks().first().cloned())
        .and_then(|s| s.stack_status().map(|st| st.as_str().to_string()))
        .filter(|s| s != "DELETE_COMPLETE")
}

const SIMPLE_TEMPLATE: &str = "Resources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /stackgate-test/${AWS::StackName}\n      Type: String\n      Value: mine\nOutputs:\n  Secretish:\n    Value: output-value-never-shown\n";

#[test]
fn a_stack_stackgate_did_not_create_is_left_alone_unless_adopted() {
    let name = unique("foreign");
    // Someone else's stack, created outside stackgate, with an output of its own.
    tokio_rt()
        .block_on(
            cfn()
                .create_stack()
                .stack_name(&name)
                .template_body(SIMPLE_TEMPLATE)
                .send(),
        )
        .unwrap();
    let (_tmp, dir) = stack_dir(
        "foreign",
        &[
            (
                "deployment.yaml",
                &format!("template-file-path: template.yaml\nstack-name: {name}\n"),
            ),
            ("template.yaml", &SIMPLE_TEMPLATE.replace("mine", "taken")),
        ],
    );
    let d = dir.to_str().unwrap();
    for args in [
        vec!["plan", d, "--poll-seconds", "0.1"],
        vec!["deploy", d, "--poll-seconds", "0.1"],
        vec!["remove", d, "--poll-seconds", "0.1"],
    ] {
        let out = stackgate(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("stack `{name}` is not stackgate's to change"))
                && err.contains("no managed-by=stackgate tag")
                && err.contains("--adopt"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("output-value-never-shown"), "{err}");
    }
    assert_eq!(stack_status(&name).as_deref(), Some("CREATE_COMPLETE"));
    assert!(
        !tags_of(&name).iter().any(|(k, _)| k == "managed-by"),
        "the refused deploy tagged the stack"
    );

    // Adopted on purpose: updated and tagged, and then removable.
    let out = stackgate(&["deploy", d, "--adopt", "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("adopted"), "{}", stdout(&out));
    let tags = tags_of(&name);
    assert!(
        tags.contains(&("managed-by".into(), "stackgate".into()))
            && tags.contains(&("stackgate:path".into(), "foreign".into())),
        "{tags:?}"
    );
    let out = stackgate(&["remove", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stack_status(&name), None);
}

#[test]
fn a_stack_of_another_folder_is_never_taken_over() {
    let name = unique("owned");
    let deployment = format!("template-file-path: template.yaml\nstack-name: {name}\n");
    let (tpl_a, tpl_b) = (
        SIMPLE_TEMPLATE.replace("mine", "a"),
        SIMPLE_TEMPLATE.replace("mine", "b"),
    );
    let (_ta, owner) = stack_dir(
        "team-a",
        &[("deployment.yaml", &deployment), ("template.yaml", &tpl_a)],
    );
    let (_tb, other) = stack_dir(
        "team-b",
        &[("deployment.yaml", &deployment), ("template.yaml", &tpl_b)],
    );
    let out = stackgate(&["deploy", owner.to_str().unwrap(), "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    for args in [
        vec!["deploy", other.to_str().unwrap(), "--poll-seconds", "0.1"],
        vec![
            "deploy",
            other.to_str().unwrap(),
            "--adopt",
            "--poll-seconds",
            "0.1",
        ],
        vec![
            "remove",
            other.to_str().unwrap(),
            "--adopt",
            "--poll-seconds",
            "0.1",
        ],
    ] {
        let out = stackgate(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "stack `{name}` is not stackgate's to change from team-b"
            )) && err.contains("belongs to team-a"),
            "{args:?}: {err}"
        );
    }
    assert!(
        tags_of(&name).contains(&("stackgate:path".into(), "team-a".into())),
        "{:?}",
        tags_of(&name)
    );
    let out = stackgate(&["remove", owner.to_str().unwrap(), "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn bucket_of(stack: &str, logical: &str) -> String {
    tokio_rt().block_on(async {
        let res = cfn()
            .describe_stack_resource()
            .stack_name(stack)
            .logical_resource_id(logical)
            .send()
            .await
            .unwrap();
        res.stack_resource_detail()
            .and_then(|d| d.physical_resource_id())
            .unwrap()
            .to_string()
    })
}

fn put(bucket: &str, key: &str, body: &[u8]) {
    tokio_rt()
        .block_on(
            s3().put_object()
                .bucket(bucket)
                .key(key)
                .body(body.to_vec().into())
                .send(),
        )
        .unwrap();
}

#[test]
fn remove_keeps_retained_buckets_and_their_objects() {
    let name = unique("retain");
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            (
                "template.yaml",
                "Resources:\n  Keep:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: Retain\n  Mostly:\n    Type: AWS::S3::Bucket\n    DeletionPolicy: RetainExceptOnCreate\n  Scratch:\n    Type: AWS::S3::Bucket\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (keep, mostly, scratch) = (
        bucket_of(&name, "Keep"),
        bucket_of(&name, "Mostly"),
        bucket_of(&name, "Scratch"),
    );
    put(&keep, "ledger.csv", b"precious");
    put(&mostly, "ledger.csv", b"precious");
    put(&scratch, "tmp.txt", b"scratch");

    let out = stackgate(&["remove", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("kept bucket {keep}")), "{text}");
    assert!(text.contains(&format!("kept bucket {mostly}")), "{text}");
    assert!(
        text.contains(&format!("emptied bucket {scratch}: 1")),
        "{text}"
    );
    assert_eq!(stack_status(&name), None);
    let rt = tokio_rt();
    for bucket in [&keep, &mostly] {
        let kept = rt
            .block_on(s3().get_object().bucket(bucket).key("ledger.csv").send())
            .expect("a retained bucket keeps its objects");
        let body = rt.block_on(kept.body.collect()).unwrap().into_bytes();
        assert_eq!(&body[..], b"precious");
        // Clean up what the stack left by design.
        rt.block_on(async {
            s3().delete_object()
                .bucket(bucket)
                .key("ledger.csv")
                .send()
                .await
                .unwrap();
            s3().delete_bucket().bucket(bucket).send().await.unwrap();
        });
    }
    assert!(
        rt.block_on(s3().head_bucket().bucket(&scratch).send())
            .is_err()
    );
}

#[test]
fn a_delete_s3_refuses_fails_the_remove_and_names_the_object() {
    let name = unique("locked");
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            (
                "template.yaml",
                "Resources:\n  Data:\n    Type: AWS::S3::Bucket\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bucket = bucket_of(&name, "Data");
    let rt = tokio_rt();
    use aws_sdk_s3::types::{
        BucketVersioningStatus, ObjectLockConfiguration, ObjectLockEnabled,
        ObjectLockLegalHoldStatus, VersioningConfiguration,
    };
    rt.block_on(async {
        let s3 = s3();
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        s3.put_object_lock_configuration()
            .bucket(&bucket)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket(&bucket)
            .key("evidence/held.txt")
            .body(b"on legal hold".to_vec().into())
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap();
    });

    // Before the fix this never returned: the delete was refused and the loop listed the
    // object again, for ever.
    let out = stackgate_within(
        &["remove", d, "--poll-seconds", "0.1"],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "S3 refused to delete s3://{bucket}/evidence/held.txt"
        )) && err.contains("AccessDenied"),
        "{err}"
    );
    assert_eq!(stack_status(&name).as_deref(), Some("CREATE_COMPLETE"));

    // Lift the hold: now it goes.
    rt.block_on(async {
        let versions = s3()
            .list_object_versions()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        for v in versions.versions() {
            s3().put_object_legal_hold()
                .bucket(&bucket)
                .key(v.key().unwrap())
                .set_version_id(v.version_id().map(str::to_string))
                .legal_hold(
                    aws_sdk_s3::types::ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::Off)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    });
    let out = stackgate(&["remove", d, "--poll-seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

const ARTIFACT_TEMPLATE: &str = "Parameters:\n  CodeBucket:\n    Type: String\n  CodeKey:\n    Type: String\nResources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: !Sub /stackgate-test/${AWS::StackName}\n      Type: String\n      Value: !Sub ${CodeBucket}/${CodeKey}\n";

fn artifact_stack(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    stack_dir(
        name,
        &[
            (
                "deployment.yaml",
                "template-file-path: template.yaml\nartifacts:\n  - path: code\n    bucket-parameter: CodeBucket\n    key-parameter: CodeKey\n",
            ),
            ("template.yaml", ARTIFACT_TEMPLATE),
            (
                "code/handler.py",
                "def handler(event, context):\n    return 1\n",
            ),
        ],
    )
}

#[test]
fn an_artifact_bucket_of_another_account_is_never_used() {
    let name = unique("stolen");
    let bucket = unique("someone-elses-artifacts");
    // Another account got the name first.
    tokio_rt()
        .block_on(
            s3().create_bucket()
                .bucket(&bucket)
                .customize()
                .mutate_request(|r| {
                    r.headers_mut().insert("x-moto-account-id", "111111111111");
                })
                .send(),
        )
        .unwrap();
    let (_tmp, dir) = artifact_stack(&name);
    let out = stackgate(&[
        "deploy",
        dir.to_str().unwrap(),
        "--artifact-bucket",
        &bucket,
        "--poll-seconds",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the artifact bucket `{bucket}` is not owned by this account"
        )),
        "{err}"
    );
    let listed = tokio_rt()
        .block_on(s3().list_objects_v2().bucket(&bucket).send())
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "code was uploaded to it");
    assert_eq!(stack_status(&name), None);
}

#[test]
fn artifacts_carry_their_sha256_and_a_changed_object_fails_the_deploy() {
    let name = unique("checked");
    let bucket = unique("stackgate-checked");
    let (_tmp, dir) = artifact_stack(&name);
    let d = dir.to_str().unwrap();
    let args = |cmd: &'static str| {
        vec![
            cmd.to_string(),
            d.to_string(),
            "--artifact-bucket".into(),
            bucket.clone(),
            "--poll-seconds".into(),
            "0.1".into(),
        ]
    };
    let run = |cmd: &'static str| {
        let a = args(cmd);
        stackgate(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run("deploy");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rt = tokio_rt();
    let key = rt
        .block_on(s3().list_objects_v2().bucket(&bucket).send())
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with(".zip"))
        .expect("the artifact was uploaded")
        .to_string();
    let stored = rt.block_on(async {
        let head = s3()
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        head.checksum_sha256().map(str::to_string)
    });
    // The same bytes, uploaded by the SDK with its own SHA-256, give the same checksum.
    let same = rt.block_on(async {
        let got = s3()
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = got.body.collect().await.unwrap().into_bytes();
        s3().put_object()
            .bucket(&bucket)
            .key("copy.zip")
            .body(bytes.to_vec().into())
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap();
        s3().head_object()
            .bucket(&bucket)
            .key("copy.zip")
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap()
            .checksum_sha256()
            .map(str::to_string)
    });
    assert!(stored.is_some(), "uploaded without a SHA-256");
    assert_eq!(stored, same);

    // Someone replaces the object at the content key: the next plan refuses it.
    put(&bucket, &key, b"not the code that was reviewed");
    let out = run("plan");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "s3://{bucket}/{key} already exists with other content"
        )),
        "{err}"
    );
    assert_eq!(run("remove").status.code(), Some(0));
}

fn put_ssm(name: &str, value: &str, ty: aws_sdk_ssm::types::ParameterType) {
    tokio_rt().block_on(async {
        ssm()
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ty)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    });
}

/// Exit 0, or both outputs in the message.
fn assert_ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
}

fn gate_stack(name: &str, template: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    stack_dir(
        name,
        &[
            ("deployment.yaml", "template-file-path: template.yaml\n"),
            ("template.yaml", template),
        ],
    )
}

/// `plan` runs the gate before any change set: what CloudFormation would expand out of
/// sight, and values it would fetch from elsewhere that stackgate cannot look up, stop
/// it, and nothing reaches CloudFormation.
#[test]
fn plan_and_deploy_refuse_expansions_and_unresolved_doubt() {
    for (what, template, rule, verdict) in GATE_CASES {
        let name = unique("gate");
        // Names nobody has put into SSM: they stay unresolved.
        let template = template.replace("/stackgate-test/", &format!("/{name}/"));
        let (_tmp, dir) = gate_stack(&name, &template);
        for command in ["plan", "deploy"] {
            let out = stackgate(&[command, dir.to_str().unwrap(), "--poll-seconds", "0.1"]);
            let want = if *verdict == "error" { 2 } else { 1 };
            assert_eq!(out.status.code(), Some(want), "{what}: {command}");
            assert!(stdout(&out).contains(rule), "{what}: {}", stdout(&out));
            assert!(
                stderr(&out).contains("blocked by policy, nothing was sent to CloudFormation"),
                "{what}: {}",
                stderr(&out)
            );
            let exists = tokio_rt().block_on(cfn().describe_stacks().stack_name(&name).send());
            assert!(exists.is_err(), "{what}: {command} created the stack");
        }
    }
}

/// With AWS access the gate looks up plain SSM parameters and exports first, and judges
/// the real value; a SecureString is never read and stays doubt.
#[test]
fn plan_judges_ssm_parameters_and_exports_it_looks_up() {
    use aws_sdk_ssm::types::ParameterType;
    let name = unique("lookup");
    let admin = format!("/{name}/admin-cidr");
    let rdp = format!("/{name}/rdp-cidr");
    let secret = format!("/{name}/secret-cidr");
    let ssh_template = GATE_CASES[3]
        .1
        .replace("/stackgate-test/admin-cidr", &admin);
    let rdp_template = GATE_CASES[4].1.replace("/stackgate-test/rdp-cidr", &rdp);
    let (_t1, ssh_dir) = gate_stack(&format!("{name}-ssh"), &ssh_template);
    let (_t2, rdp_dir) = gate_stack(&format!("{name}-rdp"), &rdp_template);
    let plan = |dir: &std::path::Path| {
        stackgate(&["plan", dir.to_str().unwrap(), "--poll-seconds", "0.1"])
    };

    // The world in SSM: judged as the world.
    put_ssm(&admin, "0.0.0.0/0", ParameterType::String);
    put_ssm(&rdp, "0.0.0.0/0", ParameterType::String);
    for dir in [&ssh_dir, &rdp_dir] {
        let out = plan(dir);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("error [open-ingress/world-open]"),
            "{}",
            stdout(&out)
        );
    }
    // A private range in SSM: the gate passes and the plan runs.
    put_ssm(&admin, "10.20.0.0/16", ParameterType::String);
    put_ssm(&rdp, "10.30.0.0/16", ParameterType::String);
    for dir in [&ssh_dir, &rdp_dir] {
        let out = plan(dir);
        assert_ok(&out);
        assert!(
            stdout(&out).contains("plan: 1 change(s)"),
            "{}",
            stdout(&out)
        );
    }
    // A SecureString is never read: it stays doubt, and its value never shows.
    put_ssm(&secret, "0.0.0.0/0", ParameterType::SecureString);
    let secret_template = GATE_CASES[4].1.replace("/stackgate-test/rdp-cidr", &secret);
    let (_t3, secret_dir) = gate_stack(&format!("{name}-sec"), &secret_template);
    let out = plan(&secret_dir);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("error [open-ingress/unresolved-cidr]"),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("[open-ingress/world-open]"),
        "{}",
        stdout(&out)
    );

    // An export of another stack, found through ListExports.
    let export = format!("{name}-office-cidr");
    let exporter = format!(
        "Resources:\n  P:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /{name}/exported\n      Type: String\n      Value: x\nOutputs:\n  Cidr:\n    Value: 0.0.0.0/0\n    Export:\n      Name: {export}\n"
    );
    let (_t4, exporter_dir) = gate_stack(&format!("{name}-exp"), &exporter);
    let out = stackgate(&[
        "deploy",
        exporter_dir.to_str().unwrap(),
        "--poll-seconds",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let importer = GATE_CASES[3]
        .1
        .replace("!Ref AdminCidr", &format!("!ImportValue {export}"))
        .replace(
            "Default: /stackgate-test/admin-cidr",
            &format!("Default: {admin}"),
        );
    let (_t5, importer_dir) = gate_stack(&format!("{name}-imp"), &importer);
    let out = plan(&importer_dir);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("error [open-ingress/world-open]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stackgate(&["remove", exporter_dir.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}

/// A nested stack whose template is a file in the stack folder: judged with its own file
/// and line, uploaded as an artifact, and deployed, as `aws cloudformation package` does.
#[test]
fn a_local_nested_stack_is_judged_in_its_own_file_and_deployed() {
    let name = unique("nested");
    // moto names a nested stack by its logical id: keep it unique across runs.
    let child_id: String = format!(
        "Net{}",
        name.chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
    );
    let parent = format!(
        "Parameters:\n  AdminCidr:\n    Type: String\nResources:\n  {child_id}:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: nested/net.yaml\n      Parameters:\n        Cidr: !Ref AdminCidr\n"
    );
    let child = "Parameters:\n  Cidr:\n    Type: String\nResources:\n  AdminSg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: ssh from the admin network\n      SecurityGroupIngress:\n        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: !Ref Cidr\n";
    let deployment = |cidr: &str| {
        format!("template-file-path: template.yaml\nparameters:\n  AdminCidr: {cidr}\n")
    };
    let (_tmp, dir) = stack_dir(
        &name,
        &[
            ("deployment.yaml", &deployment("10.50.0.0/16")),
            ("template.yaml", &parent),
            ("nested/net.yaml", child),
        ],
    );
    let d = dir.to_str().unwrap();

    // The world, passed down from the parent: refused at the child's own line.
    std::fs::write(dir.join("deployment.yaml"), deployment("0.0.0.0/0")).unwrap();
    let line = child.lines().position(|l| l.contains("CidrIp")).unwrap() + 1;
    for args in [vec!["check", d], vec!["plan", d, "--poll-seconds", "0.1"]] {
        let out = stackgate(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let at = format!("nested/net.yaml:{line}: error [open-ingress/world-open] AdminSg");
        assert!(
            stdout(&out).contains(&at),
            "{args:?}: no `{at}` in\n{}",
            stdout(&out)
        );
    }

    // A private range: it passes, the child goes up as an artifact, and the stack deploys.
    std::fs::write(dir.join("deployment.yaml"), deployment("10.50.0.0/16")).unwrap();
    let out = stackgate(&["check", d]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = stackgate(&["deploy", d, "--poll-seconds", "0.1"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("1 nested template(s) uploaded"), "{text}");
    assert!(text.contains("CREATE_COMPLETE"), "{text}");
    let nested = tokio_rt().block_on(
        cfn()
            .describe_stack_resource()
            .stack_name(&name)
            .logical_resource_id(&child_id)
            .send(),
    );
    let nested = nested.expect("the nested stack is a resource of the parent");
    assert_eq!(
        nested
            .stack_resource_detail()
            .and_then(|r| r.resource_type()),
        Some("AWS::CloudFormation::Stack")
    );
    assert_eq!(
        stackgate(&["remove", d, "--poll-seconds", "0.1"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn diff_against_a_git_revision_lists_what_widens_and_narrows_in_text_and_json() {
    let repo = service::GitRepo::new();
    let dir = repo.dir.join("stacks/hybrid-alb");
    copy_dir(&root().join("stacks/hybrid-alb"), &dir);
    let base = repo.commit("base");
    let tpl = dir.join("template.yaml");
    let text = std::fs::read_to_string(&tpl).unwrap();
    let http_rule = "          CidrIp: 0.0.0.0/0\n          Description: HTTP from the internet\n";
    let ssh = text.replacen(
        http_rule,
        &format!("{http_rule}        - IpProtocol: tcp\n          FromPort: 22\n          ToPort: 22\n          CidrIp: 0.0.0.0/0\n"),
        1,
    );
    assert_ne!(ssh, text);
    std::fs::write(&tpl, &ssh).unwrap();
    let d = dir.to_str().unwrap();

    // The working tree against the committed folder.
    let out = stackgate(&["diff", d, "--against", "main"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let t = stdout(&out);
    assert!(
        t.contains(&format!(
            "hybrid-alb: compared with main ({}) from git",
            &base[..7]
        )),
        "{t}"
    );
    assert!(
        t.contains("  widens: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup\n"),
        "{t}"
    );
    assert_eq!(t.matches("widens: ").count(), 1, "{t}");

    let out = stackgate(&["diff", d, "--against", "main", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(j["stack"], "hybrid-alb");
    assert_eq!(j["review"]["baseline"]["against"], "revision");
    assert_eq!(j["review"]["baseline"]["sha"], base);
    let widens = j["review"]["widens"].as_array().unwrap();
    assert_eq!(widens.len(), 1, "{j:#}");
    assert_eq!(widens[0]["kind"], "ingress");
    assert_eq!(widens[0]["on"], "AlbSecurityGroup");
    assert_eq!(widens[0]["what"], "tcp/22 from 0.0.0.0/0");
    assert!(widens[0].get("doubt").is_none(), "{j:#}");

    // Committed, then put back: against the commit that opened it, it narrows, and
    // nothing widens (exit 0).
    repo.commit("open ssh");
    std::fs::write(&tpl, &text).unwrap();
    let out = stackgate(&["diff", d, "--against", "HEAD"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = stdout(&out);
    assert!(t.contains("  nothing widens\n"), "{t}");
    assert!(
        t.contains("  narrows: tcp/22 from 0.0.0.0/0 on AlbSecurityGroup\n"),
        "{t}"
    );

    // A revision that does not exist cannot be compared: exit 2, and it says which.
    let out = stackgate(&["diff", d, "--against", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-branch"), "{}", stderr(&out));
}
