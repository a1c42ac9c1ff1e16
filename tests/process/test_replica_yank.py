"""
Yanks (PEP 592) and the change serial with two replicas (real SeaweedFS,
real PostgreSQL, two real twistd processes): a yank by `pypid yank` on
replica A shows on replica B's simple pages and JSON within the usual
propagation time, an unyank by the HTTP API on B shows on A, the serials
(X-PyPI-Last-Serial, XML-RPC) are the same on both, also after B
restarts; a removed file's yank goes, a file uploaded again starts
unyanked; with the catalog stopped a yank is a 503 and changes nothing.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import xmlrpc.client

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.process.conftest import need_module
from tests.replicas import Replicas, health
from tests.uploadhelp import basic, htpasswd, multipart, post, run, twine, upload

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

ALICE = basic("alice", "alice-pw")
V10 = wheel_bytes("Demo_Pkg", "1.0")
V11 = wheel_bytes("Demo_Pkg", "1.1")
V11_SDIST = sdist_bytes("Demo_Pkg", "1.1")
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def replicas(tmp_path, seaweedfs, postgres):
    made = Replicas(tmp_path, seaweedfs, postgres)
    yield made
    made.stop()


def until(check, timeout: float = 10.0, what: str = "condition"):
    """Poll C{check} until it gives something true; returns it and the seconds it took."""
    began = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - began
        assert time.monotonic() - began < timeout, f"timed out waiting for {what}"
        time.sleep(0.01)


def simple_json(server) -> dict:
    status, _, body = server.get("/simple/demo-pkg/", JSON)
    assert status == 200
    return {f["filename"]: f.get("yanked") for f in json.loads(body)["files"]}


def serials(server) -> dict:
    """Every serial a mirror reads of the index, as this replica gives them."""
    proxy = xmlrpc.client.ServerProxy(server.url + "pypi")
    _, project_headers, _ = server.get("/simple/demo-pkg/")
    _, index_headers, _ = server.get("/simple/")
    return {
        "last": proxy.changelog_last_serial(),
        "changelog": proxy.changelog_since_serial(0),
        "projects": proxy.list_packages_with_serial(),
        "project header": project_headers.get("X-PyPI-Last-Serial"),
        "index header": index_headers.get("X-PyPI-Last-Serial"),
    }


def api(server, action: str, fields: dict, headers=ALICE):
    return post(server, urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded",
                f"/+api/{action}", headers)


def test_yank_on_one_replica_shows_on_the_other(replicas, tmp_path, env):
    from tests.process.test_yank import cli

    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    a = replicas.start("-P", str(passwords), name="a")
    b = replicas.start("-P", str(passwords), name="b")
    dist = tmp_path / "dist"
    dist.mkdir()
    for filename, data in (V10, V11, V11_SDIST):
        (dist / filename).write_bytes(data)
    run(twine("upload", "--non-interactive", "--repository-url", a.url, "-u", "alice", "-p", "alice-pw",
              "--disable-progress-bar", *map(str, sorted(dist.iterdir()))), env)
    until(lambda: health(b)["files"] == 3, what="b to list the uploads")

    # pypid yank, sent to replica A.
    result = cli(a, dict(env, PYPID_PASSWORD="alice-pw"), "yank", "--url", a.url, "-u", "alice",
                 "--reason", "breaks <imports>", "demo-pkg", "1.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Yanked demo-pkg 1.1 (2 files): breaks <imports>.\n"
    _, seconds = until(lambda: b'data-yanked="breaks &lt;imports&gt;"' in b.get("/simple/demo-pkg/")[2],
                       what="the yank on b's simple page")
    assert seconds < 1.0, f"the yank took {seconds:.2f} s to show on b"
    _, _, html = b.get("/simple/demo-pkg/")
    assert html.count(b'data-yanked="breaks &lt;imports&gt;"') == 2
    assert simple_json(b) == {V10[0]: None, V11[0]: "breaks <imports>", V11_SDIST[0]: "breaks <imports>"}
    info = json.loads(b.get("/pypi/demo-pkg/json")[2])
    assert (info["info"]["version"], info["info"]["yanked"]) == ("1.0", False)
    assert {(f["yanked"], f["yanked_reason"]) for f in info["releases"]["1.1"]} == {(True, "breaks <imports>")}
    # B says where the yank came from.
    until(lambda: "changed outside pypid's API (the yank file, or another replica); reason: breaks <imports>"
          in b.log(), what="b's audit line")
    database = replicas.catalog_url.rsplit("/", 1)[1]
    assert replicas.postgres.psql(
        "SELECT filename, yanked_reason FROM pypid_files WHERE yanked ORDER BY filename", database
    ).split("\n")[:2] == [f"{V11[0]}|breaks <imports>", f"{V11_SDIST[0]}|breaks <imports>"]

    # The same serials on both: the index's, each project's, the change log.
    on_a = serials(a)
    assert on_a == serials(b)
    assert on_a["last"] == 5 and on_a["projects"] == {"Demo_Pkg": 5}
    assert on_a["project header"] == on_a["index header"] == "5"
    assert [entry[3] for entry in on_a["changelog"][-2:]] == [f"yank file {V11[0]}", f"yank file {V11_SDIST[0]}"]

    # Unyank one file through the API on B: A shows it; the serials still agree.
    status, _, body = api(b, "unyank", {"project": "demo-pkg", "file": V11[0]})
    assert (status, body) == (200, f"Unyanked {V11[0]} (1 file).\n")
    until(lambda: simple_json(a)[V11[0]] is None, what="the unyank on a")
    assert serials(a) == serials(b)

    # B restarted: the yank and the serials come from the catalog alone.
    b.stop()
    b = replicas.start("-P", str(passwords), name="b-again")
    assert simple_json(b) == simple_json(a) == {V10[0]: None, V11[0]: None, V11_SDIST[0]: "breaks <imports>"}
    assert serials(a) == serials(b)

    # Removed (remove_pkg on A), its yank goes; uploaded again (on B), the file is not yanked.
    body, content_type = multipart([(":action", None, b"remove_pkg"), ("name", None, b"demo-pkg"),
                                    ("version", None, b"1.1")])
    status, reason, _ = post(a, body, content_type, headers=ALICE)
    assert status == 200, reason
    until(lambda: V11_SDIST[0] not in simple_json(b), what="the removal on b")
    assert replicas.postgres.psql("SELECT count(*) FROM pypid_files WHERE yanked", database).strip() == "0"
    run(twine("upload", "--non-interactive", "--repository-url", b.url, "-u", "alice", "-p", "alice-pw",
              "--disable-progress-bar", str(dist / V11_SDIST[0])), env)
    until(lambda: V11_SDIST[0] in simple_json(a), what="the new upload on a")
    assert simple_json(a) == simple_json(b) == {V10[0]: None, V11_SDIST[0]: None}
    assert serials(a) == serials(b)
    actions = [entry[3] for entry in serials(a)["changelog"]]
    assert sorted(actions[-3:-1]) == sorted([f"remove file {V11[0]}", f"remove file {V11_SDIST[0]}"])
    assert actions[-1] == f"add file {V11_SDIST[0]}"


def test_a_yank_while_the_catalog_is_down_is_a_503(tmp_path, seaweedfs, own_postgres):
    replicas = Replicas(tmp_path, seaweedfs, own_postgres)
    try:
        passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
        a = replicas.start("-P", str(passwords), name="a")
        assert upload(a, *V10, headers=ALICE)[0] == 200
        own_postgres.stop()
        until(lambda: health(a)["status"] == "degraded", timeout=30, what="the outage to show")
        status, _, body = api(a, "yank", {"project": "demo-pkg", "version": "1.0"})
        assert status == 503, body
        assert body.startswith("Service Unavailable: the catalog is unavailable (")
        assert simple_json(a) == {V10[0]: None}
        own_postgres.start()
        until(lambda: api(a, "yank", {"project": "demo-pkg", "version": "1.0"})[0] == 200, timeout=30,
              what="yanks to work again")
        until(lambda: simple_json(a) == {V10[0]: True}, what="the yank")
    finally:
        replicas.stop()
