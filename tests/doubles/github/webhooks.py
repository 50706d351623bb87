#!/usr/bin/env python3
"""GitHub's own example webhook payloads, for stackgate's end-to-end tests.

Source: npm ``@octokit/webhooks-examples`` (version pinned in ``package.json``),
installed by ``npm ci`` in ``tests/doubles/github``. The package holds ONE data file per
GitHub flavour; for github.com it is

    tests/doubles/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json

(``ghes-3x/index.json`` beside it are GitHub Enterprise Server). That file is a JSON
array with one entry per event:

    [{"name": "push", "description": "...", "actions": [...],
      "properties": {...}, "examples": [<payload>, <payload>, ...]}, ...]

Each example is a complete payload body exactly as GitHub sends it (the HTTP headers
are not included; ``headers()`` below builds them). Rust tests can read the same file
with serde_json: find the entry whose ``name`` is the event, then pick from
``examples`` by ``action`` (and ``ref`` for push).

What 7.6.1 holds for the events stackgate handles (index = position in ``examples``):

push  (no ``action``; every example is repository Codertocat/Hello-World,
      default_branch "master")
    0  refs/tags/simple-tag   created (before = 0000…)   no installation
    1  refs/tags/simple-tag   deleted (after = 0000…)     organization
    2  refs/tags/simple-tag   deleted
    3  refs/tags/simple-tag   deleted                     installation
    4  refs/heads/master      created, 1 commit, head_commit, sender, installation
    5  refs/heads/master      created, 1 commit, head_commit, sender, installation
    6  refs/tags/simple-tag   deleted                     organization
    -> a branch push is example 4 (or 5); there is no example of an ordinary
       (non-creating) branch push: set "created": false and a real "before" yourself.

pull_request  (number 2, head "changes" @ ec26c3e5…, base "master",
              repository Codertocat/Hello-World)
    opened       0 (no installation), 12, 13 (installation id 1), 14 (+ organization)
    synchronize  22 (installation; carries "before"/"after")
    reopened     18, 19 (+ organization)
    closed       3, 4 (+ organization); both have "merged": false (no merged example:
                 set pull_request.merged = true and merged_at yourself)
    (examples with installation have "installation": {"id": 1, ...})
    others       assigned 1-2, converted_to_draft 5-7, labeled 8-9, locked 10-11,
                 ready_for_review 15-17, review_request_removed 20,
                 review_requested 21, unassigned 23-24, unlabeled 25-26, unlocked 27-28
    The package lists more actions (auto_merge_*, dequeued, edited, enqueued, merged)
    that have no example.

ping  (no action; hook_id 109948940)
    0, 1, 2  hook.type "Repository", events ["*"], repository Octocoders/Hello-World
    3        hook.type "Organization", organization Octocoders, no repository

``python tests/doubles/github/webhooks.py list`` prints this inventory from the installed
package; ``python tests/doubles/github/webhooks.py show push 4`` prints one payload.

Standard library only.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "@octokit/webhooks-examples"
PACKAGE_DIR = HERE / "node_modules" / "@octokit" / "webhooks-examples"
INDEX = PACKAGE_DIR / "api.github.com" / "index.json"

PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened", "closed")


def package_version() -> str:
    return json.loads((PACKAGE_DIR / "package.json").read_text())["version"]


@functools.lru_cache(maxsize=1)
def _index() -> dict:
    if not INDEX.exists():
        raise FileNotFoundError(f"{INDEX} is missing: run `npm ci` in {HERE}")
    return {entry["name"]: entry for entry in json.loads(INDEX.read_text())}


def events() -> list:
    """Every event name the package has examples for."""
    return sorted(name for name, entry in _index().items() if entry.get("examples"))


def examples(event: str) -> list:
    """All example payloads of one event (deep copies)."""
    try:
        return copy.deepcopy(_index()[event]["examples"])
    except KeyError:
        raise KeyError(f"{PACKAGE} has no event {event!r}; it has {', '.join(events())}") from None


def example(event: str, action: str | None = None, *, installation: bool | None = None,
            organization: bool | None = None, ref_prefix: str | None = None) -> dict:
    """The first example of ``event`` that matches every filter given.

    installation / organization: require (True) or forbid (False) that key.
    ref_prefix: for push, e.g. "refs/heads/" for a branch push.
    """
    for payload in examples(event):
        if action is not None and payload.get("action") != action:
            continue
        if installation is not None and ("installation" in payload) != installation:
            continue
        if organization is not None and ("organization" in payload) != organization:
            continue
        if ref_prefix is not None and not str(payload.get("ref", "")).startswith(ref_prefix):
            continue
        return payload
    raise LookupError(
        f"no {event} example with action={action!r} installation={installation!r} "
        f"organization={organization!r} ref_prefix={ref_prefix!r}"
    )


def push() -> dict:
    """A branch push (refs/heads/master, 1 commit, with installation)."""
    return example("push", ref_prefix="refs/heads/", installation=True)


def pull_request(action: str = "opened") -> dict:
    """A pull_request event for opened / synchronize / reopened / closed, with installation."""
    if action not in PULL_REQUEST_ACTIONS:
        raise ValueError(f"pull_request action must be one of {PULL_REQUEST_ACTIONS}")
    return example("pull_request", action, installation=True, organization=False)


def ping() -> dict:
    """A repository hook's ping."""
    return example("ping")


def set_path(payload: dict, dotted: str, value):
    """Set payload["a"]["b"] = value for dotted "a.b" (keys must exist but the last)."""
    node = payload
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return payload


def body_bytes(payload: dict) -> bytes:
    """The body as GitHub sends it: compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature_256(body: bytes, secret: str | bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def headers(event: str, body: bytes, secret: str | bytes | None, delivery: str | None = None,
            hook_id: int = 109948940, target_type: str = "repository",
            target_id: int = 1296269) -> dict:
    """The headers GitHub puts on a webhook delivery."""
    out = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": str(hook_id),
        "X-GitHub-Hook-Installation-Target-ID": str(target_id),
        "X-GitHub-Hook-Installation-Target-Type": target_type,
    }
    if secret is not None:
        key = secret.encode() if isinstance(secret, str) else secret
        out["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        out["X-Hub-Signature-256"] = signature_256(body, key)
    return out


def describe(names=("push", "pull_request", "ping")) -> str:
    lines = [f"{PACKAGE} {package_version()}  {INDEX.relative_to(HERE)}"]
    for name in names:
        entry = _index()[name]
        lines.append(f"{name}: actions listed {entry.get('actions') or '-'}")
        for i, p in enumerate(entry["examples"]):
            bits = [p.get("action") or "-"]
            if "ref" in p:
                bits.append(p["ref"])
            if name == "ping":
                bits.append(f"hook.type={p['hook']['type']}")
            bits += [k for k in ("installation", "organization") if k in p]
            lines.append(f"  {i:2d} " + " ".join(bits))
    return "\n".join(lines)


def main(argv):
    if not argv or argv[0] == "list":
        print(describe(tuple(argv[1:]) or ("push", "pull_request", "ping")))
    elif argv[0] == "show" and len(argv) == 3:
        print(json.dumps(examples(argv[1])[int(argv[2])], indent=2))
    else:
        print("usage: webhooks.py list [EVENT...] | show EVENT INDEX", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
