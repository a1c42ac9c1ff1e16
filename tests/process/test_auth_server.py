"""
Who may do what, against a real twistd: the -a/-P matrix, reads protected
with a Basic challenge pip can answer, read-only mode, and the ACL.
"""

from __future__ import annotations

import itertools
import sys

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.uploadhelp import basic, htpasswd, listed, run, upload

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "admin": "admin-pw"}
CREDENTIALS = {
    "none": {},
    "wrong": basic("alice", "not-her-password"),
    "right": basic("alice", "alice-pw"),
}
_versions = itertools.count(1)


@pytest.fixture
def passwords(tmp_path):
    return htpasswd(tmp_path / "htpasswd", USERS)


def _expect(protected: bool, credentials: str) -> int:
    if not protected or credentials == "right":
        return 200
    return 401


@pytest.mark.parametrize("mode", ["update", "update,download,list", "."])
def test_auth_matrix(mode, packages, passwords, start_server):
    write_dist(str(packages), wheel_bytes("present", "1.0"))
    if mode == ".":
        server = start_server("-P", ".", "-a", ".", str(packages))
    else:
        server = start_server("-P", str(passwords), "-a", mode, str(packages))
    protected = set() if mode == "." else set(mode.split(","))
    for credentials, headers in CREDENTIALS.items():
        name, data = wheel_bytes("matrix", f"1.{next(_versions)}")
        status, reason, _ = upload(server, name, data, headers)
        assert status == _expect("update" in protected, credentials), (mode, credentials, "upload", reason)
        for what, path in (("download", "packages/present-1.0-py3-none-any.whl"),
                           ("download", "packages/present-1.0-py3-none-any.whl.metadata"),
                           ("list", "simple/"), ("list", "simple/present/"), ("list", "packages/"),
                           ("list", "pypi/present/json")):
            status, response_headers, _ = server.get(path, headers=headers)
            expected = _expect(what in protected, credentials)
            assert status == expected, (mode, credentials, path, status)
            if status == 401:
                assert response_headers["WWW-Authenticate"].startswith('Basic realm="pypid"')
        # Never protected.
        assert server.get("health", headers=headers)[0] == 200
        assert server.get("", headers=headers)[0] == 200
    if "list" in protected:
        # An unknown project stays 404 for a reader who logged in.
        assert server.get("simple/no-such-project/", headers=CREDENTIALS["right"])[0] == 404


def test_download_or_list_alone(packages, passwords, start_server):
    write_dist(str(packages), wheel_bytes("present", "1.0"))
    server = start_server("-P", str(passwords), "-a", "update,download", str(packages))
    assert server.get("packages/")[0] == 200
    assert server.get("simple/present/")[0] == 200
    assert server.get("packages/present-1.0-py3-none-any.whl")[0] == 401
    server = start_server("-P", str(passwords), "-a", "list", str(packages))
    assert server.get("packages/")[0] == 401
    assert server.get("packages/present-1.0-py3-none-any.whl")[0] == 200
    # Uploads need no password when 'update' is not listed (pypiserver's meaning).
    name, data = wheel_bytes("open", "1.0")
    assert upload(server, name, data)[0] == 200


def test_pip_installs_from_a_protected_index(packages, passwords, start_server, env, tmp_path):
    write_dist(str(packages), wheel_bytes("private-thing", "1.0"))
    server = start_server("-P", str(passwords), "-a", "update,download,list", str(packages))
    index = f"http://bob:bob-pw@127.0.0.1:{server.port}/simple/"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "t"),
         "--index-url", index, "private-thing"], env)
    assert (tmp_path / "t" / "private_thing" / "__init__.py").exists()
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "u"),
                  "--index-url", index.replace("bob-pw", "wrong"), "private-thing"], env, check=False)
    assert result.returncode != 0
    assert "401" in result.stdout + result.stderr


