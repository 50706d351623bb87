"""What the drift patch compares, per resource type: the template's properties and moto's
live state in one shape (the template's), the differences between the two, and how the
template's values are put back on the live resource."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Lists that AWS compares as sets: None matches whole items, a name matches items by it.
UNORDERED: dict[str, str | None] = {
    "/SecurityGroupIngress": None, "/Tags": "Key", "/Policies": "PolicyName"}
_PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}


def plain(value: Any) -> Any:
    """JSON types only (a YAML date such as Version: 2012-10-17 becomes its text)."""
    return json.loads(json.dumps(value, default=str))


def render(value: Any) -> str:
    """A PropertyDifference value, as AWS writes them: text as is, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def differences(expected: Any, actual: Any, path: str = "") -> list[dict[str, str]]:
    """PropertyDifferences between two values in the template's shape."""
    def one(where: str, want: Any, have: Any, kind: str) -> dict[str, str]:
        return {"PropertyPath": where, "ExpectedValue": render(want),
                "ActualValue": render(have), "DifferenceType": kind}

    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in [*expected, *(k for k in actual if k not in expected)]:
            where = f"{path}/{key}"
            if key not in actual:
                found.append(one(where, expected[key], None, "REMOVE"))
            elif key not in expected:
                found.append(one(where, None, actual[key], "ADD"))
            else:
                found += differences(expected[key], actual[key], where)
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        return _list_differences(expected, actual, path, one)
    return [] if expected == actual else [one(path, expected, actual, "NOT_EQUAL")]


def _list_differences(expected: list[Any], actual: list[Any], path: str,
                      one: Callable[..., dict[str, str]]) -> list[dict[str, str]]:
    if path not in UNORDERED:
        found = []
        for i in range(max(len(expected), len(actual))):
            if i >= len(actual):
                found.append(one(f"{path}/{i}", expected[i], None, "REMOVE"))
            elif i >= len(expected):
                found.append(one(f"{path}/{i}", None, actual[i], "ADD"))
            else:
                found += differences(expected[i], actual[i], f"{path}/{i}")
        return found
    name = UNORDERED[path]

    def ident(item: Any) -> Any:
        if name and isinstance(item, dict) and name in item:
            return item[name]
        return json.dumps(item, sort_keys=True)

    unmatched = dict(enumerate(actual))
    found = []
    for i, want in enumerate(expected):
        j = next((j for j, have in unmatched.items() if ident(have) == ident(want)), None)
        if j is None:
            found.append(one(f"{path}/{i}", want, None, "REMOVE"))
        else:
            found += differences(want, unmatched.pop(j), f"{path}/{j}")
    found += [one(f"{path}/{j}", None, have, "ADD") for j, have in unmatched.items()]
    return found


# ----------------------------------------------------------------- the compared types


@dataclass(frozen=True)
class Check:
    """One resource type: its compared properties, and how moto's object is found, read in
    the template's shape and set back to the template's values."""

    properties: tuple[str, ...]
    find: Callable[[str, str, str], Any]  # (account, region, physical id) -> object | None
    read: Callable[[Any, dict[str, Any]], dict[str, Any]]  # (object, expected) -> actual
    write: Callable[[Any, dict[str, Any], str, str], None]  # (object, expected, acct, region)
    defaults: tuple[tuple[str, Any], ...] = ()  # compared even when the template omits them
    normalise: Callable[[dict[str, Any], str, str], dict[str, Any]] = (
        lambda props, account, region: props)


def _quiet(find: Callable[..., Any]) -> Callable[..., Any]:
    """A lookup whose "not found" error means deleted."""
    def found(*args: Any) -> Any:
        try:
            return find(*args)
        except Exception:  # noqa: BLE001 - each service has its own not-found error
            return None
    return found


def _ec2(account: str, region: str) -> Any:
    from moto.ec2.models import ec2_backends
    return ec2_backends[account][region]


def rule(protocol: Any, from_port: Any, to_port: Any, **fields: Any) -> dict[str, Any]:
    """One ingress rule in the template's shape; ports mean nothing for protocol -1."""
    proto = str(protocol).lower()
    proto = _PROTOCOLS.get(proto, proto)
    out: dict[str, Any] = {"IpProtocol": proto}
    if proto != "-1":
        out["FromPort"], out["ToPort"] = int(from_port), int(to_port)
    out.update({k: v for k, v in fields.items() if v not in (None, "")})
    return out


