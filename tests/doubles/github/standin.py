#!/usr/bin/env python3
"""GitHub REST API stand-in for stackgate's end-to-end tests.

Serves the operations stackgate calls, checked against GitHub's official OpenAPI
description (``openapi-subset.json``, cut from npm ``@octokit/openapi`` by
``make_subset.py``):

    POST  /repos/{owner}/{repo}/statuses/{sha}                  repos/create-commit-status
    GET   /repos/{owner}/{repo}/commits/{ref}/statuses          repos/list-commit-statuses-for-ref
    POST  /repos/{owner}/{repo}/issues/{issue_number}/comments  issues/create-comment
    PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}    issues/update-comment
    GET   /repos/{owner}/{repo}/issues/{issue_number}/comments  issues/list-comments
    POST  /repos/{owner}/{repo}/check-runs                      checks/create
    PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}       checks/update
    POST  /app/installations/{installation_id}/access_tokens    apps/create-installation-access-token
    GET   /repos/{owner}/{repo}                                 repos/get
    GET   /repos/{owner}/{repo}/branches/{branch}               repos/get-branch

With ``--git-root DIR`` it also serves the git repositories under DIR over smart HTTP
(``git http-backend``) at ``/_git/<path>``, as github.com serves ``/<owner>/<repo>.git``:
HTTP Basic auth whose password is an installation token the stand-in issued (live), or a
``--token`` one; anything else gets 401 ``WWW-Authenticate: Basic``. Each git request is
recorded with operation ``git`` and its ``auth``; ``/_standin/fail`` rules apply to them.

Run:  python tests/doubles/github/standin.py --port 0
It binds 127.0.0.1, prints one line ``LISTENING <port>`` and serves until killed.

Control endpoints (no auth):
    GET  /_standin/requests[?since=SEQ]   every API request seen, oldest first
    POST /_standin/reset                  forget requests, statuses, comments, check runs, tokens, rules
    POST /_standin/fail                   {"method","path_regex","status","times","headers",
                                           "message"|"body","delay_ms"} -> next N matches fail
    GET  /_standin/fail                   the failure rules and how many shots each has left
    POST /_standin/branches               {"owner","repo","branch","sha"} for repos/get-branch
    GET  /_standin/state                  statuses, comments, check runs, issued tokens (masked)

Needs the PyPI package ``jsonschema``; everything else is the standard library.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import json
import re
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = HERE / "openapi-subset.json"

DOCS = "https://docs.github.com/rest"
# The REST API version the OpenAPI description documents; --api-version adds more.
API_VERSIONS = ("2022-11-28",)
STATUS_DESCRIPTION_MAX = 140
STATUSES_PER_SHA_CONTEXT_MAX = 1000
COMMENT_BODY_MAX = 65536
# A check run's output.summary and output.text (the spec says so too; GitHub's 422 names the field).
CHECK_OUTPUT_MAX = 65535
# Annotations in one create or update request; more go through further updates.
ANNOTATIONS_PER_REQUEST_MAX = 50
# Only a GitHub App may write check runs.
CHECK_OPERATIONS = {"checks/create", "checks/update"}
CHECKS_APP_ONLY_MESSAGE = "You must authenticate via a GitHub App."
JWT_MAX_LIFETIME = 600
CLOCK_SKEW = 60

# The permission an installation token needs for each operation (any one of them).
OPERATION_PERMISSIONS = {
    "repos/create-commit-status": [("statuses", "write")],
    "repos/list-commit-statuses-for-ref": [("statuses", "read")],
    "issues/create-comment": [("issues", "write"), ("pull_requests", "write")],
    "issues/update-comment": [("issues", "write"), ("pull_requests", "write")],
    "issues/list-comments": [("issues", "read"), ("pull_requests", "read")],
    "checks/create": [("checks", "write")],
    "checks/update": [("checks", "write")],
    "repos/get": [("metadata", "read")],
    "repos/get-branch": [("contents", "read"), ("metadata", "read")],
}
DEFAULT_INSTALLATION_PERMISSIONS = {
    "checks": "write",
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "write",
}
# Extra path parameters that may span several segments (GitHub serves
# /branches/feature/x); the spec marks the others with x-multi-segment.
MULTI_SEGMENT = {"branch"}
# A `resource` name for 422 error entries, as GitHub reports them.
RESOURCE = {
    "repos/create-commit-status": "Status",
    "issues/create-comment": "IssueComment",
    "issues/update-comment": "IssueComment",
    "checks/create": "CheckRun",
    "checks/update": "CheckRun",
    "apps/create-installation-access-token": "InstallationAccessToken",
}

USER_AGENT_MESSAGE = (
    "Request forbidden by administrative rules. Please make sure your request has a "
    "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
    "#user-agent-required). Check https://developer.github.com for other possible causes.\n"
)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def legacy_node_id(kind: str, ident: int) -> str:
    """GitHub's legacy global node id, e.g. MDY6U3RhdHVzMQ== for Status 1."""
    return base64.b64encode(f"{len(kind):02d}:{kind}{ident}".encode()).decode()


# --------------------------------------------------------------------------- schemas


def openapi30_to_jsonschema(node):
    """OpenAPI 3.0 schema object -> JSON Schema draft 4 (``nullable`` made explicit)."""
    if isinstance(node, list):
        return [openapi30_to_jsonschema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: openapi30_to_jsonschema(v) for k, v in value.items()}
        elif key in ("example", "examples", "externalDocs", "xml", "discriminator"):
            continue
        else:
            out[key] = openapi30_to_jsonschema(value)
    if out.pop("nullable", False):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = types + (["null"] if "null" not in types else [])
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def _is_date_time(value):
    if not isinstance(value, str):
        return True
    return bool(_DATE_TIME.match(value))


@FORMATS.checks("uri")
def _is_uri(value):
    if not isinstance(value, str):
        return True
    parsed = urllib.parse.urlparse(value)
    return bool(parsed.scheme and (parsed.netloc or parsed.path))


