"""
The upstream fast path against a real pypid: PEP 658 for every upstream
wheel, HEAD and Range on files not cached without fetching them whole, and
/pypi/<p>/json for upstream projects; the upstream a local server (with and
without .metadata files and Range support), the clients real uv and pip.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import pytest

from pypid.store.metadata import read_wheel_metadata
from pypid.testing import sdist_bytes, wheel_bytes
from tests.process.test_upstream_http import FakeUpstream, installed, run
from tests.server import tool

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def upstream(tmp_path):
    server = FakeUpstream(tmp_path / "fake-upstream")
    server.add(wheel_bytes("app-one", "1.0", requires=["lib-two>=1"], padding=200_000))
    server.add(wheel_bytes("lib-two", "1.0", padding=150_000))
    server.add(wheel_bytes("lib-two", "2.0", requires_python=">=3.8", padding=150_000))
    server.add(sdist_bytes("lib-two", "2.0"))
    yield server
    server.stop()


def lines(upstream) -> list[str]:
    try:
        return (upstream.dir / "requests.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def whole_wheel_gets(upstream) -> list[str]:
    return [line for line in lines(upstream) if line.startswith("GET /files/") and line.endswith(".whl")]


def ranged_gets(upstream) -> list[str]:
    return [line for line in lines(upstream) if line.startswith("GET /files/") and " bytes=" in line]


def compile_with_uv(server, env, tmp_path) -> str:
    requirements = tmp_path / "requirements.in"
    requirements.write_text("app-one\n")
    result = subprocess.run([tool("uv"), "pip", "compile", "--python", sys.executable, "--no-header",
                             "--index-url", server.url + "simple/", str(requirements)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("ranges", [True, False])
def test_uv_resolves_through_pypid_with_pep658_for_every_wheel(start_server, env, upstream, tmp_path, ranges):
    """An upstream without .metadata files: pypid offers them, read from ranges of the wheels (or whole wheels)."""
    upstream.configure(ranges=ranges)
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", upstream.url, str(local))
    status, _, body = server.get("/simple/lib-two/", {"Accept": JSON})
    files = {f["filename"]: f for f in json.loads(body)["files"]}
    assert files["lib_two-1.0-py3-none-any.whl"]["core-metadata"] is True
    assert "core-metadata" not in files["lib_two-2.0.tar.gz"], "not for sdists"

    output = compile_with_uv(server, env, tmp_path)
    assert "app-one==1.0" in output and "lib-two==2.0" in output
    if ranges:
        assert whole_wheel_gets(upstream) == [], "no wheel fetched whole"
        assert len(ranged_gets(upstream)) <= 4, lines(upstream)
    else:
        assert sorted(whole_wheel_gets(upstream)) == [
            "GET /files/app_one-1.0-py3-none-any.whl", "GET /files/lib_two-2.0-py3-none-any.whl"]
    # The metadata is kept, with its hash now on the pages.
    status, _, body = server.get("/simple/lib-two/", {"Accept": JSON})
    files = {f["filename"]: f for f in json.loads(body)["files"]}
    wheel = (upstream.dir / "dists" / "lib_two-2.0-py3-none-any.whl").read_bytes()
    digest = hashlib.sha256(read_wheel_metadata(io.BytesIO(wheel))).hexdigest()
    assert files["lib_two-2.0-py3-none-any.whl"]["core-metadata"] == {"sha256": digest}
    assert files["lib_two-1.0-py3-none-any.whl"]["core-metadata"] is True

    # pip installs with them (checking the hash it was given), then downloads the wheels it chose.
    before = len(lines(upstream))
    target = tmp_path / "t"
    run([sys.executable, "-m", "pip", "install", "--target", str(target), "--index-url", server.url + "simple/",
         "app-one"], env)
    assert installed(target) == ["app_one-1.0.dist-info", "lib_two-2.0.dist-info"]
    assert not any(".metadata" in line or " bytes=" in line for line in lines(upstream)[before:])


def test_upstream_metadata_files_are_used(start_server, env, upstream, tmp_path):
    upstream.configure(metadata=True, ranges=True)
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", upstream.url, str(local))
    output = compile_with_uv(server, env, tmp_path)
    assert "lib-two==2.0" in output
    assert ranged_gets(upstream) == [] and whole_wheel_gets(upstream) == []
    assert "GET /files/lib_two-2.0-py3-none-any.whl.metadata" in lines(upstream)


def test_head_and_range_without_whole_downloads(start_server, upstream, tmp_path):
    upstream.configure(ranges=True)
    local = tmp_path / "local"
    local.mkdir()
    server = start_server("--fallback-url", upstream.url, str(local))
    name = "app_one-1.0-py3-none-any.whl"
    data = (upstream.dir / "dists" / name).read_bytes()
    status, headers, body = server.get(f"/+upstream/app-one/{name}", method="HEAD")
    assert (status, body, headers["Content-Length"], headers["Accept-Ranges"]) == (200, b"", str(len(data)), "bytes")
    assert headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    status, headers, body = server.get(f"/+upstream/app-one/{name}", {"Range": "bytes=-22"})
    assert (status, body) == (206, data[-22:])
    assert headers["Content-Range"] == f"bytes {len(data) - 22}-{len(data) - 1}/{len(data)}"
    assert whole_wheel_gets(upstream) == []
    assert not any(line.startswith("HEAD") for line in lines(upstream)), "the page told the size"
    # Asked for in full: fetched once, cached, then ranges come from the cache.
    status, _, body = server.get(f"/+upstream/app-one/{name}")
    assert (status, body) == (200, data)
    status, _, body = server.get(f"/+upstream/app-one/{name}", {"Range": "bytes=0-9"})
    assert (status, body) == (206, data[:10])
    assert len(whole_wheel_gets(upstream)) == 1 and len(ranged_gets(upstream)) == 1


def test_json_api_for_upstream_projects(start_server, upstream, tmp_path):
    """From a pypid upstream's own JSON API (URLs rewritten), and built from the page where there is none."""
    from pypid.testing import write_dist

    upstream.configure(ranges=True)
    local = tmp_path / "local"
    local.mkdir()
    built = start_server("--fallback-url", upstream.url, str(local))
    status, headers, body = built.get("/pypi/lib-two/json")
    assert status == 200, body
    document = json.loads(body)
    assert document["info"]["name"] == "lib-two", "from the wheel's metadata"
    assert document["info"]["version"] == "2.0" and document["info"]["requires_python"] == ">=3.8"
    assert sorted(document["releases"]) == ["1.0", "2.0"]
    assert all(f["url"].startswith(built.url + "+upstream/lib-two/") for f in document["urls"])
    assert built.get("/pypi/lib-two/1.0/json")[0] == 200
    assert built.get("/pypi/lib-two/9.9/json")[0] == 404
    assert built.get("/pypi/nowhere/json")[0] == 404
    assert whole_wheel_gets(upstream) == []

    pypid_upstream_dir = tmp_path / "pypid-upstream"
    write_dist(str(pypid_upstream_dir), wheel_bytes("Remote.Thing", "3.0", summary="Remote summary"))
    pypid_upstream = start_server(str(pypid_upstream_dir))
    proxied = start_server("--fallback-url", pypid_upstream.url + "simple/", str(local))
    status, _, body = proxied.get("/pypi/remote-thing/json")
    assert status == 200
    document = json.loads(body)
    assert document["info"]["summary"] == "Remote summary"
    assert document["info"]["package_url"] == proxied.url + "simple/remote-thing/"
    (f,) = document["urls"]
    assert f["url"] == proxied.url + "+upstream/remote-thing/remote_thing-3.0-py3-none-any.whl"
    assert pypid_upstream.url not in body.decode()
    status, _, data = proxied.get(f["url"][len(proxied.url) - 1:])
    assert status == 200 and hashlib.sha256(data).hexdigest() == f["digests"]["sha256"]
