"""Each moto patch in deploy/local/emulator/patches/: right with it, and the gap without it.

Every test talks to a real launcher process on a free 127.0.0.1 port, started here with
a chosen STACKGATE_MOTO_PATCHES set ("all", or "all,-<patch>" to show that the gap is
real and that this patch is what closes it). Run with the project venv:

    .local/venv/bin/python -m pytest tests/python/emulator -q
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = ROOT / "deploy" / "local" / "emulator"
EMULATOR_SH = ROOT / "deploy" / "local" / "emulator.sh"
START_TIMEOUT = 30.0
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Emulator:
    """One launcher process with a given patch set."""

    def __init__(self, patches: str, log_dir: Path, env: dict[str, str] | None = None):
        self.patches = patches
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, STACKGATE_MOTO_PATCHES=patches, **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"launcher exited ({self.proc.returncode}): {self.log()}")
            try:
                if requests.get(f"{self.url}/moto-api/config", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"launcher did not answer in {START_TIMEOUT}s: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def client(self, service: str) -> Any:
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory):
    started: dict[str, Emulator] = {}
    log_dir = tmp_path_factory.mktemp("moto")

    def get(patches: str) -> Emulator:
        if patches not in started:
            started[patches] = Emulator(patches, log_dir)
        emulator = started[patches]
        emulator.reset()
        return emulator

    yield get
    for emulator in started.values():
        emulator.stop()


@pytest.fixture
def patched(emulators) -> Emulator:
    return emulators("all")


def unpatched(emulators, patch: str) -> Emulator:
    """All patches but one."""
    return emulators(f"all,-{patch}")


# --------------------------------------------------------------------------- helpers


def stack(cf: Any, name: str) -> dict[str, Any]:
    return cf.describe_stacks(StackName=name)["Stacks"][0]


def events(cf: Any, name: str) -> list[dict[str, Any]]:
    """Oldest first."""
    return list(reversed(cf.describe_stack_events(StackName=name)["StackEvents"]))


def create_via_change_set(cf: Any, name: str, template: dict[str, Any] | str,
                          change_set_type: str = "CREATE", **kwargs: Any) -> str:
    body = template if isinstance(template, str) else json.dumps(template)
    change_set = f"cs-{int(time.monotonic() * 1000)}"
    cf.create_change_set(StackName=name, ChangeSetName=change_set, TemplateBody=body,
                         ChangeSetType=change_set_type, **kwargs)
    cf.execute_change_set(StackName=name, ChangeSetName=change_set)
    return change_set


def outputs(description: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs") or []}


def vpc_leftovers(ec2: Any, vpc_id: str, igw_ids: list[str]) -> dict[str, list[str]]:
    """Everything of one VPC that still exists in the emulator."""
    flt = [{"Name": "vpc-id", "Values": [vpc_id]}]
    return {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v["VpcId"] == vpc_id],
        "subnets": [s["SubnetId"] for s in ec2.describe_subnets(Filters=flt)["Subnets"]],
        "route_tables": [r["RouteTableId"] for r in ec2.describe_route_tables(Filters=flt)["RouteTables"]],
        "internet_gateways": [i["InternetGatewayId"]
                              for i in ec2.describe_internet_gateways()["InternetGateways"]
                              if i["InternetGatewayId"] in igw_ids],
    }


QUEUE_WITH_OUTPUTS = {
    "Description": "a queue and its outputs",
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {
        "QueueUrl": {"Value": {"Ref": "Queue"}, "Description": "the URL"},
        "QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]},
                     "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-queue-arn"}}},
    },
}

# A public VPC as hybrid-alb has it: IGW + attachment, route table with a default route,
# two subnets associated with it.
PUBLIC_VPC = {
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.20.0.0/16"}},
        "Igw": {"Type": "AWS::EC2::InternetGateway"},
        "Attachment": {"Type": "AWS::EC2::VPCGatewayAttachment",
                       "Properties": {"VpcId": {"Ref": "Vpc"}, "InternetGatewayId": {"Ref": "Igw"}}},
        "RouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": {"Ref": "Vpc"}}},
        "DefaultRoute": {"Type": "AWS::EC2::Route", "DependsOn": "Attachment",
                         "Properties": {"RouteTableId": {"Ref": "RouteTable"},
                                        "DestinationCidrBlock": "0.0.0.0/0",
                                        "GatewayId": {"Ref": "Igw"}}},
        "SubnetA": {"Type": "AWS::EC2::Subnet",
                    "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.20.0.0/24",
                                   "AvailabilityZone": "us-east-1a"}},
        "SubnetB": {"Type": "AWS::EC2::Subnet",
                    "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.20.1.0/24",
                                   "AvailabilityZone": "us-east-1b"}},
        "AssocA": {"Type": "AWS::EC2::SubnetRouteTableAssociation",
                   "Properties": {"SubnetId": {"Ref": "SubnetA"}, "RouteTableId": {"Ref": "RouteTable"}}},
        "AssocB": {"Type": "AWS::EC2::SubnetRouteTableAssociation",
                   "Properties": {"SubnetId": {"Ref": "SubnetB"}, "RouteTableId": {"Ref": "RouteTable"}}},
    },
    "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}, "IgwId": {"Value": {"Ref": "Igw"}}},
}

# The failure scenario for "a failed create rolls back with a reason": a subnet whose
# CidrBlock lies outside its VPC's. Valid syntax (cfn-lint and policies pass it), rejected
# by EC2 at create time with InvalidSubnet.Range, as in AWS.
BAD_SUBNET = {
    "Resources": {
        "Queue": {"Type": "AWS::SQS::Queue"},
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.20.0.0/16"}},
        "Subnet": {"Type": "AWS::EC2::Subnet",
                   "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.99.0.0/24"}},
    },
    "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}},
}


def non_default_vpcs(ec2: Any) -> list[str]:
    return [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]


def queue_urls(sqs: Any) -> list[str]:
    return sqs.list_queues().get("QueueUrls", [])


# ------------------------------------------------------------- 1 changeset_outputs


def test_change_set_create_has_outputs_and_exports(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    create_via_change_set(cf, "via-cs", QUEUE_WITH_OUTPUTS)
    cf.create_stack(StackName="via-create", TemplateBody=json.dumps(QUEUE_WITH_OUTPUTS))

    via_cs, via_create = stack(cf, "via-cs"), stack(cf, "via-create")
    assert via_cs["StackStatus"] == "CREATE_COMPLETE"
    assert via_cs.get("Description") == "a queue and its outputs"
    assert set(outputs(via_cs)) == set(outputs(via_create)) == {"QueueUrl", "QueueArn"}
    assert "/via-cs-Queue-" in outputs(via_cs)["QueueUrl"]
    assert outputs(via_cs)["QueueArn"].startswith("arn:aws:sqs:us-east-1:")
    exports = {e["Name"]: e["Value"] for e in cf.list_exports()["Exports"]}
    assert exports["via-cs-queue-arn"] == outputs(via_cs)["QueueArn"]


def test_change_set_update_refreshes_outputs(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    create_via_change_set(cf, "cs-update", QUEUE_WITH_OUTPUTS)
    template = json.loads(json.dumps(QUEUE_WITH_OUTPUTS))
    template["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic"}
    template["Outputs"]["TopicArn"] = {"Value": {"Ref": "Topic"}}
    create_via_change_set(cf, "cs-update", template, change_set_type="UPDATE")
    described = stack(cf, "cs-update")
    assert described["StackStatus"] == "UPDATE_COMPLETE"
    assert set(outputs(described)) == {"QueueUrl", "QueueArn", "TopicArn"}
    assert ":cs-update-Topic-" in outputs(described)["TopicArn"]


def test_gap_change_set_create_has_no_outputs_without_patch(emulators) -> None:
    cf = unpatched(emulators, "changeset_outputs").client("cloudformation")
    create_via_change_set(cf, "via-cs", QUEUE_WITH_OUTPUTS)
    described = stack(cf, "via-cs")
    assert described["StackStatus"] == "CREATE_COMPLETE"
    assert "Outputs" not in described


# ------------------------------------------------------------------ 2 delete_order


def _create_public_vpc(emulator: Emulator, name: str) -> tuple[str, str, list[str]]:
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    cf.create_stack(StackName=name, TemplateBody=json.dumps(PUBLIC_VPC))
    described = stack(cf, name)
    assert described["StackStatus"] == "CREATE_COMPLETE"
    vpc_id, igw_id = outputs(described)["VpcId"], outputs(described)["IgwId"]
    before = vpc_leftovers(ec2, vpc_id, [igw_id])
    # the VPC, 2 subnets, its main route table and ours, the IGW
    assert [len(v) for v in before.values()] == [1, 2, 2, 1], before
    return described["StackId"], vpc_id, [igw_id]


def test_delete_vpc_stack_deletes_everything(patched: Emulator) -> None:
    cf, ec2 = patched.client("cloudformation"), patched.client("ec2")
    stack_id, vpc_id, igw_ids = _create_public_vpc(patched, "net")

    cf.delete_stack(StackName="net")

    assert stack(cf, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert vpc_leftovers(ec2, vpc_id, igw_ids) == {
        "vpcs": [], "subnets": [], "route_tables": [], "internet_gateways": []}
    assert [e["ResourceStatus"] for e in events(cf, stack_id)][-1] == "DELETE_COMPLETE"
    # a deleted stack's resources are not re-created by reading them
    assert cf.list_stack_resources(StackName=stack_id)["StackResourceSummaries"] == []
    assert vpc_leftovers(ec2, vpc_id, igw_ids)["vpcs"] == []


def test_gap_delete_vpc_stack_leaks_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "delete_order")
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    stack_id, vpc_id, igw_ids = _create_public_vpc(emulator, "net")

    with pytest.raises(ClientError) as err:
        cf.delete_stack(StackName="net")
    assert err.value.response["Error"]["Code"] == "DependencyViolation"

    left = vpc_leftovers(ec2, vpc_id, igw_ids)
    assert left["vpcs"] == [vpc_id] and left["internet_gateways"] == igw_ids
    assert len(left["route_tables"]) == 2
    with pytest.raises(ClientError):  # ... while the stack is gone
        cf.describe_stacks(StackName=stack_id)


def test_delete_failure_keeps_stack_in_delete_failed(patched: Emulator) -> None:
    """A bucket that still holds objects cannot be deleted (as in AWS): DELETE_FAILED."""
    cf, s3 = patched.client("cloudformation"), patched.client("s3")
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"},
                              "Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"Bucket": {"Value": {"Ref": "Bucket"}}}}
    cf.create_stack(StackName="full-bucket", TemplateBody=json.dumps(template))
    bucket = outputs(stack(cf, "full-bucket"))["Bucket"]
    s3.put_object(Bucket=bucket, Key="left-behind.txt", Body=b"x")

    cf.delete_stack(StackName="full-bucket")

    described = stack(cf, "full-bucket")
    assert described["StackStatus"] == "DELETE_FAILED"
    assert described["StackStatusReason"] == "The following resource(s) failed to delete: [Bucket]. "
    failed = [e for e in events(cf, "full-bucket") if e["ResourceStatus"] == "DELETE_FAILED"
              and e["LogicalResourceId"] == "Bucket"]
    assert len(failed) == 1
    assert "The bucket you tried to delete is not empty" in failed[0]["ResourceStatusReason"]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert [r["LogicalResourceId"] for r in
            cf.list_stack_resources(StackName="full-bucket")["StackResourceSummaries"]] == ["Bucket"]

    s3.delete_object(Bucket=bucket, Key="left-behind.txt")
    cf.delete_stack(StackName="full-bucket")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_gap_non_empty_bucket_leaks_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "delete_order")
    cf, s3 = emulator.client("cloudformation"), emulator.client("s3")
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
                "Outputs": {"Bucket": {"Value": {"Ref": "Bucket"}}}}
    cf.create_stack(StackName="full-bucket", TemplateBody=json.dumps(template))
    described = stack(cf, "full-bucket")
    bucket = outputs(described)["Bucket"]
    s3.put_object(Bucket=bucket, Key="left-behind.txt", Body=b"x")
    cf.delete_stack(StackName="full-bucket")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # leaked


@pytest.mark.parametrize("policy", ["Retain", "RetainExceptOnCreate"])
def test_retained_bucket_outlives_its_stack(patched: Emulator, policy: str) -> None:
    """A bucket whose DeletionPolicy keeps it stays, with its objects; the stack goes."""
    cf, s3 = patched.client("cloudformation"), patched.client("s3")
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": policy}},
                "Outputs": {"Bucket": {"Value": {"Ref": "Bucket"}}}}
    cf.create_stack(StackName="kept", TemplateBody=json.dumps(template))
    described = stack(cf, "kept")
    bucket = outputs(described)["Bucket"]
    s3.put_object(Bucket=bucket, Key="precious.txt", Body=b"x")
    cf.delete_stack(StackName="kept")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    assert s3.get_object(Bucket=bucket, Key="precious.txt")["Body"].read() == b"x"


# --------------------------------------------------------------- 3 create_rollback


@pytest.mark.parametrize("how", ["create_stack", "change_set"])
def test_failed_create_rolls_back_with_reason(patched: Emulator, how: str) -> None:
    cf, ec2, sqs = (patched.client(s) for s in ("cloudformation", "ec2", "sqs"))
    if how == "create_stack":
        cf.create_stack(StackName="bad-net", TemplateBody=json.dumps(BAD_SUBNET))
    else:
        change_set = create_via_change_set(cf, "bad-net", BAD_SUBNET)
        assert cf.describe_change_set(StackName="bad-net", ChangeSetName=change_set)[
            "ExecutionStatus"] == "EXECUTE_FAILED"

    described = stack(cf, "bad-net")
    assert described["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Outputs" not in described
    history = events(cf, "bad-net")
    failed = [e for e in history if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [(e["LogicalResourceId"], e["ResourceType"]) for e in failed] == [("Subnet", "AWS::EC2::Subnet")]
    assert "The CIDR '10.99.0.0/24' is invalid." in failed[0]["ResourceStatusReason"]
    assert "InvalidSubnet.Range" in failed[0]["ResourceStatusReason"]
    stack_events = [(e["ResourceStatus"], e.get("ResourceStatusReason"))
                    for e in history if e["LogicalResourceId"] == "bad-net"]
    assert ("ROLLBACK_IN_PROGRESS",
            "The following resource(s) failed to create: [Subnet]. Rollback requested by user."
            ) in stack_events
    assert stack_events[-1] == ("ROLLBACK_COMPLETE", None)
    rolled_back = {e["LogicalResourceId"] for e in history if e["ResourceStatus"] == "DELETE_COMPLETE"}
    assert {"Vpc", "Queue"} <= rolled_back
    # what was created before the failure is gone
    assert non_default_vpcs(ec2) == [] and queue_urls(sqs) == []
    assert cf.list_stack_resources(StackName="bad-net")["StackResourceSummaries"] == []

    # a ROLLBACK_COMPLETE stack can only be deleted; that works
    cf.delete_stack(StackName="bad-net")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"


def test_failed_update_rolls_back(patched: Emulator) -> None:
    cf, ec2, sqs = (patched.client(s) for s in ("cloudformation", "ec2", "sqs"))
    good = {"Resources": {"Vpc": BAD_SUBNET["Resources"]["Vpc"],
                          "Queue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}}}
    cf.create_stack(StackName="upd", TemplateBody=json.dumps(good))
    vpc_id = outputs(stack(cf, "upd"))["VpcId"]
    queues = queue_urls(sqs)
    bad = json.loads(json.dumps(good))
    bad["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic"}  # added before the subnet fails
    bad["Resources"]["Subnet"] = BAD_SUBNET["Resources"]["Subnet"]

    cf.update_stack(StackName="upd", TemplateBody=json.dumps(bad))

    described = stack(cf, "upd")
    assert described["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    failed = [e for e in events(cf, "upd") if e["ResourceStatus"] in ("CREATE_FAILED", "UPDATE_FAILED")]
    assert [(e["LogicalResourceId"], e["ResourceStatus"]) for e in failed] == [("Subnet", "CREATE_FAILED")]
    assert "The CIDR '10.99.0.0/24' is invalid." in failed[0]["ResourceStatusReason"]
    assert outputs(described) == {"VpcId": vpc_id}
    assert non_default_vpcs(ec2) == [vpc_id] and queue_urls(sqs) == queues
    assert patched.client("sns").list_topics()["Topics"] == []
    body = cf.get_template(StackName="upd")["TemplateBody"]  # boto3 decodes JSON bodies
    assert (json.loads(body) if isinstance(body, str) else body) == good
    assert sorted(r["LogicalResourceId"] for r in
                  cf.list_stack_resources(StackName="upd")["StackResourceSummaries"]) == ["Queue", "Vpc"]


def test_gap_failed_create_is_stuck_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "create_rollback")
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    with pytest.raises(ClientError) as err:
        cf.create_stack(StackName="bad-net", TemplateBody=json.dumps(BAD_SUBNET))
    assert err.value.response["Error"]["Code"] == "InvalidSubnet.Range"  # the API call fails
    assert stack(cf, "bad-net")["StackStatus"] == "CREATE_IN_PROGRESS"  # ... forever
    assert not [e for e in events(cf, "bad-net") if e.get("ResourceStatusReason")
                and "10.99.0.0/24" in e["ResourceStatusReason"]]
    assert len(non_default_vpcs(ec2)) == 1  # the VPC leaked


# --------------------------------------------------------------- 4 template_errors

SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                           "cloudformation/aws4_request, SignedHeaders=host, Signature=0"}


def raw_create_change_set(emulator: Emulator, body: str) -> requests.Response:
    return requests.post(emulator.url + "/", headers=SIGNED, timeout=10, data={
        "Action": "CreateChangeSet", "Version": "2010-05-15", "StackName": "invalid",
        "ChangeSetName": "c1", "ChangeSetType": "CREATE", "TemplateBody": body})


INVALID_TEMPLATES = {
    "json-not-well-formed": ('{"Resources": {', "Template format error: JSON not well-formed. (line 1, column 16)"),
    "yaml-not-well-formed": ("Resources:\n  Q: [\n", "Template format error: YAML not well-formed."),
    "no-resources": ('{"Outputs": {}}', "Template format error: At least one Resources member must be defined."),
    "unknown-section": ('{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}, "Resource": {}}',
                        "Template format error: Invalid template property or properties [Resource]"),
    "no-type": ("Resources:\n  Q:\n    Properties: {}\n",
                "Template format error: [/Resources/Q] Every Resources object must contain a Type member."),
    "unresolved-ref": ("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Ref Missing\n",
                       "Template format error: Unresolved resource dependencies [Missing] in the Resources block of the template"),
    "unresolved-getatt-in-outputs": ("Resources:\n  Q:\n    Type: AWS::SQS::Queue\nOutputs:\n  A:\n    Value: !GetAtt Nope.Arn\n",
                                     "Template error: instance of Fn::GetAtt references undefined resource Nope"),
}


@pytest.mark.parametrize("case", sorted(INVALID_TEMPLATES))
def test_invalid_template_is_aws_validation_error(patched: Emulator, case: str) -> None:
    body, message = INVALID_TEMPLATES[case]
    response = raw_create_change_set(patched, body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    assert "<ErrorResponse" in response.text and "<Type>Sender</Type>" in response.text
    assert "<Code>ValidationError</Code>" in response.text
    assert f"<Message>{message}" in response.text

    cf = patched.client("cloudformation")
    with pytest.raises(ClientError) as err:
        cf.create_change_set(StackName="invalid", ChangeSetName="c1", TemplateBody=body)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"].startswith(message)
    with pytest.raises(ClientError):  # no stack is left behind
        cf.describe_stacks(StackName="invalid")


VALID_YAML = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Mappings:
  M: {us-east-1: {Name: east}}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Env}-${Suffix}"
      Tags:
        - Key: where
          Value: !Sub
            - "${Region}-${Queue2.QueueName}"
            - Region: !FindInMap [M, !Ref "AWS::Region", Name]
        - Key: prod
          Value: !If [IsProd, "yes", "no"]
      DelaySeconds: !If [IsProd, 5, !Ref "AWS::NoValue"]
  Queue2:
    Type: AWS::SQS::Queue
    DependsOn: Topic
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: !Join ["-", [!GetAtt Queue2.Arn, "${!Literal}"]]
Outputs:
  Url: {Value: !Ref Queue}
  Arn: {Value: !GetAtt Queue.Arn}
"""


