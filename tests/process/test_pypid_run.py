"""pypid run, started for real with a pypiserver command line, serves pip."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from pypid.testing import wheel_bytes, write_dist
from tests.server import ROOT, client_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pypid_run_serves_pip(tmp_path, packages):
    write_dist(str(packages), wheel_bytes("Demo_Pkg", "1.0"))
    passwords = tmp_path / "htpasswd.txt"
    digest = base64.b64encode(hashlib.sha1(b"secret").digest()).decode()
    passwords.write_text(f"alice:{{SHA}}{digest}\n")
    welcome = tmp_path / "welcome.html"
    welcome.write_text("<p>{{NUMPKGS}} files here</p>")
    log = tmp_path / "pypid.log"
    port = free_port()
    # The brief's line: pypiserver's options, as a systemd unit would have them.
    argv = ["-p", str(port), "-i", "127.0.0.1", "-P", str(passwords), "-a", "update,download", "-o",
            "--fallback-url", "http://127.0.0.1:9/simple/", "--disable-fallback", "--hash-algo", "sha256",
            "--welcome", str(welcome), "--health-endpoint", "/health", "--cache-control", "3600",
            "--log-file", str(log), "-v", str(packages), "--server", "gunicorn"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "pypid.cli", "run", *argv], cwd=str(tmp_path), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log.exists() and f"serving http://127.0.0.1:{port}/simple/ : 1 project, 1 file" in log.read_text():
                break
            assert process.poll() is None, log.read_text() if log.exists() else process.communicate()
            time.sleep(0.05)
        else:
            raise AssertionError(f"pypid run did not start:\n{log.read_text() if log.exists() else ''}")
        base = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(base + "health", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
        with urllib.request.urlopen(base, timeout=10) as response:
            assert response.read() == b"<p>1 files here</p>"
        target = tmp_path / "target"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
             "--index-url", f"http://alice:secret@127.0.0.1:{port}/simple/", "demo-pkg"],
            env=client_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (target / "demo_pkg" / "__init__.py").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    # twistd ends with the signal that stopped it (Twisted 22.4: exit 0).
    assert process.returncode in (0, -signal.SIGTERM), err
    assert out == ""
    # One note per ignored option, nothing else.
    assert err.splitlines() == [
        "pypid run: note: --verbose is ignored: pypid logs at one level: start-up, errors and a line per request.",
        "pypid run: note: --server gunicorn is ignored: pypid is its own server (Twisted).",
    ]
    text = log.read_text()
    assert re.search(r'"GET /packages/demo_pkg-1\.0-py3-none-any\.whl HTTP/1\.1" 200', text)
    assert "Traceback" not in text


def test_pypid_run_refuses_in_one_line(tmp_path, packages):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for argv, message in (
        (["--bogus", str(packages)], "option --bogus not recognized"),
        (["--server-base-url", "/prefix/", str(packages)],
         "--server-base-url '/prefix/': pypid serves at the root; to serve it under /prefix/, put a reverse "
         "proxy in front that strips the prefix and sends X-Forwarded-Prefix, and give pypid --trusted-proxy PROXY."),
    ):
        result = subprocess.run([sys.executable, "-m", "pypid.cli", "run", *argv], cwd=str(tmp_path), env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"pypid run: {message}", "Try 'pypid run --help' for the options."]
        assert result.stdout == ""