def live_rule(sg_rule: Any) -> dict[str, Any]:
    source = sg_rule.source_group or {}
    return rule(sg_rule.ip_protocol, sg_rule.from_port, sg_rule.to_port,
                CidrIp=sg_rule.ip_range.get("CidrIp"), CidrIpv6=sg_rule.ip_range.get("CidrIpv6"),
                SourceSecurityGroupId=source.get("GroupId"),
                SourcePrefixListId=sg_rule.prefix_list_id,
                Description=sg_rule.ip_range.get("Description") or source.get("Description"))


def template_rules(rules: list[dict[str, Any]], account: str, region: str) -> list[dict[str, Any]]:
    out = []
    for r in rules or []:
        source = r.get("SourceSecurityGroupId")
        if not source and r.get("SourceSecurityGroupName"):  # moto keeps the id only
            group = _ec2(account, region).get_security_group_by_name_or_id(
                r["SourceSecurityGroupName"], None)
            source = group.id if group else r["SourceSecurityGroupName"]
        out.append(rule(r.get("IpProtocol"), r.get("FromPort"), r.get("ToPort"),
                        CidrIp=r.get("CidrIp"), CidrIpv6=r.get("CidrIpv6"),
                        SourceSecurityGroupId=source,
                        SourcePrefixListId=r.get("SourcePrefixListId"),
                        Description=r.get("Description")))
    return out


def _write_ingress(group: Any, expected: dict[str, Any], account: str, region: str) -> None:
    """Drop the rules the template does not have, then authorize the ones moto lacks."""
    backend = _ec2(account, region)
    want = expected["SecurityGroupIngress"]

    def args(r: dict[str, Any]) -> dict[str, Any]:
        keys = ("CidrIp", "CidrIpv6", "Description")
        pair = {k: v for k, v in (("GroupId", r.get("SourceSecurityGroupId")),
                                  ("Description", r.get("Description"))) if v}
        by_group, by_list = "SourceSecurityGroupId" in r, "SourcePrefixListId" in r
        return {"group_name_or_id": group.id, "ip_protocol": r["IpProtocol"],
                "from_port": r.get("FromPort"), "to_port": r.get("ToPort"),
                "ip_ranges": [] if by_group or by_list else [{k: r[k] for k in keys if k in r}],
                "source_groups": [pair] if by_group else [],
                "prefix_list_ids": [{"PrefixListId": r["SourcePrefixListId"]}] if by_list else [],
                "vpc_id": group.vpc_id}

    # By rule, not by RevokeSecurityGroupIngress: moto matches a source group's whole dict.
    group.ingress_rules = [x for x in group.ingress_rules if live_rule(x) in want]
    have = [live_rule(x) for x in group.ingress_rules]
    for r in want:
        if r not in have:
            backend.authorize_security_group_ingress(**args(r))


SECURITY_GROUP = Check(
    properties=("SecurityGroupIngress",),
    defaults=(("SecurityGroupIngress", []),),
    find=_quiet(lambda account, region, pid: _ec2(account, region).get_security_group_from_id(pid)),
    read=lambda group, expected: {
        "SecurityGroupIngress": [live_rule(r) for r in group.ingress_rules]},
    write=_write_ingress,
    normalise=lambda props, account, region: {
        "SecurityGroupIngress": template_rules(props["SecurityGroupIngress"], account, region)},
)


def _find_instance(account: str, region: str, pid: str) -> Any:
    instance = _ec2(account, region).get_instance(pid)
    return None if instance._state.name == "terminated" else instance


INSTANCE = Check(
    properties=("InstanceType",),
    find=_quiet(_find_instance),
    read=lambda instance, expected: {"InstanceType": instance.instance_type},
    write=lambda instance, expected, account, region: setattr(
        instance, "instance_type", expected["InstanceType"]),
)


def _s3(account: str, region: str) -> Any:
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition
    return s3_backends[account][get_partition(region)]


def _bucket_tags(bucket: Any) -> list[dict[str, str]]:
    tagged = _s3(bucket.account_id, bucket.region_name).tagger.list_tags_for_resource(bucket.arn)
    return [t for t in next(iter(tagged.values()), []) if not t["Key"].startswith("aws:")]


def _read_bucket(bucket: Any, expected: dict[str, Any]) -> dict[str, Any]:
    actual: dict[str, Any] = {}
    if "VersioningConfiguration" in expected:
        actual["VersioningConfiguration"] = (
            {"Status": bucket.versioning_status} if bucket.versioning_status else {})
    if "Tags" in expected:
        actual["Tags"] = _bucket_tags(bucket)
    return actual