def test_valid_templates_still_accepted(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    body = VALID_YAML.replace("-${Suffix}", "")
    cf.create_change_set(StackName="fine", ChangeSetName="c1", ChangeSetType="CREATE", TemplateBody=body)
    cf.execute_change_set(StackName="fine", ChangeSetName="c1")
    assert stack(cf, "fine")["StackStatus"] == "CREATE_COMPLETE"
    # the checker knows ${Suffix} is not defined anywhere
    with pytest.raises(ClientError) as err:
        cf.create_stack(StackName="fine2", TemplateBody=VALID_YAML)
    assert "Unresolved resource dependencies [Suffix]" in err.value.response["Error"]["Message"]


def test_template_checker_accepts_long_and_short_forms() -> None:
    check = _emulator_module("patches.template_errors").template_format_error
    assert check(VALID_YAML.replace("-${Suffix}", "")) is None
    # (moto itself mis-parses the YAML list form `!GetAtt [Queue, Arn]`; the checker doesn't)
    assert check(VALID_YAML.replace("-${Suffix}", "").replace("!GetAtt Queue.Arn", "!GetAtt [Queue, Arn]")) is None
    long_form = {"Parameters": {"P": {"Type": "String"}},
                 "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {
                     "QueueName": {"Fn::Sub": ["${P}-${X}-${AWS::Region}", {"X": {"Ref": "P"}}]}}},
                     "T": {"Type": "AWS::SNS::Topic", "DependsOn": ["Q"],
                           "Properties": {"DisplayName": {"Fn::GetAtt": "Q.QueueName"}}}},
                 "Outputs": {"O": {"Value": {"Fn::Sub": "${Q.Arn}"}}}}
    assert check(json.dumps(long_form)) is None
    long_form["Resources"]["T"]["DependsOn"] = ["Gone"]
    assert check(json.dumps(long_form)) == (
        "Template format error: Unresolved resource dependencies [Gone] in the Resources block of the template")
    assert check("Transform: AWS::Serverless-2016-10-31\nResources:\n  F: {Type: AWS::Serverless::Function, "
                 "Properties: {Role: !Ref Generated}}\n") is None


