#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the repository's own inputs: the stack
templates and deployment files, the policies' test-case templates, and GitHub's webhook
examples (tests/doubles/github/node_modules/@octokit/webhooks-examples). Run from anywhere:
    python3 server/fuzz/seed.py
It adds files to server/fuzz/corpus/<target>/; `cargo fuzz cmin` keeps them small."""

import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "server/fuzz/corpus"
EXAMPLES = ROOT / "tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json"


def put(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


templates = [p.read_bytes() for p in sorted(ROOT.glob("stacks/*/template.yaml"))]
templates.append((ROOT / "deploy/aws/stackgate.yaml").read_bytes())
for case in sorted(ROOT.glob("policies/*/tests/cases/*.json")):
    template = json.loads(case.read_text()).get("input", {}).get("template")
    if template is not None:
        templates.append(compact(template))
# The alias bomb and (shortened) deep nesting: the limits must stay reachable.
bomb = "Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n  a0: &a0 [" + ",".join(["x"] * 10) + "]\n"
for i in range(1, 9):
    bomb += f"  a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 10) + "]\n"
templates.append(bomb.encode())
templates.append(("Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n  x:\n    " + "- " * 80 + "x\n").encode())

deployments = [p.read_bytes() for p in sorted(ROOT.glob("stacks/*/deployment.yaml"))]
deployments.append(b"template-file-path: t.yaml\nparameters:\n  Port: 80\ntags:\n  team: a\n"
                   b"capabilities: [CAPABILITY_IAM]\nartifacts:\n  - path: lambda\n"
                   b"    bucket-parameter: B\n    key-parameter: K\nremove: false\nregion: eu-west-1\n")

for t in templates:
    put("yaml", t)
    put("policies", t)
for d in deployments:
    put("yaml", d)
    put("deployment", d)

for folder in sorted(ROOT.glob("stacks/*")):
    parts = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts += [str(f.relative_to(folder)).encode(), f.read_bytes()[:4096]]
    put("stack_folder", b"\0".join(parts))

examples = {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}
for event, picks in [("push", range(7)), ("pull_request", range(0, 29, 4)), ("ping", range(4))]:
    for i in picks:
        body = compact(examples[event][i])
        head = f"x-github-event: {event}\nx-github-delivery: seed-{event}-{i}\ncontent-type: application/json\n\n"
        put("webhook", b"\x01" + head.encode() + body)
put("webhook", b"\x00x-github-event: push\nx-hub-signature-256: sha256=00\n\n{}")
