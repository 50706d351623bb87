"""Tests of the GitHub stand-in, tests/doubles/github (run: pytest tests/python/github)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
HERE = ROOT / "tests" / "doubles" / "github"  # the stand-in
MAKE_SUBSET = ROOT / "tests" / "tools" / "make_subset.py"
sys.path.insert(0, str(HERE))

import standin  # noqa: E402

SPEC = standin.Spec(HERE / "openapi-subset.json")
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
UA = {"User-Agent": "stackgate-tests", "Accept": "application/vnd.github+json",
      "X-GitHub-Api-Version": "2022-11-28"}
AUTH = {**UA, "Authorization": "Bearer ghp_test"}


def op(op_id):
    return next(o for _m, _rx, _t, o in SPEC.routes if o["operationId"] == op_id)


def assert_schema(op_id, status, body):
    problems = SPEC.validate_response(op(op_id), status, body)
    assert not problems, f"{op_id} {status} reply breaks GitHub's schema: {problems}"


# --------------------------------------------------------------------------- fixtures


def start(*args):
    import tempfile

    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "standin.py"), "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError(f"stand-in did not start: {line!r} {log.read()}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server():
    proc, base = start()
    yield base
    stop(proc)


@pytest.fixture
def gh(server):
    requests.post(f"{server}/_standin/reset", timeout=5).raise_for_status()
    yield server
    # Every reply the stand-in gave to a request must match GitHub's schema.
    for r in requests.get(f"{server}/_standin/requests", timeout=5).json():
        assert r["response_valid"] is not False, r


def recorded(base):
    return requests.get(f"{base}/_standin/requests", timeout=5).json()


# --------------------------------------------------------------------------- JWT helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, alg="RS256", key=None):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    if key is None:
        signature = b"\x01" * 256
    else:
        n, d = key
        k = (n.bit_length() + 7) // 8
        t = standin._SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        signature = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    return f"{header}.{payload}.{b64url(signature)}"


def app_claims(iss=12345, iat_offset=-60, lifetime=600):
    now = int(time.time())
    return {"iss": iss, "iat": now + iat_offset, "exp": now + iat_offset + lifetime}


def rsa_private_numbers(pem: str):
    """(n, d) from a PKCS#1 or PKCS#8 RSA private key."""
    import re

    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", pem, re.S)
    der = base64.b64decode("".join(m.group(2).split()))
    _t, seq, _ = standin._der_read(der, 0)
    items = standin._der_children(seq)
    if m.group(1) == "PRIVATE KEY":
        _t, seq, _ = standin._der_read(items[2][1], 0)
        items = standin._der_children(seq)
    return int.from_bytes(items[1][1], "big"), int.from_bytes(items[3][1], "big")


def get_installation_token(base, permissions=None, jwt=None):
    body = {"permissions": permissions} if permissions else {}
    r = requests.post(f"{base}/app/installations/1/access_tokens", json=body, timeout=5,
                      headers={**UA, "Authorization": f"Bearer {jwt or make_jwt(app_claims())}"})
    return r


# --------------------------------------------------------------------------- statuses


def post_status(base, body, headers=AUTH, sha=SHA):
    return requests.post(f"{base}/repos/acme/infra/statuses/{sha}", json=body, headers=headers, timeout=5)


def test_valid_status_is_201_and_recorded(gh):
    body = {"state": "pending", "context": "stackgate/policy", "description": "checking",
            "target_url": "http://127.0.0.1:9/runs/1"}
    r = post_status(gh, body)
    assert r.status_code == 201, r.text
    reply = r.json()
    assert_schema("repos/create-commit-status", 201, reply)
    assert reply["state"] == "pending" and reply["context"] == "stackgate/policy"
    assert reply["description"] == "checking" and reply["target_url"] == body["target_url"]
    assert reply["url"].endswith(f"/repos/acme/infra/statuses/{SHA}")
    assert r.headers["Location"] == reply["url"]
    [rec] = recorded(gh)
    assert rec["operation"] == "repos/create-commit-status"
    assert rec["method"] == "POST" and rec["status"] == 201 and rec["valid"] is True
    assert rec["body"] == body
    assert rec["path_params"] == {"owner": "acme", "repo": "infra", "sha": SHA}
    assert rec["headers"]["authorization"] == "Bearer"  # scheme only, never the secret
    assert "ghp_test" not in json.dumps(rec)