def test_gap_invalid_template_is_html_500_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "template_errors")
    response = raw_create_change_set(emulator, '{"Resources": {')
    assert response.status_code == 500
    assert "<ErrorResponse" not in response.text


# ------------------------------------------------------- 5 changeset_param_changes

NO_CHANGES = ("The submitted information didn't contain changes. "
              "Submit different information or contact AWS Support.")

# One SSM parameter whose value comes from a stack parameter (moto needs an explicit Name).
SSM_FROM_PARAMETER = {
    "Parameters": {"Greeting": {"Type": "String"}},
    "Resources": {
        "Setting": {"Type": "AWS::SSM::Parameter",
                    "Properties": {"Name": "/stackgate/greeting", "Type": "String",
                                   "Value": {"Ref": "Greeting"}}},
    },
}


def greeting(value: str) -> list[dict[str, str]]:
    return [{"ParameterKey": "Greeting", "ParameterValue": value}]


def update_change_set(cf: Any, name: str, change_set: str, template: dict[str, Any] | str,
                      parameters: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """CreateChangeSet(UPDATE) without executing it; its description."""
    body = template if isinstance(template, str) else json.dumps(template)
    cf.create_change_set(StackName=name, ChangeSetName=change_set, TemplateBody=body,
                         ChangeSetType="UPDATE", Parameters=parameters, **kwargs)
    return cf.describe_change_set(StackName=name, ChangeSetName=change_set)


def ssm_value(ssm: Any, name: str) -> str:
    return ssm.get_parameter(Name=name)["Parameter"]["Value"]


def test_change_set_lists_parameter_changes(patched: Emulator) -> None:
    cf, ssm = patched.client("cloudformation"), patched.client("ssm")
    body = json.dumps(SSM_FROM_PARAMETER)
    cf.create_stack(StackName="params", TemplateBody=body, Parameters=greeting("hello"))
    assert ssm_value(ssm, "/stackgate/greeting") == "hello"

    described = update_change_set(cf, "params", "bye", body, greeting("bye"))
    assert (described["Status"], described["ExecutionStatus"]) == ("CREATE_COMPLETE", "AVAILABLE")
    assert described["Changes"] == [{"Type": "Resource", "ResourceChange": {
        "Action": "Modify", "LogicalResourceId": "Setting",
        "PhysicalResourceId": "/stackgate/greeting", "ResourceType": "AWS::SSM::Parameter",
        "Replacement": "False", "Scope": ["Properties"],
        "Details": [{"Target": {"Attribute": "Properties", "Name": "Value",
                                "RequiresRecreation": "Never"},
                     "Evaluation": "Static", "ChangeSource": "ParameterReference",
                     "CausingEntity": "Greeting"}]}}]

    cf.execute_change_set(StackName="params", ChangeSetName="bye")
    assert stack(cf, "params")["StackStatus"] == "UPDATE_COMPLETE"
    assert ssm_value(ssm, "/stackgate/greeting") == "bye"

    # Nothing differs any more: the same body, the same body reformatted, previous values.
    for change_set, template, parameters in [
            ("same", body, greeting("bye")),
            ("same-reformatted", json.dumps(SSM_FROM_PARAMETER, indent=2), greeting("bye")),
            ("previous", body, [{"ParameterKey": "Greeting", "UsePreviousValue": True}])]:
        described = update_change_set(cf, "params", change_set, template, parameters)
        assert (described["Status"], described["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE"), change_set
        assert described["StatusReason"] == NO_CHANGES
        assert described["Changes"] == []
    assert stack(cf, "params")["StackStatus"] == "UPDATE_COMPLETE"


def test_change_set_merges_template_and_parameter_changes(patched: Emulator) -> None:
    cf, ssm = patched.client("cloudformation"), patched.client("ssm")
    template = {
        "Parameters": {"Greeting": {"Type": "String"}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},  # no Properties, untouched: never listed
            "Setting": {"Type": "AWS::SSM::Parameter",
                        "Properties": {"Name": "/stackgate/setting", "Type": "String",
                                       "Value": {"Ref": "Greeting"}}},
            "Banner": {"Type": "AWS::SSM::Parameter",
                       "Properties": {"Name": "/stackgate/banner", "Type": "String",
                                      "Value": {"Fn::Sub": "${Greeting}, world"}}},
        },
    }
    cf.create_stack(StackName="merge", TemplateBody=json.dumps(template), Parameters=greeting("hello"))
    updated = json.loads(json.dumps(template))
    updated["Resources"]["Setting"]["Properties"]["Value"] = {"Fn::Sub": "${Greeting}!"}
    updated["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic"}

    described = update_change_set(cf, "merge", "both", updated, greeting("bye"))

    assert described["Status"] == "CREATE_COMPLETE"
    changes = {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in described["Changes"]}
    assert len(described["Changes"]) == len(changes) == 3  # each resource once
    assert {name: change["Action"] for name, change in changes.items()} == {
        "Topic": "Add", "Setting": "Modify", "Banner": "Modify"}
    # changed in the template (and by the parameter): one row, a direct modification
    assert [d["ChangeSource"] for d in changes["Setting"]["Details"]] == ["DirectModification"]
    assert changes["Setting"]["PhysicalResourceId"] == "/stackgate/setting"
    # same body, a parameter used through Fn::Sub
    assert [(d["ChangeSource"], d.get("CausingEntity")) for d in changes["Banner"]["Details"]] == [
        ("ParameterReference", "Greeting")]

    cf.execute_change_set(StackName="merge", ChangeSetName="both")
    assert stack(cf, "merge")["StackStatus"] == "UPDATE_COMPLETE"
    assert ssm_value(ssm, "/stackgate/setting") == "bye!"
    assert ssm_value(ssm, "/stackgate/banner") == "bye, world"  # moto alone keeps "hello, world"


def test_gap_parameter_changes_not_listed_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "changeset_param_changes")
    cf, ssm = emulator.client("cloudformation"), emulator.client("ssm")
    body = json.dumps(SSM_FROM_PARAMETER)
    cf.create_stack(StackName="params", TemplateBody=body, Parameters=greeting("hello"))

    described = update_change_set(cf, "params", "bye", body, greeting("bye"))
    assert described["Status"] == "CREATE_COMPLETE"
    assert described["Changes"] == []  # ... yet executing it changes the parameter
    cf.execute_change_set(StackName="params", ChangeSetName="bye")
    assert ssm_value(ssm, "/stackgate/greeting") == "bye"

    # nothing to change: an API error for the same text, CREATE_COMPLETE for the same template
    with pytest.raises(ClientError) as err:
        update_change_set(cf, "params", "same", body, greeting("bye"))
    assert err.value.response["Error"]["Message"] == "No updates are to be performed."
    described = update_change_set(cf, "params", "same-reformatted",
                                  json.dumps(SSM_FROM_PARAMETER, indent=2), greeting("bye"))
    assert (described["Status"], described["Changes"]) == ("CREATE_COMPLETE", [])


