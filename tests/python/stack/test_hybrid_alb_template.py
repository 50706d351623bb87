"""Static checks of stacks/hybrid-alb/template.yaml and deployment.yaml."""
import copy
import re
from pathlib import Path

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file
from cfnlint.context.parameters import ParameterSet

from hybrid_alb import DEPLOYMENT_PATH, STACK_DIR, TEMPLATE_PATH, load_template

WORLD = {"0.0.0.0/0", "::/0"}


def lint(path, parameters=None):
    args = {"regions": ["us-east-1"], "include_checks": ["I"]}
    if parameters is not None:
        args["parameters"] = [ParameterSet(source=None, parameters=parameters)]
    return lint_file(Path(path), ManualArgs(**args))


def describe(matches):
    return "\n".join(
        "%s line %s: %s" % (m.rule.id, m.linenumber, m.message) for m in matches
    )


def deployment_parameters(deployment):
    params = dict(deployment.get("parameters") or {})
    for artifact in deployment.get("artifacts") or []:
        params[artifact["bucket-parameter"]] = "stackgate-artifacts-123456789012"
        params[artifact["key-parameter"]] = "hybrid-alb/lambda/0123abcd.zip"
    return params


# ------------------------------------------------------------------ cfn-lint


def test_cfn_lint_reports_nothing():
    matches = lint(TEMPLATE_PATH)
    assert matches == [], describe(matches)


def test_cfn_lint_reports_nothing_with_the_deployment_parameters(deployment):
    matches = lint(TEMPLATE_PATH, deployment_parameters(deployment))
    assert matches == [], describe(matches)


def test_cfn_lint_harness_catches_a_broken_template(tmp_path):
    """Guards the two tests above: the harness must see real errors."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    broken = text.replace("Runtime: python3.12", "Runtime: python2.7", 1)
    broken = broken.replace("TargetType: lambda", "TargetType: lamda", 1)
    assert broken != text
    path = tmp_path / "template.yaml"
    path.write_text(broken, encoding="utf-8")
    ids = {m.rule.id for m in lint(path)}
    assert any(i.startswith("E") for i in ids), ids


def test_template_is_under_the_create_stack_body_limit():
    assert len(TEMPLATE_PATH.read_bytes()) < 51200


# ------------------------------------------------------------ dependencies


def references(node):
    """Logical ids named by Ref, GetAtt and Sub anywhere under node."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    found.add(name.split(".")[0])
                if isinstance(value, list):
                    found |= references(value[1])
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def dependency_graph(template):
    resources = template["Resources"]
    graph = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        graph[name] = (references(resource) | set(depends)) & set(resources)
    return graph


def find_cycle(graph):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_resources_have_no_dependency_cycle(template):
    assert find_cycle(dependency_graph(template)) is None


def test_cycle_finder_sees_a_permission_that_refs_its_target_group(template):
    broken = copy.deepcopy(template)
    perm = broken["Resources"]["LambdaInvokePermission"]["Properties"]
    perm["SourceArn"] = {"Ref": "LambdaTargetGroup"}
    assert find_cycle(dependency_graph(broken)) is not None


# ------------------------------------------------------------------ network


def test_vpc_and_public_subnets(resources):
    vpc = resources["Vpc"]["Properties"]
    assert vpc["EnableDnsSupport"] is True and vpc["EnableDnsHostnames"] is True
    azs = []
    for name in ("PublicSubnet1", "PublicSubnet2"):
        subnet = resources[name]
        assert subnet["Type"] == "AWS::EC2::Subnet"
        props = subnet["Properties"]
        assert props["VpcId"] == {"Ref": "Vpc"}
        assert props["MapPublicIpOnLaunch"] is True
        azs.append(props["AvailabilityZone"])
        assoc = [
            r for r in resources.values()
            if r["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
            and r["Properties"]["SubnetId"] == {"Ref": name}
        ]
        assert [a["Properties"]["RouteTableId"] for a in assoc] == [
            {"Ref": "PublicRouteTable"}
        ]
    assert azs == [
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
    ]


def test_default_route_goes_to_the_attached_internet_gateway(resources):
    attach = resources["GatewayAttachment"]
    assert attach["Type"] == "AWS::EC2::VPCGatewayAttachment"
    assert attach["Properties"] == {
        "VpcId": {"Ref": "Vpc"},
        "InternetGatewayId": {"Ref": "InternetGateway"},
    }
    route = resources["PublicDefaultRoute"]
    assert "GatewayAttachment" in as_list(route["DependsOn"])
    assert route["Properties"] == {
        "RouteTableId": {"Ref": "PublicRouteTable"},
        "DestinationCidrBlock": "0.0.0.0/0",
        "GatewayId": {"Ref": "InternetGateway"},
    }


# ---------------------------------------------------------- security groups


def ingress_rules(resources):
    """(owning group, rule) for every inline and standalone ingress rule."""
    for name, resource in resources.items():
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            for rule in resource["Properties"].get("SecurityGroupIngress", []):
                yield name, rule
        elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            group = resource["Properties"].get("GroupId")
            yield references(group).pop() if group else None, resource["Properties"]


def test_only_the_alb_group_is_open_to_the_world_and_only_on_http(resources):
    open_rules = [
        (group, rule) for group, rule in ingress_rules(resources)
        if rule.get("CidrIp") in WORLD or rule.get("CidrIpv6") in WORLD
    ]
    assert open_rules, "the load balancer must accept HTTP from the internet"
    for group, rule in open_rules:
        assert group == "AlbSecurityGroup"
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 80, 80)


