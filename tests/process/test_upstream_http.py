"""
The upstream fallback end to end: a real pypid falling back to a second
server on 127.0.0.1 (another pypid, or tests.fake_upstream misbehaving on
purpose), driven by urllib, pip and uv. Nothing reaches the internet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import ROOT, tool

JSON = "application/vnd.pypi.simple.v1+json"


class FakeUpstream:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (directory / "dists").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = open(directory / "server.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", str(directory)],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not (directory / "port").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((directory / "server.log").read_text())
            time.sleep(0.02)
        self.port = int((directory / "port").read_text())
        self.url = f"http://127.0.0.1:{self.port}/simple/"

    def add(self, built) -> str:
        write_dist(str(self.dir / "dists"), built)
        return built[0]

    def configure(self, **config) -> None:
        (self.dir / "config.json").write_text(json.dumps(config))

    def requests(self, path: str) -> int:
        try:
            lines = (self.dir / "requests.log").read_text().splitlines()
        except FileNotFoundError:
            return 0
        return sum(1 for line in lines if line.split(" ", 1)[1] == path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def fake_upstream(tmp_path):
    upstream = FakeUpstream(tmp_path / "fake-upstream")
    yield upstream
    upstream.stop()


def run(args, env):
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def pip_install(server, env, target, *requirements):
    return run([sys.executable, "-m", "pip", "install", "--target", str(target),
                "--index-url", server.url + "simple/", *requirements], env)


def uv_install(server, env, target, *requirements):
    return run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(target),
                "--index-url", server.url + "simple/", *requirements], env)


def installed(target) -> list[str]:
    return sorted(p for p in os.listdir(target) if p.endswith(".dist-info"))


def cached_files(cache: Path) -> list[str]:
    found = []
    for top, _, names in os.walk(cache):
        found.extend(os.path.relpath(os.path.join(top, n), cache) for n in names)
    return sorted(found)


def upstream_hits(server, path: str) -> int:
    """Requests for C{path} in a pypid upstream's access log."""
    return server.log().count(f'"GET {path} HTTP/1.1"')