# ------------------------------------------------------- 6 route_table_association

# A subnet and a route table made outside the stack; the stack only associates them.
ASSOCIATION_ONLY = {
    "Parameters": {"SubnetId": {"Type": "String"}, "RouteTableId": {"Type": "String"}},
    "Resources": {
        "Assoc": {"Type": "AWS::EC2::SubnetRouteTableAssociation",
                  "Properties": {"SubnetId": {"Ref": "SubnetId"},
                                 "RouteTableId": {"Ref": "RouteTableId"}}},
    },
    "Outputs": {"AssocRef": {"Value": {"Ref": "Assoc"}}},
}


def _subnet_and_route_table(ec2: Any) -> tuple[str, str]:
    vpc_id = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.30.0.0/24")["Subnet"]["SubnetId"]
    table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    return subnet_id, table_id


def subnet_associations(ec2: Any, table_id: str) -> dict[str, str]:
    """Subnet id -> association id, as DescribeRouteTables lists them."""
    table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    return {a["SubnetId"]: a["RouteTableAssociationId"]
            for a in table["Associations"] if a.get("SubnetId")}


def physical_ids(cf: Any, name: str) -> dict[str, str]:
    return {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]}


def test_subnet_route_table_association_is_real(patched: Emulator) -> None:
    cf, ec2 = patched.client("cloudformation"), patched.client("ec2")
    cf.create_stack(StackName="net", TemplateBody=json.dumps(PUBLIC_VPC))
    ids = physical_ids(cf, "net")
    listed = subnet_associations(ec2, ids["RouteTable"])
    assert listed == {ids["SubnetA"]: ids["AssocA"], ids["SubnetB"]: ids["AssocB"]}
    assert all(ids[a].startswith("rtbassoc-") for a in ("AssocA", "AssocB"))
    # (test_delete_vpc_stack_deletes_everything: deleting the stack removes them first)

    subnet_id, table_id = _subnet_and_route_table(ec2)
    cf.create_stack(StackName="assoc", TemplateBody=json.dumps(ASSOCIATION_ONLY), Parameters=[
        {"ParameterKey": "SubnetId", "ParameterValue": subnet_id},
        {"ParameterKey": "RouteTableId", "ParameterValue": table_id}])
    association_id = physical_ids(cf, "assoc")["Assoc"]
    assert subnet_associations(ec2, table_id) == {subnet_id: association_id}
    assert outputs(stack(cf, "assoc"))["AssocRef"] == association_id

    cf.delete_stack(StackName="assoc")
    assert subnet_associations(ec2, table_id) == {}  # disassociated
    ec2.delete_route_table(RouteTableId=table_id)  # ... so nothing holds the table any more


