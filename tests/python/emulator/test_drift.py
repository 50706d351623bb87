"""The drift patch (deploy/local/emulator/patches/drift.py) on stacks/hybrid-alb: the drift
API, DriftInformation and REVERT_DRIFT change sets, with the patch and without it.

    .local/venv/bin/python -m pytest tests/python/emulator/test_drift.py -q
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from test_moto_patches import Emulator

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "python" / "stack"))
from hybrid_alb import STACK_DIR, TEMPLATE_PATH, load_deployment  # noqa: E402

CHECKED = {"AlbSecurityGroup", "Ec2SecurityGroup", "LogsBucket", "LambdaRole",
           "LambdaFunction", "Ec2Role", "Instance"}
SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
DELAY = 1.5


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory):
    started: dict[str, Emulator] = {}
    log_dir = tmp_path_factory.mktemp("moto-drift")

    def get(patches: str, seconds: float | None = None) -> Emulator:
        key = f"{patches}/{seconds}"
        if key not in started:
            env = {} if seconds is None else {"STACKGATE_MOTO_DRIFT_SECONDS": str(seconds)}
            started[key] = Emulator(patches, log_dir, env=env)
        started[key].reset()
        return started[key]

    yield get
    for emulator in started.values():
        emulator.stop()


def lambda_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        root = STACK_DIR / "lambda"
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def hybrid_parameters() -> list[dict[str, str]]:
    deployment = load_deployment()
    [artifact] = deployment["artifacts"]
    params = dict(deployment["parameters"])
    params[artifact["bucket-parameter"]] = "drift-artifacts"
    params[artifact["key-parameter"]] = "hybrid-alb/lambda.zip"
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]


def deploy_hybrid(emulator: Emulator, name: str = "hybrid-alb") -> dict[str, str]:
    """The stack as stackgate deploys it; logical id -> physical id."""
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket="drift-artifacts")
    s3.put_object(Bucket="drift-artifacts", Key="hybrid-alb/lambda.zip", Body=lambda_zip())
    cf = emulator.client("cloudformation")
    cf.create_stack(StackName=name, TemplateBody=TEMPLATE_PATH.read_text(encoding="utf-8"),
                    Parameters=hybrid_parameters(), Capabilities=["CAPABILITY_IAM"],
                    Tags=[{"Key": "project", "Value": "hybrid-alb"}])
    assert cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId")
            for r in cf.describe_stack_resources(StackName=name)["StackResources"]}


def detect(cf: Any, name: str = "hybrid-alb", timeout: float = 10, **kwargs: Any) -> dict:
    """DetectStackDrift, polled to its end, as a client does."""
    detection_id = cf.detect_stack_drift(StackName=name, **kwargs)["StackDriftDetectionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = cf.describe_stack_drift_detection_status(StackDriftDetectionId=detection_id)
        if status["DetectionStatus"] != "DETECTION_IN_PROGRESS":
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def resource_drifts(cf: Any, name: str = "hybrid-alb", **kwargs: Any) -> dict[str, dict]:
    drifts = cf.describe_stack_resource_drifts(StackName=name, **kwargs)["StackResourceDrifts"]
    return {d["LogicalResourceId"]: d for d in drifts}


def ingress(ec2: Any, group_id: str) -> list[dict[str, Any]]:
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]


def drift_status(description: dict[str, Any]) -> str:
    return description["DriftInformation"]["StackDriftStatus"]


def revert_change_set(cf: Any, change_set: str = "revert", **kwargs: Any) -> dict[str, Any]:
    out = cf.create_change_set(StackName="hybrid-alb", ChangeSetName=change_set,
                               TemplateBody=TEMPLATE_PATH.read_text(encoding="utf-8"),
                               Parameters=hybrid_parameters(), Capabilities=["CAPABILITY_IAM"],
                               ChangeSetType="UPDATE", **kwargs)
    return cf.describe_change_set(ChangeSetName=out["Id"])


# ------------------------------------------------------------------------ without it


def test_gap_no_drift_api_without_patch(emulators) -> None:
    emulator = emulators("all,-drift")
    ids = deploy_hybrid(emulator)
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    for call in (lambda: cf.detect_stack_drift(StackName="hybrid-alb"),
                 lambda: cf.describe_stack_resource_drifts(StackName="hybrid-alb"),
                 lambda: cf.detect_stack_resource_drift(StackName="hybrid-alb",
                                                        LogicalResourceId="LogsBucket"),
                 lambda: cf.describe_stack_drift_detection_status(StackDriftDetectionId="x")):
        with pytest.raises((ClientError, ResponseParserError)):  # moto: an HTML 500
            call()
    assert "DriftInformation" not in cf.describe_stacks(StackName="hybrid-alb")["Stacks"][0]
    # moto drops what drift detection compares: rule descriptions, bucket versioning.
    [rule] = ingress(ec2, ids["AlbSecurityGroup"])
    assert "Description" not in rule["IpRanges"][0]
    assert "Status" not in emulator.client("s3").get_bucket_versioning(Bucket=ids["LogsBucket"])
    # DeploymentMode is ignored: the drift is no change, and nothing is put back.
    ec2.authorize_security_group_ingress(GroupId=ids["AlbSecurityGroup"], IpPermissions=[SSH])
    change_set = revert_change_set(cf, DeploymentMode="REVERT_DRIFT")
    assert (change_set["Status"], change_set["Changes"]) == ("FAILED", [])
    assert "DeploymentMode" not in change_set


# --------------------------------------------------------------------------- with it


def test_fresh_hybrid_stack_is_in_sync(emulators) -> None:
    emulator = emulators("all")
    ids = deploy_hybrid(emulator)
    cf = emulator.client("cloudformation")
    assert drift_status(cf.describe_stacks(StackName="hybrid-alb")["Stacks"][0]) == "NOT_CHECKED"
    assert resource_drifts(cf) == {}, "nothing checked yet"

    status = detect(cf)
    assert status["DetectionStatus"] == "DETECTION_COMPLETE", status
    assert (status["StackDriftStatus"], status["DriftedStackResourceCount"]) == ("IN_SYNC", 0)
    drifts = resource_drifts(cf)
    assert set(drifts) == CHECKED, "types not compared are left out, as AWS leaves them"
    assert {d["StackResourceDriftStatus"] for d in drifts.values()} == {"IN_SYNC"}
    assert resource_drifts(cf, StackResourceDriftStatusFilters=["MODIFIED", "DELETED"]) == {}
    assert resource_drifts(cf, StackResourceDriftStatusFilters=["NOT_CHECKED"]) == {}
    sg = drifts["AlbSecurityGroup"]
    assert sg["PhysicalResourceId"] == ids["AlbSecurityGroup"]
    assert json.loads(sg["ExpectedProperties"]) == json.loads(sg["ActualProperties"]) == {
        "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                  "CidrIp": "0.0.0.0/0", "Description": "HTTP from the internet"}]}
    assert json.loads(drifts["LogsBucket"]["ActualProperties"])["VersioningConfiguration"] == {
        "Status": "Enabled"}

    [described] = cf.describe_stacks(StackName="hybrid-alb")["Stacks"]
    assert drift_status(described) == "IN_SYNC"
    assert described["DriftInformation"]["LastCheckTimestamp"] == status["Timestamp"]
    [summary] = cf.list_stacks()["StackSummaries"]
    assert drift_status(summary) == "IN_SYNC"


def test_changes_outside_cloudformation_are_modified(emulators) -> None:
    emulator = emulators("all")
    ids = deploy_hybrid(emulator)
    cf = emulator.client("cloudformation")
    emulator.client("ec2").authorize_security_group_ingress(
        GroupId=ids["AlbSecurityGroup"], IpPermissions=[SSH])
    emulator.client("lambda").update_function_configuration(
        FunctionName=ids["LambdaFunction"], MemorySize=256)
    emulator.client("s3").put_bucket_versioning(
        Bucket=ids["LogsBucket"], VersioningConfiguration={"Status": "Suspended"})
    emulator.client("iam").put_role_policy(
        RoleName=ids["LambdaRole"], PolicyName="own-log-group", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))

    status = detect(cf)
    assert (status["StackDriftStatus"], status["DriftedStackResourceCount"]) == ("DRIFTED", 4)
    modified = resource_drifts(cf, StackResourceDriftStatusFilters=["MODIFIED"])
    assert set(modified) == {"AlbSecurityGroup", "LambdaFunction", "LogsBucket", "LambdaRole"}

    [added] = modified["AlbSecurityGroup"]["PropertyDifferences"]
    assert (added["PropertyPath"], added["DifferenceType"]) == ("/SecurityGroupIngress/1", "ADD")
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"}
    assert json.loads(added["ActualValue"]) == ssh
    actual = json.loads(modified["AlbSecurityGroup"]["ActualProperties"])
    assert ssh in actual["SecurityGroupIngress"]

    assert [(d["PropertyPath"], d["ExpectedValue"], d["ActualValue"], d["DifferenceType"])
            for d in modified["LambdaFunction"]["PropertyDifferences"]] == [
        ("/MemorySize", "128", "256", "NOT_EQUAL")]
    assert [(d["PropertyPath"], d["ExpectedValue"], d["ActualValue"])
            for d in modified["LogsBucket"]["PropertyDifferences"]] == [
        ("/VersioningConfiguration/Status", "Enabled", "Suspended")]
    paths = [d["PropertyPath"] for d in modified["LambdaRole"]["PropertyDifferences"]]
    assert paths and all(p.startswith("/Policies/0/PolicyDocument/") for p in paths), paths

    one = cf.detect_stack_resource_drift(StackName="hybrid-alb",
                                         LogicalResourceId="AlbSecurityGroup")
    assert one["StackResourceDrift"]["StackResourceDriftStatus"] == "MODIFIED"
    assert drift_status(cf.describe_stacks(StackName="hybrid-alb")["Stacks"][0]) == "DRIFTED"
    assert drift_status(cf.list_stacks()["StackSummaries"][0]) == "DRIFTED"


def test_drift_seconds_hold_the_detection_in_progress(emulators) -> None:
    emulator = emulators("all", seconds=DELAY)
    deploy_hybrid(emulator)
    cf = emulator.client("cloudformation")
    started = time.monotonic()
    detection_id = cf.detect_stack_drift(StackName="hybrid-alb")["StackDriftDetectionId"]
    status = cf.describe_stack_drift_detection_status(StackDriftDetectionId=detection_id)
    assert status["DetectionStatus"] == "DETECTION_IN_PROGRESS"
    assert "DriftedStackResourceCount" not in status, "null until the detection is over"
    assert drift_status(cf.describe_stacks(StackName="hybrid-alb")["Stacks"][0]) == "NOT_CHECKED"
    assert resource_drifts(cf) == {}
    while status["DetectionStatus"] == "DETECTION_IN_PROGRESS":
        assert time.monotonic() - started < 10
        time.sleep(0.1)
        status = cf.describe_stack_drift_detection_status(StackDriftDetectionId=detection_id)
    assert time.monotonic() - started >= DELAY - 0.2
    assert (status["DetectionStatus"], status["StackDriftStatus"]) == (
        "DETECTION_COMPLETE", "IN_SYNC")
    assert set(resource_drifts(cf)) == CHECKED


def test_drift_seconds_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="STACKGATE_MOTO_DRIFT_SECONDS must be a number"):
        Emulator("all", tmp_path, env={"STACKGATE_MOTO_DRIFT_SECONDS": "soon"})


def test_resource_drifts_are_paged(emulators) -> None:
    emulator = emulators("all")
    deploy_hybrid(emulator)
    cf = emulator.client("cloudformation")
    detect(cf)
    seen, token, pages = [], None, 0
    while True:
        page = cf.describe_stack_resource_drifts(
            StackName="hybrid-alb", MaxResults=3, **({"NextToken": token} if token else {}))
        assert len(page["StackResourceDrifts"]) <= 3
        seen += [d["LogicalResourceId"] for d in page["StackResourceDrifts"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
        assert pages < 10
    assert (pages, sorted(seen)) == (3, sorted(CHECKED))
    for bad in ({"MaxResults": 101}, {"NextToken": "not-a-token"}):
        with pytest.raises(ClientError) as refused:
            cf.describe_stack_resource_drifts(StackName="hybrid-alb", **bad)
        assert refused.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as refused:
        cf.describe_stack_drift_detection_status(StackDriftDetectionId="no-such-detection")
    assert refused.value.response["Error"]["Code"] == "ValidationError"


def test_revert_drift_change_set_puts_the_template_back(emulators) -> None:
    emulator = emulators("all")
    ids = deploy_hybrid(emulator)
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    ec2.authorize_security_group_ingress(GroupId=ids["AlbSecurityGroup"], IpPermissions=[SSH])
    assert detect(cf)["StackDriftStatus"] == "DRIFTED"

    # Without DeploymentMode the same template is no change, as before.
    plain = revert_change_set(cf, "plain")
    assert (plain["Status"], plain["Changes"]) == ("FAILED", [])

    change_set = revert_change_set(cf, DeploymentMode="REVERT_DRIFT")
    assert (change_set["Status"], change_set["ExecutionStatus"]) == ("CREATE_COMPLETE", "AVAILABLE")
    assert (change_set["DeploymentMode"], change_set["StackDriftStatus"]) == (
        "REVERT_DRIFT", "DRIFTED")
    [change] = [c["ResourceChange"] for c in change_set["Changes"]]
    assert {k: change[k] for k in ("Action", "LogicalResourceId", "PhysicalResourceId", "Scope",
                                   "Replacement", "ResourceDriftStatus")} == {
        "Action": "Modify", "LogicalResourceId": "AlbSecurityGroup",
        "PhysicalResourceId": ids["AlbSecurityGroup"], "Scope": ["Properties"],
        "Replacement": "False", "ResourceDriftStatus": "MODIFIED"}

    cf.execute_change_set(ChangeSetName=change_set["ChangeSetId"])
    [described] = cf.describe_stacks(StackName="hybrid-alb")["Stacks"]
    assert described["StackStatus"] == "UPDATE_COMPLETE"
    assert [(r["FromPort"], r["IpRanges"]) for r in ingress(ec2, ids["AlbSecurityGroup"])] == [
        (80, [{"CidrIp": "0.0.0.0/0", "Description": "HTTP from the internet"}])]
    [sg] = cf.describe_stack_resources(StackName="hybrid-alb",
                                       LogicalResourceId="AlbSecurityGroup")["StackResources"]
    assert sg["PhysicalResourceId"] == ids["AlbSecurityGroup"], "updated, not replaced"
    assert detect(cf)["StackDriftStatus"] == "IN_SYNC"


def test_other_compared_properties_drift_and_are_put_back(emulators) -> None:
    emulator = emulators("all")
    ids = deploy_hybrid(emulator)
    cf, ec2, s3 = (emulator.client(s) for s in ("cloudformation", "ec2", "s3"))
    ec2.modify_instance_attribute(InstanceId=ids["Instance"], InstanceType={"Value": "t3.large"})
    s3.put_bucket_tagging(Bucket=ids["LogsBucket"], Tagging={"TagSet": [
        {"Key": "Name", "Value": "hybrid-alb-alb-logs"}, {"Key": "owner", "Value": "someone"}]})
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    emulator.client("iam").update_assume_role_policy(RoleName=ids["Ec2Role"],
                                                     PolicyDocument=json.dumps(trust))
    emulator.client("lambda").update_function_configuration(
        FunctionName=ids["LambdaFunction"], Timeout=30, Environment={"Variables": {"A": "1"}})

    assert detect(cf)["DriftedStackResourceCount"] == 4
    found = {name: [(d["PropertyPath"], d["DifferenceType"]) for d in drift["PropertyDifferences"]]
             for name, drift in resource_drifts(cf, StackResourceDriftStatusFilters=[
                 "MODIFIED"]).items()}
    assert found == {
        "Instance": [("/InstanceType", "NOT_EQUAL")],
        "LogsBucket": [("/Tags/1", "ADD")],
        "Ec2Role": [("/AssumeRolePolicyDocument/Statement/0/Principal/Service", "NOT_EQUAL")],
        # Environment is not in the template: AWS compares the template's properties only.
        "LambdaFunction": [("/Timeout", "NOT_EQUAL")],
    }

    change_set = revert_change_set(cf, DeploymentMode="REVERT_DRIFT")
    listed = [c["ResourceChange"]["LogicalResourceId"] for c in change_set["Changes"]]
    assert sorted(listed) == sorted(found)
    cf.execute_change_set(ChangeSetName=change_set["ChangeSetId"])
    assert detect(cf)["StackDriftStatus"] == "IN_SYNC"
    [reservation] = ec2.describe_instances(InstanceIds=[ids["Instance"]])["Reservations"]
    assert reservation["Instances"][0]["InstanceType"] == "t3.micro"
    assert [t["Key"] for t in s3.get_bucket_tagging(Bucket=ids["LogsBucket"])["TagSet"]] == ["Name"]


# A security group with a rule moto's CloudFormation drops (CidrIpv6), and a queue, a type
# the detection does not check.
SMALL = {"Resources": {
    "Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
        "GroupDescription": "v6", "SecurityGroupIngress": [
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIpv6": "::/0",
             "Description": "HTTPS over IPv6"}]}},
    "Queue": {"Type": "AWS::SQS::Queue"}}}


def _small_stack(emulator: Emulator) -> str:
    cf = emulator.client("cloudformation")
    cf.create_stack(StackName="small", TemplateBody=json.dumps(SMALL))
    [group] = cf.describe_stack_resources(StackName="small", LogicalResourceId="Group")[
        "StackResources"]
    return group["PhysicalResourceId"]


def test_gap_ipv6_rule_dropped_without_patch(emulators) -> None:
    emulator = emulators("all,-drift")
    assert ingress(emulator.client("ec2"), _small_stack(emulator)) == []


def test_deleted_resource_and_unchecked_types(emulators) -> None:
    emulator = emulators("all")
    group_id = _small_stack(emulator)
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    [rule] = ingress(ec2, group_id)
    assert rule["Ipv6Ranges"] == [{"CidrIpv6": "::/0", "Description": "HTTPS over IPv6"}]
    assert detect(cf, "small")["StackDriftStatus"] == "IN_SYNC"
    assert set(resource_drifts(cf, "small")) == {"Group"}, "the queue is not checked"
    with pytest.raises(ClientError) as refused:
        cf.detect_stack_resource_drift(StackName="small", LogicalResourceId="Queue")
    assert refused.value.response["Error"]["Code"] == "ValidationError"

    ec2.delete_security_group(GroupId=group_id)
    one = cf.detect_stack_resource_drift(StackName="small", LogicalResourceId="Group")
    drift = one["StackResourceDrift"]
    assert drift["StackResourceDriftStatus"] == "DELETED"
    assert "ActualProperties" not in drift and "PropertyDifferences" not in drift
    assert drift_status(cf.describe_stacks(StackName="small")["Stacks"][0]) == "IN_SYNC", (
        "DetectStackResourceDrift leaves the stack's status as the last DetectStackDrift set it")
    status = detect(cf, "small", LogicalResourceIds=["Queue"])
    assert (status["StackDriftStatus"], status["DriftedStackResourceCount"]) == ("IN_SYNC", 0)
    status = detect(cf, "small")
    assert (status["StackDriftStatus"], status["DriftedStackResourceCount"]) == ("DRIFTED", 1)