def test_install_through_pypid_then_upstream_down_then_restart(start_server, env, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("remote-app", "1.0", requires=["remote-lib>=1"]))
    write_dist(str(upstream_dir), wheel_bytes("remote-lib", "1.0"))
    write_dist(str(upstream_dir), sdist_bytes("remote-lib", "2.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    local.mkdir()
    args = ["--fallback-url", upstream.url + "simple"]
    server = start_server(*args, str(local))

    assert installed(pip_install(server, env, tmp_path / "t1", "remote-app") and tmp_path / "t1") == [
        "remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]
    uv_install(server, env, tmp_path / "t2", "remote-app")
    assert installed(tmp_path / "t2") == ["remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]
    assert upstream_hits(upstream, "/packages/remote_app-1.0-py3-none-any.whl") == 1
    # Clients never see the upstream's URLs.
    status, _, body = server.get("/simple/remote-lib/", {"Accept": JSON})
    assert status == 200 and upstream.url not in body.decode() and "127.0.0.1" not in body.decode()
    assert {f["url"] for f in json.loads(body)["files"]} == {
        "../../+upstream/remote-lib/remote_lib-1.0-py3-none-any.whl",
        "../../+upstream/remote-lib/remote_lib-2.0.tar.gz"}
    assert sorted(os.listdir(local)) == [".pypid"]
    status, _, body = server.get("/simple/")
    assert b"remote" not in body, "/simple/ lists local projects only"

    upstream.stop()
    pip_install(server, env, tmp_path / "t3", "remote-app")
    uv_install(server, env, tmp_path / "t4", "remote-app")
    assert installed(tmp_path / "t4") == ["remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]

    # A new process, with every page stale: served from the disk cache.
    server.stop()
    server = start_server(*args, "--upstream-ttl", "0", str(local))
    pip_install(server, env, tmp_path / "t5", "remote-app")
    uv_install(server, env, tmp_path / "t6", "remote-app")
    assert installed(tmp_path / "t6") == ["remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]
    assert "serving the copy cached" in server.log()
    # A project never seen: a clear 504 (the upstream is not there).
    status, _, body = server.get("/simple/never-seen/")
    assert status == 504 and b"connection refused" in body and b"'never-seen'" in body


def test_local_names_shadow_the_upstream(start_server, env, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("shared-name", "1.0"))
    write_dist(str(upstream_dir), wheel_bytes("shared-name", "9.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    write_dist(str(local), wheel_bytes("shared-name", "1.0", summary="the local one"))
    server = start_server("--fallback-url", upstream.url + "simple/", str(local))

    status, _, body = server.get("/simple/shared-name/", {"Accept": JSON})
    assert [f["url"] for f in json.loads(body)["files"]] == ["../../packages/shared_name-1.0-py3-none-any.whl"]
    status, _, _ = server.get("/+upstream/shared-name/shared_name-9.0-py3-none-any.whl")
    assert status == 404
    pip_install(server, env, tmp_path / "t", "shared-name")
    assert installed(tmp_path / "t") == ["shared_name-1.0.dist-info"]
    assert "/simple/shared-name/" not in upstream.log()

    server.stop()
    server = start_server("--fallback-url", upstream.url + "simple/", "--upstream-allow", "Shared.Name", str(local))
    status, _, body = server.get("/simple/shared-name/", {"Accept": JSON})
    assert [f["url"] for f in json.loads(body)["files"]] == [
        "../../packages/shared_name-1.0-py3-none-any.whl",
        "../../+upstream/shared-name/shared_name-9.0-py3-none-any.whl"]


def test_fifty_concurrent_requests_one_upstream_fetch(start_server, fake_upstream, tmp_path):
    name = fake_upstream.add(wheel_bytes("slow-one", "1.0", padding=300_000))
    fake_upstream.configure(behaviour={name: "slow"})
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", fake_upstream.url, str(local))
    assert server.get("/simple/slow-one/")[0] == 200
    expected = (fake_upstream.dir / "dists" / name).read_bytes()
    results = []

    def fetch(i):
        try:
            with urllib.request.urlopen(server.url + f"+upstream/slow-one/{name}", timeout=30) as r:
                results.append(r.read() == expected)
        except Exception as e:  # pragma: no cover - reported below
            results.append(e)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * 50
    assert fake_upstream.requests(f"/files/{name}") == 1


def test_client_leaving_does_not_cancel_the_download(start_server, fake_upstream, tmp_path):
    import socket

    name = fake_upstream.add(wheel_bytes("leaver", "1.0", padding=10_000))
    fake_upstream.configure(behaviour={name: "slow"})
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", fake_upstream.url, str(local))
    assert server.get("/simple/leaver/")[0] == 200
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"GET /+upstream/leaver/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.3)
    sock.close()
    status, _, body = server.get(f"/+upstream/leaver/{name}")
    assert status == 200 and body == (fake_upstream.dir / "dists" / name).read_bytes()
    assert fake_upstream.requests(f"/files/{name}") == 1


@pytest.mark.parametrize("behaviour", ["wrong-hash", "cut"])
def test_bad_transfer_never_reaches_the_cache(start_server, fake_upstream, tmp_path, behaviour):
    name = fake_upstream.add(wheel_bytes("fragile", "1.0", padding=200_000))
    if behaviour == "wrong-hash":
        fake_upstream.configure(hashes={name: "0" * 64})
    else:
        fake_upstream.configure(behaviour={name: "cut"})
    local = tmp_path / "local"
    local.mkdir()
    cache = tmp_path / "cache"
    server = start_server("--fallback-url", fake_upstream.url, "--cache-dir", str(cache),
                          "--upstream-ttl", "0", str(local))
    status, _, body = server.get(f"/+upstream/fragile/{name}")
    assert status == 502, body
    assert [p for p in cached_files(cache) if not p.startswith("pages/")] == []
    status, _, body = server.get(f"/+upstream/fragile/{name}")
    assert status == 502
    assert fake_upstream.requests(f"/files/{name}") == 2, "the next request fetches again"
    fake_upstream.configure()
    status, headers, body = server.get(f"/+upstream/fragile/{name}")
    assert status == 200 and body == (fake_upstream.dir / "dists" / name).read_bytes()
    assert cached_files(cache) == ["files/fragile/" + name, "pages/fragile.json"]
    # Served from disk like a local file: ETag and ranges.
    etag = headers["ETag"]
    status, headers, part = server.get(f"/+upstream/fragile/{name}", {"Range": "bytes=10-19", "If-Range": etag})
    assert status == 206 and part == body[10:20]
    assert server.get(f"/+upstream/fragile/{name}", {"If-None-Match": etag})[0] == 304
    assert fake_upstream.requests(f"/files/{name}") == 3


def test_ttl_expiry_revalidates_with_304(start_server, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("fresh-one", "1.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", upstream.url + "simple/", "--upstream-ttl", "1", str(local))
    first = server.get("/simple/fresh-one/", {"Accept": JSON})
    assert first[0] == 200
    assert server.get("/simple/fresh-one/", {"Accept": JSON})[2] == first[2]
    assert upstream.log().count('"GET /simple/fresh-one/ HTTP/1.1" 200') == 1
    time.sleep(1.2)
    again = server.get("/simple/fresh-one/", {"Accept": JSON})
    assert again[0] == 200 and again[2] == first[2]
    assert upstream.log().count('"GET /simple/fresh-one/ HTTP/1.1" 304') == 1


def test_upstream_5xx_serves_stale(start_server, fake_upstream, tmp_path):
    fake_upstream.add(wheel_bytes("flaky", "1.0"))
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", fake_upstream.url, "--upstream-ttl", "0", str(local))
    first = server.get("/simple/flaky/", {"Accept": JSON})
    assert first[0] == 200
    fake_upstream.configure(down=True)
    again = server.get("/simple/flaky/", {"Accept": JSON})
    assert again[0] == 200 and again[2] == first[2]
    assert "HTTP 503" in server.log()


def test_redirect_mode(start_server, tmp_path):
    local = tmp_path / "local"
    write_dist(str(local), wheel_bytes("here", "1.0"))
    server = start_server("--fallback-url", "http://127.0.0.1:9/simple/", "--fallback-mode", "redirect", str(local))
    status, headers, _ = server.get("/simple/elsewhere/")
    assert status == 303 and headers["Location"] == "http://127.0.0.1:9/simple/elsewhere/"
    assert server.get("/simple/here/")[0] == 200
    assert server.get("/+upstream/elsewhere/elsewhere-1.0.tar.gz")[0] == 404, "no cache, no files"


def test_disable_fallback_wins(start_server, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", "http://127.0.0.1:9/simple/", "--disable-fallback", str(local))
    assert server.get("/simple/elsewhere/")[0] == 404


def test_list_upstream(start_server, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("Remote.Thing", "1.0"))
    write_dist(str(upstream_dir), wheel_bytes("both", "1.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    write_dist(str(local), wheel_bytes("Both", "2.0"))
    write_dist(str(local), wheel_bytes("mine", "1.0"))
    server = start_server("--fallback-url", upstream.url + "simple/", "--list-upstream", str(local))
    status, headers, body = server.get("/simple/", {"Accept": JSON})
    assert status == 200 and headers["Content-Type"] == JSON
    assert [p["name"] for p in json.loads(body)["projects"]] == ["Both", "mine", "Remote.Thing"]
    status, _, body = server.get("/simple/")
    assert b'<a href="remote-thing/">Remote.Thing</a>' in body


@pytest.mark.parametrize("behaviour", ["stall", "hang"])
def test_timeouts(start_server, fake_upstream, tmp_path, behaviour):
    """A body that stops flowing, or headers that never come: 502 after the timeout, nothing cached."""
    name = fake_upstream.add(wheel_bytes("stuck", "1.0", padding=100_000))
    fake_upstream.configure(behaviour={name: behaviour})
    local = tmp_path / "local"
    local.mkdir()
    cache = tmp_path / "cache"
    server = start_server("--fallback-url", fake_upstream.url, "--upstream-timeout", "1",
                          "--cache-dir", str(cache), str(local))
    started = time.monotonic()
    status, _, body = server.get(f"/+upstream/stuck/{name}")
    # Headers that never come: the upstream is taken for unreachable (504).
    assert status == (502 if behaviour == "stall" else 504), body
    assert time.monotonic() - started < 5
    assert [p for p in cached_files(cache) if not p.startswith("pages/")] == []


def test_size_cap_evicts_least_recently_used(start_server, fake_upstream, tmp_path):
    names = [fake_upstream.add(wheel_bytes("big", v, padding=60_000)) for v in ("1.0", "2.0", "3.0")]
    local = tmp_path / "local"
    local.mkdir()
    cache = tmp_path / "cache"
    server = start_server("--fallback-url", fake_upstream.url, "--cache-max-size", "150K",
                          "--cache-dir", str(cache), str(local))
    for name in names[:2]:
        assert server.get(f"/+upstream/big/{name}")[0] == 200
    assert server.get(f"/+upstream/big/{names[0]}")[0] == 200  # now the most recently used
    assert server.get(f"/+upstream/big/{names[2]}")[0] == 200
    assert sorted(p for p in cached_files(cache) if p.startswith("files/")) == [
        f"files/big/{names[0]}", f"files/big/{names[2]}"]
    assert fake_upstream.requests(f"/files/{names[0]}") == 1


def test_html_upstream(start_server, fake_upstream, env, tmp_path):
    """An upstream that only speaks HTML: understood, and served as JSON too."""
    fake_upstream.add(wheel_bytes("old-style", "1.0"))
    fake_upstream.add(sdist_bytes("old-style", "1.0"))
    fake_upstream.configure(html=True)
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", fake_upstream.url, str(local))
    status, _, body = server.get("/simple/old-style/", {"Accept": JSON})
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.0", "no sizes from an HTML page"
    assert {f["requires-python"] for f in page["files"]} == {">=3"}
    pip_install(server, env, tmp_path / "t", "old-style")
    assert installed(tmp_path / "t") == ["old_style-1.0.dist-info"]


def test_reserved_names_never_fall_back(start_server, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("acme-secret", "9.0"))
    write_dist(str(upstream_dir), wheel_bytes("public-thing", "1.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", upstream.url + "simple/", "--upstream-deny", "acme-*",
                          "--list-upstream", str(local))
    status, _, body = server.get("/simple/acme-secret/")
    assert status == 404 and b"reserved" in body
    assert server.get("/+upstream/acme-secret/acme_secret-9.0-py3-none-any.whl")[0] == 404
    assert "acme-secret" not in upstream.log()
    assert server.get("/simple/public-thing/")[0] == 200
    status, _, body = server.get("/simple/")
    assert b"public-thing" in body and b"acme" not in body


def reason_of(server, path: str) -> tuple[int, str, float]:
    """(status, reason phrase, seconds taken) of a GET."""
    import http.client

    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, response.reason, time.monotonic() - started


def test_unreachable_upstream_fails_fast_with_the_cause(start_server, env, tmp_path):
    """An upstream that never answers: the start is not held up, then every request fails at once, saying why."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections are made, never answered
    try:
        local = tmp_path / "local"
        local.mkdir()
        started = time.monotonic()
        server = start_server("--fallback-url", f"http://127.0.0.1:{silent.getsockname()[1]}/simple/",
                              "--upstream-timeout", "2", str(local))
        assert time.monotonic() - started < 2, "the check of the upstream does not hold the start up"
        deadline = time.monotonic() + 20
        while "cannot be reached (no answer in time)" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        # The check at start failed, but makes no request fail: the first waits for its timeout...
        status, reason, took = reason_of(server, "/simple/first/")
        assert status == 504 and "no answer in time" in reason and took > 1.5, (reason, took)
        # ... and for a while the next ones fail at once.
        for name in ("never-seen", "other", "third"):
            status, reason, took = reason_of(server, f"/simple/{name}/")
            assert status == 504
            assert reason == f"Upstream index failed (no answer in time): '{name}' is not in this index's cache."
            assert took < 1, took
        status, _, took = reason_of(server, "/+upstream/other/other-1.0.tar.gz")
        assert status == 504 and took < 1
        # pip does not retry a 504 (it does a 502, for seconds), and shows the reason with -v.
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-vv", "--retries", "5",
                                 "--target", str(tmp_path / "t"), "--index-url", server.url + "simple/", "never-seen"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert "504 Server Error: Upstream index failed (no answer in time)" in result.stdout + result.stderr
        assert time.monotonic() - started < 5
        # uv shows the reason phrase (after its own retries).
        result = subprocess.run([tool("uv"), "pip", "install", "--python", sys.executable, "--target",
                                 str(tmp_path / "t2"), "--index-url", server.url + "simple/", "never-seen"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert "504 Upstream index failed (no answer in time): 'never-seen'" in result.stderr, result.stderr
        assert server.log().count("cannot be reached") == 1
    finally:
        silent.close()


def test_start_warns_when_the_url_is_not_a_simple_index(start_server, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("anything", "1.0"))
    upstream = start_server(str(upstream_dir))
    local = tmp_path / "local"
    local.mkdir()
    wrong = start_server("--fallback-url", upstream.url, str(local))
    right = start_server("--fallback-url", upstream.url + "simple/", str(local))
    deadline = time.monotonic() + 20
    while "answers as a simple index" not in right.log() or "does not look like a simple index" not in wrong.log():
        assert time.monotonic() < deadline, (wrong.log(), right.log())
        time.sleep(0.05)
    line = next(line for line in wrong.log().splitlines() if "does not look like a simple index" in line)
    assert "its page is not a list of projects" in line and "/simple/" in line
    assert "does not look like" not in right.log()
