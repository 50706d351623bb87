"""Checks of the files in deploy/ that run stackgate itself (systemd, container, AWS).

- deploy/aws/stackgate.yaml passes stackgate's own policies and cfn-lint, in both shapes
  (Replicas=1: one instance on SQLite; Replicas=2: two instances and a private RDS
  PostgreSQL whose password only RDS and the instance role hold);
- deploy/systemd/stackgate.toml.example uses only keys the README documents, and the
  real binary accepts it;
- deploy/systemd/stackgate.service keeps its hardening.
"""
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.context.parameters import ParameterSet
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "deploy/aws/stackgate.yaml"
UNIT = ROOT / "deploy/systemd/stackgate.service"
EXAMPLE = ROOT / "deploy/systemd/stackgate.toml.example"
README = ROOT / "README.md"
BINARY = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug/stackgate"
CREDENTIALS = "/run/credentials/stackgate.service/"

needs_binary = pytest.mark.skipif(
    not BINARY.exists(),
    reason=f"{BINARY} is not built (cargo build -p stackgate, or tests/run.sh, builds it)",
)


# ------------------------------------------------------------ deploy/aws


@needs_binary
def test_aws_template_passes_stackgates_own_policies():
    out = subprocess.run(
        [str(BINARY), "check", "--format", "json", str(TEMPLATE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    [result] = json.loads(out.stdout)["results"]
    assert result["verdict"] == "pass", result
    # Not even a warning: every resource, action and source resolves.
    assert result["findings"] == [], result["findings"]


def test_aws_template_cfn_lint_is_clean():
    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1"], include_checks=["I"]))
    assert not matches, "\n".join(
        f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches
    )


# The parameters a user gives, for each shape (ids are placeholders of the right form).
ONE = {
    "VpcId": "vpc-0123456789abcdef0",
    "AlbSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "InstanceSubnetId": "subnet-0123456789abcdef2",
    "StackNamePrefix": "acme",
}
TWO = {**ONE, "Replicas": "2", "SecondInstanceSubnetId": "subnet-0123456789abcdef3"}


@pytest.mark.parametrize("given", [ONE, TWO], ids=["one-replica", "two-replicas"])
def test_aws_template_cfn_lint_is_clean_with_the_parameters_of_each_shape(given):
    args = ManualArgs(
        regions=["us-east-1"], include_checks=["I"], parameters=[ParameterSet(parameters=given)]
    )
    matches = lint_file(TEMPLATE, args)
    assert not matches, "\n".join(
        f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches
    )


class Shape:
    """The template as CloudFormation would create it for some parameters: conditions
    decided, `Fn::If` branches chosen, `AWS::NoValue` dropped. Other intrinsics
    (`Fn::GetAtt`, `Fn::Sub`, `Ref` to a resource) stay as written."""

    NO_VALUE = object()

    def __init__(self, given):
        self.template = cfn_yaml.load(str(TEMPLATE))
        self.params = {
            name: given.get(name, spec.get("Default"))
            for name, spec in self.template["Parameters"].items()
        }
        self.conditions = {}
        for name, expr in self.template.get("Conditions", {}).items():
            self.conditions[name] = self.value(expr)
        self.resources = {
            name: self.value(res)
            for name, res in self.template["Resources"].items()
            if "Condition" not in res or self.conditions[res["Condition"]]
        }
        self.outputs = {
            name: self.value(out)
            for name, out in self.template.get("Outputs", {}).items()
            if "Condition" not in out or self.conditions[out["Condition"]]
        }

    def value(self, node):
        if isinstance(node, list):
            out = [self.value(x) for x in node]
            return [x for x in out if x is not self.NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(fn, arg)] = node.items()
            if fn == "Ref" and arg == "AWS::NoValue":
                return self.NO_VALUE
            if fn == "Ref" and arg in self.params:
                return self.params[arg]
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.conditions[cond] else no)
            if fn == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return a == b
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.value(x) for x in arg)
            if fn == "Condition":
                return self.conditions[arg]
            if fn == "Fn::Join":
                sep, parts = arg[0], self.value(arg[1])
                if all(isinstance(x, str) for x in parts):
                    return sep.join(parts)
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not self.NO_VALUE}

    def of_type(self, kind):
        return {n: r for n, r in self.resources.items() if r["Type"] == kind}

    def rules_refusing(self):
        """AssertDescriptions of the template's Rules that these parameters break."""
        broken = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            broken += [a["AssertDescription"] for a in rule["Assertions"] if not self.value(a["Assert"])]
        return broken