def test_status_ids_increment_and_list_newest_first(gh):
    ids = [post_status(gh, {"state": s, "context": "stackgate/web"}).json()["id"]
           for s in ("pending", "success")]
    assert ids[1] == ids[0] + 1
    r = requests.get(f"{gh}/repos/acme/infra/commits/{SHA}/statuses", headers=AUTH, timeout=5)
    assert r.status_code == 200
    assert_schema("repos/list-commit-statuses-for-ref", 200, r.json())
    assert [s["id"] for s in r.json()] == ids[::-1]
    # Pagination follows GitHub: Link header with next/last.
    r = requests.get(f"{gh}/repos/acme/infra/commits/{SHA}/statuses?per_page=1", headers=AUTH, timeout=5)
    assert len(r.json()) == 1 and 'rel="next"' in r.headers["Link"]
    # A branch name resolves once the test declares it.
    requests.post(f"{gh}/_standin/branches", json={"owner": "acme", "repo": "infra", "branch": "main", "sha": SHA},
                  timeout=5).raise_for_status()
    r = requests.get(f"{gh}/repos/acme/infra/commits/heads/main/statuses", headers=AUTH, timeout=5)
    assert [s["id"] for s in r.json()] == ids[::-1]


def test_invalid_state_is_422(gh):
    r = post_status(gh, {"state": "done", "context": "stackgate/policy"})
    assert r.status_code == 422
    body = r.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"][0]["field"] == "state" and body["documentation_url"]
    assert recorded(gh)[-1]["valid"] is False


def test_missing_state_is_422(gh):
    r = post_status(gh, {"context": "stackgate/policy"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"resource": "Status", "code": "missing_field", "field": "state"}]


def test_description_of_141_chars_is_422_and_140_is_fine(gh):
    r = post_status(gh, {"state": "failure", "context": "stackgate/policy", "description": "x" * 141})
    assert r.status_code == 422
    assert "maximum is 140" in r.json()["errors"][0]["message"]
    r = post_status(gh, {"state": "failure", "context": "stackgate/policy", "description": "é" * 140})
    assert r.status_code == 201


def test_empty_context_is_422_and_absent_context_is_default(gh):
    assert post_status(gh, {"state": "success", "context": ""}).status_code == 422
    r = post_status(gh, {"state": "success"})
    assert r.status_code == 201 and r.json()["context"] == "default"


def test_null_description_is_allowed(gh):
    r = post_status(gh, {"state": "success", "context": "c", "description": None, "target_url": None})
    assert r.status_code == 201, r.text
    assert r.json()["description"] is None


def test_not_a_sha_is_422(gh):
    r = post_status(gh, {"state": "success", "context": "c"}, sha="main")
    assert r.status_code == 422 and r.json()["message"] == "No commit found for SHA: main"


def test_bad_json_is_400(gh):
    r = requests.post(f"{gh}/repos/acme/infra/statuses/{SHA}", data=b'{"state": ', headers=AUTH, timeout=5)
    assert r.status_code == 400 and r.json()["message"] == "Problems parsing JSON"


# --------------------------------------------------------------------------- headers and auth


def test_missing_auth_is_401(gh):
    r = post_status(gh, {"state": "success"}, headers=UA)
    assert r.status_code == 401 and r.json()["message"] == "Requires authentication"
    rec = recorded(gh)[-1]
    assert rec["status"] == 401 and rec["valid"] is False and rec["auth"] == "none"


