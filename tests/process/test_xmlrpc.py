"""XML-RPC search at /RPC2, /pypi and / against a real pypid, with real pip search."""

from __future__ import annotations

import subprocess
import sys
import xmlrpc.client

import pytest

from pypid.index.model import IndexSnapshot
from pypid.index.search import SearchError, SearchIndex
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.web.xmlrpc import PARSE_ERROR, UnsafeXML, parse_call
from tests.server import PypidServer, client_env

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<methodCall><methodName>search</methodName><params><param><value><string>&lol3;</string></value></param></params></methodCall>
"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>search</methodName><params><param><value><string>&ext;</string></value></param></params></methodCall>
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("xmlrpc")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", summary="A demo application"))
    write_dist(str(packages), sdist_bytes("Demo_App", "1.1", summary="A demo application, newer"))
    write_dist(str(packages), wheel_bytes("other", "2.0", summary="Something else with DEMO inside"))
    write_dist(str(packages), wheel_bytes("zeta", "0.1", summary="Unrelated"))
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


def _post(server, path, body, content_type):
    import urllib.request

    request = urllib.request.Request(server.url + path.lstrip("/"), data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers, response.read()


@pytest.mark.parametrize("path", ["RPC2", "pypi", "pypi/", ""])
def test_search_at_every_path(server, path):
    """search(spec, 'or') answers one struct per project, at /RPC2, /pypi, /pypi/ and /."""
    proxy = xmlrpc.client.ServerProxy(server.url + path)
    hits = proxy.search({"name": ["demo"], "summary": ["demo"]}, "or")
    assert sorted((h["name"], h["version"], h["summary"]) for h in hits) == [
        ("Demo_App", "1.1", "A demo application, newer"),
        ("other", "2.0", "Something else with DEMO inside"),
    ]
    assert all(isinstance(h["_pypi_ordering"], int) for h in hits)


def test_search_semantics(server):
    proxy = xmlrpc.client.ServerProxy(server.url + "RPC2")
    assert [h["name"] for h in proxy.search({"name": "demo_app"})] == ["Demo_App"]
    assert proxy.search({"name": "demo", "summary": "newer"}, "and")[0]["name"] == "Demo_App"
    assert proxy.search({"name": "zeta", "summary": "demo"}, "and") == []
    by_version = proxy.search({"name": "demo-app", "version": "1.0"}, "and")
    assert [(h["version"], h["summary"]) for h in by_version] == [("1.0", "A demo application")]
    assert proxy.list_packages() == ["Demo_App", "other", "zeta"]


@pytest.mark.parametrize("call, code", [
    (lambda p: p.search({"name": "x"}, "xor"), -32500),
    (lambda p: p.search({"colour": "x"}), -32500),
    (lambda p: p.search("demo"), -32500),
    (lambda p: p.search(), -32602),
    (lambda p: p.package_releases("demo"), -32601),
])
def test_faults(server, call, code):
    """Bad calls are XML-RPC faults, not HTTP errors."""
    with pytest.raises(xmlrpc.client.Fault) as e:
        call(xmlrpc.client.ServerProxy(server.url + "RPC2"))
    assert e.value.faultCode == code


@pytest.mark.parametrize("body", [BOMB, EXTERNAL, b"<methodCall><methodName>search", b"not xml at all", b"x" * 70_000])
def test_unsafe_or_broken_bodies_are_faults_with_200(server, body):
    """Entity bombs, external entities, broken and huge bodies: HTTP 200 and a well-formed fault."""
    status, headers, reply = _post(server, "RPC2", body, "text/xml")
    assert status == 200 and headers["Content-Type"].startswith("text/xml")
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(reply)
    assert e.value.faultCode in (PARSE_ERROR, -32600)
    assert b"lollol" not in reply and b"root:" not in reply


def test_get_json_api_still_works_beside_post(server):
    status, _, body = server.get("pypi/demo-app/json")
    assert status == 200 and b'"name":"Demo_App"' in body
    # A POST to /pypi that is not XML is not taken for XML-RPC.
    status, _, _ = server.get("pypi", {"Content-Type": "application/json"}, method="POST")
    assert status in (404, 405)


def test_pip_search(server, tmp_path):
    """Real pip search against /pypi: hits, and exit status 23 when nothing matches."""
    env = client_env(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pip", "search", "-i", server.url + "pypi", "demo"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Demo_App (1.1)" in result.stdout and "A demo application, newer" in result.stdout
    assert "other (2.0)" in result.stdout and "zeta" not in result.stdout
    result = subprocess.run([sys.executable, "-m", "pip", "search", "-i", server.url, "nothing-here"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 23, result.stdout + result.stderr


def test_parse_call_guard():
    with pytest.raises(UnsafeXML):
        parse_call(BOMB)
    with pytest.raises(UnsafeXML):
        parse_call(EXTERNAL)
    assert parse_call(xmlrpc.client.dumps(({"name": "é"}, "or"), "search").encode()) == (
        "search", ({"name": "é"}, "or"))


def test_spec_search_unit():
    index = SearchIndex(IndexSnapshot.empty())
    assert index.spec_search({"name": "x"}, "or") == []
    with pytest.raises(SearchError):
        index.spec_search({"name": 3}, "or")