def ingress_to(shape, group):
    """Every ingress rule of a security group of the template: inline and standalone."""
    rules = list(shape.resources[group]["Properties"].get("SecurityGroupIngress", []))
    for res in shape.of_type("AWS::EC2::SecurityGroupIngress").values():
        if res["Properties"]["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}:
            rules.append(res["Properties"])
    return rules


def test_one_replica_is_one_instance_on_sqlite():
    shape = Shape(ONE)
    assert shape.rules_refusing() == []
    assert list(shape.of_type("AWS::EC2::Instance")) == ["Instance"]
    assert not shape.of_type("AWS::RDS::DBInstance")
    [targets] = [r["Properties"]["Targets"] for r in shape.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values()]
    assert targets == [{"Id": {"Ref": "Instance"}, "Port": 8080}]
    assert not any(name.startswith("Database") or name == "StateUrl" for name in shape.outputs)


def test_two_replicas_are_two_instances_in_two_subnets_behind_the_load_balancer():
    shape = Shape(TWO)
    assert shape.rules_refusing() == []
    instances = shape.of_type("AWS::EC2::Instance")
    assert len(instances) == 2
    subnets = {r["Properties"]["SubnetId"] for r in instances.values()}
    assert subnets == {TWO["InstanceSubnetId"], TWO["SecondInstanceSubnetId"]}
    for props in (r["Properties"] for r in instances.values()):
        assert props["MetadataOptions"]["HttpTokens"] == "required"
        assert props["SecurityGroupIds"] == [{"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]}]
    [targets] = [r["Properties"]["Targets"] for r in shape.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values()]
    assert sorted(t["Id"]["Ref"] for t in targets) == sorted(instances)


# The services whose SDKs stackgate calls, and the IAM actions that differ from the
# operation's name. GetCallerIdentity needs no permission.
SDK_SERVICES = ("cloudformation", "s3", "ssm", "sts")
IAM_ACTION = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "sts:GetCallerIdentity": None,
}
# DescribeStacks without a stack name (the live-stacks listing) also needs ListStacks,
# since 2023.
ALSO_NEEDS = {"cloudformation:DescribeStacks": "cloudformation:ListStacks"}
# Called only where the artifact bucket does not exist yet; the template creates it.
CREATES_THE_BUCKET = {
    "s3:CreateBucket", "s3:PutBucketPublicAccessBlock", "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
}


def sdk_operations():
    """service:Operation for every fluent SDK call in server/src (`client.op()...`)."""
    import botocore.session

    session = botocore.session.get_session()
    by_snake = {}
    for service in SDK_SERVICES:
        model = session.get_service_model(service)
        for op in model.operation_names:
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()
            by_snake.setdefault(snake, []).append(f"{service}:{op}")
    found = {}
    for path in sorted((ROOT / "server/src").rglob("*.rs")):
        for m in re.finditer(r"\.([a-z_]+)\(\)\s*\.", path.read_text()):
            for op in by_snake.get(m.group(1), []):
                found.setdefault(op, path.relative_to(ROOT))
    return found


def test_the_instance_role_allows_every_aws_call_stackgate_makes():
    # The emulator checks no IAM: a call the role lacks fails only in a real account
    # (DescribeStacks without a name needs ListStacks too, since 2023).
    ops = sdk_operations()
    assert "cloudformation:DescribeStacks" in ops and "s3:PutObject" in ops, ops
    ops.update({ALSO_NEEDS[op]: ops[op] for op in list(ops) if op in ALSO_NEEDS})
    granted = set()
    for shape in (Shape(ONE), Shape(TWO)):
        docs = [p["PolicyDocument"] for r in shape.of_type("AWS::IAM::Role").values()
                for p in r["Properties"].get("Policies", [])]
        docs += [r["Properties"]["PolicyDocument"] for r in shape.of_type("AWS::IAM::RolePolicy").values()]
        for doc in docs:
            for st in doc["Statement"]:
                assert st["Effect"] == "Allow"
                actions = st["Action"]
                granted.update([actions] if isinstance(actions, str) else actions)
    missing = sorted(
        f"{IAM_ACTION.get(op, op)} (for {op}, {where})"
        for op, where in ops.items()
        if IAM_ACTION.get(op, op) is not None
        and IAM_ACTION.get(op, op) not in granted
        and IAM_ACTION.get(op, op) not in CREATES_THE_BUCKET
    )
    assert not missing, "the instance role lacks:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    "given",
    [{**TWO, "SecondInstanceSubnetId": ""}, {**TWO, "SecondInstanceSubnetId": TWO["InstanceSubnetId"]}],
    ids=["no-second-subnet", "same-subnet-twice"],
)
def test_two_replicas_in_one_subnet_are_refused_before_anything_is_created(given):
    assert Shape(given).rules_refusing(), "the template's Rules should refuse these parameters"


def test_two_replicas_share_a_private_encrypted_postgres():
    shape = Shape(TWO)
    [(name, db)] = shape.of_type("AWS::RDS::DBInstance").items()
    props = db["Properties"]
    assert props["Engine"] == "postgres"
    versions = shape.template["Parameters"]["DatabaseEngineVersion"]["AllowedValues"]
    assert set(versions) <= {"15", "16"} and props["EngineVersion"] in versions
    assert props["PubliclyAccessible"] is False
    assert props["StorageEncrypted"] is True
    assert props["BackupRetentionPeriod"] >= 1
    # Neither a stack delete nor a replacement loses the state.
    assert props["DeletionProtection"] is True
    assert db.get("DeletionPolicy") in ("Snapshot", "Retain")
    assert db.get("UpdateReplacePolicy") in ("Snapshot", "Retain")
    # The subnet group spans the two instance subnets (RDS refuses one zone).
    [group] = shape.of_type("AWS::RDS::DBSubnetGroup").values()
    assert props["DBSubnetGroupName"] == {"Ref": next(iter(shape.of_type("AWS::RDS::DBSubnetGroup")))}
    assert set(group["Properties"]["SubnetIds"]) == {TWO["InstanceSubnetId"], TWO["SecondInstanceSubnetId"]}


def test_two_replicas_open_5432_only_from_the_instances_group():
    shape = Shape(TWO)
    [db] = shape.of_type("AWS::RDS::DBInstance").values()
    groups = db["Properties"]["VPCSecurityGroups"]
    assert len(groups) == 1 and list(groups[0]) == ["Fn::GetAtt"]
    group = groups[0]["Fn::GetAtt"][0]
    rules = ingress_to(shape, group)
    assert rules, f"{group} has no ingress rule: the instances could not connect"
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432), rule
        assert rule.get("SourceSecurityGroupId") == {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]}, rule
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), rule
    # And the instances may reach it: an egress rule from their group to the database's.
    egress = [
        r["Properties"] for r in shape.of_type("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]}
    ]
    assert any(
        e.get("DestinationSecurityGroupId") == {"Fn::GetAtt": [group, "GroupId"]} and e["FromPort"] == 5432
        for e in egress
    ), egress


def test_two_replicas_keep_the_database_password_out_of_parameters_and_the_stack():
    shape = Shape(TWO)
    [(name, db)] = shape.of_type("AWS::RDS::DBInstance").items()
    props = db["Properties"]
    # RDS makes the password and keeps it in Secrets Manager.
    assert props["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in props
    for pname, spec in shape.template["Parameters"].items():
        assert not re.search(r"password|secret", pname, re.I), pname
        assert spec.get("NoEcho") is None, pname
    secret = {"Fn::GetAtt": [name, "MasterUserSecret.SecretArn"]}
    # Only the instance role is granted it...
    grants = []
    for rname, res in shape.resources.items():
        docs = []
        if res["Type"] == "AWS::IAM::Role":
            docs = [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            docs = [res["Properties"]["PolicyDocument"]]
        for doc in docs:
            for st in doc["Statement"]:
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                if st["Effect"] == "Allow" and secret in resources:
                    grants.append((rname, res["Properties"].get("RoleName") or res["Properties"].get("Roles")))
                    assert st["Action"] == "secretsmanager:GetSecretValue", st
    assert grants == [("DatabaseSecretAccess", {"Ref": "InstanceRole"})], grants
    # ...and its resource policy denies every other reader but RDS itself.
    [policy] = [
        r["Properties"] for r in shape.of_type("AWS::SecretsManager::ResourcePolicy").values()
        if r["Properties"]["SecretId"] == secret
    ]
    [deny] = policy["ResourcePolicy"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "secretsmanager:GetSecretValue")
    allowed = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert allowed[0] == {"Fn::GetAtt": ["InstanceRole", "Arn"]}
    assert all("aws-service-role/rds.amazonaws.com/" in str(a) for a in allowed[1:]), allowed
    assert policy["BlockPublicPolicy"] is True


def test_two_replicas_output_what_goes_into_state_url():
    shape = Shape(TWO)
    [name] = shape.of_type("AWS::RDS::DBInstance")
    out = {k: v["Value"] for k, v in shape.outputs.items()}
    assert out["DatabaseHost"] == {"Fn::GetAtt": [name, "Endpoint.Address"]}
    assert out["DatabasePort"] == {"Fn::GetAtt": [name, "Endpoint.Port"]}
    assert out["DatabaseName"] == shape.resources[name]["Properties"]["DBName"]
    assert out["DatabaseSecretArn"] == {"Fn::GetAtt": [name, "MasterUserSecret.SecretArn"]}
    url = out["StateUrl"]["Fn::Sub"]
    # postgres://user@host:port/db, with TLS (RDS for PostgreSQL 15+ refuses plain
    # connections) whose certificate is verified against the RDS bundle, for the
    # endpoint's name, and no password in the output.
    assert re.fullmatch(
        r"postgres://stackgate@\$\{%s\.Endpoint\.Address\}:\$\{%s\.Endpoint\.Port\}/%s"
        r"\?sslmode=verify-full&sslrootcert=/etc/stackgate/rds-ca\.pem"
        % (name, name, out["DatabaseName"]),
        url,
    ), url
    assert out["DatabaseCaBundleUrl"] == {
        "Fn::Sub": "https://truststore.pki.rds.amazonaws.com/${AWS::Region}/${AWS::Region}-bundle.pem"
    }
    assert shape.resources[name]["Properties"]["MasterUsername"] == "stackgate"


# -------------------------------------------------------- deploy/systemd


def documented_keys():
    """{section: keys} from the README's service configuration block, commented-out keys
    and `or other_key` alternatives included. Sections: "" (top level), "state", "github",
    "aws", "repos", "policies", "policies.policy.*"."""
    text = README.read_text()
    start = text.index("## The service:")
    block = re.search(r"```toml\n(.*?)```", text[start:], re.S).group(1)
    keys, section = {"": set()}, ""
    for line in block.splitlines():
        header = re.match(r"\s*\[\[?([\w.-]+)\]\]?", line)
        if header:
            section = header.group(1)
            if section.startswith("policies.policy."):
                section = "policies.policy.*"
            keys.setdefault(section, set())
            continue
        code, _, comment = line.partition("#")
        if re.match(r"\s*([a-z_]+)\s*=", code):
            keys[section].add(re.match(r"\s*([a-z_]+)", code).group(1))
        # `# app_id = 12345`, `# or token_file = "..."`, `# or webhook_secret_file`.
        for alt in re.findall(r"(?:^\s*|\bor\s+)([a-z_]+)\b(?=\s*=|\s*$|\s*\()", comment):
            keys[section].add(alt)
    return keys


def test_readme_block_is_understood():
    # Guards the parser above: if the README's block changes shape, say so here.
    keys = documented_keys()
    assert {"listen", "api_tokens", "max_parallel_jobs", "public_url"} <= keys[""]
    assert {"token_env", "token_file", "app_id", "private_key_file"} <= keys["github"]
    assert {"webhook_secret_env", "webhook_secret_file", "prune"} <= keys["repos"]
    assert {"dir", "deadline_ms"} <= keys["policies"]
    assert {"digest", "settings"} <= keys["policies.policy.*"]


def test_example_config_uses_only_documented_keys():
    config = tomllib.loads(EXAMPLE.read_text())
    documented = documented_keys()
    problems = []
    for key, value in config.items():
        if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
            tables = value if isinstance(value, list) else [value]
            for table in tables:
                for sub, subvalue in table.items():
                    if key == "policies" and sub == "policy":
                        for name, policy in subvalue.items():
                            if not (ROOT / "policies" / name / "Cargo.toml").exists():
                                problems.append(f"[policies.policy.{name}]: no such policy")
                            for pkey in policy:
                                if pkey not in documented["policies.policy.*"]:
                                    problems.append(f"[policies.policy.{name}] {pkey}")
                    elif (
                        isinstance(subvalue, list)
                        and subvalue
                        and isinstance(subvalue[0], dict)
                        and f"{key}.{sub}" in documented
                    ):
                        # An array of tables inside a table: [[auth.roles]].
                        for nested in subvalue:
                            for nkey in nested:
                                if nkey not in documented[f"{key}.{sub}"]:
                                    problems.append(f"[[{key}.{sub}]] {nkey}")
                    elif sub not in documented.get(key, ()):
                        problems.append(f"[{key}] {sub}")
        elif key not in documented[""]:
            problems.append(key)
    assert not problems, f"keys the README does not document: {problems}"
    # Where the unit puts state and secrets.
    assert config["state"]["path"] == "/var/lib/stackgate/stackgate.db"
    assert config["github"]["token_file"].startswith(CREDENTIALS)
    assert all(r["webhook_secret_file"].startswith(CREDENTIALS) for r in config["repos"])


@needs_binary
def test_binary_accepts_the_example_config(tmp_path):
    """`stackgate serve` reads the whole example (unknown keys would be errors), loads the
    policies with its settings, and stops only at the first secret file that exists under
    systemd alone."""
    token = tmp_path / "token"
    token.write_text("not-a-real-token")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKGATE_")}
    env.update(
        STACKGATE_LISTEN="127.0.0.1:0",
        STACKGATE_STATE_PATH=str(tmp_path / "state/stackgate.db"),
        STACKGATE_GITHUB_TOKEN_FILE=str(token),
    )
    out = subprocess.run(
        [str(BINARY), "serve", "--config", str(EXAMPLE)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"{CREDENTIALS}stackgate_webhook-secret" in last, out.stderr
    assert "policy loaded" in out.stderr and "least-privilege-iam" in out.stderr, out.stderr


def unit_directives():
    directives = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def test_unit_runs_stackgate_hardened():
    d = unit_directives()
    one = {k: v[-1] for k, v in d.items()}
    assert one["ExecStart"] == "/usr/local/bin/stackgate serve --config /etc/stackgate/stackgate.toml"
    assert one["User"] == "stackgate"
    assert one["StateDirectory"] == "stackgate"
    assert one["Restart"] == "on-failure"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        # wasmtime maps compiled policy code executable: this one must stay off.
        "MemoryDenyWriteExecute": "no",
    }
    wrong = {k: one.get(k) for k, v in expected.items() if one.get(k) != v}
    assert not wrong, f"hardening directives differ from {expected}: {wrong}"
    assert "wasmtime" in UNIT.read_text().split("MemoryDenyWriteExecute=no")[0][-400:]


def test_unit_takes_secrets_from_credentials_or_files_only():
    d = unit_directives()
    assert d.get("LoadCredential") or d.get("EnvironmentFile")
    for value in d.get("Environment", []):
        assert not re.search(r"TOKEN|SECRET|KEY|PASSWORD", value, re.I), value


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@needs_binary
def test_unit_verifies(tmp_path):
    # verify wants an executable ExecStart; point it at the built binary.
    unit = tmp_path / "stackgate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/stackgate", str(BINARY)))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
