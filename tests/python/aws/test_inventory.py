"""tests/tools/inventory.py against a real emulator: stacks/hybrid-alb created and deleted.

Starts its own emulator (deploy/local/emulator.sh on a free 127.0.0.1 port), creates the
hybrid-alb stack with boto3 (as stackgate would: the Lambda zip uploaded, the parameters of
deployment.yaml), and checks that the inventory sees what exists and what does not, from the
services' APIs rather than from CloudFormation.

    .local/venv/bin/python -m pytest tests/python/aws/test_inventory.py
"""
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
INVENTORY = REPO / "tests" / "tools" / "inventory.py"
STACK_DIR = REPO / "stacks" / "hybrid-alb"
TEMPLATE = STACK_DIR / "template.yaml"
EMULATOR = REPO / "deploy" / "local" / "emulator.sh"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "inventory-test", "AWS_SECRET_ACCESS_KEY": "inventory-test",
               "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}

sys.dont_write_bytecode = True
sys.path.insert(0, str(INVENTORY.parent))
import inventory  # noqa: E402

# What moto 5.2.5's CloudFormation reports as created but does not create in a way any API
# shows: AWS::S3::BucketPolicy is not modelled at all, and SubnetRouteTableAssociation is
# kept in a side table that DescribeRouteTables does not read.
MOTO_GAPS = {"LogsBucketPolicy", "PublicSubnet1RouteTableAssociation",
             "PublicSubnet2RouteTableAssociation"}


# --------------------------------------------------------------------------- no emulator


def test_yaml_loader_reads_short_forms():
    doc = yaml.load(
        "A: !Ref X\nB: !GetAtt R.Arn\nC: !Sub ['${a}', {a: !Ref Y}]\n"
        "D: !Select [0, !GetAZs '']\nE: !If [Cond, 1, !Ref AWS::NoValue]\nF: !Condition C\n",
        Loader=inventory.CfnLoader)
    assert doc == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["R", "Arn"]},
        "C": {"Fn::Sub": ["${a}", {"a": {"Ref": "Y"}}]},
        "D": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "E": {"Fn::If": ["Cond", 1, {"Ref": "AWS::NoValue"}]},
        "F": {"Condition": "C"},
    }


def test_template_resources_of_hybrid_alb():
    resources = inventory.template_resources(inventory.load_template(TEMPLATE))
    assert len(resources) == 26
    assert {t for _, t, _ in resources} <= set(inventory.KINDS), "a type without a checker"


def test_resolver_computes_the_permission_source_arn():
    template = inventory.load_template(TEMPLATE)
    res = inventory.Resolver(template, "st", "us-east-1", "123456789012", {},
                             {"LambdaFunction": "st-fn"})
    ident = inventory.ident_lambda_permission(
        res, template["Resources"]["LambdaInvokePermission"], None)
    assert ident == {
        "function": "arn:aws:lambda:us-east-1:123456789012:function:st-fn",
        "action": "lambda:InvokeFunction",
        "principal": "elasticloadbalancing.amazonaws.com",
        "source_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/st-lambda/*",
        "source_account": "123456789012",
    }


@pytest.mark.parametrize("name,ok", [
    ("st-LambdaRole-ABC123", True),
    ("st-Instance-4E6U5PFY96HF", True),  # CloudFormation shortens long logical ids
    ("st-x-LambdaRole-ABC123", False),  # another stack, "st-x"
    ("st-Other-ABC123", False),
    ("other-LambdaRole-ABC123", False),
])
def test_generated_name_matches(name, ok):
    logical = "InstanceTargetGroup" if "Instance" in name else "LambdaRole"
    assert inventory.generated_name_matches(name, "st", logical) is ok


def run_inventory(endpoint, stack, state_dir, *extra, env=None):
    return subprocess.run(
        [sys.executable, str(INVENTORY), "--endpoint", endpoint, "--stack", stack,
         "--template", str(TEMPLATE), "--state-dir", str(state_dir), *extra],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **CREDENTIALS, **(env or {})})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [
    [],
    ["--endpoint", "http://127.0.0.1:9", "--stack", "s"],
    ["--endpoint", "http://127.0.0.1:9", "--stack", "../s", "--template", str(TEMPLATE)],
    ["--endpoint", "http://127.0.0.1:9", "--stack", "s", "--template", "/nonexistent.yaml"],
])
def test_usage_errors_exit_2(argv):
    out = subprocess.run([sys.executable, str(INVENTORY), *argv], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **CREDENTIALS})
    assert out.returncode == 2, out.stderr
    assert "inventory: error:" in out.stderr
    assert out.stdout == ""