def test_gap_subnet_route_table_association_not_listed_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "route_table_association")
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    cf.create_stack(StackName="net", TemplateBody=json.dumps(PUBLIC_VPC))
    assert stack(cf, "net")["StackStatus"] == "CREATE_COMPLETE"
    ids = physical_ids(cf, "net")
    assert subnet_associations(ec2, ids["RouteTable"]) == {}
    assert ids["AssocA"] == ids["AssocB"] == ids["RouteTable"]  # not an association id


# ----------------------------------------------------------------- 7 bucket_policy


def bucket_with_policy(sid: str, bucket_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", **(bucket_attributes or {})},
            "Policy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
                "Bucket": {"Ref": "Bucket"},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": sid, "Effect": "Allow",
                    "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
                    "Action": "s3:GetObject",
                    "Resource": {"Fn::Sub": "${Bucket.Arn}/*"}}]}}},
        },
        "Outputs": {"Bucket": {"Value": {"Ref": "Bucket"}},
                    "PolicyRef": {"Value": {"Ref": "Policy"}}},
    }


def bucket_policy(s3: Any, bucket: str) -> dict[str, Any]:
    return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])


def test_bucket_policy_is_put_updated_and_deleted(patched: Emulator) -> None:
    cf, s3 = patched.client("cloudformation"), patched.client("s3")
    cf.create_stack(StackName="pol", TemplateBody=json.dumps(bucket_with_policy("ReadOnly")))
    described = stack(cf, "pol")
    assert described["StackStatus"] == "CREATE_COMPLETE"
    bucket = outputs(described)["Bucket"]
    assert outputs(described)["PolicyRef"] == bucket  # Ref / physical id: the bucket name
    resource = cf.describe_stack_resource(StackName="pol", LogicalResourceId="Policy")[
        "StackResourceDetail"]
    assert (resource["ResourceType"], resource["PhysicalResourceId"]) == ("AWS::S3::BucketPolicy", bucket)
    assert bucket_policy(s3, bucket) == {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadOnly", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}

    cf.update_stack(StackName="pol", TemplateBody=json.dumps(bucket_with_policy("Changed")))
    assert stack(cf, "pol")["StackStatus"] == "UPDATE_COMPLETE"
    assert [st["Sid"] for st in bucket_policy(s3, bucket)["Statement"]] == ["Changed"]

    cf.delete_stack(StackName="pol")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    # a retained bucket shows that deleting the resource deletes the policy
    retained = bucket_with_policy("ReadOnly", {"DeletionPolicy": "Retain"})
    cf.create_stack(StackName="kept", TemplateBody=json.dumps(retained))
    bucket = outputs(stack(cf, "kept"))["Bucket"]
    cf.delete_stack(StackName="kept")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "NoSuchBucketPolicy"


def test_gap_bucket_policy_ignored_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "bucket_policy")
    cf, s3 = emulator.client("cloudformation"), emulator.client("s3")
    cf.create_stack(StackName="pol", TemplateBody=json.dumps(bucket_with_policy("ReadOnly")))
    described = stack(cf, "pol")
    assert described["StackStatus"] == "CREATE_COMPLETE"
    summaries = cf.list_stack_resources(StackName="pol")["StackResourceSummaries"]
    assert [(r["LogicalResourceId"], r["ResourceType"], r["PhysicalResourceId"]) for r in summaries
            if r["LogicalResourceId"] != "Bucket"] == [("", "", "")]
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=outputs(described)["Bucket"])
    assert err.value.response["Error"]["Code"] == "NoSuchBucketPolicy"


