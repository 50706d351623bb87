"""Checks of the files in deploy/ that run stackgate itself (systemd, container, AWS).

- deploy/aws/stackgate.yaml passes stackgate's own policies and cfn-lint;
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
