#!/usr/bin/env python3
"""List what a CloudFormation stack created, by asking each owning service, not CloudFormation.

    python tests/tools/inventory.py --endpoint URL --stack NAME --template PATH
                                  [--region REGION] [--state-dir DIR]

Credentials and region come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION or AWS_DEFAULT_REGION). Prints one JSON object on stdout:

    {"present":   [{"logical_id": "Vpc", "type": "AWS::EC2::VPC", "physical_id": "vpc-1"}, ...],
     "missing":   [{"logical_id": ..., "type": ..., "physical_id": ... or null, "reason": ...}],
     "unchecked": [{"logical_id": ..., "type": ..., "reason": ...}]}

Every resource of the template (minus those whose Condition is known to be false) is in
exactly one list, in template order. "present" means the owning service API shows it exists
now; "missing" means the API shows it does not (or it could not be found at all); "unchecked"
means no checker exists for its type, or the API call failed for another reason than "not
found". CloudFormation is only used to learn physical ids (DescribeStackResources, stack
parameters), never as evidence that a resource exists.

Where the ids come from:
  * while the stack exists: DescribeStackResources, plus the template's properties resolved
    with those ids (a route is "table + destination", an association "table + subnet", a
    Lambda permission "function + principal + action + source", a bucket policy "bucket").
    Everything learnt is recorded in <repo>/.local/inventory/<stack>.json (or --state-dir),
    under the endpoint and region, together with every id recorded earlier for that stack;
  * once the stack is gone: that record (every id ever recorded, so a resource replaced by an
    update still counts), plus an independent search by the names and tags that
    CloudFormation derives from the stack name (aws:cloudformation:* tags, Name tags and
    explicit names from the template, generated names "<stack>-<LogicalId>-<RANDOM>").

Exit status: 0 when the services could be asked (whatever the answer); 2 for usage errors
(bad arguments, unreadable template, no region or credentials); 1 when the endpoint cannot
be reached or another unexpected error stops the run, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO / ".local" / "inventory"
STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
RECORD_VERSION = 1
MAX_HISTORY = 20


class UsageError(Exception):
    """Bad arguments or inputs: exit 2."""


class Unresolved(Exception):
    """A template expression whose value this program cannot compute."""


# ----------------------------------------------------------------------------- template


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short forms (`!Ref x` is {"Ref": "x"})."""


def _construct_tagged(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        name, _, attr = value.partition(".")
        return {"Fn::GetAtt": [name, attr]}
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _construct_tagged)


def _construct_mapping_keep_strings(loader: CfnLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    return {str(loader.construct_object(k, deep=True)): loader.construct_object(v, deep=True)
            for k, v in node.value}


CfnLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                          _construct_mapping_keep_strings)


def load_template(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    try:
        doc = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise UsageError(f"cannot parse template {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise UsageError(f"template {path} has no Resources mapping")
    for logical_id, body in doc["Resources"].items():
        if not isinstance(body, dict) or not isinstance(body.get("Type"), str):
            raise UsageError(f"template {path}: resource {logical_id} has no Type")
    return doc


def template_resources(template: dict) -> list[tuple[str, str, dict]]:
    return [(lid, body["Type"], body) for lid, body in template["Resources"].items()]


# ----------------------------------------------------------------------------- resolver


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso-"):
        return "aws-iso"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    return "aws"


class Resolver:
    """Computes template expressions from the stack's parameters and physical ids."""

    def __init__(self, template: dict, stack: str, region: str, account: str | None,
                 parameters: dict[str, str], physical_ids: dict[str, str]):
        self.template = template
        self.stack = stack
        self.region = region
        self.account = account
        self.partition = partition_of(region)
        self.parameters = parameters
        self.ids = physical_ids
        self.resources = template.get("Resources", {})

    # -- references

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com",
            "AWS::AccountId": self.account,
            "AWS::NoValue": None,
        }
        if name in pseudo:
            if pseudo[name] is None and name != "AWS::NoValue":
                raise Unresolved(name)
            return pseudo[name]
        params = self.template.get("Parameters") or {}
        if name in params:
            if name in self.parameters:
                value = self.parameters[name]
            elif "Default" in (params[name] or {}):
                value = params[name]["Default"]
            else:
                raise Unresolved(name)
            ptype = str((params[name] or {}).get("Type", ""))
            if isinstance(value, str) and (ptype.startswith("List<") or ptype == "CommaDelimitedList"):
                return [v.strip() for v in value.split(",")]
            return value
        if name in self.resources:
            if self.ids.get(name):
                return self.ids[name]
            raise Unresolved(name)
        raise Unresolved(name)

    def get_att(self, name: str, attr: str) -> Any:
        body = self.resources.get(name)
        if body is None:
            raise Unresolved(f"{name}.{attr}")
        rtype = body.get("Type")
        pid = self.ids.get(name)
        if not pid:
            raise Unresolved(f"{name}.{attr}")
        p, r, a = self.partition, self.region, self.account
        if attr in ("GroupId", "VpcId", "SubnetId", "RouteTableId", "InternetGatewayId"):
            return pid
        if attr in ("LoadBalancerArn", "TargetGroupArn", "ListenerArn", "RuleArn"):
            return pid
        if attr == "Arn":
            if rtype == "AWS::S3::Bucket":
                return f"arn:{p}:s3:::{pid}"
            if a is None:
                raise Unresolved(f"{name}.{attr}")
            if rtype == "AWS::Lambda::Function":
                return f"arn:{p}:lambda:{r}:{a}:function:{pid}"
            if rtype == "AWS::IAM::Role":
                path = (body.get("Properties") or {}).get("Path", "/")
                return f"arn:{p}:iam::{a}:role{path if isinstance(path, str) else '/'}{pid}"
            if rtype == "AWS::IAM::InstanceProfile":
                return f"arn:{p}:iam::{a}:instance-profile/{pid}"
            if rtype == "AWS::Logs::LogGroup":
                return f"arn:{p}:logs:{r}:{a}:log-group:{pid}:*"
            if rtype == "AWS::SNS::Topic":
                return pid
            if rtype == "AWS::DynamoDB::Table":
                return f"arn:{p}:dynamodb:{r}:{a}:table/{pid}"
        raise Unresolved(f"{name}.{attr}")

    # -- expressions

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(self.resolve(arg))
            if key == "Fn::GetAtt":
                if isinstance(arg, str):
                    arg = arg.split(".", 1)
                name, attr = self.resolve(arg[0]), self.resolve(arg[1])
                return self.get_att(name, attr)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return self.resolve(sep).join(str(x) for x in self.resolve(items))
            if key == "Fn::Select":
                index, items = self.resolve(arg[0]), self.resolve(arg[1])
                return items[int(index)]
            if key == "Fn::Split":
                sep, text = self.resolve(arg[0]), self.resolve(arg[1])
                return text.split(sep)
            if key == "Fn::FindInMap":
                mname, top, second = (self.resolve(x) for x in arg[:3])
                try:
                    return self.template["Mappings"][mname][top][second]
                except (KeyError, TypeError) as exc:
                    raise Unresolved(f"FindInMap {mname}/{top}/{second}") from exc
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Base64":
                import base64
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key.startswith("Fn::"):
                raise Unresolved(key)
        return {k: self.resolve(v) for k, v in node.items()}

    def sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], arg[1] if len(arg) > 1 else {}
        else:
            text, variables = arg, {}
        local = {k: self.resolve(v) for k, v in (variables or {}).items()}

        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            expr = expr.strip()
            if expr in local:
                return str(local[expr])
            if "." in expr and not expr.startswith("AWS::"):
                name, attr = expr.split(".", 1)
                return str(self.get_att(name, attr))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]*)\}", replace, str(text))

    def condition(self, name_or_expr: Any) -> bool:
        if isinstance(name_or_expr, str):
            conditions = self.template.get("Conditions") or {}
            if name_or_expr not in conditions:
                raise Unresolved(f"condition {name_or_expr}")
            return self.condition(conditions[name_or_expr])
        if isinstance(name_or_expr, dict) and len(name_or_expr) == 1:
            (key, arg), = name_or_expr.items()
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::Not":
                return not self.condition(arg[0])
            if key == "Fn::And":
                return all(self.condition(x) for x in arg)
            if key == "Fn::Or":
                return any(self.condition(x) for x in arg)
        raise Unresolved("condition expression")

    def prop(self, body: dict, *path: str) -> Any:
        """A resolved property, or raise Unresolved when absent or not computable."""
        node: Any = body.get("Properties") or {}
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise Unresolved(".".join(path))
            node = node[key]
        return self.resolve(node)

    def maybe(self, body: dict, *path: str) -> Any:
        try:
            return self.prop(body, *path)
        except Unresolved:
            return None


