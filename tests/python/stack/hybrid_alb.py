"""Paths and template helpers for the tests of stacks/hybrid-alb."""
import email
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
STACK_DIR = REPO / "stacks" / "hybrid-alb"
TEMPLATE_PATH = STACK_DIR / "template.yaml"
DEPLOYMENT_PATH = STACK_DIR / "deployment.yaml"
SERVER_PATH = STACK_DIR / "ec2" / "server.py"
HANDLER_PATH = STACK_DIR / "lambda" / "handler.py"

SERVER_HEREDOC = re.compile(
    r"^cat > /opt/hybrid-alb/server\.py <<'SERVER_PY'\n(?P<script>.*?\n)SERVER_PY\n",
    re.S | re.M,
)


def load_template(path=TEMPLATE_PATH):
    """The template in long form (`!Ref x` becomes {"Ref": "x"}), as cfn-lint reads it."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def load_deployment(path=DEPLOYMENT_PATH):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def user_data_parts(template):
    """The MIME parts of the instance UserData, as {content type: text}."""
    user_data = template["Resources"]["Instance"]["Properties"]["UserData"]
    assert set(user_data) == {"Fn::Base64"}, "UserData must be Fn::Base64 of a literal"
    text = user_data["Fn::Base64"]
    assert isinstance(text, str), "UserData must be a literal string (no Fn::Sub)"
    message = email.message_from_string(text)
    assert message.is_multipart(), "UserData must be a MIME multipart document"
    parts = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        assert ctype not in parts, "duplicate UserData part " + ctype
        parts[ctype] = part.get_payload()
    return parts


def embedded_server_script(template):
    """The text of ec2/server.py as embedded in the UserData shell script."""
    shell = user_data_parts(template)["text/x-shellscript"]
    matches = list(SERVER_HEREDOC.finditer(shell))
    assert len(matches) == 1, "expected exactly one server.py heredoc in UserData"
    return matches[0].group("script")
