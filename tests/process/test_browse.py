"""The pages for people: /project/, /project/<name>/, /search?q= (real twistd)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.server import PypidServer

OLD = 1_700_000_000  # 2023-11-14 22:13 UTC


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    packages = root / "packages"
    write_dist(str(packages), wheel_bytes("Demo_App", "1.0", requires_python=">=3.8", summary="A demo <app>"), mtime=OLD)
    write_dist(str(packages), sdist_bytes("Demo_App", "1.1", requires_python=">=3.9", summary="A demo app, newer"), mtime=OLD + 60)
    write_dist(str(packages), wheel_bytes("Demo_App", "2.0rc1", summary="A pre-release"), mtime=OLD + 120)
    write_dist(str(packages), wheel_bytes("helper-lib", "0.3", summary="Helps the demo"), mtime=OLD)
    write_dist(str(packages), wheel_bytes("zeta", "1.0", summary="Unrelated"), mtime=OLD)
    server = PypidServer([str(packages)], log_path=root / "twistd.log")
    server.start()
    yield server
    server.stop()


def text(body: bytes) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body.decode())))


def links(body: bytes) -> list[str]:
    return re.findall(r'(?:href|src|action)="([^"]*)"', body.decode())


def test_project_page(server):
    """Versions newest first, files with sizes and times, summary, requires-python, install command."""
    status, headers, body = server.get("project/demo-app/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["ETag"] and headers["Cache-Control"] == "max-age=0, must-revalidate"
    page = text(body)
    assert "Demo_App 1.1" in page and "A demo app, newer" in page
    assert "Requires Python >=3.9" in page
    assert f"pip install --index-url {server.url}simple/ demo-app" in page
    assert re.findall(r'<h3 id="v[^"]+">([^<]+)</h3>', body.decode()) == ["2.0rc1", "1.1", "1.0"]
    assert "A demo <app>" in page and b"A demo &lt;app&gt;" in body
    assert "2023-11-14 22:13 UTC" in page and "KiB" in page
    assert "../../packages/demo_app-1.0-py3-none-any.whl" in links(body)
    assert "../../simple/demo-app/" in links(body)


def test_project_redirects_and_missing(server):
    assert server.get("project")[1]["Location"] == "project/"
    assert server.get("project/Demo.App")[1]["Location"] == "demo-app/"
    status, headers, _ = server.get("project/Demo.App/")
    assert (status, headers["Location"]) == (301, "../demo-app/")
    status, _, body = server.get("project/demo/")
    assert status == 404 and "Demo_App" in text(body)


def test_project_list(server):
    status, _, body = server.get("project/")
    page = text(body)
    assert status == 200 and "3 projects" in page
    assert page.index("Demo_App") < page.index("helper-lib") < page.index("zeta")


@pytest.mark.parametrize("query, names", [
    ("demo", ["Demo_App", "helper-lib"]),
    ("DEMO app", ["Demo_App"]),
    ("helper_lib", ["helper-lib"]),
    ("unrelated", ["zeta"]),
    ("nothing", []),
])
def test_search(server, query, names):
    """Words match names (exact, prefix, substring, - _ . folded) and summaries, best first."""
    status, _, body = server.get("search?q=" + quote(query))
    assert status == 200
    found = re.findall(r'<a href="project/[^"]+/">([^<]+)</a>', body.decode())
    assert found == names
    if not names:
        assert "No project matches" in text(body)


def test_search_escapes_query(server):
    status, _, body = server.get("search?q=" + quote('"><script>x</script>'))
    assert b"<script>x" not in body and b"&lt;script&gt;" in body


def test_welcome_links_to_browse_and_search(server):
    _, _, body = server.get("")
    assert "project/" in links(body) and "search" in links(body)


@pytest.mark.parametrize("path", ["", "project/", "project/demo-app/", "search?q=demo"])
def test_no_external_assets(server, path):
    """Pages load nothing from elsewhere: every src/href/action is relative."""
    _, _, body = server.get(path)
    for link in links(body):
        assert not re.match(r"^(https?:)?//", link), link
    assert b"<script" not in body and b"<link" not in body


def test_pages_for_people_need_a_password_with_list(start_server, packages, tmp_path):
    """With -a list, /project/, /search and XML-RPC are protected like /simple/."""
    import xmlrpc.client

    from tests.uploadhelp import basic, htpasswd

    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "pw"})
    server = start_server("-P", str(passwords), "-a", "update,list", str(packages))
    for path in ("project/", "project/demo/", "search?q=demo"):
        assert server.get(path)[0] == 401
        assert server.get(path, basic("alice", "pw"))[0] == 200
    with pytest.raises(xmlrpc.client.ProtocolError):
        xmlrpc.client.ServerProxy(server.url + "RPC2").search({"name": "demo"})
    authed = server.url.replace("http://", "http://alice:pw@")
    assert [h["name"] for h in xmlrpc.client.ServerProxy(authed + "pypi").search({"name": "demo"})] == ["demo"]