def test_read_only_without_passwords(packages, start_server):
    """The default (-a update, no -P) is pypiserver's read-only index: uploads 403."""
    server = start_server(str(packages))
    name, data = wheel_bytes("ro", "1.0")
    status, reason, text = upload(server, name, data, basic("alice", "x"))
    assert status == 403
    assert "disabled" in reason
    assert b".pypirc" not in server.get("")[2]
    assert listed(packages) == []


def test_welcome_page_shows_pypirc_when_uploads_work(packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    assert b".pypirc" in server.get("")[2]


def test_password_file_change_needs_no_restart(packages, tmp_path, start_server):
    path = htpasswd(tmp_path / "htpasswd", {"alice": "one"})
    server = start_server("-P", str(path), str(packages))
    name, data = wheel_bytes("rotating", "1.0")
    assert upload(server, name, data, basic("alice", "two"))[0] == 401
    htpasswd(tmp_path / "htpasswd.new", {"alice": "two"}).replace(path)
    assert upload(server, name, data, basic("alice", "two"))[0] == 200


ACL = """\
# Team A and team B each own their projects.
@team-a = alice bob
@team-b = carol
team-a-* = @team-a
team_b.* = @team-b
shared = @team-a @team-b
* = admin
unlisted-projects = {unlisted}
"""


def _acl(tmp_path, unlisted="nobody"):
    path = tmp_path / "acl"
    path.write_text(ACL.format(unlisted=unlisted))
    return path


def test_acl_team_a_cannot_upload_to_team_b(packages, passwords, start_server, tmp_path):
    server = start_server("-P", str(passwords), "--acl", str(_acl(tmp_path)), str(packages))
    alice, carol, admin = (basic(u, f"{u}-pw") for u in ("alice", "carol", "admin"))
    name, data = wheel_bytes("Team.B-Tool", "1.0")
    status, reason, _ = upload(server, name, data, alice)
    assert status == 403, reason
    assert "alice may not upload to team-b-tool" in reason
    assert listed(packages) == []
    assert upload(server, name, data, carol)[0] == 200
    # Nor remove it.
    from tests.uploadhelp import post
    status, _, _ = post(server, b":action=remove_pkg&name=team-b-tool&version=1.0",
                        "application/x-www-form-urlencoded", headers=alice)
    assert status == 403
    name, data = wheel_bytes("team-a-lib", "1.0")
    assert upload(server, name, data, carol)[0] == 403
    assert upload(server, name, data, basic("bob", "bob-pw"))[0] == 200
    name, data = wheel_bytes("shared", "1.0")
    assert upload(server, name, data, carol)[0] == 200
    # Unlisted projects: nobody but the '*' rule's admin.
    name, data = wheel_bytes("elsewhere", "1.0")
    assert upload(server, name, data, alice)[0] == 403
    assert upload(server, name, data, admin)[0] == 200
    log = server.log()
    assert "file_upload refused user=alice client=127.0.0.1 project=team-b-tool" in log
    assert "status=403" in log


def test_acl_first_uploader_becomes_owner(packages, passwords, start_server, tmp_path):
    path = tmp_path / "acl"
    path.write_text("@team-b = carol\nteam-b-* = @team-b\nunlisted-projects = first-uploader\n")
    server = start_server("-P", str(passwords), "--acl", str(path), str(packages))
    alice, bob = basic("alice", "alice-pw"), basic("bob", "bob-pw")
    name, data = wheel_bytes("newproj", "1.0")
    assert upload(server, name, data, alice)[0] == 200
    assert "newproj = alice" in (packages / ".pypid-owners").read_text()
    name, data = wheel_bytes("newproj", "1.1")
    status, reason, _ = upload(server, name, data, bob)
    assert status == 403 and "belongs to alice" in reason
    assert upload(server, name, data, alice)[0] == 200
    # The ACL is re-read when it changes.
    path.write_text(path.read_text() + "newproj = bob\n")
    name, data = wheel_bytes("newproj", "1.2")
    assert upload(server, name, data, bob)[0] == 200
