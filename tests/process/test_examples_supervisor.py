"""
examples/supervisor-pypid.conf under a real supervisord (Debian's) started
by the test with its own socket, pid and log files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.server import ROOT, tool
from tests.needs import needs

EXAMPLE = ROOT / "examples" / "supervisor-pypid.conf"
SUPERVISORD = shutil.which("supervisord")
SUPERVISORCTL = shutil.which("supervisorctl")

pytestmark = needs(
    SUPERVISORD and SUPERVISORCTL,
    "supervisor is not installed (apt-get install supervisor; .ci/run does)",
)


def program_section(tmp: Path, packages: Path, log: Path) -> str:
    """The example with this machine's twistd, directories and log, on port 0."""
    text = EXAMPLE.read_text()
    replacements = {
        "/usr/bin/twistd3": tool("twistd"),
        "tcp:3141:interface=127.0.0.1": "tcp:0:interface=127.0.0.1",
        "/srv/pypid/packages": str(packages),
        "directory=/srv/pypid": f"directory={tmp}",
        'HOME="/srv/pypid"': f'HOME="{tmp}"',
        "/var/log/supervisor/pypid.log": str(log),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    # Run as the test's own user: a pypid system user (the Debian package
    # creates one) could not read the test's private temporary directory.
    assert text.count("\nuser=pypid\n") == 1
    return text.replace("\nuser=pypid\n", "\n")


def ctl(conf: Path, *args: str) -> str:
    result = subprocess.run([SUPERVISORCTL, "-c", str(conf), *args], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_supervisor_runs_and_stops_pypid(tmp_path):
    """supervisord starts pypid from the example, pypid serves and logs JSON, and stops cleanly on TERM."""
    packages = tmp_path / "packages"
    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    log = tmp_path / "pypid.log"
    (tmp_path / "pypid.conf").write_text(program_section(tmp_path, packages, log))
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={tmp_path}/supervisor.sock\n\n"
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\n"
        f"pidfile={tmp_path}/supervisord.pid\nchildlogdir={tmp_path}\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{tmp_path}/supervisor.sock\n\n"
        f"[include]\nfiles = {tmp_path}/pypid.conf\n"
    )
    supervisord = subprocess.Popen([SUPERVISORD, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and port is None:
            match = re.search(r"PypidSite starting on (\d+)", log.read_text() if log.exists() else "")
            port = int(match.group(1)) if match else None
            assert supervisord.poll() is None, (tmp_path / "supervisord.log").read_text()
            time.sleep(0.1)
        assert port is not None, (tmp_path / "supervisord.log").read_text()
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "health", timeout=5) as response:
                    if json.load(response)["status"] == "ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with urllib.request.urlopen(url + "simple/demo/", timeout=5) as response:
            assert b"demo-1.0-py3-none-any.whl" in response.read()
        deadline = time.monotonic() + 10
        while "RUNNING" not in ctl(conf, "status", "pypid"):
            assert time.monotonic() < deadline, ctl(conf, "status", "pypid")
            time.sleep(0.2)
        assert "stopped" in ctl(conf, "stop", "pypid")
        assert "STOPPED" in ctl(conf, "status", "pypid")
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        events = [json.loads(line) for line in lines]
        assert any(e.get("uri") == "/simple/demo/" and e.get("status") == 200 for e in events)
        assert events[-1]["message"] == "Server Shut Down."
        # twistd exits by the signal it got (22.4: status 0): a clean stop either way.
        supervisor_log = (tmp_path / "supervisord.log").read_text()
        assert re.search(r"stopped: pypid \((terminated by SIGTERM|exit status 0)\)", supervisor_log)
        assert "exited: pypid" not in supervisor_log
    finally:
        supervisord.send_signal(signal.SIGTERM)
        try:
            supervisord.wait(30)
        except subprocess.TimeoutExpired:
            supervisord.kill()
            supervisord.wait()
