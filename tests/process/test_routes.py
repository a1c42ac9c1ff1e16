"""
Routes pypiserver users and browsers expect, against a real pypid:
/favicon.ico and /robots.txt (never taken for projects, never looked up
upstream), /<project>/json (pypiserver's JSON route, which upip reads),
/metrics without --metrics (404, no project shortcut), the welcome page's
header bar and counted nouns, and the access log naming the representation
of each index page served.
"""

from __future__ import annotations

import json
import struct

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.process.test_upstream_http import FakeUpstream
from tests.server import PypidServer
from tests.uploadhelp import basic, htpasswd

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("routes")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", summary="The demo"))
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


def test_favicon(server):
    status, headers, body = server.get("favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/x-icon"
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind, count) == (0, 1, 1)
    width, height = body[6], body[7]
    assert (width, height) == (16, 16) and len(body) < 2000
    assert "max-age" in headers["Cache-Control"]
    assert server.get("favicon.ico", {"If-None-Match": headers["ETag"]})[0] == 304
    assert server.get("favicon.ico/x")[0] == 404


def test_robots(server):
    status, headers, body = server.get("robots.txt")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = body.decode().splitlines()
    assert "User-agent: *" in lines
    assert "Disallow: /simple/" in lines and "Disallow: /packages/" in lines
    assert "Disallow: /project/" not in lines, "the pages for people may be indexed"


def test_robots_behind_a_prefix(start_server, packages):
    """Behind a trusted proxy mounting pypid at /pypi, the paths carry the prefix."""
    server = start_server("--trusted-proxy", "127.0.0.1", str(packages))
    _, _, body = server.get("robots.txt", {"X-Forwarded-Prefix": "/pypi"})
    assert "Disallow: /pypi/simple/" in body.decode().splitlines()


def test_never_upstream(start_server, packages, tmp_path):
    """With an upstream in cache mode, a browser's visit asks it nothing."""
    upstream = FakeUpstream(tmp_path / "upstream")
    try:
        server = start_server("--fallback-url", upstream.url, str(packages))
        for path in ("favicon.ico", "robots.txt", "favicon.ico", "robots.txt"):
            assert server.get(path)[0] == 200
        assert server.get("simple/favicon-ico/")[0] == 404
        assert upstream.requests("/simple/favicon-ico/") == 1, "only the explicit project lookup"
        assert upstream.requests("/simple/robots-txt/") == 0
    finally:
        upstream.stop()


def test_project_json_is_the_pypi_json_document(server):
    status, headers, body = server.get("demo-app/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == server.get("pypi/demo-app/json")[2]
    doc = json.loads(body)
    assert doc["info"]["name"] == "Demo_App" and doc["info"]["version"] == "1.0"
    assert server.get("demo-app/json/")[2] == body
    status, headers, _ = server.get("Demo_App/json")
    assert status == 301 and headers["Location"] == "../demo-app/json"
    assert server.get("nothing/json")[0] == 404
    assert server.get("demo-app/other")[0] == 404
    assert server.get("demo-app/json", method="HEAD")[0] == 200


def test_project_json_behind_the_list_guard(start_server, packages, tmp_path):
    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "pw"})
    server = start_server("-P", str(passwords), "-a", "update,list", str(packages))
    assert server.get("demo/json")[0] == 401
    status, _, body = server.get("demo/json", basic("alice", "pw"))
    assert status == 200 and json.loads(body)["info"]["name"] == "demo"


def test_metrics_is_404_without_the_option(server):
    status, headers, body = server.get("metrics")
    assert status == 404 and "Location" not in headers
    assert server.get("metrics/")[0] == 404


def test_welcome_has_the_header_bar_and_counted_nouns(server):
    _, _, body = server.get("/")
    page = body.decode()
    assert '<header>' in page and 'class="home"' in page and 'href="project/">All projects</a>' in page
    assert 'action="search"' in page
    assert "<strong>1</strong> project in <strong>1</strong> file." in page
    _, _, body = server.get("project/")
    assert "<p>1 project.</p>" in body.decode()


def test_access_log_names_the_representation(server):
    server.get("simple/", {"Accept": JSON})
    server.get("simple/demo-app/")
    server.get("simple/demo-app/", {"Accept": "application/vnd.pypi.simple.v1+html"})
    log = server.log()
    assert '"GET /simple/ HTTP/1.1" 200' in log
    line = next(l for l in log.splitlines() if '"GET /simple/ HTTP/1.1"' in l)
    assert line.endswith(" representation=json")
    assert sum(1 for l in log.splitlines() if '"GET /simple/demo-app/ HTTP/1.1"' in l and l.endswith(" representation=html")) == 2
    line = next(l for l in log.splitlines() if '"GET /favicon.ico HTTP/1.1"' in l)
    assert "representation=" not in line


def test_access_log_json_has_the_representation_field(start_server, packages):
    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    server = start_server("--log-format", "json", str(packages))
    server.get("simple/demo/", {"Accept": JSON})
    server.get("packages/")
    events = [json.loads(l) for l in server.log().splitlines() if l.startswith("{")]
    hit = next(e for e in events if e.get("uri") == "/simple/demo/")
    assert hit["representation"] == "json" and hit["line"].endswith(" representation=json")
    other = next(e for e in events if e.get("uri") == "/packages/")
    assert "representation" not in other
