"""The HTTP surface of a real `twistd -n pypid` process, probed with urllib."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zipfile

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import PypidServer

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    packages = root / "packages"
    packages.mkdir()
    files = {
        "wheel": write_dist(str(packages), wheel_bytes("Foo_Bar", "1.0", requires_python=">=3.8,<4"), mtime=1_700_000_000),
        "sdist": write_dist(str(packages), sdist_bytes("Foo_Bar", "1.0", requires_python=">=3.8,<4"), mtime=1_700_000_000),
        "dep": write_dist(str(packages / "sub" / "deeper"), wheel_bytes("dep", "2.0")),
        "plus": write_dist(str(packages), wheel_bytes("pkg", "1.0+cpu")),
        "big": write_dist(str(packages), wheel_bytes("big", "1.0", padding=3 * 1024 * 1024)),
    }
    (packages / "README.txt").write_text("not a package")
    (packages / ".hidden-1.0.tar.gz").write_bytes(b"x")
    (packages / "partial-1.0.tar.gz.part").write_bytes(b"x")
    outside = root / "secret-1.0.tar.gz"
    outside.write_bytes(sdist_bytes("secret", "1.0")[1])
    os.symlink(outside, packages / "secret-1.0.tar.gz")
    return root, packages, files


@pytest.fixture(scope="module")
def server(tree):
    root, packages, _ = tree
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


def test_project_list_html_and_json(server):
    status, headers, body = server.get("simple/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<meta name="pypi:repository-version" content="1.4">' in body
    assert b'<a href="foo-bar/">Foo_Bar</a>' in body
    assert b"secret" not in body and b"hidden" not in body and b"partial" not in body
    status, headers, body = server.get("simple/", {"Accept": JSON})
    assert headers["Content-Type"] == JSON
    assert headers["Vary"] == "Accept, Accept-Encoding"
    doc = json.loads(body)
    assert doc["meta"]["api-version"] == "1.4"
    assert {p["name"] for p in doc["projects"]} == {"Foo_Bar", "dep", "pkg", "big"}


def test_redirects(server):
    """Missing slashes and unnormalised names redirect, relatively, in one hop."""
    assert server.get("simple")[:2][0] == 301
    assert server.get("simple")[1]["Location"] == "simple/"
    status, headers, _ = server.get("simple/Foo_Bar/")
    assert (status, headers["Location"]) == (301, "../foo-bar/")
    status, headers, _ = server.get("simple/Foo_Bar")
    assert (status, headers["Location"]) == (301, "foo-bar/")
    status, headers, _ = server.get("simple/Foo_Bar/?format=" + JSON)
    assert headers["Location"] == "../foo-bar/?format=" + JSON
    status, headers, _ = server.get("Foo.Bar")
    assert (status, headers["Location"]) == (303, "simple/foo-bar/")
    assert server.get("packages")[1]["Location"] == "packages/"


def test_unknown_and_unacceptable(server):
    """An unknown project is 404 (uv needs it); an unacceptable Accept is 406."""
    assert server.get("simple/nope/")[0] == 404
    assert server.get("simple/nope/", {"Accept": JSON})[0] == 404
    assert server.get("simple/not%20valid/")[0] == 404
    status, _, body = server.get("simple/foo-bar/", {"Accept": "application/json"})
    assert status == 406 and b"application/vnd.pypi.simple.v1+json" in body
    assert server.get("simple/foo-bar/extra")[0] == 404


def test_project_page_negotiation(server, tree):
    _, _, files = tree
    wheel_sha = hashlib.sha256(open(files["wheel"], "rb").read()).hexdigest()
    status, headers, body = server.get("simple/foo-bar/", {"Accept": "application/vnd.pypi.simple.latest+json"})
    assert headers["Content-Type"] == JSON
    doc = json.loads(body)
    assert doc["name"] == "foo-bar"
    assert doc["versions"] == ["1.0"]
    wheel = next(f for f in doc["files"] if f["filename"].endswith(".whl"))
    assert wheel["hashes"] == {"sha256": wheel_sha}
    assert wheel["upload-time"] == "2023-11-14T22:13:20.000000Z"
    assert wheel["size"] == os.path.getsize(files["wheel"])
    status, headers, body = server.get("simple/foo-bar/", {"Accept": "application/vnd.pypi.simple.v1+html"})
    assert headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
    assert f"#sha256={wheel_sha}".encode() in body
    assert b'data-requires-python="&gt;=3.8,&lt;4"' in body
    status, headers, body = server.get("simple/foo-bar/?format=" + JSON, {"Accept": "text/html"})
    assert headers["Content-Type"] == JSON


def test_etag_304_gzip_head(server):
    status, headers, body = server.get("simple/")
    etag = headers["ETag"]
    assert etag.startswith('"') and headers["Cache-Control"] == "max-age=0, must-revalidate"
    status, headers, body = server.get("simple/", {"If-None-Match": etag})
    assert status == 304 and body == b""
    status, headers, zbody = server.get("simple/", {"Accept-Encoding": "gzip", "Accept": JSON})
    if headers.get("Content-Encoding") == "gzip":
        assert json.loads(gzip.decompress(zbody))["projects"]
    status, headers, page = server.get("simple/foo-bar/")
    status, hheaders, hbody = server.get("simple/foo-bar/", method="HEAD")
    assert status == 200 and hbody == b""
    assert int(hheaders["Content-Length"]) == len(page)
    assert hheaders["Content-Type"] == headers["Content-Type"]
    # The project list is big enough to be compressed.
    status, headers, _ = server.get("simple/", {"Accept-Encoding": "gzip"})


def test_large_index_is_gzipped(server):
    """A page above the threshold is served gzip-encoded to clients that accept it."""
    status, headers, body = server.get("packages/", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"foo_bar-1.0.tar.gz" in gzip.decompress(body)
    assert headers["ETag"] != server.get("packages/")[1]["ETag"]


def test_sdist_is_byte_identical(server, tree):
    """A .tar.gz goes out as-is: no Content-Encoding, even to gzip-accepting clients."""
    _, _, files = tree
    status, headers, body = server.get("packages/foo_bar-1.0.tar.gz", {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert "Content-Encoding" not in headers
    assert body == open(files["sdist"], "rb").read()
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/gzip"
    status, headers, empty = server.get("packages/foo_bar-1.0.tar.gz", method="HEAD")
    assert (status, empty, headers["Content-Length"]) == (200, b"", str(len(body)))


def test_file_validators_and_ranges(server, tree):
    _, _, files = tree
    data = open(files["big"], "rb").read()
    url = "packages/big-1.0-py3-none-any.whl"
    status, headers, body = server.get(url, method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(data))
    etag = headers["ETag"]
    assert etag == '"%s"' % hashlib.sha256(data).hexdigest()
    assert server.get(url, {"If-None-Match": etag})[0] == 304
    status, headers, body = server.get(url, {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert headers["Content-Length"] == "10"
    status, headers, body = server.get(url, {"Range": "bytes=-100"})
    assert (status, body) == (206, data[-100:])
    status, headers, body = server.get(url, {"Range": f"bytes=-{len(data) + 50}"})
    assert status == 206 and body == data
    status, headers, body = server.get(url, {"Range": "bytes=100-", "If-Range": etag})
    assert (status, body) == (206, data[100:])
    status, headers, body = server.get(url, {"Range": "bytes=100-", "If-Range": '"stale"'})
    assert (status, body) == (200, data)
    status, headers, _ = server.get(url, {"Range": f"bytes={len(data) + 10}-"})
    assert status == 416


def test_plus_in_filename(server):
    """'+' is a literal plus; pip's re-quoted %2B works too."""
    assert server.get("packages/pkg-1.0+cpu-py3-none-any.whl")[0] == 200
    assert server.get("packages/pkg-1.0%2Bcpu-py3-none-any.whl")[0] == 200