def test_alb_group_allows_only_http_from_anywhere(resources):
    rules = resources["AlbSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], r.get("CidrIp")) for r in rules] == [
        ("tcp", 80, 80, "0.0.0.0/0")
    ]


def test_instance_group_allows_http_only_from_the_alb_group(resources):
    rules = [rule for group, rule in ingress_rules(resources) if group == "Ec2SecurityGroup"]
    assert len(rules) == 1
    rule = rules[0]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 80, 80)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}
    assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)


def attached_groups(resources):
    """resource name -> groups attached to it (not groups named as a source)."""
    out = {}
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        for key in ("SecurityGroups", "SecurityGroupIds"):
            if key in props:
                out.setdefault(name, set()).update(references(props[key]))
        for nic in props.get("NetworkInterfaces", []):
            out.setdefault(name, set()).update(references(nic.get("GroupSet", [])))
    return out


def test_alb_group_is_attached_only_to_the_load_balancer(resources):
    users = {n for n, groups in attached_groups(resources).items() if "AlbSecurityGroup" in groups}
    assert users == {"Alb"}
    assert attached_groups(resources)["Alb"] == {"AlbSecurityGroup"}


def test_instance_uses_only_the_instance_group(resources):
    assert attached_groups(resources)["Instance"] == {"Ec2SecurityGroup"}


# -------------------------------------------------------------------- IAM


def as_list(value):
    return value if isinstance(value, list) else [value]