def test_unreachable_endpoint_fails_clearly(tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    out = run_inventory(endpoint, "s", tmp_path)
    assert out.returncode not in (0, 2), out
    assert "cannot reach the AWS endpoint" in out.stderr
    assert out.stdout == ""


# --------------------------------------------------------------------------- emulator


@pytest.fixture(scope="module")
def endpoint():
    port = str(free_port())
    env = {**os.environ, "STACKGATE_EMULATOR_PORT": port}
    started = subprocess.run(["bash", str(EMULATOR), "start"], env=env, capture_output=True,
                             text=True, timeout=120)
    if started.returncode != 0:
        pytest.skip(f"the emulator did not start: {started.stderr or started.stdout}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(EMULATOR), "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def aws(endpoint):
    def client(service):
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            aws_access_key_id="inventory-test",
                            aws_secret_access_key="inventory-test")
    return client


def lambda_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        root = STACK_DIR / "lambda"
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def wait_for(cfn, stack_id):
    deadline = time.monotonic() + 120
    while True:
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return stack
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(aws):
    deployment = yaml.safe_load((STACK_DIR / "deployment.yaml").read_text(encoding="utf-8"))
    name = "inv-" + uuid.uuid4().hex[:8]
    bucket, key = "inventory-test-artifacts", f"{name}/lambda.zip"
    s3 = aws("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=lambda_zip())
    [artifact] = deployment["artifacts"]
    params = dict(deployment["parameters"])
    params[artifact["bucket-parameter"]] = bucket
    params[artifact["key-parameter"]] = key
    cfn = aws("cloudformation")
    stack_id = cfn.create_stack(
        StackName=name, TemplateBody=TEMPLATE.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=deployment["capabilities"])["StackId"]
    described = wait_for(cfn, stack_id)
    assert described["StackStatus"] == "CREATE_COMPLETE", described
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    return {"name": name, "id": stack_id,
            "ids": {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                    for r in resources if r.get("LogicalResourceId")}}


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("inventory-state")


def inventory_of(endpoint, stack, state_dir):
    out = run_inventory(endpoint, stack["name"], state_dir)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"present", "missing", "unchecked"}
    return result


def ids_of(items):
    return {i["logical_id"] for i in items}


ALL = {lid for lid, _, _ in inventory.template_resources(inventory.load_template(TEMPLATE))}


def fill_moto_gaps(aws, stack):
    """Do what moto's CloudFormation skipped: the associations and the bucket policy."""
    ec2, ids = aws("ec2"), stack["ids"]
    table = ids["PublicRouteTable"]
    [rt] = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
    have = {a.get("SubnetId") for a in rt.get("Associations", [])}
    for subnet in ("PublicSubnet1", "PublicSubnet2"):
        if ids[subnet] not in have:
            ec2.associate_route_table(RouteTableId=table, SubnetId=ids[subnet])
    bucket = ids["LogsBucket"]
    aws("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AllowElbLogDelivery", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::127311923021:root"}, "Action": "s3:PutObject",
             "Resource": f"arn:aws:s3:::{bucket}/alb/*"},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ]}))


def test_round_trip(endpoint, aws, stack, state_dir, tmp_path, monkeypatch):
    # After create: everything the emulator really made is present, nothing is unchecked.
    inv = inventory_of(endpoint, stack, state_dir)
    assert inv["unchecked"] == []
    assert ids_of(inv["present"]) | ids_of(inv["missing"]) == ALL
    assert ids_of(inv["missing"]) <= MOTO_GAPS, inv["missing"]
    assert (state_dir / f"{stack['name']}.json").exists()
    by_id = {i["logical_id"]: i for i in inv["present"]}
    assert by_id["Vpc"]["physical_id"] == stack["ids"]["Vpc"]
    assert by_id["LambdaRole"]["physical_id"] == stack["ids"]["LambdaRole"]

    # CloudFormation's word is not taken: a log group deleted behind its back is missing.
    logs = aws("logs")
    group = stack["ids"]["LambdaLogGroup"]
    logs.delete_log_group(logGroupName=group)
    try:
        inv = inventory_of(endpoint, stack, state_dir)
        [gone] = [m for m in inv["missing"] if m["logical_id"] == "LambdaLogGroup"]
        assert "no log group named" in gone["reason"]
    finally:
        logs.create_log_group(logGroupName=group)

    # With moto's gaps filled by hand, every resource is present.
    fill_moto_gaps(aws, stack)
    inv = inventory_of(endpoint, stack, state_dir)
    assert (inv["missing"], inv["unchecked"]) == ([], []), inv
    assert ids_of(inv["present"]) == ALL

    # Without CloudFormation's ids or a record, the search by names and tags finds it all.
    monkeypatch.setattr(inventory, "describe_stack", lambda aws_, name: None)
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    args = inventory.parse_args(["--endpoint", endpoint, "--stack", stack["name"],
                                 "--template", str(TEMPLATE), "--state-dir", str(tmp_path)])
    found = inventory.run(args)
    assert (found["missing"], found["unchecked"]) == ([], []), found
    monkeypatch.undo()

    # After delete: nothing is left, by the recorded ids and by the search.
    cfn = aws("cloudformation")
    cfn.delete_stack(StackName=stack["name"])
    assert wait_for(cfn, stack["id"])["StackStatus"] == "DELETE_COMPLETE"
    for where in (state_dir, tmp_path / "no-record"):
        inv = inventory_of(endpoint, stack, where)
        assert inv["present"] == [], (where, inv["present"])
        assert inv["unchecked"] == []
        assert ids_of(inv["missing"]) == ALL

    # A leak is seen although the stack is gone: by the recorded id, and by the name search.
    iam = aws("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
         "Action": "sts:AssumeRole"}]})
    recorded = stack["ids"]["LambdaRole"]
    stray = f"{stack['name']}-LambdaRole-LEAKED0001"
    iam.create_role(RoleName=recorded, AssumeRolePolicyDocument=trust)
    try:
        inv = inventory_of(endpoint, stack, state_dir)
        assert [(i["logical_id"], i["physical_id"]) for i in inv["present"]] == [
            ("LambdaRole", recorded)]
    finally:
        iam.delete_role(RoleName=recorded)
    iam.create_role(RoleName=stray, AssumeRolePolicyDocument=trust)
    try:
        inv = inventory_of(endpoint, stack, tmp_path / "no-record")
        assert [(i["logical_id"], i["physical_id"]) for i in inv["present"]] == [
            ("LambdaRole", stray)]
    finally:
        iam.delete_role(RoleName=stray)
