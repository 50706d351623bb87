#!/usr/bin/env python3
"""Copy ec2/server.py into the UserData heredoc of template.yaml.

The template embeds the server verbatim between the SERVER_PY heredoc
markers. Run this after editing server.py; the tests fail until both agree.
"""
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "template.yaml"
SERVER = HERE / "server.py"

BLOCK = re.compile(
    r"^(?P<indent> *)cat > /opt/hybrid-alb/server\.py <<'SERVER_PY'\n"
    r".*?^(?P=indent)SERVER_PY\n",
    re.S | re.M,
)


def embed(template_text, server_text):
    matches = list(BLOCK.finditer(template_text))
    if len(matches) != 1:
        raise SystemExit("expected one SERVER_PY heredoc in %s, found %d" % (TEMPLATE, len(matches)))
    if not server_text.endswith("\n"):
        server_text += "\n"
    indent = matches[0].group("indent")
    body = "".join(indent + line if line.strip() else "\n" for line in server_text.splitlines(True))
    block = (
        indent + "cat > /opt/hybrid-alb/server.py <<'SERVER_PY'\n"
        + body + indent + "SERVER_PY\n"
    )
    return template_text[: matches[0].start()] + block + template_text[matches[0].end():]


def main():
    old = TEMPLATE.read_text(encoding="utf-8")
    new = embed(old, SERVER.read_text(encoding="utf-8"))
    if new != old:
        TEMPLATE.write_text(new, encoding="utf-8")
        print("updated", TEMPLATE)
    else:
        print("already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
