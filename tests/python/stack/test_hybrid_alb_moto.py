"""The stack creates on moto (the AWS emulator the end-to-end tests use).

This runs moto in-process (no server, no network). Moto's CloudFormation
does not model everything (it skips AWS::S3::BucketPolicy, bucket versioning
and public access block, instance SecurityGroupIds and MetadataOptions, load
balancer attributes and target registration), so the checks below stick to
what it does model.
"""
import io
import os
import time
import zipfile

import boto3
import pytest
from moto import mock_aws

from hybrid_alb import STACK_DIR, TEMPLATE_PATH, load_deployment

REGION = "us-east-1"
ARTIFACT_BUCKET = "stackgate-artifacts-123456789012"
ARTIFACT_KEY = "hybrid-alb/lambda/0123abcd.zip"

pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse:UserWarning"
)


def lambda_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        root = STACK_DIR / "lambda"
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def aws():
    saved = {k: os.environ.get(k) for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_SESSION_TOKEN="testing", AWS_DEFAULT_REGION=REGION)
    try:
        with mock_aws():
            yield lambda service: boto3.client(service, region_name=REGION)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def stack(aws):
    deployment = load_deployment()
    s3 = aws("s3")
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=lambda_zip())
    [artifact] = deployment["artifacts"]
    params = dict(deployment["parameters"])
    params[artifact["bucket-parameter"]] = ARTIFACT_BUCKET
    params[artifact["key-parameter"]] = ARTIFACT_KEY
    cfn = aws("cloudformation")
    name = deployment["stack-name"]
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE_PATH.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=deployment["capabilities"],
        Tags=[{"Key": k, "Value": v} for k, v in deployment["tags"].items()],
    )
    deadline = time.monotonic() + 60
    while True:
        described = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not described["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    return {
        "stack": described,
        "resources": {r["LogicalResourceId"]: r for r in resources if r.get("LogicalResourceId")},
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
    }


def test_stack_reaches_create_complete(stack):
    assert stack["stack"]["StackStatus"] == "CREATE_COMPLETE", stack["stack"].get("StackStatusReason")


def test_resources_are_created(stack):
    types = {name: r["ResourceType"] for name, r in stack["resources"].items()}
    # AWS::S3::BucketPolicy is missing: moto's CloudFormation does not model it.
    template_types = {
        "Vpc": "AWS::EC2::VPC",
        "InternetGateway": "AWS::EC2::InternetGateway",
        "GatewayAttachment": "AWS::EC2::VPCGatewayAttachment",
        "PublicSubnet1": "AWS::EC2::Subnet",
        "PublicSubnet2": "AWS::EC2::Subnet",
        "PublicRouteTable": "AWS::EC2::RouteTable",
        "PublicDefaultRoute": "AWS::EC2::Route",
        "PublicSubnet1RouteTableAssociation": "AWS::EC2::SubnetRouteTableAssociation",
        "PublicSubnet2RouteTableAssociation": "AWS::EC2::SubnetRouteTableAssociation",
        "AlbSecurityGroup": "AWS::EC2::SecurityGroup",
        "Ec2SecurityGroup": "AWS::EC2::SecurityGroup",
        "LogsBucket": "AWS::S3::Bucket",
        "LambdaLogGroup": "AWS::Logs::LogGroup",
        "LambdaRole": "AWS::IAM::Role",
        "LambdaFunction": "AWS::Lambda::Function",
        "LambdaInvokePermission": "AWS::Lambda::Permission",
        "LambdaTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Ec2Role": "AWS::IAM::Role",
        "Ec2InstanceProfile": "AWS::IAM::InstanceProfile",
        "Instance": "AWS::EC2::Instance",
        "InstanceTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Alb": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "HttpListener": "AWS::ElasticLoadBalancingV2::Listener",
        "LambdaListenerRule": "AWS::ElasticLoadBalancingV2::ListenerRule",
        "Ec2ListenerRule": "AWS::ElasticLoadBalancingV2::ListenerRule",
    }
    assert types == template_types
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in stack["resources"].values())


def test_outputs_point_at_the_load_balancer(stack, aws):
    [lb] = aws("elbv2").describe_load_balancers()["LoadBalancers"]
    dns = lb["DNSName"]
    assert stack["outputs"]["AlbDnsName"] == dns
    assert stack["outputs"]["LambdaUrl"] == "http://%s/lambda" % dns
    assert stack["outputs"]["Ec2Url"] == "http://%s/ec2" % dns


def test_image_id_resolves_from_ssm(stack, aws):
    params = {p["ParameterKey"]: p for p in stack["stack"]["Parameters"]}
    ami = params["ImageId"]["ParameterValue"]
    assert ami.startswith("ami-")
    [reservation] = aws("ec2").describe_instances(
        InstanceIds=[stack["resources"]["Instance"]["PhysicalResourceId"]])["Reservations"]
    assert reservation["Instances"][0]["ImageId"] == ami


def test_lambda_function_and_permission(stack, aws):
    lam = aws("lambda")
    name = stack["resources"]["LambdaFunction"]["PhysicalResourceId"]
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["Runtime"], config["Handler"]) == ("python3.12", "handler.handler")
    policy = lam.get_policy(FunctionName=name)["Policy"]
    tg_arn = stack["resources"]["LambdaTargetGroup"]["PhysicalResourceId"]
    tg_prefix = tg_arn.rsplit("/", 1)[0] + "/*"
    assert '"Service": "elasticloadbalancing.amazonaws.com"' in policy
    assert tg_prefix in policy
    groups = aws("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/" + name)["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/aws/lambda/" + name]


def test_listener_rules(stack, aws):
    elb = aws("elbv2")
    listener = stack["resources"]["HttpListener"]["PhysicalResourceId"]
    routes = {}
    for rule in elb.describe_rules(ListenerArn=listener)["Rules"]:
        if rule["IsDefault"]:
            assert rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
            continue
        [path] = rule["Conditions"][0]["PathPatternConfig"]["Values"]
        routes[path] = rule["Actions"][0]["TargetGroupArn"]
    assert routes == {
        "/lambda": stack["resources"]["LambdaTargetGroup"]["PhysicalResourceId"],
        "/ec2": stack["resources"]["InstanceTargetGroup"]["PhysicalResourceId"],
    }


def test_security_groups(stack, aws):
    ec2 = aws("ec2")
    alb_sg = stack["resources"]["AlbSecurityGroup"]["PhysicalResourceId"]
    ec2_sg = stack["resources"]["Ec2SecurityGroup"]["PhysicalResourceId"]
    groups = {g["GroupId"]: g for g in ec2.describe_security_groups(GroupIds=[alb_sg, ec2_sg])["SecurityGroups"]}
    [alb_rule] = groups[alb_sg]["IpPermissions"]
    assert alb_rule["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    [ec2_rule] = groups[ec2_sg]["IpPermissions"]
    assert ec2_rule["IpRanges"] == []
    assert [p["GroupId"] for p in ec2_rule["UserIdGroupPairs"]] == [alb_sg]


def test_log_bucket_is_encrypted(stack, aws):
    bucket = stack["resources"]["LogsBucket"]["PhysicalResourceId"]
    rules = aws("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]
