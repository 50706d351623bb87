"""The EC2 UserData installs ec2/server.py verbatim, and that server works."""
import http.client
import importlib.util
import os
import queue
import re
import shutil
import subprocess
import sys
import threading

import pytest
import yaml

from hybrid_alb import SERVER_PATH, embedded_server_script, user_data_parts

STARTUP_TIMEOUT = 10
REQUEST_TIMEOUT = 5


def test_user_data_embeds_server_py_verbatim(template):
    assert embedded_server_script(template) == SERVER_PATH.read_text(encoding="utf-8"), (
        "UserData and ec2/server.py differ: run `python3 stacks/hybrid-alb/ec2/embed.py`"
    )


def test_user_data_fits_the_ec2_limit(template):
    user_data = template["Resources"]["Instance"]["Properties"]["UserData"]["Fn::Base64"]
    assert len(user_data.encode("utf-8")) <= 16384


def test_user_data_parts(template):
    parts = user_data_parts(template)
    assert set(parts) == {"text/cloud-config", "text/x-shellscript"}
    # Run the script on every boot, so that a UserData update (stop + start)
    # installs the new server.
    config = yaml.safe_load(parts["text/cloud-config"])
    assert ["scripts-user", "always"] in config["cloud_final_modules"]
    shell = parts["text/x-shellscript"]
    assert shell.startswith("#!/bin/bash\n")
    assert "ExecStart=/usr/bin/python3 /opt/hybrid-alb/server.py" in shell
    assert re.search(r"^Environment=PORT=80$", shell, re.M)
    assert "systemctl enable hybrid-alb-ec2.service" in shell


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_user_data_shell_script_parses(template, tmp_path):
    script = tmp_path / "userdata.sh"
    script.write_text(user_data_parts(template)["text/x-shellscript"], encoding="utf-8")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr


class Server:
    """Runs a copy of the server script on a loopback port chosen by the OS."""

    def __init__(self, script_path, env=None, argv=()):
        base = {k: v for k, v in os.environ.items() if k not in ("PORT", "BIND_ADDRESS")}
        self.proc = subprocess.Popen(
            [sys.executable, str(script_path), *argv],
            env={**base, "BIND_ADDRESS": "127.0.0.1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            line = "<nothing within %ss>" % STARTUP_TIMEOUT
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", line.strip())
        if not match:
            self.stop()
            raise AssertionError("server did not start: %r" % line)
        self.port = int(match.group(1))
        assert self.port != 0

    def request(self, method, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def embedded_script(template, tmp_path):
    """The script as extracted from the UserData: this is what runs on EC2."""
    path = tmp_path / "server.py"
    path.write_text(embedded_server_script(template), encoding="utf-8")
    return path


@pytest.fixture(params=["env", "argv"])
def server(request, embedded_script):
    if request.param == "env":
        srv = Server(embedded_script, env={"PORT": "0"})
    else:
        srv = Server(embedded_script, argv=["0"])
    yield srv
    srv.stop()


def test_get_ec2_answers_200(server):
    status, headers, body = server.request("GET", "/ec2")
    assert status == 200
    assert body == b"hello from ec2\n"
    assert headers["Content-Type"].startswith("text/plain")
    assert int(headers["Content-Length"]) == len(body)


def test_get_ec2_with_query_answers_200(server):
    status, _, body = server.request("GET", "/ec2?from=alb")
    assert (status, body) == (200, b"hello from ec2\n")


def test_head_ec2_answers_200_without_body(server):
    status, headers, body = server.request("HEAD", "/ec2")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len(b"hello from ec2\n")


@pytest.mark.parametrize("path", ["/", "/lambda", "/ec2/x", "/ec22"])
def test_other_paths_answer_404(server, path):
    status, _, body = server.request("GET", path)
    assert status == 404
    assert body == b"not found\n"


def test_server_keeps_serving_after_requests(server):
    for _ in range(5):
        assert server.request("GET", "/ec2")[0] == 200
    assert server.proc.poll() is None


def test_default_port_is_80_on_all_interfaces(monkeypatch, embedded_script):
    """Without PORT, argv or BIND_ADDRESS the server binds 0.0.0.0:80."""
    spec = importlib.util.spec_from_file_location("hybrid_alb_ec2_server", embedded_script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    bound = []

    class Stop(Exception):
        pass

    def fake_server(address, handler):
        bound.append(address)
        raise Stop

    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("BIND_ADDRESS", raising=False)
    monkeypatch.setattr(sys, "argv", ["server.py"])
    monkeypatch.setattr(module.http.server, "ThreadingHTTPServer", fake_server)
    with pytest.raises(Stop):
        module.main()
    assert bound == [("0.0.0.0", 80)]