def test_bad_auth_scheme_is_401(gh):
    r = post_status(gh, {"state": "success"}, headers={**UA, "Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert recorded(gh)[-1]["headers"]["authorization"] == "Basic"
    r = post_status(gh, {"state": "success"}, headers={**UA, "Authorization": "ghp_secret"})
    assert r.status_code == 401
    assert "ghp_secret" not in json.dumps(recorded(gh))


def test_token_scheme_is_accepted(gh):
    r = post_status(gh, {"state": "success"}, headers={**UA, "Authorization": "token ghp_x"})
    assert r.status_code == 201


def test_missing_user_agent_is_403(gh):
    import http.client  # requests/urllib3 always add a User-Agent

    host, port = gh.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {k: v for k, v in AUTH.items() if k != "User-Agent"}
    conn.request("POST", f"/repos/acme/infra/statuses/{SHA}", body=b'{"state": "success"}', headers=headers)
    r = conn.getresponse()
    assert r.status == 403
    assert "User-Agent" in r.read().decode()
    conn.close()
    assert recorded(gh)[-1]["errors"] == ["no User-Agent header"]


def test_unsupported_api_version_is_400(gh):
    r = post_status(gh, {"state": "success"}, headers={**AUTH, "X-GitHub-Api-Version": "1999-01-01"})
    assert r.status_code == 400


def test_app_jwt_on_repo_route_is_rejected(gh):
    r = post_status(gh, {"state": "success"}, headers={**UA, "Authorization": f"Bearer {make_jwt(app_claims())}"})
    assert r.status_code == 401
    assert "installation access token" in recorded(gh)[-1]["errors"][0]


# --------------------------------------------------------------------------- comments


def test_comment_create_list_update_round_trip(gh):
    url = f"{gh}/repos/acme/infra/issues/7/comments"
    first = requests.post(url, json={"body": "plan: 1 change"}, headers=AUTH, timeout=5)
    assert first.status_code == 201, first.text
    assert_schema("issues/create-comment", 201, first.json())
    second = requests.post(url, json={"body": "second"}, headers=AUTH, timeout=5).json()
    c = first.json()
    assert second["id"] == c["id"] + 1
    assert c["body"] == "plan: 1 change"
    assert c["html_url"].endswith(f"/acme/infra/issues/7#issuecomment-{c['id']}")
    assert first.headers["Location"] == c["url"]

    r = requests.get(url, headers=AUTH, timeout=5)
    assert r.status_code == 200
    assert_schema("issues/list-comments", 200, r.json())
    assert [x["body"] for x in r.json()] == ["plan: 1 change", "second"]
    # Another issue has its own comments.
    assert requests.get(f"{gh}/repos/acme/infra/issues/8/comments", headers=AUTH, timeout=5).json() == []

    r = requests.patch(f"{gh}/repos/acme/infra/issues/comments/{c['id']}", json={"body": "plan: 2 changes"},
                       headers=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    assert_schema("issues/update-comment", 200, r.json())
    assert r.json()["body"] == "plan: 2 changes" and r.json()["id"] == c["id"]
    assert [x["body"] for x in requests.get(url, headers=AUTH, timeout=5).json()] == ["plan: 2 changes", "second"]


def test_comment_errors(gh):
    assert requests.patch(f"{gh}/repos/acme/infra/issues/comments/999", json={"body": "x"},
                          headers=AUTH, timeout=5).status_code == 404
    assert requests.post(f"{gh}/repos/acme/infra/issues/seven/comments", json={"body": "x"},
                         headers=AUTH, timeout=5).status_code == 404
    r = requests.post(f"{gh}/repos/acme/infra/issues/7/comments", json={"text": "x"}, headers=AUTH, timeout=5)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    r = requests.post(f"{gh}/repos/acme/infra/issues/7/comments", json={"body": "x" * 65537}, headers=AUTH, timeout=5)
    assert r.status_code == 422 and "65536" in r.json()["errors"][0]["message"]


# --------------------------------------------------------------------------- app tokens


def test_app_token_reply_validates_and_carries_permissions(gh):
    r = get_installation_token(gh)
    assert r.status_code == 201, r.text
    reply = r.json()
    assert_schema("apps/create-installation-access-token", 201, reply)
    assert reply["token"].startswith("ghs_")
    assert reply["permissions"]["statuses"] == "write"
    assert reply["expires_at"].endswith("Z")
    rec = recorded(gh)[-1]
    assert rec["auth"] == "jwt" and rec["valid"] is True

    # The installation token works, and GitHub shows the app's bot as the author.
    status = post_status(gh, {"state": "success", "context": "c"},
                         headers={**UA, "Authorization": f"Bearer {reply['token']}"})
    assert status.status_code == 201
    assert status.json()["creator"]["login"] == "stackgate[bot]"
    assert status.json()["creator"]["type"] == "Bot"
    assert recorded(gh)[-1]["auth"] == "installation_token"


def test_app_token_with_fewer_permissions_is_enforced(gh):
    token = get_installation_token(gh, permissions={"contents": "read"}).json()["token"]
    r = post_status(gh, {"state": "success"}, headers={**UA, "Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"
    r = get_installation_token(gh, permissions={"administration": "write"})
    assert r.status_code == 422


@pytest.mark.parametrize("jwt, why", [
    ("not-a-jwt", "not a JWT"),
    (make_jwt(app_claims(), alg="HS256"), "HS256"),
    (make_jwt(app_claims(lifetime=601)), "lives longer than 600 s"),
    (make_jwt(app_claims(iat_offset=-1000)), "expired"),
    (make_jwt({k: v for k, v in app_claims().items() if k != "iss"}), "no iss"),
    (make_jwt({k: v for k, v in app_claims().items() if k != "iat"}), "no iat"),
])
def test_bad_app_jwt_is_401(gh, jwt, why):
    assert get_installation_token(gh, jwt=jwt).status_code == 401, why


def test_installation_token_is_rejected_on_the_app_route(gh):
    r = requests.post(f"{gh}/app/installations/1/access_tokens", headers={**UA, "Authorization": "Bearer ghs_x"},
                      timeout=5)
    assert r.status_code == 401


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key = tmp_path_factory.mktemp("key") / "app.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    proc, base = start("--app-public-key", str(key), "--app-id", "12345", "--installation-id", "1")
    yield base, rsa_private_numbers(key.read_text())
    stop(proc)


def test_jwt_signature_is_verified_with_a_key(keyed_server):
    base, key = keyed_server
    assert get_installation_token(base, jwt=make_jwt(app_claims(), key=key)).status_code == 201
    assert get_installation_token(base, jwt=make_jwt(app_claims())).status_code == 401  # bad signature
    assert get_installation_token(base, jwt=make_jwt(app_claims(iss=999), key=key)).status_code == 401
    r = requests.post(f"{base}/app/installations/2/access_tokens", timeout=5,
                      headers={**UA, "Authorization": f"Bearer {make_jwt(app_claims(), key=key)}"})
    assert r.status_code == 404


# --------------------------------------------------------------------------- failure injection, routes


def test_fail_injection_502_twice_then_success(gh):
    rule = requests.post(f"{gh}/_standin/fail", json={"method": "POST", "path_regex": "/statuses/",
                                                      "status": 502, "times": 2}, timeout=5)
    assert rule.status_code == 201
    codes = [post_status(gh, {"state": "success", "context": "c"}).status_code for _ in range(3)]
    assert codes == [502, 502, 201]
    recs = recorded(gh)
    assert [r["injected"] for r in recs] == [True, True, False]
    assert all(r["valid"] for r in recs)
    # Only the successful one created a status.
    assert len(requests.get(f"{gh}/repos/acme/infra/commits/{SHA}/statuses", headers=AUTH, timeout=5).json()) == 1


def test_secondary_rate_limit_injection(gh):
    requests.post(f"{gh}/_standin/fail", json={"path_regex": "/issues/", "status": 403, "times": 1,
                                               "headers": {"retry-after": "1"}}, timeout=5).raise_for_status()
    r = requests.post(f"{gh}/repos/acme/infra/issues/1/comments", json={"body": "x"}, headers=AUTH, timeout=5)
    assert r.status_code == 403 and r.headers["retry-after"] == "1"
    assert r.json()["message"].startswith("You have exceeded a secondary rate limit")
    r = requests.post(f"{gh}/repos/acme/infra/issues/1/comments", json={"body": "x"}, headers=AUTH, timeout=5)
    assert r.status_code == 201


def test_unknown_route_is_404_and_recorded(gh):
    r = requests.get(f"{gh}/repos/acme/infra/pulls/1", headers=AUTH, timeout=5)
    assert r.status_code == 404 and r.json()["message"] == "Not Found"
    r = requests.delete(f"{gh}/repos/acme/infra/statuses/{SHA}", headers=AUTH, timeout=5)
    assert r.status_code == 404
    recs = recorded(gh)
    assert [(x["method"], x["operation"], x["status"], x["valid"]) for x in recs] == [
        ("GET", None, 404, False), ("DELETE", None, 404, False)]


def test_reset_clears_everything(gh):
    post_status(gh, {"state": "success"})
    requests.post(f"{gh}/_standin/fail", json={"status": 500}, timeout=5)
    requests.post(f"{gh}/_standin/reset", timeout=5)
    assert recorded(gh) == []
    assert requests.get(f"{gh}/_standin/fail", timeout=5).json() == []
    assert requests.get(f"{gh}/repos/acme/infra/commits/{SHA}/statuses", headers=AUTH, timeout=5).json() == []


def test_repo_and_branch(gh):
    r = requests.get(f"{gh}/repos/acme/infra", headers=AUTH, timeout=5)
    assert r.status_code == 200
    assert_schema("repos/get", 200, r.json())
    assert r.json()["full_name"] == "acme/infra" and r.json()["default_branch"] == "main"
    assert requests.get(f"{gh}/repos/acme/infra/branches/main", headers=AUTH, timeout=5).status_code == 404
    requests.post(f"{gh}/_standin/branches", json={"owner": "acme", "repo": "infra", "branch": "feature/x",
                                                   "sha": SHA}, timeout=5).raise_for_status()
    r = requests.get(f"{gh}/repos/acme/infra/branches/feature/x", headers=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    assert_schema("repos/get-branch", 200, r.json())
    assert r.json()["name"] == "feature/x" and r.json()["commit"]["sha"] == SHA


# --------------------------------------------------------------------------- provenance


def test_subset_records_its_source_and_matches_the_pin():
    src = json.loads((HERE / "openapi-subset.json").read_text())["x-stackgate-source"]
    pins = json.loads((HERE / "package.json").read_text())["dependencies"]
    assert src["package"] == "@octokit/openapi"
    assert src["version"] == pins["@octokit/openapi"]
    assert set(src["operations"]) >= {o["operationId"] for _m, _rx, _t, o in SPEC.routes}


def test_subset_is_up_to_date_with_the_installed_package():
    if not (HERE / "node_modules" / "@octokit" / "openapi" / "package.json").exists():
        pytest.skip("run `npm ci` in tests/doubles/github to check the subset against the package")
    r = subprocess.run([sys.executable, str(MAKE_SUBSET), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_webhook_examples_load():
    import webhooks

    if not webhooks.INDEX.exists():
        pytest.skip("run `npm ci` in tests/doubles/github")
    assert webhooks.package_version() == json.loads((HERE / "package.json").read_text())[
        "dependencies"]["@octokit/webhooks-examples"]
    assert webhooks.push()["ref"].startswith("refs/heads/")
    for action in webhooks.PULL_REQUEST_ACTIONS:
        assert webhooks.pull_request(action)["action"] == action
    assert "zen" in webhooks.ping()
    body = webhooks.body_bytes(webhooks.ping())
    assert webhooks.headers("ping", body, "s")["X-Hub-Signature-256"] == webhooks.signature_256(body, "s")


# --------------------------------------------------------------------------- HTTP behaviour


def test_keep_alive_chunked_and_concurrent_requests(gh):
    from concurrent.futures import ThreadPoolExecutor

    with requests.Session() as s:  # one persistent HTTP/1.1 connection, errors included
        for body in ({"state": "nope"}, {"state": "success", "context": "a"}, {"state": "pending"}):
            s.post(f"{gh}/repos/acme/infra/statuses/{SHA}", json=body, headers=AUTH, timeout=5)
        chunks = iter([b'{"state": ', b'"error", "context": "chunked"}'])
        r = s.post(f"{gh}/repos/acme/infra/statuses/{SHA}", data=chunks, headers=AUTH, timeout=5)
        assert r.status_code == 201 and r.json()["context"] == "chunked"

    def one(i):
        return post_status(gh, {"state": "success", "context": f"c{i}"}).json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(24)))
    assert len(set(ids)) == 24
    assert [r["status"] for r in recorded(gh)][:3] == [422, 201, 201]


def test_accept_must_allow_json(gh):
    r = post_status(gh, {"state": "success"}, headers={**AUTH, "Accept": "text/html"})
    assert r.status_code == 415


def test_comment_media_types_and_since(gh):
    url = f"{gh}/repos/acme/infra/issues/3/comments"
    r = requests.post(url, json={"body": "a <b>"}, timeout=5,
                      headers={**AUTH, "Accept": "application/vnd.github.full+json"})
    assert r.status_code == 201
    assert_schema("issues/create-comment", 201, r.json())
    assert r.json()["body_text"] == "a <b>" and "&lt;b&gt;" in r.json()["body_html"]
    assert len(requests.get(f"{url}?since=2000-01-01T00:00:00Z", headers=AUTH, timeout=5).json()) == 1
    assert requests.get(f"{url}?since=2999-01-01T00:00:00Z", headers=AUTH, timeout=5).json() == []


# --------------------------------------------------------------------------- check runs


def app_auth(base):
    token = get_installation_token(base).json()["token"]
    return {**UA, "Authorization": f"Bearer {token}"}


def create_check(base, body, headers):
    return requests.post(f"{base}/repos/acme/infra/check-runs", json=body, headers=headers, timeout=5)


def update_check(base, ident, body, headers):
    return requests.patch(f"{base}/repos/acme/infra/check-runs/{ident}", json=body, headers=headers, timeout=5)


def annotation(line, end=None, **extra):
    return {"path": "stacks/web/template.yaml", "start_line": line, "end_line": line if end is None else end,
            "annotation_level": "failure", "message": f"finding at {line}", **extra}


def check_runs(base):
    return requests.get(f"{base}/_standin/state", timeout=5).json()["check_runs"]


def test_check_run_in_progress_then_completed_with_annotations_is_recorded(gh):
    auth = app_auth(gh)
    r = create_check(gh, {"name": "stackgate/policy", "head_sha": SHA, "status": "in_progress",
                          "external_id": "pr/7", "details_url": "http://127.0.0.1:1/runs/3"}, auth)
    assert r.status_code == 201, r.text
    assert_schema("checks/create", 201, r.json())
    ident = r.json()["id"]
    assert r.json()["status"] == "in_progress" and r.json()["conclusion"] is None
    first = [annotation(n) for n in range(1, 51)]
    r = update_check(gh, ident, {"conclusion": "failure", "output": {
        "title": "2 findings", "summary": "policy failed", "annotations": first}}, auth)
    assert r.status_code == 200, r.text
    assert_schema("checks/update", 200, r.json())
    r = update_check(gh, ident, {"output": {"title": "2 findings", "summary": "policy failed",
                                            "annotations": [annotation(51, 53)]}}, auth)
    assert r.status_code == 200, r.text
    assert r.json()["output"]["annotations_count"] == 51
    [run] = check_runs(gh)
    assert run["check_run"]["status"] == "completed" and run["check_run"]["conclusion"] == "failure"
    assert run["check_run"]["external_id"] == "pr/7"
    assert [a["start_line"] for a in run["annotations"]] == list(range(1, 52))
    assert run["annotations"][-1]["end_line"] == 53


def test_a_personal_token_may_not_write_check_runs(gh):
    r = create_check(gh, {"name": "c", "head_sha": SHA}, AUTH)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == "You must authenticate via a GitHub App."
    assert update_check(gh, 1, {"status": "in_progress"}, AUTH).status_code == 403
    assert check_runs(gh) == []


def test_an_installation_token_without_checks_write_is_refused(gh):
    token = get_installation_token(gh, permissions={"statuses": "write"}).json()["token"]
    r = create_check(gh, {"name": "c", "head_sha": SHA}, {**UA, "Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"


def test_at_most_50_annotations_a_request(gh):
    auth = app_auth(gh)
    out = {"title": "t", "summary": "s", "annotations": [annotation(n) for n in range(1, 52)]}
    r = create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth)
    assert r.status_code == 422, r.text
    ident = create_check(gh, {"name": "c", "head_sha": SHA}, auth).json()["id"]
    assert update_check(gh, ident, {"output": out}, auth).status_code == 422
    out["annotations"].pop()
    assert update_check(gh, ident, {"output": out}, auth).status_code == 200
    assert len(check_runs(gh)[-1]["annotations"]) == 50


@pytest.mark.parametrize("field", ["summary", "text"])
def test_output_summary_and_text_at_most_65535_characters(gh, field):
    auth = app_auth(gh)
    out = {"title": "t", "summary": "s", field: "x" * 65536}
    r = create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["errors"])
    out[field] = "x" * 65535
    assert create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth).status_code == 201


def test_annotation_start_line_after_end_line_is_422(gh):
    auth = app_auth(gh)
    out = {"title": "t", "summary": "s", "annotations": [annotation(9, 3)]}
    r = create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth)
    assert r.status_code == 422, r.text
    assert "start_line" in r.json()["errors"][0]["field"]
    out["annotations"] = [annotation(3, 9, start_column=2)]
    assert create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth).status_code == 422
    out["annotations"] = [annotation(3, 3, start_column=2, end_column=5)]
    assert create_check(gh, {"name": "c", "head_sha": SHA, "output": out}, auth).status_code == 201


def test_completed_needs_a_conclusion_and_update_of_an_unknown_run_is_404(gh):
    auth = app_auth(gh)
    r = create_check(gh, {"name": "c", "head_sha": SHA, "status": "completed"}, auth)
    assert r.status_code == 422, r.text
    r = update_check(gh, 99, {"status": "completed", "conclusion": "success"}, auth)
    assert r.status_code == 404
    r = update_check(gh, 99, {"status": "completed"}, auth)
    assert r.status_code == 422, "the spec's anyOf: completed needs a conclusion"
    assert create_check(gh, {"name": "c", "head_sha": "main"}, auth).status_code == 422