def fill_required_nullables(schema, value):
    if not isinstance(schema, dict):
        return
    for sub in schema.get("allOf", []):
        fill_required_nullables(sub, value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value and props.get(name, {}).get("nullable"):
                value[name] = None
        for name, sub in props.items():
            if name in value:
                fill_required_nullables(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            fill_required_nullables(schema["items"], item)


class Spec:
    """The OpenAPI subset: routes, and a validator for each schema."""

    def __init__(self, path: Path):
        self.doc = json.loads(path.read_text())
        self.source = self.doc.get("x-stackgate-source", {})
        version = self.doc.get("openapi", "3.0.0")
        self.v31 = version.startswith("3.1")
        self.routes = []  # (method, regex, template, op)
        for template, item in self.doc["paths"].items():
            for method, op in item.items():
                if method not in ("get", "put", "post", "patch", "delete"):
                    continue
                multi = {
                    p["name"]
                    for p in op.get("parameters", [])
                    if p.get("in") == "path" and (p.get("x-multi-segment") or p["name"] in MULTI_SEGMENT)
                }
                pattern = re.sub(
                    r"\{(\w+)\}",
                    lambda m: f"(?P<{m.group(1)}>.+?)" if m.group(1) in multi else f"(?P<{m.group(1)}>[^/]+)",
                    template,
                )
                self.routes.append((method.upper(), re.compile(f"^{pattern}$"), template, op))
        # Literal segments first, so /issues/comments/{id} never loses to /issues/{n}/comments.
        self.routes.sort(key=lambda r: (-r[2].count("/"), r[2].count("{")))
        self._validators = {}

    def match(self, method: str, path: str):
        """-> (op, path params) or (None, None). A path that exists with another method is 404 too."""
        for m, rx, template, op in self.routes:
            if m != method:
                continue
            hit = rx.match(path)
            if hit:
                params = {k: urllib.parse.unquote(v) for k, v in hit.groupdict().items()}
                return op, params
        return None, None

    def validator(self, schema: dict):
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            if self.v31:
                v = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
            else:
                v = jsonschema.Draft4Validator(openapi30_to_jsonschema(schema), format_checker=FORMATS)
            self._validators[key] = (schema, v)  # keep schema alive so id() stays unique
            return v
        return v[1]

    @staticmethod
    def request_schema(op):
        body = op.get("requestBody")
        if not body:
            return None, False
        return body["content"]["application/json"]["schema"], bool(body.get("required"))

    @staticmethod
    def response_schema(op, status: int):
        resp = op["responses"].get(str(status))
        if not resp or "content" not in resp:
            return None
        return resp["content"].get("application/json", {}).get("schema")

    @staticmethod
    def response_example(op, status: int):
        content = op["responses"][str(status)]["content"]["application/json"]
        examples = content.get("examples") or {}
        for ex in examples.values():
            if "value" in ex:
                return copy.deepcopy(ex["value"])
        return copy.deepcopy(content.get("example"))

    def example_reply(self, op, status: int):
        """The spec's example reply, with required-but-nullable keys the example
        leaves out set to null (GitHub's own examples miss a few, e.g. `language`)."""
        value = self.response_example(op, status)
        fill_required_nullables(self.response_schema(op, status), value)
        return value

    def error_schema(self, status: int):
        """GitHub's shared error schemas, for statuses an operation does not list."""
        wanted = "Validation Error" if status == 422 else "Basic Error"
        for _m, _rx, _t, op in self.routes:
            for resp in op["responses"].values():
                schema = resp.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("title") == wanted:
                    return schema
        return None

    def validate_response(self, op, status: int, body) -> list:
        schema = self.response_schema(op, status) if op is not None else None
        if schema is None and status >= 400:
            schema = self.error_schema(status)
        if schema is None:
            return [] if body is None else [f"no JSON response schema for {status}"]
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in self.validator(schema).iter_errors(body)
        ]


# --------------------------------------------------------------------------- JWT / RSA


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _der_read(data: bytes, pos: int):
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, data[pos:pos + length], pos + length


def _der_children(data: bytes):
    pos, out = 0, []
    while pos < len(data):
        tag, value, pos = _der_read(data, pos)
        out.append((tag, value))
    return out


def load_rsa_public_numbers(pem_text: str):
    """(n, e) from a PEM public key (SPKI or PKCS#1) or private key (PKCS#1 or PKCS#8)."""
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", pem_text, re.S)
    if not m:
        raise ValueError("no PEM block found")
    label, der = m.group(1), base64.b64decode("".join(m.group(2).split()))
    _tag, seq, _ = _der_read(der, 0)
    items = _der_children(seq)
    if label == "PUBLIC KEY":  # SubjectPublicKeyInfo
        bitstring = items[1][1][1:]  # skip the unused-bits byte
        _t, rsa_seq, _ = _der_read(bitstring, 0)
        items = _der_children(rsa_seq)
        return int.from_bytes(items[0][1], "big"), int.from_bytes(items[1][1], "big")
    if label == "RSA PUBLIC KEY":
        return int.from_bytes(items[0][1], "big"), int.from_bytes(items[1][1], "big")
    if label == "PRIVATE KEY":  # PKCS#8 wraps PKCS#1
        _t, rsa_seq, _ = _der_read(items[2][1], 0)
        items = _der_children(rsa_seq)
        label = "RSA PRIVATE KEY"
    if label == "RSA PRIVATE KEY":
        return int.from_bytes(items[1][1], "big"), int.from_bytes(items[2][1], "big")
    raise ValueError(f"unsupported PEM block {label!r}")


_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_verify(signing_input: bytes, signature: bytes, n: int, e: int) -> bool:
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    t = _SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return secrets.compare_digest(em, expected)


def check_app_jwt(token: str, public_key, app_id):
    """-> (claims, None) or (None, GitHub's 401 message)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None, "A JSON web token could not be decoded"
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        return None, "A JSON web token could not be decoded"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None, "A JSON web token could not be decoded"
    if header.get("alg") != "RS256":
        return None, "A JSON web token could not be decoded"
    now = int(time.time())
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat > now + CLOCK_SKEW:
        return None, ("'Issued at' claim ('iat') must be an Integer representing the time "
                      "that the assertion was issued.")
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
        return None, ("'Expiration time' claim ('exp') must be a numeric value representing "
                      "the future time at which the assertion expires.")
    if exp - iat > JWT_MAX_LIFETIME or exp > now + JWT_MAX_LIFETIME + CLOCK_SKEW:
        return None, "'Expiration time' claim ('exp') is too far in the future."
    if iss is None or (not isinstance(iss, (int, str))) or isinstance(iss, bool) or iss == "":
        return None, "'Issuer' claim ('iss') must be an Integer"
    if app_id is not None and str(iss) != str(app_id):
        return None, "Integration not found"
    if public_key is not None:
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        if not rs256_verify(signing_input, signature, *public_key):
            return None, "A JSON web token could not be decoded"
    return claims, None


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        return isinstance(json.loads(_b64url_decode(parts[0])), dict)
    except (ValueError, UnicodeDecodeError):
        return False


# --------------------------------------------------------------------------- state


class Reply(Exception):
    """Answer now with this status, body and headers."""

    def __init__(self, status: int, body=None, headers=None, reason=None):
        super().__init__(reason or f"{status}")
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.reason = reason


def error_body(status: int, message: str, documentation_url: str = DOCS, **extra):
    body = {"message": message, "documentation_url": documentation_url, "status": str(status)}
    body.update(extra)
    return body


def validation_failed(errors, doc=DOCS):
    reason = "Validation Failed: " + "; ".join(
        e.get("message") or f"{e.get('field')} {e.get('code')}" for e in errors
    )
    return Reply(422, error_body(422, "Validation Failed", doc, errors=errors), reason=reason)


DEFAULT_FAIL_MESSAGES = {
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: ("We couldn't respond to your request in time. Sorry about that. Please try "
          "resubmitting your request and contact us if the problem persists."),
    429: "API rate limit exceeded",
}


class State:
    def __init__(self, config):
        self.config = config
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = []
            self.seq = 0
            self.status_seq = 0
            self.comment_seq = 0
            self.check_run_seq = 0
            self.check_runs = {}  # id -> {"owner","repo","check_run", "annotations": [...]}
            self.statuses = {}  # (owner, repo, sha) lower -> [status], oldest first
            self.comments = {}  # id -> {"owner","repo","issue_number","comment"}
            self.tokens = {}  # token -> {"installation_id","permissions","expires"}
            self.branches = {}  # (owner, repo, branch) lower -> sha
            self.rules = []
            self.rule_seq = 0
            self.rate_used = {}


class Config:
    def __init__(self, args):
        self.tokens = set(args.token or [])
        self.app_id = args.app_id
        self.public_key = None
        if args.app_public_key:
            self.public_key = load_rsa_public_numbers(Path(args.app_public_key).read_text())
        self.installation_ids = set(args.installation_id or [])
        self.installation_permissions = (
            json.loads(args.installation_permissions)
            if args.installation_permissions
            else dict(DEFAULT_INSTALLATION_PERMISSIONS)
        )
        self.app_slug = args.app_slug
        self.default_branch = args.default_branch
        self.token_lifetime = args.token_lifetime
        self.verbose = args.verbose
        self.api_versions = set(API_VERSIONS) | set(args.api_version or [])
        self.git_root = Path(args.git_root).resolve() if args.git_root else None


# --------------------------------------------------------------------------- handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    # Set on the class by make_server().
    spec: Spec = None
    state: State = None
    config: Config = None

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # noqa: D401 - quiet unless --verbose
        if self.config.verbose:
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    # -- plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body, headers=None):
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            ctype = "text/plain; charset=utf-8"
        elif body is None:
            data, ctype = b"", None
        else:
            data = json.dumps(body, indent=2).encode()
            ctype = "application/json; charset=utf-8"
        self.send_response(status)
        sent = {k.lower() for k in (headers or {})}
        if ctype and "content-type" not in sent:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _dispatch(self):
        raw = self._read_body()
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_standin/"):
            try:
                status, body = self._control(url, raw)
            except Reply as r:
                status, body = r.status, r.body
            self._send(status, body)
            return
        if url.path.startswith("/_git/") and self.config.git_root is not None:
            self._git(url, raw)
            return
        self._api(url, raw)

    # -- git over smart HTTP

    def _git_auth(self) -> str:
        """How a git request authenticated: installation_token, token, none or refused."""
        header = (self.headers.get("Authorization") or "").strip()
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "none" if not header else "refused"
        try:
            _user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "refused"
        with self.state.lock:
            issued = self.state.tokens.get(password)
        if issued is not None:
            return "installation_token" if issued["expires"] > now_utc() else "refused"
        return "token" if password in self.config.tokens else "refused"

    def _git(self, url, raw: bytes):
        auth = self._git_auth()
        record = {"seq": 0, "time": iso(now_utc()), "method": self.command, "path": url.path,
                  "operation": "git", "auth": auth, "valid": True, "injected": False,
                  "status": None}
        rule = self._take_rule(self.command, url.path)
        if rule is not None:
            record["injected"] = True
            if rule["delay_ms"]:
                time.sleep(rule["delay_ms"] / 1000)
            status, out_headers, data = rule["status"], dict(rule["headers"]), b"injected failure"
        elif auth in ("none", "refused"):
            status, data = 401, b"Invalid username or token.\n"
            out_headers = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        else:
            env = dict(os.environ, GIT_PROJECT_ROOT=str(self.config.git_root),
                       GIT_HTTP_EXPORT_ALL="1", PATH_INFO=url.path[len("/_git"):],
                       QUERY_STRING=url.query, REQUEST_METHOD=self.command,
                       CONTENT_TYPE=self.headers.get("Content-Type", ""),
                       CONTENT_LENGTH=str(len(raw)), REMOTE_USER="x-access-token",
                       REMOTE_ADDR="127.0.0.1")
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            out = subprocess.run(["git", "http-backend"], input=raw, env=env,
                                 capture_output=True, timeout=60).stdout
            head, _, data = out.partition(b"\r\n\r\n")
            if not _:
                head, _, data = out.partition(b"\n\n")
            status, out_headers = 200, {}
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    out_headers[name.strip()] = value.strip()
        record["status"] = status
        with self.state.lock:
            self.state.seq += 1
            record["seq"] = self.state.seq
            self.state.requests.append(record)
        self.send_response(status)
        for k, v in out_headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # -- control endpoints

    def _control(self, url, raw: bytes):
        st = self.state
        name = url.path[len("/_standin/"):].rstrip("/")
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise Reply(400, {"message": f"control body is not JSON: {exc}"})
        if name == "requests" and self.command == "GET":
            since = int(query.get("since", 0))
            with st.lock:
                return 200, [r for r in st.requests if r["seq"] > since]
        if name == "reset" and self.command == "POST":
            st.reset()
            return 200, {"reset": True}
        if name == "fail" and self.command == "GET":
            with st.lock:
                return 200, list(st.rules)
        if name == "fail" and self.command == "POST":
            return 201, self._add_rule(payload)
        if name == "branches" and self.command == "POST":
            for key in ("owner", "repo", "branch", "sha"):
                if not isinstance(payload.get(key), str) or not payload[key]:
                    raise Reply(400, {"message": f"branches: '{key}' (non-empty string) is required"})
            with st.lock:
                st.branches[(payload["owner"].lower(), payload["repo"].lower(), payload["branch"])] = payload["sha"]
            return 201, payload
        if name == "state" and self.command == "GET":
            with st.lock:
                return 200, {
                    "statuses": [
                        {"owner": k[0], "repo": k[1], "sha": k[2], "statuses": v}
                        for k, v in st.statuses.items()
                    ],
                    "comments": [dict(v) for _k, v in sorted(st.comments.items())],
                    "check_runs": [copy.deepcopy(v) for _k, v in sorted(st.check_runs.items())],
                    "tokens": [
                        {"token": t[:8] + "…", "installation_id": v["installation_id"],
                         "permissions": v["permissions"], "expires_at": iso(v["expires"])}
                        for t, v in st.tokens.items()
                    ],
                    "branches": [
                        {"owner": k[0], "repo": k[1], "branch": k[2], "sha": v}
                        for k, v in st.branches.items()
                    ],
                }
        raise Reply(404, {"message": f"no control endpoint {self.command} {url.path}"})

    def _add_rule(self, p):
        if not isinstance(p, dict):
            raise Reply(400, {"message": "fail: body must be a JSON object"})
        status = p.get("status")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise Reply(400, {"message": "fail: 'status' must be an HTTP status code"})
        try:
            rx = re.compile(p.get("path_regex", ".*"))
        except re.error as exc:
            raise Reply(400, {"message": f"fail: bad path_regex: {exc}"})
        times = p.get("times", 1)
        if not isinstance(times, int) or times < 1:
            raise Reply(400, {"message": "fail: 'times' must be a positive integer"})
        headers = p.get("headers") or {}
        if not isinstance(headers, dict):
            raise Reply(400, {"message": "fail: 'headers' must be an object"})
        delay = p.get("delay_ms", 0)
        if not isinstance(delay, int) or not 0 <= delay <= 30000:
            raise Reply(400, {"message": "fail: 'delay_ms' must be 0..30000"})
        with self.state.lock:
            self.state.rule_seq += 1
            rule = {
                "id": self.state.rule_seq,
                "method": (p.get("method") or "*").upper(),
                "path_regex": rx.pattern,
                "status": status,
                "times": times,
                "remaining": times,
                "headers": {str(k): str(v) for k, v in headers.items()},
                "message": p.get("message"),
                "body": p.get("body"),
                "delay_ms": delay,
            }
            self.state.rules.append(rule)
        return rule

    def _take_rule(self, method: str, path: str):
        with self.state.lock:
            for rule in self.state.rules:
                if rule["remaining"] <= 0:
                    continue
                if rule["method"] not in ("*", method):
                    continue
                if not re.search(rule["path_regex"], path):
                    continue
                rule["remaining"] -= 1
                return dict(rule)
        return None

    @staticmethod
    def _injected_reply(rule, request_id: str):
        status, headers = rule["status"], dict(rule["headers"])
        lower = {k.lower(): v for k, v in headers.items()}
        if rule["body"] is not None:
            body = rule["body"]
        else:
            message = rule["message"]
            doc = DOCS
            if message is None:
                if status in (403, 429) and "retry-after" in lower:
                    message = (
                        "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again. If you reach out to GitHub Support for help, "
                        f"please include the request ID {request_id}."
                    )
                    doc = ("https://docs.github.com/free-pro-team@latest/rest/overview/"
                           "rate-limits-for-the-rest-api#about-secondary-rate-limits")
                elif status in (403, 429) and lower.get("x-ratelimit-remaining") == "0":
                    message = "API rate limit exceeded for installation."
                    doc = ("https://docs.github.com/rest/overview/"
                           "rate-limits-for-the-rest-api#about-the-rate-limit")
                else:
                    message = DEFAULT_FAIL_MESSAGES.get(status, "Injected failure")
            body = error_body(status, message, doc)
        return status, body, headers

    # -- API

    def _api(self, url, raw: bytes):
        st = self.state
        request_id = f"{secrets.token_hex(2).upper()}:{secrets.token_hex(3).upper()}:{secrets.token_hex(4).upper()}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth_header = headers.get("authorization")
        if auth_header is not None:
            # Keep only the scheme; a bare credential without one is never echoed.
            words = auth_header.strip().split(None, 1)
            headers["authorization"] = words[0] if len(words) == 2 else "(no scheme)"
        record = {
            "seq": 0,
            "time": iso(now_utc()),
            "method": self.command,
            "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            "operation": None,
            "path_params": {},
            "headers": headers,
            "auth": "none",
            "body": None,
            "status": None,
            "valid": False,
            "errors": [],
            "warnings": [],
            "injected": False,
            "response_body": None,
            "response_valid": None,
        }
        if raw:
            try:
                record["body"] = json.loads(raw)
            except ValueError:
                record["body"] = raw.decode("utf-8", "replace")
        ctx = {"raw": raw, "url": url, "auth": auth_header, "record": record, "request_id": request_id}

        op, params = self.spec.match(self.command if self.command != "HEAD" else "GET", url.path)
        if op is not None:
            record["operation"] = op["operationId"]
            record["path_params"] = params

        try:
            effect = self._validate(op, params, ctx)
            record["valid"] = True
            rule = self._take_rule(self.command, url.path)
            if rule is not None:
                record["injected"] = True
                if rule["delay_ms"]:
                    time.sleep(rule["delay_ms"] / 1000)
                status, body, extra = self._injected_reply(rule, request_id)
                raise Reply(status, body, extra, reason=f"injected failure rule {rule['id']}")
            status, body, extra = effect()
        except Reply as r:
            status, body, extra = r.status, r.body, dict(r.headers)
            if not record["injected"] and r.reason:
                record["errors"].append(r.reason)
            if record["valid"] is True and not record["injected"] and status >= 400:
                record["valid"] = False

        if isinstance(body, (dict, list)) and not record["injected"]:
            problems = self.spec.validate_response(op, status, body)
            record["response_valid"] = not problems
            if problems:
                name = op["operationId"] if op else url.path
                record["warnings"].append("stand-in reply does not match the response schema: " + "; ".join(problems[:5]))
                sys.stderr.write(f"standin: BUG: reply to {name} {status} breaks its schema: {problems[:5]}\n")
        record["status"] = status
        record["response_body"] = body

        out_headers = self._common_headers(request_id, ctx)
        out_headers.update(extra)
        with st.lock:
            st.seq += 1
            record["seq"] = st.seq
            st.requests.append(record)
        self._send(status, body, out_headers)

    def _common_headers(self, request_id, ctx):
        key = ctx.get("token") or "anonymous"
        with self.state.lock:
            used = self.state.rate_used.get(key, 0) + 1
            self.state.rate_used[key] = used
        limit = 5000 if key != "anonymous" else 60
        return {
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": ctx.get("api_version", API_VERSIONS[0]),
            "X-GitHub-Request-Id": request_id,
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": max(0, limit - used),
            "X-RateLimit-Reset": int(time.time()) + 3600,
            "X-RateLimit-Used": used,
            "X-RateLimit-Resource": "core",
        }

    # -- validation (no side effects); returns the effect to run

    def _validate(self, op, params, ctx):
        record = ctx["record"]
        if not self.headers.get("User-Agent"):
            raise Reply(403, USER_AGENT_MESSAGE, reason="no User-Agent header")
        if op is None:
            raise Reply(404, error_body(404, "Not Found"), reason=f"no such route {self.command} {ctx['url'].path}")
        op_id = op["operationId"]
        doc = op.get("externalDocs", {}).get("url", DOCS)

        # Accept: optional, but it must allow JSON.
        accept = self.headers.get("Accept")
        if accept is None:
            record["warnings"].append("no Accept header (GitHub recommends application/vnd.github+json)")
        elif not re.search(r"(\*/\*|application/\*|application/json|application/vnd\.github)", accept):
            raise Reply(415, error_body(415, f"Unsupported 'Accept' header: {accept!r}. Must accept 'application/json'.", doc),
                        reason=f"Accept {accept!r} does not allow JSON")
        version = self.headers.get("X-GitHub-Api-Version")
        if version is not None:
            if version not in self.config.api_versions:
                raise Reply(400, error_body(400, f"The API version {version!r} is not supported.",
                                            "https://docs.github.com/rest/overview/api-versions"),
                            reason=f"unsupported X-GitHub-Api-Version {version!r}")
            ctx["api_version"] = version

        self._authenticate(op_id, params, ctx)

        # Path parameters.
        for p in op.get("parameters", []):
            if p.get("in") != "path":
                continue
            value = params.get(p["name"])
            if p.get("schema", {}).get("type") == "integer":
                if value is None or not re.fullmatch(r"[0-9]+", value):
                    raise Reply(404, error_body(404, "Not Found", doc),
                                reason=f"path parameter {p['name']}={value!r} is not an integer")
                params[p["name"]] = int(value)
            elif not value:
                raise Reply(404, error_body(404, "Not Found", doc), reason=f"empty path parameter {p['name']}")

        # Query parameters: GitHub ignores unknown ones and falls back on defaults.
        query = {}
        for p in op.get("parameters", []):
            if p.get("in") != "query" or p["name"] not in record["query"]:
                continue
            value = record["query"][p["name"]]
            schema = p.get("schema", {})
            if schema.get("type") == "integer":
                if re.fullmatch(r"-?[0-9]+", value):
                    query[p["name"]] = int(value)
                else:
                    record["warnings"].append(f"query {p['name']}={value!r} is not an integer; GitHub uses the default")
            elif schema.get("format") == "date-time" and not _DATE_TIME.match(value):
                raise validation_failed([{"resource": "Search", "field": p["name"], "code": "invalid"}], doc)
            else:
                query[p["name"]] = value
        ctx["query"] = query

        # Request body.
        schema, required = self.spec.request_schema(op)
        body = None
        if schema is not None and self.command != "GET":
            raw = ctx["raw"]
            if not raw.strip():
                body = {}
                if required:
                    record["warnings"].append("empty request body")
            else:
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise Reply(400, error_body(400, "Problems parsing JSON", doc), reason="request body is not JSON")
                if not isinstance(body, dict):
                    raise Reply(400, error_body(400, "Body should be a JSON object", doc),
                                reason="request body is not a JSON object")
            errors = []
            for err in sorted(self.spec.validator(schema).iter_errors(body), key=lambda e: list(e.path)):
                field = ".".join(map(str, err.absolute_path))
                if err.validator == "required":
                    missing = re.match(r"'([^']+)' is a required property", err.message)
                    field = ".".join(filter(None, [field, missing.group(1) if missing else ""]))
                    errors.append({"resource": RESOURCE.get(op_id, "Resource"), "code": "missing_field", "field": field})
                else:
                    errors.append({"resource": RESOURCE.get(op_id, "Resource"), "code": "invalid",
                                   "field": field, "message": f"{field or 'body'}: {err.message}"})
            if errors:
                raise validation_failed(errors, doc)
        ctx["body"] = body

        handler = getattr(self, "_op_" + op_id.replace("/", "_").replace("-", "_"))
        return handler(params, ctx, doc)

    def _authenticate(self, op_id, params, ctx):
        record = ctx["record"]
        header = ctx["auth"]
        if header is None or not header.strip():
            raise Reply(401, error_body(401, "Requires authentication"), reason="no Authorization header")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token or " " in token:
            record["auth"] = "invalid"
            raise Reply(401, error_body(401, "Bad credentials"),
                        reason=f"Authorization scheme {record['headers'].get('authorization')!r} "
                               "is not 'token' or 'Bearer' followed by one credential")
        ctx["token"] = token

        if op_id == "apps/create-installation-access-token":
            record["auth"] = "jwt"
            if scheme.lower() != "bearer" or not looks_like_jwt(token):
                raise Reply(401, error_body(401, "A JSON web token could not be decoded"),
                            reason="the access-token route needs 'Authorization: Bearer <app JWT>'")
            claims, problem = check_app_jwt(token, self.config.public_key, self.config.app_id)
            if problem:
                raise Reply(401, error_body(401, problem), reason=f"app JWT rejected: {problem}")
            ctx["jwt_claims"] = claims
            return

        if looks_like_jwt(token):
            record["auth"] = "jwt"
            raise Reply(401, error_body(401, "Bad credentials"),
                        reason="an app JWT was sent to an installation route; use an installation access token")
        with self.state.lock:
            issued = self.state.tokens.get(token)
        if issued is not None:
            record["auth"] = "installation_token"
            if issued["expires"] <= now_utc():
                raise Reply(401, error_body(401, "Bad credentials"), reason="installation token has expired")
            grants = OPERATION_PERMISSIONS.get(op_id, [])
            rank = {"read": 1, "write": 2, "admin": 3}
            if grants and not any(rank.get(issued["permissions"].get(p), 0) >= rank[lvl] for p, lvl in grants):
                raise Reply(403, error_body(403, "Resource not accessible by integration"),
                            reason=f"token lacks {' or '.join(f'{p}:{lvl}' for p, lvl in grants)}")
            ctx["actor"] = "bot"
            return
        record["auth"] = "token"
        if self.config.tokens and token not in self.config.tokens:
            raise Reply(401, error_body(401, "Bad credentials"), reason="token is not one the stand-in knows")
        ctx["actor"] = "user"
        if op_id in CHECK_OPERATIONS:
            raise Reply(403, error_body(403, CHECKS_APP_ONLY_MESSAGE, "https://docs.github.com/rest/checks/runs"),
                        reason="check runs need a GitHub App installation token, not a personal token")

    # -- response builders

    def _base(self):
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        return f"http://{host}"

    def _rebase(self, obj, owner=None, repo=None):
        """Point an example's URLs at this stand-in and at owner/repo."""
        text = json.dumps(obj)
        base = self._base()
        if owner and repo:
            text = text.replace("https://api.github.com/repos/octocat/Hello-World", f"{base}/repos/{owner}/{repo}")
            text = text.replace("https://github.com/octocat/Hello-World", f"https://github.com/{owner}/{repo}")
            text = text.replace('"octocat/Hello-World"', json.dumps(f"{owner}/{repo}"))
        text = text.replace("https://api.github.com", base)
        return json.loads(text)

    def _actor(self, ctx, template_user):
        user = self._rebase(copy.deepcopy(template_user))
        if ctx.get("actor") == "bot":
            slug = self.config.app_slug
            login = f"{slug}[bot]"
            quoted = urllib.parse.quote(login)
            base = self._base()
            user.update({
                "login": login,
                "id": 41898282,
                "node_id": legacy_node_id("Bot", 41898282),
                "avatar_url": f"https://avatars.githubusercontent.com/in/{self.config.app_id or 1}?v=4",
                "gravatar_id": "",
                "url": f"{base}/users/{quoted}",
                "html_url": f"https://github.com/apps/{slug}",
                "followers_url": f"{base}/users/{quoted}/followers",
                "following_url": f"{base}/users/{quoted}/following{{/other_user}}",
                "gists_url": f"{base}/users/{quoted}/gists{{/gist_id}}",
                "starred_url": f"{base}/users/{quoted}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{base}/users/{quoted}/subscriptions",
                "organizations_url": f"{base}/users/{quoted}/orgs",
                "repos_url": f"{base}/users/{quoted}/repos",
                "events_url": f"{base}/users/{quoted}/events{{/privacy}}",
                "received_events_url": f"{base}/users/{quoted}/received_events",
                "type": "Bot",
                "site_admin": False,
            })
        return user

    def _paginate(self, items, ctx, path):
        per_page = ctx["query"].get("per_page", 30)
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page = max(ctx["query"].get("page", 1), 1)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(p, rel):
            q = dict(ctx["record"]["query"])
            q.update({"per_page": str(per_page), "page": str(p)})
            return f'<{self._base()}{path}?{urllib.parse.urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # -- operations

    def _op_repos_create_commit_status(self, params, ctx, doc):
        op = self._op("repos/create-commit-status")
        body = ctx["body"]
        owner, repo, sha = params["owner"], params["repo"], params["sha"]
        errors = []
        description = body.get("description")
        if isinstance(description, str) and len(description) > STATUS_DESCRIPTION_MAX:
            errors.append({"resource": "Status", "code": "custom", "field": "description",
                           "message": f"description is too long (maximum is {STATUS_DESCRIPTION_MAX} characters)"})
        context = body.get("context", "default")
        if isinstance(context, str) and not context.strip():
            errors.append({"resource": "Status", "code": "custom", "field": "context",
                           "message": "context can't be blank"})
        target_url = body.get("target_url")
        if isinstance(target_url, str) and target_url and not re.match(r"^https?://[^\s/]+", target_url):
            errors.append({"resource": "Status", "code": "custom", "field": "target_url",
                           "message": "target_url must use http(s) scheme"})
        if errors:
            raise validation_failed(errors, doc)
        if not re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", sha):
            raise Reply(422, error_body(422, f"No commit found for SHA: {sha}", doc),
                        reason=f"{sha!r} is not a full commit SHA")

        def effect():
            st = self.state
            key = (owner.lower(), repo.lower(), sha.lower())
            with st.lock:
                same = [s for s in st.statuses.get(key, []) if s["context"].lower() == context.lower()]
                if len(same) >= STATUSES_PER_SHA_CONTEXT_MAX:
                    raise validation_failed([{"resource": "Status", "code": "custom", "field": "context",
                                              "message": "This SHA and context has reached the maximum number of statuses."}], doc)
                st.status_seq += 1
                ident = st.status_seq
                stamp = iso(now_utc())
                status = self._rebase(self.spec.example_reply(op, 201), owner, repo)
                status.update({
                    "url": f"{self._base()}/repos/{owner}/{repo}/statuses/{sha}",
                    "id": ident,
                    "node_id": legacy_node_id("Status", ident),
                    "state": body["state"],
                    "description": description,
                    "target_url": target_url,
                    "context": context,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "creator": self._actor(ctx, status["creator"]),
                })
                st.statuses.setdefault(key, []).append(status)
            return 201, copy.deepcopy(status), {"Location": status["url"]}

        return effect

    def _op_repos_list_commit_statuses_for_ref(self, params, ctx, doc):
        owner, repo, ref = params["owner"], params["repo"], params["ref"]

        def effect():
            st = self.state
            with st.lock:
                sha = ref
                for prefix in ("refs/heads/", "heads/", ""):
                    if ref.startswith(prefix):
                        sha = st.branches.get((owner.lower(), repo.lower(), ref[len(prefix):]), sha)
                        if sha != ref:
                            break
                items = list(reversed(st.statuses.get((owner.lower(), repo.lower(), sha.lower()), [])))
            chunk, headers = self._paginate(copy.deepcopy(items), ctx, ctx["url"].path)
            return 200, chunk, headers

        return effect

    def _comment_view(self, comment, ctx):
        """Apply the media type (raw / text / html / full) the way GitHub does."""
        out = copy.deepcopy(comment)
        accept = self.headers.get("Accept") or ""
        m = re.search(r"application/vnd\.github(?:\.[\w-]+)?\.(raw|text|html|full)(?:\+json)?", accept)
        mode = m.group(1) if m else "raw"
        body = out.get("body") or ""
        text = body
        rendered = "<p>" + html.escape(body).replace("\n", "<br>\n") + "</p>"
        if mode in ("text", "full"):
            out["body_text"] = text
        if mode in ("html", "full"):
            out["body_html"] = rendered
        if mode in ("text", "html"):
            out.pop("body", None)
        return out

    def _check_comment_body(self, body, doc):
        text = body.get("body")
        if isinstance(text, str) and not text.strip():
            raise validation_failed([{"resource": "IssueComment", "code": "missing_field", "field": "body"}], doc)
        if isinstance(text, str) and len(text) > COMMENT_BODY_MAX:
            raise validation_failed([{"resource": "IssueComment", "code": "custom", "field": "body",
                                      "message": f"body is too long (maximum is {COMMENT_BODY_MAX} characters)"}], doc)

    def _op_issues_create_comment(self, params, ctx, doc):
        op = self._op("issues/create-comment")
        owner, repo, number = params["owner"], params["repo"], params["issue_number"]
        self._check_comment_body(ctx["body"], doc)

        def effect():
            st = self.state
            with st.lock:
                st.comment_seq += 1
                ident = st.comment_seq
                stamp = iso(now_utc())
                base = self._base()
                c = self._rebase(self.spec.example_reply(op, 201), owner, repo)
                c.update({
                    "id": ident,
                    "node_id": legacy_node_id("IssueComment", ident),
                    "url": f"{base}/repos/{owner}/{repo}/issues/comments/{ident}",
                    "html_url": f"https://github.com/{owner}/{repo}/issues/{number}#issuecomment-{ident}",
                    "issue_url": f"{base}/repos/{owner}/{repo}/issues/{number}",
                    "body": ctx["body"]["body"],
                    "user": self._actor(ctx, c["user"]),
                    "created_at": stamp,
                    "updated_at": stamp,
                    "author_association": "NONE" if ctx.get("actor") == "bot" else c.get("author_association", "OWNER"),
                    "reactions": {"url": f"{base}/repos/{owner}/{repo}/issues/comments/{ident}/reactions",
                                  "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0,
                                  "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0},
                })
                st.comments[ident] = {"owner": owner, "repo": repo, "issue_number": number, "comment": c}
            return 201, self._comment_view(c, ctx), {"Location": c["url"]}

        return effect

    def _op_issues_update_comment(self, params, ctx, doc):
        owner, repo, ident = params["owner"], params["repo"], params["comment_id"]
        self._check_comment_body(ctx["body"], doc)

        def effect():
            st = self.state
            with st.lock:
                entry = st.comments.get(ident)
                if entry is None or (entry["owner"].lower(), entry["repo"].lower()) != (owner.lower(), repo.lower()):
                    raise Reply(404, error_body(404, "Not Found", doc), reason=f"no comment {ident} in {owner}/{repo}")
                entry["comment"]["body"] = ctx["body"]["body"]
                entry["comment"]["updated_at"] = iso(now_utc())
                c = copy.deepcopy(entry["comment"])
            return 200, self._comment_view(c, ctx), {}

        return effect

    def _op_issues_list_comments(self, params, ctx, doc):
        owner, repo, number = params["owner"], params["repo"], params["issue_number"]

        def effect():
            st = self.state
            since = ctx["query"].get("since")
            with st.lock:
                items = [
                    copy.deepcopy(e["comment"])
                    for _i, e in sorted(st.comments.items())
                    if (e["owner"].lower(), e["repo"].lower(), e["issue_number"]) == (owner.lower(), repo.lower(), number)
                ]
            if since:
                cut = parse_iso(since)
                items = [c for c in items if parse_iso(c["updated_at"]) >= cut]
            chunk, headers = self._paginate(items, ctx, ctx["url"].path)
            return 200, [self._comment_view(c, ctx) for c in chunk], headers

        return effect

    # -- check runs

    def _check_run_rules(self, body, doc, creating):
        """What GitHub enforces on a check run that the spec does not say (or says only in prose)."""
        errors = []
        output = body.get("output") or {}
        for field in ("summary", "text"):
            value = output.get(field)
            if isinstance(value, str) and len(value) > CHECK_OUTPUT_MAX:
                errors.append({"resource": "CheckRun", "code": "custom", "field": f"output.{field}",
                               "message": f"output.{field} is too long (maximum is {CHECK_OUTPUT_MAX} characters)"})
        annotations = output.get("annotations") or []
        if len(annotations) > ANNOTATIONS_PER_REQUEST_MAX:
            errors.append({"resource": "CheckRun", "code": "custom", "field": "output.annotations",
                           "message": f"at most {ANNOTATIONS_PER_REQUEST_MAX} annotations per request"})
        for i, a in enumerate(annotations):
            start, end = a.get("start_line"), a.get("end_line")
            if isinstance(start, int) and isinstance(end, int) and start > end:
                errors.append({"resource": "CheckRun", "code": "custom", "field": f"output.annotations[{i}].start_line",
                               "message": "start_line must be less than or equal to end_line"})
            if isinstance(start, int) and start < 1:
                errors.append({"resource": "CheckRun", "code": "custom", "field": f"output.annotations[{i}].start_line",
                               "message": "start_line must be a line number (1 or more)"})
            if ("start_column" in a or "end_column" in a) and start != end:
                errors.append({"resource": "CheckRun", "code": "custom", "field": f"output.annotations[{i}]",
                               "message": "start_column and end_column only when start_line equals end_line"})
        if creating and body.get("status") == "completed" and "conclusion" not in body:
            errors.append({"resource": "CheckRun", "code": "missing_field", "field": "conclusion"})
        if errors:
            raise validation_failed(errors, doc)

    def _check_run_reply(self, entry):
        run = copy.deepcopy(entry["check_run"])
        run["output"]["annotations_count"] = len(entry["annotations"])
        return run

    def _op_checks_create(self, params, ctx, doc):
        op = self._op("checks/create")
        owner, repo = params["owner"], params["repo"]
        body = ctx["body"]
        self._check_run_rules(body, doc, creating=True)
        sha = body["head_sha"]
        if not re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", sha):
            raise Reply(422, error_body(422, f"No commit found for SHA: {sha}", doc),
                        reason=f"{sha!r} is not a full commit SHA")

        def effect():
            st = self.state
            with st.lock:
                st.check_run_seq += 1
                ident = st.check_run_seq
                stamp = iso(now_utc())
                base = self._base()
                run = self._rebase(self.spec.example_reply(op, 201), owner, repo)
                conclusion = body.get("conclusion")
                status = "completed" if conclusion else body.get("status", "queued")
                output = body.get("output") or {}
                run.update({
                    "id": ident,
                    "node_id": legacy_node_id("CheckRun", ident),
                    "head_sha": sha,
                    "name": body["name"],
                    "url": f"{base}/repos/{owner}/{repo}/check-runs/{ident}",
                    "html_url": f"https://github.com/{owner}/{repo}/runs/{ident}",
                    "details_url": body.get("details_url"),
                    "external_id": body.get("external_id"),
                    "status": status,
                    "conclusion": conclusion,
                    "started_at": body.get("started_at") or stamp,
                    "completed_at": body.get("completed_at") or (stamp if status == "completed" else None),
                    "output": {
                        "title": output.get("title"),
                        "summary": output.get("summary"),
                        "text": output.get("text"),
                        "annotations_count": 0,
                        "annotations_url": f"{base}/repos/{owner}/{repo}/check-runs/{ident}/annotations",
                    },
                    "pull_requests": [],
                })
                run["app"]["id"] = self.config.app_id or run["app"]["id"]
                run["app"]["slug"] = self.config.app_slug
                entry = {"owner": owner, "repo": repo, "check_run": run,
                         "annotations": list(output.get("annotations") or []), "updates": 0}
                st.check_runs[ident] = entry
                reply = self._check_run_reply(entry)
            return 201, reply, {"Location": run["url"]}

        return effect

    def _op_checks_update(self, params, ctx, doc):
        owner, repo, ident = params["owner"], params["repo"], params["check_run_id"]
        body = ctx["body"]
        self._check_run_rules(body, doc, creating=False)

        def effect():
            st = self.state
            with st.lock:
                entry = st.check_runs.get(ident)
                if entry is None or (entry["owner"].lower(), entry["repo"].lower()) != (owner.lower(), repo.lower()):
                    raise Reply(404, error_body(404, "Not Found", doc), reason=f"no check run {ident} in {owner}/{repo}")
                run = entry["check_run"]
                for key in ("name", "details_url", "external_id", "started_at"):
                    if key in body:
                        run[key] = body[key]
                if "conclusion" in body:
                    run["status"], run["conclusion"] = "completed", body["conclusion"]
                    run["completed_at"] = body.get("completed_at") or iso(now_utc())
                elif "status" in body:
                    run["status"] = body["status"]
                output = body.get("output")
                if output:
                    for key in ("title", "summary", "text"):
                        if key in output:
                            run["output"][key] = output[key]
                    # GitHub appends: each update adds its annotations to those already there.
                    entry["annotations"].extend(output.get("annotations") or [])
                entry["updates"] += 1
                reply = self._check_run_reply(entry)
            return 200, reply, {}

        return effect

    def _op_apps_create_installation_access_token(self, params, ctx, doc):
        op = self._op("apps/create-installation-access-token")
        ident = params["installation_id"]
        if self.config.installation_ids and ident not in self.config.installation_ids:
            raise Reply(404, error_body(404, "Not Found", doc), reason=f"no installation {ident}")
        body = ctx["body"] or {}
        granted = self.config.installation_permissions
        wanted = body.get("permissions")
        rank = {"read": 1, "write": 2, "admin": 3}
        if wanted:
            too_much = [k for k, v in wanted.items() if rank.get(granted.get(k), 0) < rank.get(v, 9)]
            if too_much:
                raise Reply(422, error_body(422, "The permissions requested are not granted to this installation.", doc),
                            reason=f"permissions not granted: {too_much}")
        permissions = dict(wanted) if wanted else dict(granted)

        def effect():
            token = "ghs_" + secrets.token_urlsafe(27).replace("-", "A").replace("_", "b")[:36]
            expires = now_utc() + timedelta(seconds=self.config.token_lifetime)
            reply = {
                "token": token,
                "expires_at": iso(expires),
                "permissions": permissions,
                "repository_selection": "all",
            }
            names = body.get("repositories") or []
            ids = body.get("repository_ids") or []
            if names or ids:
                example = self.spec.example_reply(op, 201)["repositories"][0]
                account = self.config.app_slug + "-owner"
                repos = []
                for i, name in enumerate(names):
                    r = self._rebase(example, account, name)
                    r.update({"name": name, "full_name": f"{account}/{name}", "id": 100000 + i})
                    repos.append(r)
                for rid in ids:
                    r = self._rebase(example, account, f"repo-{rid}")
                    r.update({"name": f"repo-{rid}", "full_name": f"{account}/repo-{rid}", "id": rid})
                    repos.append(r)
                reply["repository_selection"] = "selected"
                reply["repositories"] = repos
            with self.state.lock:
                self.state.tokens[token] = {"installation_id": ident, "permissions": permissions, "expires": expires}
            return 201, reply, {}

        return effect

    def _op_repos_get(self, params, ctx, doc):
        op = self._op("repos/get")
        owner, repo = params["owner"], params["repo"]

        def effect():
            r = self._rebase(self.spec.example_reply(op, 200), owner, repo)
            r["name"], r["full_name"] = repo, f"{owner}/{repo}"
            r["id"] = int(hashlib.sha256(f"{owner}/{repo}".lower().encode()).hexdigest()[:8], 16)
            r["node_id"] = legacy_node_id("Repository", r["id"])
            r["default_branch"] = self.config.default_branch
            if isinstance(r.get("owner"), dict):
                r["owner"]["login"] = owner
            return 200, r, {}

        return effect

    def _op_repos_get_branch(self, params, ctx, doc):
        op = self._op("repos/get-branch")
        owner, repo, branch = params["owner"], params["repo"], params["branch"]

        def effect():
            with self.state.lock:
                sha = self.state.branches.get((owner.lower(), repo.lower(), branch))
            if sha is None:
                raise Reply(404, error_body(404, "Branch not found", doc),
                            reason=f"branch {branch!r} not declared via POST /_standin/branches")
            b = self._rebase(self.spec.example_reply(op, 200), owner, repo)
            old_sha = b["commit"]["sha"]
            b = json.loads(json.dumps(b).replace(old_sha, sha))
            b["name"] = branch
            base = self._base()
            b["_links"] = {"self": f"{base}/repos/{owner}/{repo}/branches/{branch}",
                           "html": f"https://github.com/{owner}/{repo}/tree/{branch}"}
            b["protection_url"] = f"{base}/repos/{owner}/{repo}/branches/{branch}/protection"
            return 200, b, {}

        return effect

    def _op(self, op_id):
        for _m, _rx, _t, op in self.spec.routes:
            if op["operationId"] == op_id:
                return op
        raise KeyError(op_id)


# --------------------------------------------------------------------------- main


def make_server(args, port: int):
    spec = Spec(Path(args.spec))
    config = Config(args)
    state = State(config)
    handler = type("StandinHandler", (Handler,), {"spec": spec, "state": state, "config": config})
    server_class = type("StandinServer", (ThreadingHTTPServer,), {"request_queue_size": 64})
    server = server_class(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="GitHub REST API stand-in for stackgate's end-to-end tests")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    ap.add_argument("--spec", default=str(DEFAULT_SPEC), help="OpenAPI subset (default: openapi-subset.json)")
    ap.add_argument("--token", action="append",
                    help="accept only these static tokens (repeatable); default: any non-JWT token")
    ap.add_argument("--app-id", help="require the app JWT's iss to equal this app id / client id")
    ap.add_argument("--app-public-key", help="PEM file (public or private RSA key) to verify app JWT signatures")
    ap.add_argument("--installation-id", type=int, action="append",
                    help="installation ids that exist (repeatable); default: any")
    ap.add_argument("--installation-permissions",
                    help="JSON object of the installation's permissions "
                         f"(default {json.dumps(DEFAULT_INSTALLATION_PERMISSIONS)})")
    ap.add_argument("--app-slug", default="stackgate", help="app slug; the bot user is '<slug>[bot]'")
    ap.add_argument("--default-branch", default="main", help="default_branch reported by repos/get")
    ap.add_argument("--token-lifetime", type=int, default=3600, help="installation token lifetime, seconds")
    ap.add_argument("--api-version", action="append",
                    help=f"also accept this X-GitHub-Api-Version (repeatable; always {', '.join(API_VERSIONS)})")
    ap.add_argument("--git-root", help="serve the git repositories under this folder at /_git/")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    server = make_server(args, args.port)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
