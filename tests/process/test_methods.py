"""
Methods and request heads against a real pypid: HEAD wherever GET works,
405 with Allow for every other method (never Twisted's 501), no 5xx from
any method on any path, and 400 for HTTP/1.1 heads without Host or with two.
"""

from __future__ import annotations

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.rawhttp import request
from tests.server import PypidServer

WHEEL = "demo_app-1.0-py3-none-any.whl"

#: Paths of every kind the server answers, found or not.
PATHS = [
    "/", "/simple", "/simple/", "/simple/demo-app/", "/simple/Demo_App/", "/simple/nothing/",
    "/packages/", f"/packages/{WHEEL}", f"/packages/{WHEEL}.metadata", "/packages/missing.whl",
    "/pypi/demo-app/json", "/pypi/demo-app/1.0/json", "/pypi/nothing/json", "/pypi", "/pypi/",
    "/project/", "/project/demo-app/", "/project/nothing/", "/search?q=demo", "/health",
    "/RPC2", "/demo-app", "/demo-app/", "/a/b/c", "/legacy", "/legacy/", "/metrics",
    "/favicon.ico", "/robots.txt", "/%ff", "/simple/%ff/",
]
OTHER_METHODS = ["OPTIONS", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND", "BREW"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0"))
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", PATHS)
def test_head_wherever_get(server, path):
    """HEAD answers what GET answers, with the same length and no body."""
    get = request(server.port, "GET", path)
    head = request(server.port, "HEAD", path)
    assert head.status == get.status, (path, get.status, head.status)
    assert head.body == b""
    assert head.header("content-length") == get.header("content-length")
    assert head.header("content-type") == get.header("content-type")


@pytest.mark.parametrize("method", OTHER_METHODS)
@pytest.mark.parametrize("path", ["/", "/simple/", "/simple/demo-app/", f"/packages/{WHEEL}",
                                  "/pypi/demo-app/json", "/project/", "/RPC2", "/health", "/demo-app"])
def test_other_methods_get_405_with_allow(server, path, method):
    response = request(server.port, method, path)
    assert response.status == 405, (method, path, response)
    allow = [m.strip() for m in response.header("allow").split(",")]
    expected = {"POST"} if path == "/RPC2" else {"GET", "HEAD"}
    assert expected <= set(allow)
    assert method not in allow
    assert response.header("content-type") == "text/plain; charset=utf-8"
    assert response.header("cache-control") == "no-store"
    assert b"<html" not in response.body


def test_post_where_only_post_is_routed(server):
    """GET and HEAD of /RPC2 (POST only) are 405 with Allow: POST, not a 500."""
    for method in ("GET", "HEAD"):
        response = request(server.port, method, "/RPC2")
        assert response.status == 405
        assert response.header("allow") == "POST"


def test_allow_names_post_where_uploads_go(server):
    """PUT / lists POST in Allow: POST / is the upload and XML-RPC URL."""
    response = request(server.port, "PUT", "/")
    assert response.header("allow") == "GET, HEAD, POST"


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", *OTHER_METHODS])
def test_no_5xx_from_any_method(server, method):
    for path in PATHS:
        response = request(server.port, method, path, body=b"x=1" if method in ("POST", "PUT", "PATCH") else b"")
        assert response.status < 500, (method, path, response)
    assert "Traceback" not in server.log()


def test_options_star(server):
    response = request(server.port, "OPTIONS", "*")
    assert response.status == 405 and response.header("allow") == "GET, HEAD, POST"
    assert request(server.port, "GET", "*").status == 400


def test_host_is_required_once(server):
    """RFC 9112, 3.2: 400 for an HTTP/1.1 head without Host, or any head with two."""
    missing = request(server.port, "GET", "/simple/", headers=[])
    assert missing.status == 400 and b"Host" in missing.body
    assert missing.header("cache-control") == "no-store"
    twice = request(server.port, "GET", "/simple/", headers=[("Host", "a.example"), ("Host", "b.example")])
    assert twice.status == 400
    listed = request(server.port, "GET", "/simple/", headers=[("Host", "a.example, b.example")])
    assert listed.status == 400
    assert request(server.port, "HEAD", "/simple/", headers=[]).body == b""
    # HTTP/1.0 may leave Host out, but not give two.
    assert request(server.port, "GET", "/simple/", headers=[], version="HTTP/1.0").status == 200
    assert request(server.port, "GET", "/simple/", version="HTTP/1.0",
                   headers=[("Host", "a"), ("Host", "b")]).status == 400
    # An empty Host (a target without authority) is allowed.
    assert request(server.port, "GET", "/simple/", headers=[("Host", "")]).status == 200
    assert "request refused with 400: Bad Request: an HTTP/1.1 request needs a Host header." in server.log()


@pytest.mark.parametrize("head, status", [
    (b"GET /simple/\r\n\r\n", 400),
    (b"GET /simple/ HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    (b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /simple/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /simple/ HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Many-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
     + b"\r\n", 431),
], ids=["no-version", "no-colon", "bad-length", "bad-chunk", "long-line", "long-head"])
def test_malformed_heads_get_a_plain_answer(server, head, status):
    """What Twisted's parser refuses is answered like every error: status, reason, text body."""
    from tests.rawhttp import exchange, parse

    answer = parse(exchange(server.port, head))
    assert answer.status == status
    assert answer.header("content-type") == "text/plain; charset=utf-8"
    assert answer.body and answer.header("content-length") == str(len(answer.body))
