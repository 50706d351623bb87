#!/usr/bin/env python3
"""Cut the operations stackgate uses out of GitHub's official OpenAPI description.

Source: the npm package ``@octokit/openapi`` installed in ``tests/doubles/github/node_modules``
(``npm ci`` in ``tests/doubles/github``). Its ``generated/api.github.com.deref.json`` is the
api.github.com description with every ``$ref`` already inlined; when a version ships
without it, the plain ``api.github.com.json`` is read and its ``$ref``s are resolved
here.

Output: ``tests/doubles/github/openapi-subset.json``, a valid OpenAPI document holding only the
operations listed in ``OPERATIONS`` (with their parameters, request bodies, responses
and examples, all schemas inline), plus ``x-stackgate-source`` naming the package,
its version, the file and that file's sha256.

    python tests/tools/make_subset.py            # rewrite openapi-subset.json
    python tests/tools/make_subset.py --check    # exit 1 if the committed file is stale

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

STANDIN = Path(__file__).resolve().parents[1] / "doubles" / "github"
PACKAGE = "@octokit/openapi"
DEFAULT_PACKAGE_DIR = STANDIN / "node_modules" / "@octokit" / "openapi"
DEFAULT_OUT = STANDIN / "openapi-subset.json"

# (method, path template, operationId, required by stackgate?)
OPERATIONS = [
    ("post", "/repos/{owner}/{repo}/statuses/{sha}", "repos/create-commit-status", True),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/statuses", "repos/list-commit-statuses-for-ref", True),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/create-comment", True),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "issues/update-comment", True),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/list-comments", True),
    ("post", "/app/installations/{installation_id}/access_tokens", "apps/create-installation-access-token", True),
    ("post", "/repos/{owner}/{repo}/check-runs", "checks/create", True),
    ("patch", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "checks/update", True),
    ("get", "/repos/{owner}/{repo}", "repos/get", False),
    ("get", "/repos/{owner}/{repo}/branches/{branch}", "repos/get-branch", False),
]


def resolve_refs(node, root, stack=()):
    """Inline every local ``$ref`` (``#/components/...``). Fails on a cycle."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SystemExit(f"make_subset: non-local $ref {ref!r} is not supported")
            if ref in stack:
                raise SystemExit(f"make_subset: cyclic $ref {' -> '.join(stack + (ref,))}")
            target = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            merged = resolve_refs(target, root, stack + (ref,))
            extra = {k: v for k, v in node.items() if k != "$ref"}
            if extra:  # OpenAPI 3.1 allows siblings of $ref (e.g. description)
                merged = {**merged, **resolve_refs(extra, root, stack)}
            return merged
        return {k: resolve_refs(v, root, stack) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, root, stack) for v in node]
    return node


def build(package_dir: Path) -> dict:
    if not (package_dir / "package.json").exists():
        raise SystemExit(
            f"make_subset: {package_dir} has no package.json; run `npm ci` in tests/doubles/github first"
        )
    pkg = json.loads((package_dir / "package.json").read_text())
    if pkg.get("name") != PACKAGE:
        raise SystemExit(f"make_subset: {package_dir} holds {pkg.get('name')!r}, not {PACKAGE}")
    generated = package_dir / "generated"
    source = generated / "api.github.com.deref.json"
    dereferenced = source.exists()
    if not dereferenced:
        source = generated / "api.github.com.json"
    if not source.exists():
        raise SystemExit(
            f"make_subset: no api.github.com description in {generated}; "
            "run `npm ci` in tests/doubles/github first"
        )
    raw = source.read_bytes()
    spec = json.loads(raw)

    paths: dict = {}
    for method, template, op_id, _required in OPERATIONS:
        try:
            op = spec["paths"][template][method]
        except KeyError:
            raise SystemExit(f"make_subset: {method.upper()} {template} is not in {source.name}")
        if op.get("operationId") != op_id:
            raise SystemExit(
                f"make_subset: {method.upper()} {template} is {op.get('operationId')!r} "
                f"in {source.name}, expected {op_id!r}"
            )
        path_item = spec["paths"][template]
        if not dereferenced:
            op = resolve_refs(op, spec)
        op = json.loads(json.dumps(op))  # deep copy
        # Path-level parameters apply to every operation under the path.
        if path_item.get("parameters"):
            shared = path_item["parameters"] if dereferenced else resolve_refs(path_item["parameters"], spec)
            names = {(p["name"], p["in"]) for p in op.get("parameters", [])}
            op["parameters"] = op.get("parameters", []) + [
                p for p in shared if (p["name"], p["in"]) not in names
            ]
        paths.setdefault(template, {})[method] = op

    text = json.dumps(paths)
    if '"$ref"' in text:
        raise SystemExit("make_subset: unresolved $ref left in the subset")

    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec.get("servers", []),
        "x-stackgate-source": {
            "package": PACKAGE,
            "version": pkg["version"],
            "file": f"generated/{source.name}",
            "sha256": hashlib.sha256(raw).hexdigest(),
            "generated_by": "tests/tools/make_subset.py",
            "operations": [op_id for _m, _t, op_id, _r in OPERATIONS],
        },
        "paths": paths,
    }


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package-dir", type=Path, default=DEFAULT_PACKAGE_DIR)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = ap.parse_args(argv)

    text = render(build(args.package_dir))
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python tests/tools/make_subset.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    src = json.loads(text)["x-stackgate-source"]
    print(f"wrote {args.out} ({len(text)} bytes) from {src['package']}@{src['version']} {src['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