# ---------------------------------------------------------- 8 instance_primary_eni

INSTANCE_IN_SUBNET = {
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.40.0.0/16"}},
        "Subnet": {"Type": "AWS::EC2::Subnet",
                   "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": "10.40.0.0/24"}},
        "Instance": {"Type": "AWS::EC2::Instance",
                     "Properties": {"ImageId": "ami-12c6146b", "SubnetId": {"Ref": "Subnet"}}},
    },
    "Outputs": {"InstanceId": {"Value": {"Ref": "Instance"}}, "SubnetId": {"Value": {"Ref": "Subnet"}}},
}


def primary_interface(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservation = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    [interface] = reservation["Instances"][0]["NetworkInterfaces"]
    return interface


def network_interfaces(ec2: Any) -> list[dict[str, Any]]:
    return ec2.describe_network_interfaces()["NetworkInterfaces"]


def test_primary_network_interface_deleted_with_instance(patched: Emulator) -> None:
    cf, ec2 = patched.client("cloudformation"), patched.client("ec2")
    cf.create_stack(StackName="vm", TemplateBody=json.dumps(INSTANCE_IN_SUBNET))
    described = stack(cf, "vm")
    instance_id = outputs(described)["InstanceId"]
    interface = primary_interface(ec2, instance_id)
    assert interface["Attachment"]["DeleteOnTermination"] is True
    assert [(n["NetworkInterfaceId"], n["Attachment"]["DeleteOnTermination"])
            for n in network_interfaces(ec2)] == [(interface["NetworkInterfaceId"], True)]

    cf.delete_stack(StackName="vm")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    assert network_interfaces(ec2) == []

    # the same for RunInstances; terminating twice is fine (TerminateInstances is idempotent)
    subnet_id = _subnet_and_route_table(ec2)[0]
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                    SubnetId=subnet_id)["Instances"][0]["InstanceId"]
    assert primary_interface(ec2, instance_id)["Attachment"]["DeleteOnTermination"] is True
    for _ in range(2):
        ec2.terminate_instances(InstanceIds=[instance_id])
        assert network_interfaces(ec2) == []


def test_gap_primary_network_interface_leaks_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "instance_primary_eni")
    cf, ec2 = emulator.client("cloudformation"), emulator.client("ec2")
    cf.create_stack(StackName="vm", TemplateBody=json.dumps(INSTANCE_IN_SUBNET))
    described = stack(cf, "vm")
    instance_id, subnet_id = outputs(described)["InstanceId"], outputs(described)["SubnetId"]
    assert primary_interface(ec2, instance_id)["Attachment"]["DeleteOnTermination"] is False

    cf.delete_stack(StackName="vm")
    assert stack(cf, described["StackId"])["StackStatus"] == "DELETE_COMPLETE"
    left = network_interfaces(ec2)
    assert [(n["Status"], n["SubnetId"], n["Attachment"]["InstanceId"]) for n in left] == [
        ("in-use", subnet_id, instance_id)]
    assert ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])["Subnets"] == []


# --------------------------------------------------- the hybrid stack's delete order


OTHER_ACCOUNT = "111111111111"