def _write_bucket(bucket: Any, expected: dict[str, Any], account: str, region: str) -> None:
    backend = _s3(account, region)
    if "VersioningConfiguration" in expected:
        status = expected["VersioningConfiguration"].get("Status")
        backend.put_bucket_versioning(bucket.name, status)
    if "Tags" in expected:
        tagged = backend.tagger.list_tags_for_resource(bucket.arn)
        kept = {t["Key"]: t["Value"] for t in next(iter(tagged.values()), [])
                if t["Key"].startswith("aws:")}
        backend.put_bucket_tagging(
            bucket.name, {**kept, **{t["Key"]: t["Value"] for t in expected["Tags"]}})


BUCKET = Check(
    properties=("VersioningConfiguration", "Tags"),
    find=_quiet(lambda account, region, pid: _s3(account, region).buckets.get(pid)),
    read=_read_bucket,
    write=_write_bucket,
)


def _find_function(account: str, region: str, pid: str) -> Any:
    from moto.awslambda.models import lambda_backends
    return lambda_backends[account][region].get_function(pid)


def _int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _write_function(fn: Any, expected: dict[str, Any], account: str, region: str) -> None:
    if "MemorySize" in expected:
        fn.memory_size = expected["MemorySize"]
    if "Timeout" in expected:
        fn.timeout = expected["Timeout"]
    if "Environment" in expected:
        fn.environment_vars = dict(expected["Environment"]["Variables"])


FUNCTION = Check(
    properties=("MemorySize", "Timeout", "Environment"),
    find=_quiet(_find_function),
    read=lambda fn, expected: {
        "MemorySize": _int(fn.memory_size), "Timeout": _int(fn.timeout),
        "Environment": {"Variables": dict(fn.environment_vars or {})}},
    write=_write_function,
    normalise=lambda props, account, region: {
        k: (_int(v) if k != "Environment" else {"Variables": dict(v.get("Variables") or {})})
        for k, v in props.items()},
)


def _document(value: Any) -> Any:
    """A policy document as JSON, whether moto keeps it as text (URL-encoded or not)."""
    from urllib.parse import unquote

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return json.loads(unquote(value))
    return plain(value)


def _find_role(account: str, region: str, pid: str) -> Any:
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition
    return iam_backends[account][get_partition(region)].get_role(pid)


def _write_role(role: Any, expected: dict[str, Any], account: str, region: str) -> None:
    if "AssumeRolePolicyDocument" in expected:
        role.assume_role_policy_document = json.dumps(expected["AssumeRolePolicyDocument"])
    if "Policies" in expected:
        want = {p["PolicyName"]: p["PolicyDocument"] for p in expected["Policies"]}
        for name in [n for n in role.policies if n not in want]:
            del role.policies[name]
        for name, document in want.items():
            role.put_policy(name, json.dumps(document))


ROLE = Check(
    properties=("Policies", "AssumeRolePolicyDocument"),
    find=_quiet(_find_role),
    read=lambda role, expected: {
        "Policies": [{"PolicyName": name, "PolicyDocument": _document(doc)}
                     for name, doc in role.policies.items()],
        "AssumeRolePolicyDocument": _document(role.assume_role_policy_document)},
    write=_write_role,
    normalise=lambda props, account, region: {
        k: ([{"PolicyName": p["PolicyName"], "PolicyDocument": _document(p["PolicyDocument"])}
             for p in v] if k == "Policies" else _document(v))
        for k, v in props.items()},
)

CHECKS: dict[str, Check] = {
    "AWS::EC2::SecurityGroup": SECURITY_GROUP,
    "AWS::EC2::Instance": INSTANCE,
    "AWS::S3::Bucket": BUCKET,
    "AWS::Lambda::Function": FUNCTION,
    "AWS::IAM::Role": ROLE,
}


def expected_properties(check: Check, properties: dict[str, Any], account: str,
                        region: str) -> dict[str, Any]:
    """The compared properties of the template's resolved ones, in the compared shape."""
    props = {k: properties[k] for k in check.properties if k in properties}
    for name, default in check.defaults:
        props.setdefault(name, default)
    return plain(check.normalise(plain(props), account, region))


def actual_properties(check: Check, obj: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """moto's values of the properties in `expected`, in the template's shape."""
    actual = plain(check.read(obj, expected))
    return {k: actual[k] for k in expected if k in actual}