def roles(resources):
    return {n: r for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"}


def policy_statements(resources):
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for st in as_list(policy["PolicyDocument"]["Statement"]):
                    yield name, st
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for st in as_list(props["PolicyDocument"]["Statement"]):
                yield name, st


def test_no_managed_policies_on_roles(resources):
    for name, role in roles(resources).items():
        arns = role["Properties"].get("ManagedPolicyArns", [])
        assert arns == [], "%s attaches managed policies %r" % (name, arns)


def test_identity_policies_are_least_privilege(resources):
    statements = list(policy_statements(resources))
    assert statements, "expected at least the Lambda logging policy"
    for name, st in statements:
        assert st["Effect"] == "Allow", name
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(st), name
        for action in as_list(st["Action"]):
            assert "*" not in action, "%s: wildcard action %r" % (name, action)
        assert "*" not in as_list(st["Resource"]), "%s: Resource '*'" % name


def test_lambda_may_only_write_its_own_log_group(resources):
    statements = [st for n, st in policy_statements(resources) if n == "LambdaRole"]
    assert statements == [{
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::GetAtt": ["LambdaLogGroup", "Arn"]},
    }]
    group = resources["LambdaLogGroup"]["Properties"]
    function = resources["LambdaFunction"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + function["FunctionName"]["Fn::Sub"]}
    assert isinstance(group["RetentionInDays"], int)


def test_ec2_role_has_no_permissions(resources):
    assert [st for n, st in policy_statements(resources) if n == "Ec2Role"] == []
    profile = resources["Ec2InstanceProfile"]["Properties"]
    assert profile["Roles"] == [{"Ref": "Ec2Role"}]
    assert resources["Instance"]["Properties"]["IamInstanceProfile"] == {"Ref": "Ec2InstanceProfile"}


@pytest.mark.parametrize("role,service", [
    ("LambdaRole", "lambda.amazonaws.com"),
    ("Ec2Role", "ec2.amazonaws.com"),
])
def test_trust_policy_names_only_the_service(resources, role, service):
    doc = resources[role]["Properties"]["AssumeRolePolicyDocument"]
    assert as_list(doc["Statement"]) == [{
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }]


# -------------------------------------------------------------- S3 bucket


def test_bucket_is_encrypted_versioned_and_private(resources):
    buckets = {n: r for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert buckets
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert [r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in sse] == ["AES256"], name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        assert "AccessControl" not in props, name


def test_bucket_policy_allows_nothing_to_everyone(resources):
    policy = resources["LogsBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "LogsBucket"}
    statements = as_list(policy["PolicyDocument"]["Statement"])
    for st in statements:
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(st)
        if st["Effect"] == "Allow":
            assert st["Principal"] != "*" and st["Principal"].get("AWS") != "*"
            assert as_list(st["Action"]) == ["s3:PutObject"]
            assert "/alb/AWSLogs/" in st["Resource"]["Fn::Sub"]
    deny = [st for st in statements if st["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ------------------------------------------------------- lambda and ec2


def test_lambda_function(resources, template):
    props = resources["LambdaFunction"]["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "handler.handler"
    assert props["Role"] == {"Fn::GetAtt": ["LambdaRole", "Arn"]}
    assert props["Code"] == {
        "S3Bucket": {"Ref": "LambdaCodeBucket"},
        "S3Key": {"Ref": "LambdaCodeKey"},
    }
    for name in ("LambdaCodeBucket", "LambdaCodeKey"):
        param = template["Parameters"][name]
        assert param["Type"] == "String" and "Default" not in param
    assert (STACK_DIR / "lambda" / "handler.py").is_file()


def test_instance(resources, template):
    props = resources["Instance"]["Properties"]
    assert props["ImageId"] == {"Ref": "ImageId"}
    assert props["InstanceType"] == {"Ref": "InstanceType"}
    image = template["Parameters"]["ImageId"]
    assert image["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert image["Default"] == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    assert template["Parameters"]["InstanceType"]["Default"] == "t3.micro"
    assert props["MetadataOptions"]["HttpTokens"] == "required"


# ------------------------------------------------------------ load balancer


def test_lambda_target_group_and_permission(resources):
    tg = resources["LambdaTargetGroup"]
    assert tg["Properties"]["TargetType"] == "lambda"
    assert tg["Properties"]["Targets"] == [{"Id": {"Fn::GetAtt": ["LambdaFunction", "Arn"]}}]
    assert "LambdaInvokePermission" in as_list(tg["DependsOn"])
    perm = resources["LambdaInvokePermission"]["Properties"]
    assert perm["Action"] == "lambda:InvokeFunction"
    assert perm["Principal"] == "elasticloadbalancing.amazonaws.com"
    assert references(perm["FunctionName"]) == {"LambdaFunction"}
    # SourceArn must match the target group's ARN, which is
    # arn:<partition>:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>
    name = tg["Properties"]["Name"]["Fn::Sub"]
    assert perm["SourceArn"] == {"Fn::Sub": (
        "arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}"
        ":targetgroup/" + name + "/*"
    )}
    # Target group names are at most 32 characters; the deployed stack fits.
    assert len(name.replace("${AWS::StackName}", "hybrid-alb")) <= 32


def test_instance_target_group(resources):
    props = resources["InstanceTargetGroup"]["Properties"]
    assert props["TargetType"] == "instance"
    assert (props["Protocol"], props["Port"]) == ("HTTP", 80)
    assert props["VpcId"] == {"Ref": "Vpc"}
    assert props["HealthCheckPath"] == "/ec2"
    assert props["Targets"] == [{"Id": {"Ref": "Instance"}, "Port": 80}]


def test_load_balancer(resources):
    props = resources["Alb"]["Properties"]
    assert props["Type"] == "application"
    assert props["Scheme"] == "internet-facing"
    assert props["Subnets"] == [{"Ref": "PublicSubnet1"}, {"Ref": "PublicSubnet2"}]
    assert props["SecurityGroups"] == [{"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}]
    attrs = {a["Key"]: a["Value"] for a in props["LoadBalancerAttributes"]}
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["access_logs.s3.bucket"] == {"Ref": "LogsBucket"}
    assert "LogsBucketPolicy" in as_list(resources["Alb"]["DependsOn"])


def test_listener_routes_by_path_and_404s_the_rest(resources):
    listeners = [n for n, r in resources.items() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    assert listeners == ["HttpListener"]
    props = resources["HttpListener"]["Properties"]
    assert props["LoadBalancerArn"] == {"Ref": "Alb"}
    assert (props["Protocol"], props["Port"]) == ("HTTP", 80)
    [default] = props["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "404"

    routes = {}
    for rule in resources.values():
        if rule["Type"] != "AWS::ElasticLoadBalancingV2::ListenerRule":
            continue
        rp = rule["Properties"]
        assert rp["ListenerArn"] == {"Ref": "HttpListener"}
        [condition] = rp["Conditions"]
        assert condition["Field"] == "path-pattern"
        [action] = rp["Actions"]
        assert action["Type"] == "forward"
        for path in condition["PathPatternConfig"]["Values"]:
            routes[path] = action["TargetGroupArn"]
    assert routes == {
        "/lambda": {"Ref": "LambdaTargetGroup"},
        "/ec2": {"Ref": "InstanceTargetGroup"},
    }


def test_outputs(template):
    outputs = template["Outputs"]
    assert outputs["AlbDnsName"]["Value"] == {"Fn::GetAtt": ["Alb", "DNSName"]}
    assert outputs["LambdaUrl"]["Value"] == {"Fn::Sub": "http://${Alb.DNSName}/lambda"}
    assert outputs["Ec2Url"]["Value"] == {"Fn::Sub": "http://${Alb.DNSName}/ec2"}


# -------------------------------------------------------- deployment file

DEPLOYMENT_KEYS = {
    "template-file-path", "parameters", "tags", "stack-name", "region",
    "capabilities", "artifacts", "remove",
}


def test_deployment_file_keys(deployment):
    assert set(deployment) <= DEPLOYMENT_KEYS
    assert (STACK_DIR / deployment["template-file-path"]).resolve() == TEMPLATE_PATH
    assert deployment.get("stack-name", STACK_DIR.name) == "hybrid-alb"
    assert deployment["region"] == "us-east-1"
    assert deployment["tags"] == {"project": "hybrid-alb"}
    assert set(deployment["capabilities"]) <= {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}
    assert "CAPABILITY_IAM" in deployment["capabilities"]
    assert deployment.get("remove", False) is False


def test_deployment_values_are_plain_strings():
    # yaml.safe_load would turn `t3.micro` into a str but `80` into an int;
    # Git sync and stackgate take strings only, so check the raw scalars.
    node = yaml.compose(DEPLOYMENT_PATH.read_text(encoding="utf-8"))
    for section in ("parameters", "tags"):
        [mapping] = [v for k, v in node.value if k.value == section]
        for key, value in mapping.value:
            assert isinstance(value, yaml.ScalarNode), key.value
            assert value.tag == "tag:yaml.org,2002:str", (key.value, value.tag)


def test_deployment_parameters_match_the_template(deployment, template):
    declared = template["Parameters"]
    given = deployment["parameters"]
    artifacts = deployment["artifacts"]
    assert artifacts == [{
        "path": "lambda",
        "bucket-parameter": "LambdaCodeBucket",
        "key-parameter": "LambdaCodeKey",
    }]
    filled = {a["bucket-parameter"] for a in artifacts} | {a["key-parameter"] for a in artifacts}
    assert not filled & set(given), "stackgate fills the artifact parameters itself"
    assert set(given) <= set(declared)
    assert filled <= set(declared)
    for artifact in artifacts:
        assert (STACK_DIR / artifact["path"]).is_dir()
    missing = {n for n, p in declared.items() if "Default" not in p} - set(given) - filled
    assert missing == set()


def test_deployment_file_is_also_a_git_sync_file():
    """cfn-lint's Git sync schema accepts the three Git sync keys as written."""
    from cfnlint.runner.deployment_file.deployment_types import (
        create_deployment_from_git_sync,
    )

    data = yaml.safe_load(DEPLOYMENT_PATH.read_text(encoding="utf-8"))
    git_sync = {k: data[k] for k in ("template-file-path", "parameters", "tags")}
    parsed, errors = create_deployment_from_git_sync(git_sync)
    assert not errors, [m.message for m in errors]
    assert parsed.template_file_path == "template.yaml"
    assert parsed.parameters == data["parameters"]
    bad, errors = create_deployment_from_git_sync(dict(git_sync, tags={"project": ["x"]}))
    assert bad is None and errors