def as_account(client: Any, account: str) -> Any:
    """The client's requests act for `account` (moto's x-moto-account-id header)."""
    def add(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account
    client.meta.events.register("before-sign.s3.*", add)
    return client


def test_expected_bucket_owner_refuses_another_accounts_bucket(patched: Emulator) -> None:
    other = as_account(patched.client("s3"), OTHER_ACCOUNT)
    other.create_bucket(Bucket="theirs")
    s3 = patched.client("s3")
    me = patched.client("sts").get_caller_identity()["Account"]
    assert me != OTHER_ACCOUNT
    s3.create_bucket(Bucket="mine")
    # Ours: served with or without the header.
    s3.head_bucket(Bucket="mine", ExpectedBucketOwner=me)
    s3.put_object(Bucket="mine", Key="k", Body=b"x", ExpectedBucketOwner=me)
    # Theirs: refused with the header, for buckets and objects alike.
    for call in (
        lambda: s3.head_bucket(Bucket="theirs", ExpectedBucketOwner=me),
        lambda: s3.put_object(Bucket="theirs", Key="k", Body=b"x", ExpectedBucketOwner=me),
        lambda: s3.list_object_versions(Bucket="theirs", ExpectedBucketOwner=me),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "Contents" not in other.list_objects_v2(Bucket="theirs")
    # A bucket that does not exist is still a 404.
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="nobodys", ExpectedBucketOwner=me)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_gap_expected_bucket_owner_ignored_without_patch(emulators) -> None:
    emulator = unpatched(emulators, "expected_bucket_owner")
    as_account(emulator.client("s3"), OTHER_ACCOUNT).create_bucket(Bucket="theirs")
    s3 = emulator.client("s3")
    me = emulator.client("sts").get_caller_identity()["Account"]
    s3.head_bucket(Bucket="theirs", ExpectedBucketOwner=me)
    s3.put_object(Bucket="theirs", Key="k", Body=b"x", ExpectedBucketOwner=me)


def _tags(cf: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in stack(cf, name).get("Tags") or []}


def _update_with_tags(cf: Any) -> None:
    create_via_change_set(cf, "tagged", QUEUE_WITH_OUTPUTS, Tags=[{"Key": "owner", "Value": "a"}])
    create_via_change_set(cf, "tagged", QUEUE_WITH_OUTPUTS, change_set_type="UPDATE",
                          Tags=[{"Key": "owner", "Value": "b"}, {"Key": "new", "Value": "n"}])


def test_update_change_set_sets_the_stack_tags(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    _update_with_tags(cf)
    assert _tags(cf, "tagged") == {"owner": "b", "new": "n"}


def test_gap_update_change_set_tags_ignored_without_patch(emulators) -> None:
    cf = unpatched(emulators, "changeset_tags").client("cloudformation")
    _update_with_tags(cf)
    assert _tags(cf, "tagged") == {"owner": "a"}


# ------------------------------------------------------------ client_request_token

TOKEN = "stackgate-7-2"


def _execute_with_token(cf: Any) -> tuple[str, str]:
    """A stack created by a change set executed with TOKEN; (stack id, change set id)."""
    out = cf.create_change_set(StackName="tokened", ChangeSetName="cs-1",
                               TemplateBody=json.dumps(QUEUE), ChangeSetType="CREATE",
                               ClientToken=TOKEN)
    cf.execute_change_set(ChangeSetName=out["Id"], ClientRequestToken=TOKEN)
    return out["StackId"], out["Id"]


def _tokens(cf: Any, stack_id: str) -> list[tuple[str, str | None]]:
    return [(e["ResourceStatus"], e.get("ClientRequestToken")) for e in events(cf, stack_id)]


def test_execute_and_delete_tokens_mark_their_events(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    stack_id, change_set = _execute_with_token(cf)
    seen = _tokens(cf, stack_id)
    assert ("CREATE_COMPLETE", TOKEN) in seen, seen
    assert ("REVIEW_IN_PROGRESS", None) in seen, "the change set's creation is no execution"
    # The same request again is the same execution: it does not run twice.
    cf.execute_change_set(ChangeSetName=change_set, ClientRequestToken=TOKEN)
    assert _tokens(cf, stack_id) == seen
    # Another token is another request, and the change set has run.
    with pytest.raises(ClientError) as refused:
        cf.execute_change_set(ChangeSetName=change_set, ClientRequestToken="stackgate-7-3")
    assert refused.value.response["Error"]["Code"] == "InvalidChangeSetStatus"
    assert _tokens(cf, stack_id) == seen
    cf.delete_stack(StackName="tokened", ClientRequestToken="stackgate-8-1")
    assert ("DELETE_COMPLETE", "stackgate-8-1") in _tokens(cf, stack_id)


@pytest.mark.parametrize("token", ["7-starts-with-a-digit", "has_underscore", "x" * 129])
def test_tokens_outside_the_documented_pattern_are_refused(patched: Emulator, token: str) -> None:
    cf = patched.client("cloudformation")
    with pytest.raises(ClientError) as refused:
        cf.create_change_set(StackName="tokened", ChangeSetName="cs-1",
                             TemplateBody=json.dumps(QUEUE), ChangeSetType="CREATE",
                             ClientToken=token)
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    out = cf.create_change_set(StackName="tokened", ChangeSetName="cs-1",
                               TemplateBody=json.dumps(QUEUE), ChangeSetType="CREATE")
    for call in (lambda: cf.execute_change_set(ChangeSetName=out["Id"], ClientRequestToken=token),
                 lambda: cf.delete_stack(StackName="tokened", ClientRequestToken=token)):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert stack(cf, "tokened")["StackStatus"] == "REVIEW_IN_PROGRESS", "nothing ran"


def test_gap_tokens_ignored_and_change_sets_rerun_without_patch(emulators) -> None:
    cf = unpatched(emulators, "client_request_token").client("cloudformation")
    stack_id, change_set = _execute_with_token(cf)
    seen = _tokens(cf, stack_id)
    assert all(token is None for _, token in seen), seen
    cf.execute_change_set(ChangeSetName=change_set, ClientRequestToken="stackgate-7-3")
    assert len(_tokens(cf, stack_id)) > len(seen), "moto ran the change set again"


def test_hybrid_stack_deletion_order() -> None:
    """delete_order deletes the new resources before what they hang on."""
    from moto.cloudformation.models import Stack

    resources = Stack.parse_template(
        (ROOT / "stacks" / "hybrid-alb" / "template.yaml").read_text())["Resources"]
    order, deps = _emulator_module("patches.shared").deletion_order(resources)
    types = {name: body["Type"] for name, body in resources.items()}

    def deleted_before(kind: str, *targets: str) -> None:
        names = [n for n in order if types[n] == kind]
        assert names, kind
        for name in names:
            uses = sorted(d for d in deps[name] if types[d] in targets)
            assert {types[d] for d in uses} == set(targets), (name, uses)
            assert all(order.index(name) < order.index(d) for d in uses), (name, order)

    deleted_before("AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::RouteTable", "AWS::EC2::Subnet")
    deleted_before("AWS::S3::BucketPolicy", "AWS::S3::Bucket")
    deleted_before("AWS::EC2::Instance", "AWS::EC2::Subnet")


# --------------------------------------------------------------------- the launcher


# ------------------------------------------------------------ slow operations (test knob)

QUEUE = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}


def wait_status(cf: Any, name: str, want: str, timeout: float) -> float:
    """Seconds until the stack shows `want`."""
    started = time.monotonic()
    while True:
        try:
            status = stack(cf, name)["StackStatus"]
        except ClientError:
            status = "GONE"
        if status == want:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{name}: still {status}, not {want}"
        time.sleep(0.05)


def test_slow_knob_holds_create_update_and_delete_in_progress(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    slow = f"{patched.url}/stackgate-api/slow"
    reply = requests.post(slow, json={"stack": "slow-*", "seconds": 1.5}, timeout=5)
    assert reply.ok, reply.text
    try:
        assert requests.get(slow, timeout=5).json() == {"rules": {"slow-*": 1.5}}
        # Without a matching rule a change set runs inside the call, as moto does.
        create_via_change_set(cf, "quick-one", QUEUE)
        assert stack(cf, "quick-one")["StackStatus"] == "CREATE_COMPLETE"

        create_via_change_set(cf, "slow-one", QUEUE)
        assert stack(cf, "slow-one")["StackStatus"] == "CREATE_IN_PROGRESS"
        # Busy, as in AWS: no change set while the create runs.
        with pytest.raises(ClientError, match="CREATE_IN_PROGRESS state and can not be updated"):
            cf.create_change_set(StackName="slow-one", ChangeSetName="cs-busy",
                                 TemplateBody=json.dumps(QUEUE), ChangeSetType="UPDATE")
        assert wait_status(cf, "slow-one", "CREATE_COMPLETE", 10) > 1.0
        assert stack(cf, "slow-one").get("StackStatusReason") is None
        statuses = [e["ResourceStatus"] for e in events(cf, "slow-one")
                    if e["LogicalResourceId"] == "slow-one"]
        assert statuses.count("CREATE_IN_PROGRESS") == 1, statuses
        assert statuses[-1] == "CREATE_COMPLETE", statuses

        updated = json.loads(json.dumps(QUEUE))
        updated["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic"}
        create_via_change_set(cf, "slow-one", updated, change_set_type="UPDATE")
        assert stack(cf, "slow-one")["StackStatus"] == "UPDATE_IN_PROGRESS"
        assert wait_status(cf, "slow-one", "UPDATE_COMPLETE", 10) > 1.0
        resources = {r["LogicalResourceId"] for r in
                     cf.describe_stack_resources(StackName="slow-one")["StackResources"]}
        assert resources == {"Queue", "Topic"}

        cf.delete_stack(StackName="slow-one")
        assert stack(cf, "slow-one")["StackStatus"] == "DELETE_IN_PROGRESS"
        with pytest.raises(ClientError, match="DELETE_IN_PROGRESS state"):
            cf.delete_stack(StackName="slow-one")
        assert wait_status(cf, "slow-one", "GONE", 10) > 1.0

        # 0 removes the rule: back to moto's instant operations.
        requests.post(slow, json={"stack": "slow-*", "seconds": 0}, timeout=5).raise_for_status()
        create_via_change_set(cf, "slow-two", QUEUE)
        assert stack(cf, "slow-two")["StackStatus"] == "CREATE_COMPLETE"
        bad = requests.post(slow, json={"stack": "x", "seconds": -1}, timeout=5)
        assert bad.status_code == 400 and "seconds" in bad.json()["error"]
    finally:
        requests.delete(slow, timeout=5)
    assert requests.get(slow, timeout=5).json() == {"rules": {}}


def test_slow_knob_delays_a_named_operation_only(patched: Emulator) -> None:
    cf = patched.client("cloudformation")
    slow = f"{patched.url}/stackgate-api/slow"
    create_via_change_set(cf, "late-one", QUEUE)
    create_via_change_set(cf, "prompt-one", QUEUE)
    rule = {"stack": "late-*", "seconds": 1.5, "operation": "DescribeStacks"}
    requests.post(slow, json=rule, timeout=5).raise_for_status()
    try:
        assert requests.get(slow, timeout=5).json() == {"rules": {"DescribeStacks:late-*": 1.5}}

        def took(call: Callable[[], Any]) -> float:
            started = time.monotonic()
            call()
            return time.monotonic() - started

        arn = cf.list_stacks()["StackSummaries"]
        arn = next(s["StackId"] for s in arn if s["StackName"] == "late-one")
        assert took(lambda: stack(cf, "late-one")) > 1.4
        assert took(lambda: stack(cf, arn)) > 1.4  # named by its ARN
        # Other stacks, other operations and the stack's own status are untouched.
        assert took(lambda: stack(cf, "prompt-one")) < 1.0
        assert took(lambda: events(cf, "late-one")) < 1.0
        assert cf.list_stacks()["StackSummaries"]
        # A client that gives up waiting gets no answer; a read changes nothing.
        impatient = boto3.client(
            "cloudformation", endpoint_url=patched.url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, read_timeout=0.5))
        with pytest.raises(ReadTimeoutError):
            impatient.describe_stacks(StackName="late-one")

        bad = requests.post(slow, json={**rule, "operation": "describe stacks"}, timeout=5)
        assert bad.status_code == 400 and "operation" in bad.json()["error"]
        requests.post(slow, json={**rule, "seconds": 0}, timeout=5).raise_for_status()
        assert took(lambda: stack(cf, "late-one")) < 1.0
        assert stack(cf, "late-one")["StackStatus"] == "CREATE_COMPLETE"
    finally:
        requests.delete(slow, timeout=5)


def test_slow_knob_from_the_environment(tmp_path: Path) -> None:
    emulator = Emulator("all", tmp_path, env={"STACKGATE_MOTO_SLOW": "held=1, other-*=5"})
    try:
        cf = emulator.client("cloudformation")
        create_via_change_set(cf, "held", QUEUE)
        assert stack(cf, "held")["StackStatus"] == "CREATE_IN_PROGRESS"
        assert 0.8 < wait_status(cf, "held", "CREATE_COMPLETE", 10) < 3
        create_via_change_set(cf, "not-held", QUEUE)
        assert stack(cf, "not-held")["StackStatus"] == "CREATE_COMPLETE"
        assert "slow operations" in emulator.log()
    finally:
        emulator.stop()
    slow = _emulator_module("slow")
    with pytest.raises(SystemExit, match="glob=seconds"):
        slow.SlowOperations().parse("held")
    assert slow.SlowOperations().parse("DescribeStacks:held=2, held=1") == {
        "DescribeStacks:held": 2.0, "held": 1.0}
    with pytest.raises(SystemExit, match="glob=seconds"):
        slow.SlowOperations().parse("describe stacks:held=2")


def _emulator_module(name: str) -> Any:
    """A module of the emulator package (importing it applies no patch)."""
    import importlib

    if str(LAUNCHER.parent) not in sys.path:
        sys.path.insert(0, str(LAUNCHER.parent))
    return importlib.import_module(f"emulator.{name}")


def test_patch_selection() -> None:
    launcher = _emulator_module("launcher")
    every = list(launcher.PATCHES)
    assert every == ["changeset_outputs", "delete_order", "create_rollback", "template_errors",
                     "changeset_param_changes", "route_table_association", "bucket_policy",
                     "instance_primary_eni", "expected_bucket_owner", "changeset_tags",
                     "client_request_token", "drift"]
    assert launcher.select_patches(None) == every
    assert launcher.select_patches("none") == []
    assert launcher.select_patches("all,-delete_order") == [p for p in every if p != "delete_order"]
    assert launcher.select_patches("none,template_errors") == ["template_errors"]
    with pytest.raises(SystemExit):
        launcher.select_patches("all,-no_such_patch")
    for name, patch in launcher.PATCHES.items():
        assert "https://" in (patch.__doc__ or ""), f"{name} documents what it patches"


def test_emulator_script_start_status_reset_stop(tmp_path: Path) -> None:
    port = str(free_port())
    env = dict(os.environ, STACKGATE_EMULATOR_PORT=port)

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(EMULATOR_SH), command], env=env, text=True,
                              capture_output=True, timeout=60)

    pid_file = ROOT / ".local" / f"emulator-{port}.pid"
    try:
        assert run("status").returncode == 1
        started = run("start")
        assert started.returncode == 0, started.stderr
        assert f"AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in started.stdout
        again = run("start")
        assert again.returncode == 0 and "already running" in again.stdout
        assert run("status").returncode == 0

        sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        sqs.create_queue(QueueName="q")
        assert run("reset").returncode == 0
        assert queue_urls(sqs) == []
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run("status").returncode == 1
    assert not pid_file.exists()

    # a stale pid file is cleaned up, and start still works
    pid_file.write_text("999999\n")
    try:
        restarted = run("start")
        assert restarted.returncode == 0 and "stale pid file" in restarted.stdout
    finally:
        assert run("stop").returncode == 0