def test_nested_file(server, tree):
    _, _, files = tree
    status, _, body = server.get("packages/sub/deeper/dep-2.0-py3-none-any.whl")
    assert status == 200 and body == open(files["dep"], "rb").read()
    assert server.get("packages/dep-2.0-py3-none-any.whl")[0] == 404


@pytest.mark.parametrize("path", [
    "packages/../setup.cfg",
    "packages/%2e%2e/%2e%2e/etc/passwd",
    "packages/..%2f..%2fetc%2fpasswd",
    "packages//etc/passwd",
    "packages/secret-1.0.tar.gz",
    "packages/.hidden-1.0.tar.gz",
    "packages/partial-1.0.tar.gz.part",
    "packages/README.txt",
    "packages/sub/",
    "packages/sub",
])
def test_no_escape(server, path):
    """Paths outside the listed files, hidden, temporary or symlinked out, are 404."""
    assert server.get(path)[0] == 404


def test_core_metadata(server, tree):
    """The .metadata file is the wheel's METADATA, byte for byte, with the advertised hash."""
    _, _, files = tree
    with zipfile.ZipFile(files["wheel"]) as archive:
        expected = archive.read("foo_bar-1.0.dist-info/METADATA")
    digest = hashlib.sha256(expected).hexdigest()
    _, _, page = server.get("simple/foo-bar/")
    assert f'data-core-metadata="sha256={digest}"'.encode() in page
    status, headers, body = server.get("packages/foo_bar-1.0-py3-none-any.whl.metadata")
    assert (status, body) == (200, expected)
    assert headers["ETag"] == f'"{digest}"'
    assert server.get("packages/foo_bar-1.0-py3-none-any.whl.metadata", {"If-None-Match": f'"{digest}"'})[0] == 304
    status, headers, body = server.get("packages/foo_bar-1.0-py3-none-any.whl.metadata", method="HEAD")
    assert headers["Content-Length"] == str(len(expected)) and body == b""
    assert server.get("packages/foo_bar-1.0.tar.gz.metadata")[0] == 404


