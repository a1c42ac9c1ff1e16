"""
pypid as a mirror source: real bandersnatch mirrors a real pypid (a full
mirror, then an upload, then an incremental mirror that fetches only the new
file, across a restart), and a real devpi-server uses one as its upstream.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.needs import needs
from tests.server import tool
from tests.process.test_upstream_http import installed
from tests.uploadhelp import pip_install, run, twine

BANDERSNATCH = shutil.which(tool("bandersnatch"))
DEVPI = shutil.which(tool("devpi-server"))


def bandersnatch(config: Path, env) -> str:
    result = subprocess.run([tool("bandersnatch"), "-c", str(config), "mirror"], env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def mirror_config(directory: Path, server) -> Path:
    config = directory / "bandersnatch.conf"
    config.write_text(f"""[mirror]
directory = {directory / "mirror"}
master = {server.url.rstrip("/")}
allow-non-https = true
json = true
release-files = true
timeout = 10
global-timeout = 120
workers = 2
stop-on-error = true
hash-index = false
simple-format = ALL
""")
    return config


def mirrored(directory: Path) -> dict[str, bytes]:
    """The files bandersnatch saved under web/packages/, by path."""
    root = directory / "mirror" / "web" / "packages"
    found = {}
    for top, _, names in os.walk(root):
        for name in names:
            path = Path(top) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def downloads(server) -> list[str]:
    """The /packages/ paths the server sent (from its access log)."""
    out = []
    for line in server.log().splitlines():
        if '"GET /packages/' in line and '" 200 ' in line:
            out.append(line.split('"GET ', 1)[1].split(" ", 1)[0])
    return out


def serial_of(directory: Path) -> int:
    return int((directory / "mirror" / "status").read_text())


@needs(BANDERSNATCH, "bandersnatch is not installed (requirements/test.txt)")
def test_bandersnatch_full_then_incremental(start_server, env, tmp_path):
    packages = tmp_path / "packages"
    write_dist(str(packages), wheel_bytes("Alpha_Lib", "1.0", summary="Alpha"))
    write_dist(str(packages), sdist_bytes("Alpha_Lib", "1.0"))
    write_dist(str(packages / "team"), wheel_bytes("beta", "2.0"))
    args = ["-P", ".", "-a", ".", str(packages)]
    server = start_server(*args)
    config = mirror_config(tmp_path, server)

    bandersnatch(config, env)
    files = mirrored(tmp_path)
    assert files == {
        "alpha_lib-1.0-py3-none-any.whl": (packages / "alpha_lib-1.0-py3-none-any.whl").read_bytes(),
        "alpha_lib-1.0.tar.gz": (packages / "alpha_lib-1.0.tar.gz").read_bytes(),
        "team/beta-2.0-py3-none-any.whl": (packages / "team" / "beta-2.0-py3-none-any.whl").read_bytes(),
    }
    first = serial_of(tmp_path)
    assert first >= 1
    simple = (tmp_path / "mirror" / "web" / "simple" / "alpha-lib" / "index.html").read_text()
    assert "alpha_lib-1.0.tar.gz" in simple
    assert json.loads((tmp_path / "mirror" / "web" / "json" / "alpha-lib").read_text())["info"]["name"] == "Alpha_Lib"
    assert len(downloads(server)) == 3

    # An upload, then a restart: the serial survives it.
    new = tmp_path / "new"
    name = os.path.basename(write_dist(str(new), wheel_bytes("Alpha_Lib", "1.1")))
    run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "x", "-p", "y",
              str(new / name)), env)
    server.stop()
    server = start_server(*args)
    mirror_config(tmp_path, server)
    before = len(downloads(server))
    output = bandersnatch(config, env)
    assert "1 packages to sync" in output, output
    assert downloads(server)[before:] == [f"/packages/{name}"], "only the new file is fetched"
    assert mirrored(tmp_path)[name] == (packages / name).read_bytes()
    assert serial_of(tmp_path) > first

    # Nothing new: nothing to sync.
    output = bandersnatch(config, env)
    assert "0 packages to sync" in output, output
    assert downloads(server)[before:] == [f"/packages/{name}"]

    # The mirror serves pip.
    mirror_web = tmp_path / "mirror" / "web"
    pip_install(None, env, tmp_path / "t", "alpha-lib==1.1", index=(mirror_web / "simple").as_uri())
    assert installed(tmp_path / "t") == ["alpha_lib-1.1.dist-info"]


@needs(BANDERSNATCH, "bandersnatch is not installed (requirements/test.txt)")
def test_bandersnatch_after_files_changed_while_pypid_was_stopped(start_server, env, tmp_path):
    """Files copied in while pypid is down take a new serial at its start, and the mirror fetches them."""
    packages = tmp_path / "packages"
    write_dist(str(packages), wheel_bytes("gamma", "1.0"))
    server = start_server(str(packages))
    config = mirror_config(tmp_path, server)
    bandersnatch(config, env)
    server.stop()
    name = os.path.basename(write_dist(str(packages), sdist_bytes("gamma", "1.0")))
    server = start_server(str(packages))
    mirror_config(tmp_path, server)
    deadline = time.monotonic() + 20
    while "changed while pypid was not running" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    output = bandersnatch(config, env)
    assert "1 packages to sync" in output, output
    assert downloads(server) == [f"/packages/{name}"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def devpi_request(method: str, url: str, body=None, auth=None):
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@needs(DEVPI, "devpi-server is not installed (requirements/test.txt)")
def test_devpi_server_with_pypid_as_its_upstream(start_server, env, tmp_path):
    packages = tmp_path / "packages"
    write_dist(str(packages), wheel_bytes("delta", "1.0"))
    args = ["-P", ".", "-a", ".", str(packages)]
    # The same port after the restart: devpi keeps its upstream's URL.
    pypid_port = free_port()
    server = start_server(*args, port=f"tcp:{pypid_port}:interface=127.0.0.1")
    serverdir = tmp_path / "devpi"
    bindir = Path(DEVPI).parent
    subprocess.run([str(bindir / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
                    "--root-passwd", "root-pw"], check=True, capture_output=True, timeout=120)
    port = free_port()
    log = open(tmp_path / "devpi.log", "wb")
    devpi = subprocess.Popen([DEVPI, "--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", str(port)],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "+api", timeout=5):
                    break
            except OSError:
                assert devpi.poll() is None and time.monotonic() < deadline, (tmp_path / "devpi.log").read_text()
                time.sleep(0.2)
        assert devpi_request("PUT", url + "team", {"password": "team-pw"}) in (200, 201)
        assert devpi_request("PUT", url + "team/up", {"type": "mirror", "mirror_url": server.url + "simple/",
                                                      "mirror_cache_expiry": 1}, auth="team:team-pw") in (200, 201)
        index = url + "team/up/+simple/"
        pip_install(None, env, tmp_path / "t1", "delta", index=index)
        assert installed(tmp_path / "t1") == ["delta-1.0.dist-info"]

        new = tmp_path / "new"
        name = os.path.basename(write_dist(str(new), wheel_bytes("delta", "2.0")))
        run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "x", "-p", "y",
                  str(new / name)), env)
        # A restart keeps the serial devpi saw (it refuses pages whose serial went back).
        server.stop()
        server = start_server(*args, port=f"tcp:{pypid_port}:interface=127.0.0.1")
        time.sleep(1.5)
        pip_install(None, env, tmp_path / "t2", "delta==2.0", index=index)
        assert installed(tmp_path / "t2") == ["delta-2.0.dist-info"]
        text = (tmp_path / "devpi.log").read_text(errors="replace")
        assert "serial mismatch" not in text, text
    finally:
        devpi.terminate()
        devpi.wait(30)
        log.close()