# ----------------------------------------------------------------------------- AWS access


class Aws:
    """Lazily created boto3 clients on one endpoint, with short timeouts."""

    def __init__(self, endpoint: str, region: str):
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.region = region
        self.session = boto3.session.Session(region_name=region)
        self.config = Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, endpoint_url=self.endpoint, config=self.config)
        return self._clients[service]


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    if code:
        return str(code)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(status) if status else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError

    return isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError))


class Gone(Exception):
    """The service says the resource (or what it hangs on) does not exist."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def call(what: str, fn: Callable[[], Any], not_found: Iterable[str]) -> Any:
    """Run one API call; a not-found error code becomes Gone(reason)."""
    from botocore.exceptions import ClientError

    try:
        return fn()
    except ClientError as exc:
        code = error_code(exc)
        if code in set(not_found):
            raise Gone(f"{what}: {code}") from exc
        raise


# ----------------------------------------------------------------------------- checkers
# A checker takes (aws, identity) and returns (physical_id, detail) when the resource exists,
# or raises Gone(reason). An identity is a dict of strings: "physical_id" for plain
# resources, the defining properties for the ones that have no id of their own.

EC2_NOT_FOUND = {
    "vpc": ("InvalidVpcID.NotFound",),
    "subnet": ("InvalidSubnetID.NotFound",),
    "igw": ("InvalidInternetGatewayID.NotFound",),
    "rtb": ("InvalidRouteTableID.NotFound",),
    "sg": ("InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidGroupId.Malformed"),
    "instance": ("InvalidInstanceID.NotFound",),
    "vgw": ("InvalidVpnGatewayID.NotFound",),
}


def _need(identity: dict, *keys: str) -> list[str]:
    values = []
    for key in keys:
        value = identity.get(key)
        if not value:
            raise Unresolved(f"no {key} known")
        values.append(value)
    return values


def check_vpc(aws: Aws, ident: dict) -> str:
    [vid] = _need(ident, "physical_id")
    vpcs = call("DescribeVpcs", lambda: aws("ec2").describe_vpcs(VpcIds=[vid])["Vpcs"],
                EC2_NOT_FOUND["vpc"])
    if not vpcs:
        raise Gone(f"DescribeVpcs: {vid} not listed")
    return vid


def check_subnet(aws: Aws, ident: dict) -> str:
    [sid] = _need(ident, "physical_id")
    subnets = call("DescribeSubnets",
                   lambda: aws("ec2").describe_subnets(SubnetIds=[sid])["Subnets"],
                   EC2_NOT_FOUND["subnet"])
    if not subnets:
        raise Gone(f"DescribeSubnets: {sid} not listed")
    return sid


def _internet_gateway(aws: Aws, igw_id: str) -> dict:
    gws = call("DescribeInternetGateways",
               lambda: aws("ec2").describe_internet_gateways(
                   InternetGatewayIds=[igw_id])["InternetGateways"],
               EC2_NOT_FOUND["igw"])
    if not gws:
        raise Gone(f"DescribeInternetGateways: {igw_id} not listed")
    return gws[0]


def check_internet_gateway(aws: Aws, ident: dict) -> str:
    [gid] = _need(ident, "physical_id")
    _internet_gateway(aws, gid)
    return gid


def check_gateway_attachment(aws: Aws, ident: dict) -> str:
    vpc_id, = _need(ident, "vpc_id")
    live = ("available", "attached", "attaching")
    if ident.get("internet_gateway_id"):
        gid = ident["internet_gateway_id"]
        gw = _internet_gateway(aws, gid)
        states = [a.get("State") for a in gw.get("Attachments", []) if a.get("VpcId") == vpc_id]
        if not any(s in live for s in states):
            raise Gone(f"DescribeInternetGateways: {gid} is not attached to {vpc_id}"
                       + (f" (state {states[0]})" if states else ""))
        return f"{gid}|{vpc_id}"
    if ident.get("vpn_gateway_id"):
        gid = ident["vpn_gateway_id"]
        gws = call("DescribeVpnGateways",
                   lambda: aws("ec2").describe_vpn_gateways(VpnGatewayIds=[gid])["VpnGateways"],
                   EC2_NOT_FOUND["vgw"])
        if not gws or gws[0].get("State") == "deleted":
            raise Gone(f"DescribeVpnGateways: {gid} not listed")
        states = [a.get("State") for a in gws[0].get("VpcAttachments", []) if a.get("VpcId") == vpc_id]
        if not any(s in live for s in states):
            raise Gone(f"DescribeVpnGateways: {gid} is not attached to {vpc_id}")
        return f"{gid}|{vpc_id}"
    raise Unresolved("no gateway id known")


def _route_table(aws: Aws, rtb_id: str) -> dict:
    tables = call("DescribeRouteTables",
                  lambda: aws("ec2").describe_route_tables(RouteTableIds=[rtb_id])["RouteTables"],
                  EC2_NOT_FOUND["rtb"])
    if not tables:
        raise Gone(f"DescribeRouteTables: {rtb_id} not listed")
    return tables[0]


def check_route_table(aws: Aws, ident: dict) -> str:
    [rid] = _need(ident, "physical_id")
    _route_table(aws, rid)
    return rid


ROUTE_DESTINATIONS = (
    ("destination_cidr", "DestinationCidrBlock"),
    ("destination_ipv6_cidr", "DestinationIpv6CidrBlock"),
    ("destination_prefix_list", "DestinationPrefixListId"),
)


def check_route(aws: Aws, ident: dict) -> str:
    [rid] = _need(ident, "route_table_id")
    dest = [(k, api) for k, api in ROUTE_DESTINATIONS if ident.get(k)]
    if not dest:
        raise Unresolved("no route destination known")
    key, api_key = dest[0]
    table = _route_table(aws, rid)
    for route in table.get("Routes", []):
        if route.get(api_key) == ident[key]:
            if route.get("State") == "blackhole":
                raise Gone(f"DescribeRouteTables: route {ident[key]} in {rid} is a blackhole")
            return f"{rid}|{ident[key]}"
    raise Gone(f"DescribeRouteTables: {rid} has no route to {ident[key]}")


def check_subnet_association(aws: Aws, ident: dict) -> str:
    rid, sid = _need(ident, "route_table_id", "subnet_id")
    table = _route_table(aws, rid)
    for assoc in table.get("Associations", []):
        if assoc.get("SubnetId") == sid:
            state = (assoc.get("AssociationState") or {}).get("State", "associated")
            if state in ("associated", "associating"):
                return assoc.get("RouteTableAssociationId") or f"{rid}|{sid}"
            raise Gone(f"DescribeRouteTables: association of {sid} with {rid} is {state}")
    raise Gone(f"DescribeRouteTables: {rid} has no association with subnet {sid}")


def check_security_group(aws: Aws, ident: dict) -> str:
    [gid] = _need(ident, "physical_id")
    kwargs = {"GroupIds": [gid]} if gid.startswith("sg-") else {"GroupNames": [gid]}
    groups = call("DescribeSecurityGroups",
                  lambda: aws("ec2").describe_security_groups(**kwargs)["SecurityGroups"],
                  EC2_NOT_FOUND["sg"])
    if not groups:
        raise Gone(f"DescribeSecurityGroups: {gid} not listed")
    return gid


def check_instance(aws: Aws, ident: dict) -> str:
    [iid] = _need(ident, "physical_id")
    reservations = call("DescribeInstances",
                        lambda: aws("ec2").describe_instances(InstanceIds=[iid])["Reservations"],
                        EC2_NOT_FOUND["instance"])
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise Gone(f"DescribeInstances: {iid} not listed")
    state = (instances[0].get("State") or {}).get("Name")
    if state == "terminated":
        raise Gone(f"DescribeInstances: {iid} is terminated")
    return iid


def check_load_balancer(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    lbs = call("DescribeLoadBalancers",
               lambda: aws("elbv2").describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"],
               ("LoadBalancerNotFound", "ValidationError"))
    if not lbs:
        raise Gone(f"DescribeLoadBalancers: {arn} not listed")
    return arn


def check_target_group(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    tgs = call("DescribeTargetGroups",
               lambda: aws("elbv2").describe_target_groups(TargetGroupArns=[arn])["TargetGroups"],
               ("TargetGroupNotFound", "ValidationError"))
    if not tgs:
        raise Gone(f"DescribeTargetGroups: {arn} not listed")
    return arn


def check_listener(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    listeners = call("DescribeListeners",
                     lambda: aws("elbv2").describe_listeners(ListenerArns=[arn])["Listeners"],
                     ("ListenerNotFound", "LoadBalancerNotFound", "ValidationError"))
    if not listeners:
        raise Gone(f"DescribeListeners: {arn} not listed")
    return arn


def check_listener_rule(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    rules = call("DescribeRules",
                 lambda: aws("elbv2").describe_rules(RuleArns=[arn])["Rules"],
                 ("RuleNotFound", "ListenerNotFound", "LoadBalancerNotFound", "ValidationError"))
    if not rules:
        raise Gone(f"DescribeRules: {arn} not listed")
    return arn


def _iam_name(value: str) -> str:
    # Ref of a role or instance profile is its name; tolerate an ARN.
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def check_role(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    name = _iam_name(name)
    call("GetRole", lambda: aws("iam").get_role(RoleName=name), ("NoSuchEntity",))
    return name


def check_instance_profile(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    name = _iam_name(name)
    call("GetInstanceProfile",
         lambda: aws("iam").get_instance_profile(InstanceProfileName=name), ("NoSuchEntity",))
    return name


def check_managed_policy(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    call("GetPolicy", lambda: aws("iam").get_policy(PolicyArn=arn), ("NoSuchEntity",))
    return arn


def check_function(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    call("GetFunction", lambda: aws("lambda").get_function(FunctionName=name),
         ("ResourceNotFoundException",))
    return name


def _principal_values(principal: Any) -> list[str]:
    if isinstance(principal, str):
        return [principal]
    if isinstance(principal, dict):
        out = []
        for value in principal.values():
            out.extend(value if isinstance(value, list) else [value])
        return [str(v) for v in out]
    if isinstance(principal, list):
        return [str(v) for v in principal]
    return []


def _condition_value(statement: dict, key: str) -> list[str]:
    values = []
    for operator_block in (statement.get("Condition") or {}).values():
        for k, v in (operator_block or {}).items():
            if k.lower() == key.lower():
                values.extend(v if isinstance(v, list) else [v])
    return [str(v) for v in values]


def check_lambda_permission(aws: Aws, ident: dict) -> str:
    function, action, principal = _need(ident, "function", "action", "principal")
    got = call("GetPolicy", lambda: aws("lambda").get_policy(FunctionName=function),
               ("ResourceNotFoundException",))
    policy = json.loads(got["Policy"]) if isinstance(got.get("Policy"), str) else got.get("Policy", {})
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        actions = st.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if action not in actions and "lambda:*" not in actions:
            continue
        principals = _principal_values(st.get("Principal"))
        if not any(p == principal or p.endswith(f"::{principal}:root") for p in principals):
            continue
        if ident.get("source_arn") and ident["source_arn"] not in _condition_value(st, "AWS:SourceArn"):
            continue
        if ident.get("source_account") and ident["source_account"] not in _condition_value(
                st, "AWS:SourceAccount"):
            continue
        return f"{function}|{st.get('Sid', '')}"
    raise Gone(f"GetPolicy: the policy of {function} has no statement allowing {principal} "
               f"{action}" + (f" from {ident['source_arn']}" if ident.get("source_arn") else ""))


def check_log_group(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    groups = call("DescribeLogGroups",
                  lambda: aws("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"],
                  ("ResourceNotFoundException",))
    if not any(g.get("logGroupName") == name for g in groups):
        raise Gone(f"DescribeLogGroups: no log group named {name}")
    return name


def check_bucket(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    call("HeadBucket", lambda: aws("s3").head_bucket(Bucket=name), ("404", "NoSuchBucket", "NotFound"))
    return name


def check_bucket_policy(aws: Aws, ident: dict) -> str:
    [bucket] = _need(ident, "bucket")
    got = call("GetBucketPolicy", lambda: aws("s3").get_bucket_policy(Bucket=bucket),
               ("NoSuchBucketPolicy", "NoSuchBucket", "404"))
    sids = [s for s in (ident.get("sids") or "").split(",") if s]
    if sids:
        try:
            statements = json.loads(got.get("Policy") or "{}").get("Statement") or []
        except ValueError:
            statements = []
        if isinstance(statements, dict):
            statements = [statements]
        have = {st.get("Sid") for st in statements}
        lacking = [s for s in sids if s not in have]
        if lacking:
            raise Gone(f"GetBucketPolicy: the policy of {bucket} lacks the template's "
                       f"statements {', '.join(lacking)}")
    return bucket


def check_ssm_parameter(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    call("GetParameter", lambda: aws("ssm").get_parameter(Name=name), ("ParameterNotFound",))
    return name


def check_sns_topic(aws: Aws, ident: dict) -> str:
    [arn] = _need(ident, "physical_id")
    call("GetTopicAttributes", lambda: aws("sns").get_topic_attributes(TopicArn=arn),
         ("NotFound", "NotFoundException"))
    return arn


def check_sqs_queue(aws: Aws, ident: dict) -> str:
    [url] = _need(ident, "physical_id")
    call("GetQueueAttributes", lambda: aws("sqs").get_queue_attributes(QueueUrl=url),
         ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"))
    return url


def check_dynamodb_table(aws: Aws, ident: dict) -> str:
    [name] = _need(ident, "physical_id")
    table = call("DescribeTable", lambda: aws("dynamodb").describe_table(TableName=name)["Table"],
                 ("ResourceNotFoundException",))
    if table.get("TableStatus") == "DELETING":
        raise Gone(f"DescribeTable: {name} is DELETING")
    return name


# ----------------------------------------------------------------------------- identities
# How each type's identity is computed from the template and the known physical ids, when
# the physical id alone does not say which thing to look at.


def ident_gateway_attachment(res: Resolver, body: dict, pid: str | None) -> dict:
    return {"vpc_id": res.maybe(body, "VpcId"),
            "internet_gateway_id": res.maybe(body, "InternetGatewayId"),
            "vpn_gateway_id": res.maybe(body, "VpnGatewayId")}


def ident_route(res: Resolver, body: dict, pid: str | None) -> dict:
    out = {"route_table_id": res.maybe(body, "RouteTableId"),
           "destination_cidr": res.maybe(body, "DestinationCidrBlock"),
           "destination_ipv6_cidr": res.maybe(body, "DestinationIpv6CidrBlock"),
           "destination_prefix_list": res.maybe(body, "DestinationPrefixListId")}
    # moto's id is "rtb-x~0.0.0.0/0", AWS's "rtb-x|0.0.0.0/0": fill gaps from it.
    if pid and not out["route_table_id"]:
        out["route_table_id"] = re.split(r"[~|_]", pid)[0] or None
    return out


def ident_subnet_association(res: Resolver, body: dict, pid: str | None) -> dict:
    return {"route_table_id": res.maybe(body, "RouteTableId"),
            "subnet_id": res.maybe(body, "SubnetId")}


def ident_lambda_permission(res: Resolver, body: dict, pid: str | None) -> dict:
    principal = res.maybe(body, "Principal")
    return {"function": res.maybe(body, "FunctionName"),
            "action": res.maybe(body, "Action"),
            "principal": principal if isinstance(principal, str) else None,
            "source_arn": res.maybe(body, "SourceArn"),
            "source_account": res.maybe(body, "SourceAccount")}


def ident_bucket_policy(res: Resolver, body: dict, pid: str | None) -> dict:
    statements = ((body.get("Properties") or {}).get("PolicyDocument") or {}).get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    sids = [st.get("Sid") for st in statements if isinstance(st, dict) and isinstance(st.get("Sid"), str)]
    return {"bucket": res.maybe(body, "Bucket"), "sids": ",".join(sids)}


# ----------------------------------------------------------------------------- discovery
# Finding a resource without CloudFormation's ids: by the tags CloudFormation puts on what it
# creates, by names written in the template, or by the names CloudFormation generates.


def generated_name_matches(name: str, stack: str, logical_id: str) -> bool:
    """`<stack>-<prefix of logical id>-<RANDOM>`, the name CloudFormation makes up."""
    if not name.lower().startswith(stack.lower() + "-"):
        return False
    rest = name[len(stack) + 1:]
    mid, sep, rand = rest.rpartition("-")
    return bool(sep and mid and rand and mid.isalnum() and rand.isalnum()
                and logical_id.lower().startswith(mid.lower()))


def _name_tag(res: Resolver, body: dict) -> str | None:
    tags = res.maybe(body, "Tags")
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("Key") == "Name" and isinstance(tag.get("Value"), str):
                # Only names that carry the stack name identify this stack's resource.
                return tag["Value"] if res.stack in tag["Value"] else None
    return None


def _ec2_tagged(aws: Aws, res: Resolver, lid: str, body: dict, describe: str, list_key: str,
                id_key: str, extra: list[dict] | None = None) -> list[str]:
    client = aws("ec2")
    searches = [[{"Name": "tag:aws:cloudformation:stack-name", "Values": [res.stack]},
                 {"Name": "tag:aws:cloudformation:logical-id", "Values": [lid]}]]
    name = _name_tag(res, body)
    if name:
        searches.append([{"Name": "tag:Name", "Values": [name]}])
    found: list[str] = []
    for filters in searches:
        items = getattr(client, describe)(Filters=filters + (extra or []))[list_key]
        if list_key == "Reservations":
            items = [i for r in items for i in r.get("Instances", [])]
        found.extend(i[id_key] for i in items if i[id_key] not in found)
    return found


def disc_vpc(aws, res, lid, body):
    return _ec2_tagged(aws, res, lid, body, "describe_vpcs", "Vpcs", "VpcId")


def disc_subnet(aws, res, lid, body):
    return _ec2_tagged(aws, res, lid, body, "describe_subnets", "Subnets", "SubnetId")


def disc_security_group(aws, res, lid, body):
    found = _ec2_tagged(aws, res, lid, body, "describe_security_groups", "SecurityGroups", "GroupId")
    explicit = res.maybe(body, "GroupName")
    for group in aws("ec2").describe_security_groups()["SecurityGroups"]:
        name = group.get("GroupName", "")
        if (name == explicit or generated_name_matches(name, res.stack, lid)) \
                and group["GroupId"] not in found:
            found.append(group["GroupId"])
    return found


def disc_instance(aws, res, lid, body):
    live = [{"Name": "instance-state-name",
             "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]}]
    return _ec2_tagged(aws, res, lid, body, "describe_instances", "Reservations", "InstanceId", live)


def _attached_to(res: Resolver, lid: str, key: str) -> list[str]:
    """Logical ids of the VPCs that a VPCGatewayAttachment attaches gateway `lid` to."""
    out = []
    for body in res.resources.values():
        if body.get("Type") == "AWS::EC2::VPCGatewayAttachment":
            props = body.get("Properties") or {}
            if props.get(key) == {"Ref": lid} and isinstance(props.get("VpcId"), dict):
                target = props["VpcId"].get("Ref")
                if isinstance(target, str):
                    out.append(target)
    return out


def disc_internet_gateway(aws, res, lid, body):
    found = _ec2_tagged(aws, res, lid, body, "describe_internet_gateways", "InternetGateways",
                        "InternetGatewayId")
    for vpc_lid in _attached_to(res, lid, "InternetGatewayId"):
        vpc_id = res.ids.get(vpc_lid)
        if vpc_id:
            gws = aws("ec2").describe_internet_gateways(
                Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])["InternetGateways"]
            found.extend(g["InternetGatewayId"] for g in gws if g["InternetGatewayId"] not in found)
    return found


def disc_route_table(aws, res, lid, body):
    found = _ec2_tagged(aws, res, lid, body, "describe_route_tables", "RouteTables", "RouteTableId")
    if found:
        return found
    # Without tags: the only non-main table of the VPC, if the template declares one there.
    vpc_ref = (body.get("Properties") or {}).get("VpcId")
    siblings = [b for b in res.resources.values()
                if b.get("Type") == "AWS::EC2::RouteTable"
                and (b.get("Properties") or {}).get("VpcId") == vpc_ref]
    vpc_id = res.maybe(body, "VpcId")
    if vpc_id and len(siblings) == 1:
        tables = aws("ec2").describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
        others = [t["RouteTableId"] for t in tables
                  if not any(a.get("Main") for a in t.get("Associations", []))]
        if len(others) == 1:
            return others
    return []


def _elbv2_named(items: list[dict], name_key: str, arn_key: str, res: Resolver, lid: str,
                 explicit: str | None) -> list[str]:
    return [i[arn_key] for i in items
            if i.get(name_key) == explicit or generated_name_matches(i.get(name_key, ""), res.stack, lid)]


def disc_load_balancer(aws, res, lid, body):
    items = aws("elbv2").describe_load_balancers()["LoadBalancers"]
    return _elbv2_named(items, "LoadBalancerName", "LoadBalancerArn", res, lid, res.maybe(body, "Name"))


def disc_target_group(aws, res, lid, body):
    items = aws("elbv2").describe_target_groups()["TargetGroups"]
    return _elbv2_named(items, "TargetGroupName", "TargetGroupArn", res, lid, res.maybe(body, "Name"))


def disc_listener(aws, res, lid, body):
    lb = res.maybe(body, "LoadBalancerArn")
    if not lb:
        return []
    try:
        listeners = aws("elbv2").describe_listeners(LoadBalancerArn=lb)["Listeners"]
    except Exception:  # noqa: BLE001 - the load balancer is gone, so is the listener
        return []
    port = res.maybe(body, "Port")
    return [x["ListenerArn"] for x in listeners if port is None or str(x.get("Port")) == str(port)]


def disc_listener_rule(aws, res, lid, body):
    listener = res.maybe(body, "ListenerArn")
    if not listener:
        return []
    try:
        rules = aws("elbv2").describe_rules(ListenerArn=listener)["Rules"]
    except Exception:  # noqa: BLE001 - the listener is gone, so is the rule
        return []
    priority = res.maybe(body, "Priority")
    return [r["RuleArn"] for r in rules
            if not r.get("IsDefault") and (priority is None or str(r.get("Priority")) == str(priority))]


def _paginate(client: Any, op: str, key: str, **kwargs: Any) -> list[dict]:
    out: list[dict] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out.extend(page.get(key, []))
    return out


def disc_role(aws, res, lid, body):
    explicit = res.maybe(body, "RoleName")
    roles = _paginate(aws("iam"), "list_roles", "Roles")
    return [r["RoleName"] for r in roles
            if r["RoleName"] == explicit or generated_name_matches(r["RoleName"], res.stack, lid)]


def disc_instance_profile(aws, res, lid, body):
    explicit = res.maybe(body, "InstanceProfileName")
    profiles = _paginate(aws("iam"), "list_instance_profiles", "InstanceProfiles")
    return [p["InstanceProfileName"] for p in profiles
            if p["InstanceProfileName"] == explicit
            or generated_name_matches(p["InstanceProfileName"], res.stack, lid)]


def disc_function(aws, res, lid, body):
    explicit = res.maybe(body, "FunctionName")
    if explicit:
        return [explicit]
    functions = _paginate(aws("lambda"), "list_functions", "Functions")
    return [f["FunctionName"] for f in functions
            if generated_name_matches(f["FunctionName"], res.stack, lid)]


def disc_log_group(aws, res, lid, body):
    explicit = res.maybe(body, "LogGroupName")
    if explicit:
        return [explicit]
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=res.stack + "-")["logGroups"]
    return [g["logGroupName"] for g in groups
            if generated_name_matches(g["logGroupName"], res.stack, lid)]


def disc_bucket(aws, res, lid, body):
    explicit = res.maybe(body, "BucketName")
    if explicit:
        return [explicit]
    buckets = aws("s3").list_buckets().get("Buckets", [])
    return [b["Name"] for b in buckets if generated_name_matches(b["Name"], res.stack.lower(), lid)]


def disc_by_property(prop: str) -> Callable:
    def discover(aws, res, lid, body):
        value = res.maybe(body, prop)
        return [value] if value else []
    return discover


# ----------------------------------------------------------------------------- type table


class Kind:
    def __init__(self, check: Callable, identity: Callable | None = None,
                 discover: Callable | None = None):
        self.check = check
        self.identity = identity  # None: the identity is the physical id
        self.discover = discover


KINDS: dict[str, Kind] = {
    "AWS::EC2::VPC": Kind(check_vpc, discover=disc_vpc),
    "AWS::EC2::Subnet": Kind(check_subnet, discover=disc_subnet),
    "AWS::EC2::InternetGateway": Kind(check_internet_gateway, discover=disc_internet_gateway),
    "AWS::EC2::VPCGatewayAttachment": Kind(check_gateway_attachment, ident_gateway_attachment),
    "AWS::EC2::RouteTable": Kind(check_route_table, discover=disc_route_table),
    "AWS::EC2::Route": Kind(check_route, ident_route),
    "AWS::EC2::SubnetRouteTableAssociation": Kind(check_subnet_association, ident_subnet_association),
    "AWS::EC2::SecurityGroup": Kind(check_security_group, discover=disc_security_group),
    "AWS::EC2::Instance": Kind(check_instance, discover=disc_instance),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": Kind(check_load_balancer, discover=disc_load_balancer),
    "AWS::ElasticLoadBalancingV2::TargetGroup": Kind(check_target_group, discover=disc_target_group),
    "AWS::ElasticLoadBalancingV2::Listener": Kind(check_listener, discover=disc_listener),
    "AWS::ElasticLoadBalancingV2::ListenerRule": Kind(check_listener_rule, discover=disc_listener_rule),
    "AWS::IAM::Role": Kind(check_role, discover=disc_role),
    "AWS::IAM::InstanceProfile": Kind(check_instance_profile, discover=disc_instance_profile),
    "AWS::IAM::ManagedPolicy": Kind(check_managed_policy),
    "AWS::Lambda::Function": Kind(check_function, discover=disc_function),
    "AWS::Lambda::Permission": Kind(check_lambda_permission, ident_lambda_permission),
    "AWS::Logs::LogGroup": Kind(check_log_group, discover=disc_log_group),
    "AWS::S3::Bucket": Kind(check_bucket, discover=disc_bucket),
    "AWS::S3::BucketPolicy": Kind(check_bucket_policy, ident_bucket_policy),
    "AWS::SSM::Parameter": Kind(check_ssm_parameter, discover=disc_by_property("Name")),
    "AWS::SNS::Topic": Kind(check_sns_topic),
    "AWS::SQS::Queue": Kind(check_sqs_queue),
    "AWS::DynamoDB::Table": Kind(check_dynamodb_table, discover=disc_by_property("TableName")),
}

# Dependencies first, so that discovery of a child can use its parent's id.
DISCOVERY_ORDER = [
    "AWS::EC2::VPC", "AWS::EC2::InternetGateway", "AWS::EC2::Subnet", "AWS::EC2::RouteTable",
    "AWS::EC2::SecurityGroup", "AWS::S3::Bucket", "AWS::Logs::LogGroup", "AWS::IAM::Role",
    "AWS::IAM::InstanceProfile", "AWS::Lambda::Function", "AWS::EC2::Instance",
    "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::ListenerRule",
]


# ----------------------------------------------------------------------------- record


def _entry_key(endpoint: str, region: str) -> str:
    return f"{endpoint.rstrip('/')} {region}"


@contextlib.contextmanager
def locked_record(state_dir: Path, stack: str):
    """The record file of a stack, locked; yields (data, save)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{stack}.json"
    with open(state_dir / f".{stack}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, ValueError):
            data = {}
        if data.get("version") != RECORD_VERSION:
            data = {"version": RECORD_VERSION, "stack": stack, "entries": {}}

        def save() -> None:
            fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=f".{stack}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

        yield data, save


def read_record(state_dir: Path, stack: str, key: str) -> dict:
    path = state_dir / f"{stack}.json"
    if not path.exists():
        return {}
    try:
        with locked_record(state_dir, stack) as (data, _save):
            return data.get("entries", {}).get(key) or {}
    except OSError:
        return {}


def write_record(state_dir: Path, stack: str, key: str, entry: dict) -> None:
    with locked_record(state_dir, stack) as (data, save):
        old = data["entries"].get(key) or {}
        # Keep every identity ever seen per logical id: after a remove, each must be gone.
        for lid, item in entry["resources"].items():
            history = list((old.get("resources", {}).get(lid) or {}).get("history") or [])
            current = item.get("identity")
            if current and current not in history:
                history.append(current)
            item["history"] = history[-MAX_HISTORY:]
        for lid, item in (old.get("resources") or {}).items():
            if lid not in entry["resources"]:
                entry["resources"][lid] = {"type": item.get("type"), "physical_id": None,
                                           "identity": None, "history": item.get("history") or []}
        data["entries"][key] = entry
        save()


# ----------------------------------------------------------------------------- inventory


def describe_stack(aws: Aws, stack: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        stacks = aws("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":
            return None
        raise
    stacks = [s for s in stacks if s.get("StackStatus") != "DELETE_COMPLETE"]
    return stacks[0] if stacks else None


def stack_physical_ids(aws: Aws, stack: str) -> dict[str, str]:
    resources = aws("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId") or ""
            for r in resources if r.get("LogicalResourceId")}


def account_id(aws: Aws) -> str | None:
    return aws("sts").get_caller_identity().get("Account")


def referenced_resources(node: Any, resources: dict) -> list[str]:
    """Logical ids of the template resources that an expression refers to, in order."""
    out: list[str] = []

    def add(name: Any) -> None:
        if isinstance(name, str) and name in resources and name not in out:
            out.append(name)

    def walk(n: Any) -> None:
        if isinstance(n, list):
            for x in n:
                walk(x)
        elif isinstance(n, dict):
            for k, v in n.items():
                if k == "Ref":
                    add(v)
                elif k == "Fn::GetAtt":
                    add(v.split(".", 1)[0] if isinstance(v, str) else (v or [None])[0])
                elif k == "Fn::Sub":
                    text = v[0] if isinstance(v, list) and v else v
                    for expr in re.findall(r"\$\{([^}!][^}]*)\}", str(text)):
                        add(expr.split(".", 1)[0].strip())
                    walk(v[1:] if isinstance(v, list) else [])
                else:
                    walk(v)

    walk(node)
    return out


def identity_of(kind: Kind, res: Resolver, body: dict, pid: str | None) -> dict | None:
    if kind.identity is None:
        return {"physical_id": pid} if pid else None
    ident = {k: v for k, v in kind.identity(res, body, pid).items() if isinstance(v, str) and v}
    if pid:
        ident["cfn_physical_id"] = pid
    return ident or None


def run(args: argparse.Namespace) -> dict:
    template = load_template(Path(args.template))
    aws = Aws(args.endpoint, args.region)
    key = _entry_key(args.endpoint, args.region)
    state_dir = Path(args.state_dir) if args.state_dir else DEFAULT_STATE_DIR

    account = account_id(aws)  # also the reachability probe
    stack = describe_stack(aws, args.stack)
    record = read_record(state_dir, args.stack, key)

    if stack is not None:
        parameters = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue"))
                      for p in stack.get("Parameters", [])}
        ids = {lid: pid for lid, pid in stack_physical_ids(aws, args.stack).items() if pid}
    else:
        parameters = dict(record.get("parameters") or {})
        ids = {lid: item["physical_id"] for lid, item in (record.get("resources") or {}).items()
               if item.get("physical_id")}
    resolver = Resolver(template, args.stack, args.region, account, parameters, ids)

    # Which resources the template creates (a false Condition creates nothing).
    expected = []
    for lid, rtype, body in template_resources(template):
        cond = body.get("Condition")
        if cond is not None:
            try:
                if not resolver.condition(cond):
                    continue
            except (Unresolved, TypeError, IndexError, KeyError):
                pass
        expected.append((lid, rtype, body))

    # Independent discovery of the plain resources CloudFormation's ids do not cover (the
    # stack is gone, or did not report them), dependencies first.
    discovered: dict[str, list[str]] = {}
    order = {t: i for i, t in enumerate(DISCOVERY_ORDER)}
    for lid, rtype, body in sorted(expected, key=lambda e: order.get(e[1], len(order))):
        kind = KINDS.get(rtype)
        if kind is None or kind.discover is None:
            continue
        if stack is not None and ids.get(lid):
            continue
        try:
            found = [f for f in kind.discover(aws, resolver, lid, body) if f]
        except Exception as exc:  # noqa: BLE001 - discovery is best effort
            if is_connection_error(exc):
                raise
            found = []
        discovered[lid] = found
        if found and not ids.get(lid):
            ids[lid] = found[0]

    present, missing, unchecked, new_record = [], [], [], {}
    for lid, rtype, body in expected:
        kind = KINDS.get(rtype)
        if kind is None:
            reason = ("a custom resource: no API can observe it"
                      if rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource"
                      else f"no checker for {rtype}: no API of this program can observe it")
            unchecked.append({"logical_id": lid, "type": rtype, "reason": reason})
            continue
        current = identity_of(kind, resolver, body, ids.get(lid))
        candidates: list[dict] = []
        if current:
            candidates.append(current)
        if stack is None:
            for old in (record.get("resources", {}).get(lid) or {}).get("history") or []:
                if old not in candidates:
                    candidates.append(old)
            for pid in discovered.get(lid, []):
                ident = identity_of(kind, resolver, body, pid)
                if ident and ident not in candidates:
                    candidates.append(ident)
        new_record[lid] = {"type": rtype, "physical_id": ids.get(lid), "identity": current}

        found_id, reasons, unresolved, errors = None, [], [], []
        for ident in candidates:
            try:
                found_id = kind.check(aws, ident)
                break
            except Gone as gone:
                reason = gone.reason
                if len(candidates) > 1:  # the current id and earlier ones: say which is which
                    label = ident.get("physical_id") or "|".join(
                        v for k, v in sorted(ident.items()) if k != "cfn_physical_id")
                    reason = f"{label}: {reason}"
                if reason not in reasons:
                    reasons.append(reason)
            except Unresolved as exc:
                unresolved.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                if is_connection_error(exc):
                    raise
                errors.append(f"{type(exc).__name__}: {exc}")
        if not candidates and kind.identity is not None:
            unresolved.append("its defining properties could not be resolved")
        lost_parents = [p for p in referenced_resources(body.get("Properties"), resolver.resources)
                        if not ids.get(p)]
        if found_id is not None:
            # Plain resources: CloudFormation's id (the same thing the check used). The others
            # have no id of their own (moto's is the route table's): say what was observed.
            pid = found_id if kind.identity else (ids.get(lid) or found_id)
            present.append({"logical_id": lid, "type": rtype, "physical_id": pid})
        elif reasons:
            missing.append({"logical_id": lid, "type": rtype, "physical_id": ids.get(lid),
                            "reason": "; ".join(reasons)})
        elif errors:
            unchecked.append({"logical_id": lid, "type": rtype, "reason": "; ".join(errors)})
        elif unresolved and stack is None and lost_parents and kind.identity is not None:
            # It hangs on resources that were neither recorded nor found: it cannot exist.
            missing.append({"logical_id": lid, "type": rtype, "physical_id": None,
                            "reason": "not found: the stack does not exist and what it belongs to "
                                      f"({', '.join(lost_parents)}) was neither recorded nor found"})
        elif unresolved:
            unchecked.append({"logical_id": lid, "type": rtype,
                              "reason": f"cannot tell which {rtype} to look for: "
                                        + "; ".join(unresolved)})
        else:
            where = ("the stack does not report it and " if stack is not None
                     else "the stack does not exist, nothing was recorded for it, and ")
            missing.append({"logical_id": lid, "type": rtype, "physical_id": None,
                            "reason": f"not found: {where}no search by name or tag found it"})

    if stack is not None:
        try:
            write_record(state_dir, args.stack, key, {
                "stack_id": stack.get("StackId"),
                "stack_status": stack.get("StackStatus"),
                "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "account": account,
                "parameters": parameters,
                "resources": new_record,
            })
        except OSError as exc:
            print(f"inventory: warning: cannot write the record in {state_dir}: {exc}", file=sys.stderr)

    return {"present": present, "missing": missing, "unchecked": unchecked}


# ----------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2, as argparse does, with our prefix
        self.print_usage(sys.stderr)
        print(f"inventory: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="inventory.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--endpoint", required=True, help="AWS endpoint URL, e.g. http://127.0.0.1:4566")
    parser.add_argument("--stack", required=True, help="CloudFormation stack name")
    parser.add_argument("--template", required=True, help="the stack's template (YAML or JSON)")
    parser.add_argument("--region", default=None,
                        help="AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)")
    parser.add_argument("--state-dir", default=None,
                        help=f"where physical ids are recorded (default {DEFAULT_STATE_DIR})")
    args = parser.parse_args(argv)
    args.region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not args.region:
        parser.error("no region: set AWS_REGION (or pass --region)")
    if not STACK_NAME_RE.match(args.stack):
        parser.error(f"invalid stack name {args.stack!r}")
    if not re.match(r"^https?://[^/\s]+", args.endpoint):
        parser.error(f"invalid endpoint URL {args.endpoint!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        result = run(args)
    except UsageError as exc:
        print(f"inventory: error: {exc}", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print("inventory: error: no AWS credentials: set AWS_ACCESS_KEY_ID and "
              "AWS_SECRET_ACCESS_KEY", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        if is_connection_error(exc):
            print(f"inventory: error: cannot reach the AWS endpoint {args.endpoint}: {exc}",
                  file=sys.stderr)
        else:
            print(f"inventory: error: {args.endpoint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