def test_pypi_json(server):
    status, headers, body = server.get("pypi/foo-bar/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["info"]["name"] == "Foo_Bar"
    assert doc["info"]["version"] == "1.0"
    assert doc["info"]["requires_python"] == ">=3.8,<4"
    assert doc["info"]["summary"] == "The Foo_Bar test package"
    assert set(doc["releases"]) == {"1.0"}
    assert {u["packagetype"] for u in doc["urls"]} == {"bdist_wheel", "sdist"}
    url = doc["urls"][0]["url"]
    assert url.startswith(server.url + "packages/")
    assert len(doc["urls"][0]["digests"]["sha256"]) == 64
    assert server.get("pypi/Foo_Bar/json")[1]["Location"] == "../foo-bar/json"
    status, _, body = server.get("pypi/foo-bar/1.0/json")
    assert status == 200 and "releases" not in json.loads(body)
    assert server.get("pypi/foo-bar/9.9/json")[0] == 404
    assert server.get("pypi/nope/json")[0] == 404


def test_welcome_and_health(server):
    status, headers, body = server.get("/", {"Host": "index.example:8080"})
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"http://index.example:8080/simple/" in body
    assert b"<strong>4</strong> projects" in body
    assert b"[[index]]" in body and b"poetry source add" in body
    status, headers, body = server.get("/", {"Host": "<script>"})
    assert status == 200 and b"<script>" not in body
    status, headers, body = server.get("health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_methods(server):
    """A POST to the simple API is 405 with Allow, never a redirect."""
    status, headers, _ = server.get("simple/foo-bar/", method="POST")
    assert status == 405


def test_access_log_and_unparseable_logged_once(server):
    log = server.log()
    assert "not listing README.txt" in log
    assert log.count("not listing README.txt") == 1
    assert '"GET /simple/ HTTP/1.1" 200' in log
    assert "Traceback" not in log


def test_options_variants(tmp_path):
    """--hash-algo off drops the fragment; --cache-control marks downloads; --welcome replaces /."""
    packages = tmp_path / "p"
    packages.mkdir()
    write_dist(str(packages), wheel_bytes("solo", "1.0"))
    welcome = tmp_path / "welcome.html"
    welcome.write_text("<h1>Ours</h1> {{NUMPKGS}} files at {{URL}}")
    server = PypidServer(["--hash-algo", "off", "--cache-control", "600", "--welcome", str(welcome),
                          "--no-access-log",
                          "--health-endpoint", "/ping", str(packages)], log_path=tmp_path / "log")
    try:
        _start_without_health(server)
        _, _, body = server.get("simple/solo/")
        assert b"#sha256" not in body and b"solo-1.0-py3-none-any.whl" in body
        _, headers, _ = server.get("packages/solo-1.0-py3-none-any.whl")
        assert headers["Cache-Control"] == "public, max-age=600"
        _, _, body = server.get("/")
        assert body.startswith(b"<h1>Ours</h1> 1 files at http://127.0.0.1:")
        assert server.get("ping")[0] == 200
        assert server.get("health")[0] == 303, "an ordinary /<name> shortcut now"
        assert '"GET /simple/solo/ HTTP/1.1"' not in server.log(), "--no-access-log"
    finally:
        server.stop()


def _start_without_health(server):
    import time

    import urllib.request

    original = server.wait_ready

    def wait_ready(timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(server.url + "ping", timeout=5) as response:
                    if json.load(response)["status"] == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(server.log())

    server.wait_ready = wait_ready
    try:
        server.start()
    finally:
        server.wait_ready = original


def test_missing_directory_is_clear(tmp_path):
    """A missing package directory stops twistd with a clear message, no traceback."""
    server = PypidServer([str(tmp_path / "missing")], log_path=tmp_path / "log")
    with pytest.raises(RuntimeError) as error:
        server.start(timeout=20)
    assert "does not exist" in str(error.value)
    assert "Traceback" not in str(error.value)
