"""
Yanks end to end (PEP 592): twine uploads, the yank API with raw requests
and with C{pypid yank}, the project page's form; then real pip and uv
resolving: an unpinned requirement skips a yanked release, C{==} still
installs it. Bad requests change nothing. Yanks last across restarts and a
git push that rewrites the directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.process.test_upstream_http import FakeUpstream
from tests.server import ROOT, tool
from tests.uploadhelp import basic, htpasswd, post, run, twine

USERS = {"alice": "alice-pw", "carol": "carol-pw"}
ALICE = basic("alice", "alice-pw")
V10 = wheel_bytes("Demo_Pkg", "1.0")
V11 = wheel_bytes("Demo_Pkg", "1.1")
V11_SDIST = sdist_bytes("Demo_Pkg", "1.1")
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def passwords(tmp_path):
    return htpasswd(tmp_path / "htpasswd", USERS)


@pytest.fixture
def dist(tmp_path):
    directory = tmp_path / "dist"
    directory.mkdir()
    for filename, data in (V10, V11, V11_SDIST):
        (directory / filename).write_bytes(data)
    return directory


def yank(server, fields, headers=None, action="yank"):
    body = urllib.parse.urlencode(fields).encode()
    return post(server, body, "application/x-www-form-urlencoded", f"/+api/{action}", headers)


def versions(target) -> list[str]:
    return sorted(p[len("demo_pkg-"):-len(".dist-info")] for p in os.listdir(target) if p.endswith(".dist-info"))


def pip(server, env, target, requirement):
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                  "--index-url", server.url + "simple/", requirement], env)
    return result.stdout + result.stderr


def uv(server, env, target, requirement):
    result = run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(target),
                  "--index-url", server.url + "simple/", requirement], env)
    return result.stdout + result.stderr


def simple_json(server) -> dict:
    status, _, body = server.get("simple/demo-pkg/", JSON)
    assert status == 200
    return {f["filename"]: f.get("yanked") for f in json.loads(body)["files"]}


def cli(server, env, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pypid.cli", *args], env=dict(env, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60, input=stdin)


def test_yank_then_pip_and_uv_skip_it_unless_pinned(packages, passwords, dist, start_server, env, tmp_path):
    # No watcher and no rescans: whatever shows, shows because the yank put it there.
    server = start_server("-P", str(passwords), "--no-watch", "--rescan-interval", "0", str(packages))
    run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "alice", "-p", "alice-pw",
              *map(str, sorted(dist.iterdir()))), env)
    assert "1.1" in versions_after(pip, server, env, tmp_path / "before", "demo-pkg")

    status, reason, body = yank(server, {"project": "Demo.Pkg", "version": "1.1", "reason": "breaks <imports>"},
                                ALICE)
    assert (status, body) == (200, "Yanked demo-pkg 1.1 (2 files): breaks <imports>.\n")
    assert simple_json(server) == {V10[0]: None, V11[0]: "breaks <imports>", V11_SDIST[0]: "breaks <imports>"}
    _, _, html = server.get("simple/demo-pkg/")
    assert b'data-yanked="breaks &lt;imports&gt;"' in html
    _, _, doc = server.get("pypi/demo-pkg/json")
    info = json.loads(doc)
    assert (info["info"]["version"], info["info"]["yanked"]) == ("1.0", False)
    assert {f["yanked_reason"] for f in info["releases"]["1.1"]} == {"breaks <imports>"}
    _, _, page = server.get("project/demo-pkg/")
    assert b"<s>1.1</s>" in page and b"Yanked: breaks &lt;imports&gt;." in page

    # Unpinned: the yanked release is skipped. Pinned with ==: installed.
    out = pip(server, env, tmp_path / "p1", "demo-pkg")
    assert versions(tmp_path / "p1") == ["1.0"], out
    out = pip(server, env, tmp_path / "p2", "demo-pkg==1.1")
    assert versions(tmp_path / "p2") == ["1.1"]
    assert "yanked" in out.lower() and "breaks <imports>" in out
    out = uv(server, env, tmp_path / "u1", "demo-pkg")
    assert versions(tmp_path / "u1") == ["1.0"], out
    out = uv(server, env, tmp_path / "u2", "demo-pkg==1.1")
    assert versions(tmp_path / "u2") == ["1.1"], out
    assert "yanked" in out.lower()
    # A range that only the yanked release satisfies is not a pin: nothing is found.
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "p3"),
                  "--index-url", server.url + "simple/", "demo-pkg>1.0"], env, check=False)
    assert result.returncode != 0

    # Unyank: the release is back for everyone, at once.
    status, _, body = yank(server, {"project": "demo-pkg", "version": "1.1"}, ALICE, action="unyank")
    assert (status, body) == (200, "Unyanked demo-pkg 1.1 (2 files).\n")
    assert set(simple_json(server).values()) == {None}
    out = uv(server, env, tmp_path / "u3", "demo-pkg")
    assert versions(tmp_path / "u3") == ["1.1"], out
    log = server.log()
    assert ("yank ok user=alice client=127.0.0.1 project=demo-pkg version=1.1 "
            f"file={V11[0]},{V11_SDIST[0]} status=200: Yanked demo-pkg 1.1 (2 files): breaks <imports>.") in log
    assert "unyank ok user=alice client=127.0.0.1 project=demo-pkg version=1.1" in log


def versions_after(installer, server, env, target, requirement):
    installer(server, env, target, requirement)
    return versions(target)


def test_yank_files_with_the_command_line(packages, passwords, dist, start_server, env, tmp_path):
    for filename in os.listdir(dist):
        (packages / filename).write_bytes((dist / filename).read_bytes())
    server = start_server("-P", str(passwords), str(packages))
    env = dict(env, PYPID_URL=server.url + "simple/", PYPID_PASSWORD="alice-pw")
    result = cli(server, env, "yank", "-u", "alice", "--reason", "no wheel for you", "demo-pkg", V11[0])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Yanked {V11[0]} (1 file): no wheel for you.\n"
    assert simple_json(server) == {V10[0]: None, V11[0]: "no wheel for you", V11_SDIST[0]: None}
    # The wheel is yanked, the sdist is not: with binaries only, 1.1 has
    # nothing but a yanked file, and uv takes 1.0.
    result = run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(tmp_path / "u"),
                  "--only-binary", ":all:", "--index-url", server.url + "simple/", "demo-pkg"], env)
    assert versions(tmp_path / "u") == ["1.0"], result.stdout + result.stderr
    # The password on standard input; the version spelled otherwise.
    result = cli(server, dict(env, PYPID_PASSWORD=""), "unyank", "-u", "alice", "--password-stdin",
                 "demo-pkg", "1.1.0", stdin="alice-pw\n")
    assert (result.returncode, result.stdout) == (0, "Unyanked demo-pkg 1.1 (2 files).\n"), result.stderr
    assert set(simple_json(server).values()) == {None}
    # Refusals are one line on standard error, and exit 1.
    result = cli(server, env, "yank", "-u", "alice", "demo-pkg", "9.9")
    assert (result.returncode, result.stderr) == (1, "pypid yank: 404 demo-pkg has no release 9.9.\n")
    result = cli(server, dict(env, PYPID_PASSWORD="wrong"), "yank", "-u", "alice", "demo-pkg", "1.0")
    assert (result.returncode, result.stderr) == (1, "pypid yank: 401 Unauthorized: wrong user name or password.\n")
    result = cli(server, env, "yank", "demo-pkg", "1.0")
    assert result.returncode == 1 and "(give -u USER)" in result.stderr
    result = cli(server, env, "yank", "-u", "alice", "demo-pkg", "1.0", "1.1")
    assert result.returncode == 2 and "not a distribution file name" in result.stderr
    result = cli(server, dict(env, PYPID_URL="http://127.0.0.1:1/"), "yank", "-u", "alice", "demo-pkg", "1.0")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert set(simple_json(server).values()) == {None}


def test_project_page_form(packages, passwords, dist, start_server, env):
    for filename in os.listdir(dist):
        (packages / filename).write_bytes((dist / filename).read_bytes())
    server = start_server("-P", str(passwords), str(packages))
    _, _, page = server.get("project/demo-pkg/")
    assert b'<form class="yank" method="post" action="../../+api/yank">' in page
    # What a browser sends for the form (after the 401 asks it for a password).
    form = {"project": "demo-pkg", "version": "1.0", "from": "page", "reason": "old"}
    page_headers = {"Origin": server.url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    status, _, _ = yank(server, form, page_headers)
    assert status == 401
    conn_status = yank(server, form, {**page_headers, **ALICE})
    assert conn_status[0] == 303
    status, headers, _ = server.get("+api/yank", method="GET")
    assert status == 405 and headers["Allow"] == "POST"
    _, _, page = server.get("project/demo-pkg/")
    assert b"<s>1.0</s>" in page and b'action="../../+api/unyank"' in page
    # Another site's page cannot use the credentials the browser remembers.
    for cross in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, reason, _ = yank(server, {"project": "demo-pkg", "version": "1.1"}, {**cross, **ALICE})
        assert status == 403 and "another site" in reason
    assert simple_json(server)[V11[0]] is None
    # Read-only index (no -P): no forms, and the API says why.
    other = start_server(str(packages))
    _, _, page = other.get("project/demo-pkg/")
    assert b"+api" not in page
    status, reason, _ = yank(other, {"project": "demo-pkg", "version": "1.1"})
    assert status == 403 and "takes no uploads" in reason


def test_bad_requests_change_nothing(packages, passwords, dist, start_server, env, tmp_path):
    for filename in os.listdir(dist):
        (packages / filename).write_bytes((dist / filename).read_bytes())
    (tmp_path / "acl").write_text("demo-* = alice\nother-* = carol\nunlisted-projects = nobody\n")
    upstream = FakeUpstream(tmp_path / "upstream")
    try:
        upstream.add(wheel_bytes("elsewhere", "1.0"))
        server = start_server("-P", str(passwords), "--acl", str(tmp_path / "acl"),
                              "--fallback-url", upstream.url, str(packages))
        status, _, _ = server.get("simple/elsewhere/")
        assert status == 200, "the upstream project is served"
        before = server.get("simple/demo-pkg/")[2]
        long_reason = "x" * 501
        cases = [
            ({"project": "nope", "version": "1.0"}, ALICE, 404, "nope is not a project of this index"),
            ({"project": "elsewhere", "version": "1.0"}, ALICE, 404, "only local files can be yanked"),
            ({"project": "demo-pkg", "version": "9"}, ALICE, 404, "demo-pkg has no release 9."),
            ({"project": "demo-pkg", "file": "demo_pkg-9-py3-none-any.whl"}, ALICE, 404, "has no file"),
            ({"project": "demo-pkg", "file": V10[0].replace("demo_pkg", "other")}, ALICE, 400, "is not a file of"),
            ({"project": "demo-pkg", "version": "1.0", "reason": long_reason}, ALICE, 400, "at most 500"),
            ({"project": "demo-pkg", "version": "1.0", "reason": "two\nlines"}, ALICE, 400, "one line"),
            ({"project": "demo-pkg"}, ALICE, 400, "Name either a 'version'"),
            ({"project": "demo-pkg", "version": "1.0", "file": V10[0]}, ALICE, 400, "Name either"),
            ({"version": "1.0"}, ALICE, 400, "Missing the 'project' field"),
            ({"project": "../etc", "version": "1.0"}, ALICE, 400, "not a valid project name"),
            ({"project": "demo-pkg", "version": ["1.0", "1.1"]}, ALICE, 400, "more than once"),
            ({"project": "demo-pkg", "version": "1.0"}, {}, 401, "needs the user name and password"),
            ({"project": "demo-pkg", "version": "1.0"}, basic("alice", "nope"), 401, "wrong user name"),
            ({"project": "demo-pkg", "version": "1.0"}, basic("carol", "carol-pw"), 403,
             "carol may not upload to demo-pkg"),
        ]
        for fields, headers, code, text in cases:
            body = urllib.parse.urlencode(fields, doseq=True).encode()
            status, reason, answer = post(server, body, "application/x-www-form-urlencoded", "/+api/yank", headers)
            assert (status, text in answer, text in reason) == (code, True, True), (fields, status, answer)
        # Not a form at all; a body over the limit; a path the API does not have.
        assert post(server, b"{}", "application/json", "/+api/yank", ALICE)[0] == 415
        assert post(server, b"project=" + b"a" * 70000, "application/x-www-form-urlencoded",
                    "/+api/yank", ALICE)[0] == 413
        assert post(server, b"", "application/x-www-form-urlencoded", "/+api/other", ALICE)[0] == 404
        # A body without a length is never read.
        from tests.uploadhelp import raw_exchange

        answer = raw_exchange(server.port, b"POST /+api/yank HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n"
                                           b"Content-Type: application/x-www-form-urlencoded\r\n"
                                           b"Transfer-Encoding: chunked\r\n\r\n", [b"5\r\nproje\r\n"])
        assert answer.startswith(b"HTTP/1.1 411 ")
        assert server.get("simple/demo-pkg/")[2] == before
        assert not (packages / ".pypid-yanked").exists()
        # Audited: every case but the one without credentials, and the 415
        # (refused before its body was read: the access log says so).
        log = server.log()
        assert log.count("yank refused") == len(cases) - 1 + 1
        assert "request refused with 401: Unauthorized: yanking needs" in log
        assert "request refused with 413: Request Entity Too Large: at most 65536 bytes." in log
        assert "upload refused" not in log
    finally:
        upstream.stop()


def test_yanks_survive_restarts_and_a_git_push_that_rewrites_the_directory(
        packages, passwords, start_server, env, tmp_path):
    from pypid.feed.gitinit import git_init

    repo = tmp_path / "repo.git"
    git_init(str(repo), str(packages))
    work = tmp_path / "work"
    work.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(work)]
    run([*git, "init", "-q", "-b", "main"], env)
    for filename, data in (V10, V11):
        (work / filename).write_bytes(data)
    run([*git, "add", "-A"], env)
    run([*git, "commit", "-qm", "wheels"], env)
    run([*git, "push", "-q", str(repo), "main"], env)
    server = start_server("-P", str(passwords), str(packages))
    assert yank(server, {"project": "demo-pkg", "version": "1.1", "reason": "bad"}, ALICE)[0] == 200
    # A push that moves every file into a folder: deleted, then written again.
    (work / "wheels").mkdir()
    for filename in (V10[0], V11[0]):
        run([*git, "mv", filename, "wheels/" + filename], env)
    run([*git, "commit", "-qm", "into a folder"], env)
    run([*git, "push", "-q", str(repo), "main"], env)
    assert (packages / "wheels" / V11[0]).exists() and not (packages / V11[0]).exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, _, body = server.get("simple/demo-pkg/", JSON)
        if all("/wheels/" in f["url"] for f in json.loads(body)["files"]):
            break
        time.sleep(0.1)
    assert all("/wheels/" in f["url"] for f in json.loads(body)["files"]), body
    assert simple_json(server) == {V10[0]: None, V11[0]: "bad"}
    server.stop()
    again = start_server("-P", str(passwords), str(packages))
    assert simple_json(again) == {V10[0]: None, V11[0]: "bad"}
    out = pip(again, env, tmp_path / "t", "demo-pkg")
    assert versions(tmp_path / "t") == ["1.0"], out
