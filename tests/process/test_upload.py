"""
Uploads end to end: real twine, uv and raw multipart POSTs against a real
twistd, then installed with pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.server import tool
from tests.uploadhelp import (
    basic,
    htpasswd,
    listed,
    multipart,
    pip_install,
    post,
    run,
    twine,
    upload,
)

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
ALICE = basic("alice", "alice-pw")


@pytest.fixture
def passwords(tmp_path):
    return htpasswd(tmp_path / "htpasswd", USERS)


@pytest.fixture
def dist(tmp_path):
    """A dist/ directory with a wheel and an sdist of demo-pkg 1.0."""
    directory = tmp_path / "dist"
    directory.mkdir()
    for filename, data in (wheel_bytes("Demo_Pkg", "1.0"), sdist_bytes("Demo_Pkg", "1.0")):
        (directory / filename).write_bytes(data)
    return directory


def installed(target, module="demo_pkg"):
    return (target / module / "__init__.py").exists()


def test_twine_with_pypirc_then_pip_installs(packages, passwords, dist, start_server, env, tmp_path):
    server = start_server("-P", str(passwords), str(packages))
    home = env["HOME"]
    with open(os.path.join(home, ".pypirc"), "w") as f:
        f.write(textwrap.dedent(f"""\
            [distutils]
            index-servers =
                pypid

            [pypid]
            repository = {server.url}
            username = alice
            password = alice-pw
            """))
    result = run(twine("upload", "--non-interactive", "-r", "pypid", *map(str, sorted(dist.iterdir()))), env)
    assert "demo_pkg-1.0.tar.gz" in result.stdout + result.stderr
    assert sorted(p for p in listed(packages) if not p.startswith(".")) == [
        "demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    pip_install(server, env, tmp_path / "t1", "demo-pkg==1.0")
    assert installed(tmp_path / "t1")
    # The sdist too (built offline by its in-tree backend).
    run([os.sys.executable, "-m", "pip", "install", "--no-deps", "--no-binary", ":all:",
         "--target", str(tmp_path / "t2"), "--index-url", server.url + "simple/", "demo-pkg==1.0"], env)
    assert installed(tmp_path / "t2")
    assert "file_upload ok user=alice client=127.0.0.1 project=demo-pkg" in server.log()


def test_twine_without_pypirc_at_legacy_and_reupload(packages, passwords, dist, start_server, env, tmp_path):
    """--repository-url at /legacy/; identical again → 200; other bytes → 'File already exists'."""
    server = start_server("-P", str(passwords), str(packages))
    wheel = str(dist / "demo_pkg-1.0-py3-none-any.whl")
    for url in (server.url + "legacy/", server.url + "legacy"):
        run(twine("upload", "--non-interactive", "--repository-url", url,
                  "-u", "alice", "-p", "alice-pw", wheel), env)
    pip_install(server, env, tmp_path / "t", "demo-pkg")
    assert installed(tmp_path / "t")
    before = (packages / "demo_pkg-1.0-py3-none-any.whl").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    name, data = wheel_bytes("Demo_Pkg", "1.0", summary="different bytes")
    (other / name).write_bytes(data)
    result = run(twine("upload", "--non-interactive", "--repository-url", server.url,
                       "-u", "alice", "-p", "alice-pw", str(other / name)), env, check=False)
    assert result.returncode != 0
    assert "File already exists" in result.stdout + result.stderr
    assert (packages / "demo_pkg-1.0-py3-none-any.whl").read_bytes() == before


def test_overwrite_replaces(packages, passwords, start_server, tmp_path, env):
    server = start_server("-P", str(passwords), "--overwrite", str(packages))
    name, first = wheel_bytes("demo", "1.0")
    assert upload(server, name, first, ALICE)[0] == 200
    _, second = wheel_bytes("demo", "1.0", summary="second")
    assert upload(server, name, second, ALICE)[0] == 200
    assert (packages / name).read_bytes() == second
    status, _, body = server.get("simple/demo/")
    assert hashlib.sha256(second).hexdigest().encode() in body


def test_uv_publish_then_pip_installs(packages, passwords, dist, start_server, env, tmp_path):
    server = start_server("-P", str(passwords), str(packages))
    run([tool("uv"), "publish", "--publish-url", server.url + "legacy/", "--username", "bob",
         "--password", "bob-pw", *map(str, sorted(dist.iterdir()))], env)
    pip_install(server, env, tmp_path / "t", "demo-pkg==1.0")
    assert installed(tmp_path / "t")
    # uv publish again: it skips files already there with the same hash.
    run([tool("uv"), "publish", "--publish-url", server.url + "legacy/", "--username", "bob",
         "--password", "bob-pw", *map(str, sorted(dist.iterdir()))], env)


def test_setup_py_upload_shaped_post(packages, start_server, env, tmp_path):
    """The body old 'setup.py upload' sent: md5 only, every metadata field, open index (-P . -a .)."""
    server = start_server("-P", ".", "-a", ".", str(packages))
    filename, data = sdist_bytes("Old-Style", "0.3")
    fields = [
        (":action", None, b"file_upload"), ("protocol_version", None, b"1"),
        ("metadata_version", None, b"1.0"), ("name", None, b"Old-Style"), ("version", None, b"0.3"),
        ("summary", None, b"UNKNOWN"), ("home_page", None, b"UNKNOWN"), ("author", None, b""),
        ("license", None, b"UNKNOWN"), ("description", None, b"UNKNOWN"), ("platform", None, b"UNKNOWN"),
        ("classifiers", None, b"A :: B"), ("classifiers", None, b"C :: D"),
        ("comment", None, b""), ("filetype", None, b"sdist"), ("pyversion", None, b""),
        ("md5_digest", None, hashlib.md5(data).hexdigest().encode()),
        ("content", filename, data),
    ]
    # Laid out as distutils' upload command wrote it: every part starts
    # with CRLF--boundary (so the body starts with a CRLF), file parts
    # have no Content-Type, and the end is CRLF--boundary--CRLF.
    boundary = b"--------------GHSKFJDLGDS7543FJKLFHRE75642756743254"
    out = []
    for key, name, value in fields:
        title = f'\r\nContent-Disposition: form-data; name="{key}"'
        if name is not None:
            title += f'; filename="{name}"'
        out += [b"\r\n--" + boundary, title.encode(), b"\r\n\r\n", value]
    out.append(b"\r\n--" + boundary + b"--\r\n")
    body = b"".join(out)
    ctype = "multipart/form-data; boundary=" + boundary.decode()
    status, reason, text = post(server, body, ctype, headers=basic("anyone", "anything"))
    assert status == 200, (reason, text)
    run([os.sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / "t"),
         "--index-url", server.url + "simple/", "old-style==0.3"], env)
    assert installed(tmp_path / "t", "old_style")


def _clean(packages, *expected):
    """Nothing but the expected files, and an empty spool directory."""
    assert listed(packages) == sorted(expected)


@pytest.mark.parametrize("case", [
    "dotdot", "mismatch-name", "mismatch-version", "corrupt-zip", "wrong-sha256", "wrong-blake2",
    "not-multipart", "malformed-multipart", "no-content", "metadata-mismatch", "hidden-name",
    "egg", "two-names",
])
def test_bad_uploads_write_nothing(case, packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("demo", "1.0")
    if case == "dotdot":
        result = upload(server, "../" + name, data, ALICE, name="demo", version="1.0")
    elif case == "hidden-name":
        result = upload(server, "." + name, data, ALICE, name="demo", version="1.0")
    elif case == "mismatch-name":
        result = upload(server, name, data, ALICE, name="other", version="1.0")
    elif case == "mismatch-version":
        result = upload(server, name, data, ALICE, name="demo", version="2.0")
    elif case == "corrupt-zip":
        broken = bytearray(data)
        middle = len(broken) // 3
        broken[middle:middle + 40] = b"\x00" * 40
        result = upload(server, name, bytes(broken), ALICE)
    elif case == "wrong-sha256":
        result = upload(server, name, data, ALICE, sha256_digest="0" * 64)
    elif case == "wrong-blake2":
        result = upload(server, name, data, ALICE, blake2_256_digest="ab" * 32)
    elif case == "not-multipart":
        result = post(server, data, "application/octet-stream", headers=ALICE)
    elif case == "malformed-multipart":
        body, ctype = multipart([(":action", None, b"file_upload"), ("content", name, data)])
        result = post(server, body[:-30], ctype, headers=ALICE)
    elif case == "no-content":
        body, ctype = multipart([(":action", None, b"file_upload"), ("name", None, b"demo"),
                                 ("version", None, b"1.0")])
        result = post(server, body, ctype, headers=ALICE)
    elif case == "metadata-mismatch":
        _, other = wheel_bytes("demo", "1.1")
        result = upload(server, name, other, ALICE)  # demo-1.0 name, 1.1 inside
    elif case == "egg":
        result = upload(server, "demo-1.0-py3.11.egg", data, ALICE, name="demo", version="1.0",
                        filetype="bdist_egg")
    elif case == "two-names":
        body, ctype = multipart([(":action", None, b"file_upload"), ("name", None, b"demo"),
                                 ("name", None, b"demo2"), ("version", None, b"1.0"),
                                 ("content", name, data)])
        result = post(server, body, ctype, headers=ALICE)
    status, reason, text = result
    assert status == 400, result
    assert reason and "\n" not in reason
    assert reason.split()[0] in text, (reason, text)
    _clean(packages)
    assert "status=400" in server.log()


def test_reason_phrase_carries_the_message(packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("demo", "1.0")
    status, reason, text = upload(server, name, data, ALICE, sha256_digest="1" * 64)
    assert status == 400
    assert reason.startswith("The sha256 digest supplied does not match")
    assert text.strip() == reason


def test_actions(packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    def form(*pairs):
        return multipart([(k, None, v.encode()) for k, v in pairs])
    for action, code in (("doc_upload", 410), ("submit", 200), ("verify", 200), ("frobnicate", 400)):
        status, reason, _ = post(server, *form((":action", action)), headers=ALICE)
        assert status == code, (action, status, reason)
    status, reason, _ = post(server, *form(("name", "x")), headers=ALICE)
    assert (status, reason) == (400, "Missing ':action' field!")
    # remove_pkg: normalised name, every file of the release, then 404.
    for built in (wheel_bytes("Demo.Pkg", "1.0"), sdist_bytes("Demo.Pkg", "1.0"), wheel_bytes("Demo.Pkg", "2.0")):
        assert upload(server, *built, ALICE)[0] == 200
    status, reason, _ = post(server, *form((":action", "remove_pkg"), ("name", "DEMO_pkg"), ("version", "1.0")),
                             headers=ALICE)
    assert status == 200, reason
    assert [p for p in listed(packages) if not p.startswith(".")] == ["demo_pkg-2.0-py3-none-any.whl"]
    status, _, body = server.get("simple/demo-pkg/")
    assert b"1.0" not in body and b"demo_pkg-2.0" in body
    status, reason, _ = post(server, *form((":action", "remove_pkg"), ("name", "demo-pkg"), ("version", "1.0")),
                             headers=ALICE)
    assert status == 404
    # A urlencoded remove_pkg (as with curl -d) works too.
    status, reason, _ = post(server, b":action=remove_pkg&name=demo.pkg&version=2.0",
                             "application/x-www-form-urlencoded", headers=ALICE)
    assert status == 200, reason
    assert "remove_pkg ok user=alice" in server.log()
    # GET /legacy is still the /<project> shortcut; POST below /legacy/ is not an upload URL.
    assert server.get("legacy")[0] == 303
    assert post(server, *form((":action", "submit")), path="/legacy/x", headers=ALICE)[0] == 404


def test_publish_then_list_at_once(packages, passwords, start_server):
    """The 200 comes after the index lists the file: no rescan wait."""
    server = start_server("-P", str(passwords), "--rescan-interval", "0", str(packages))
    for version in ("1.0", "1.1", "1.2"):
        name, data = wheel_bytes("quick", version)
        assert upload(server, name, data, ALICE)[0] == 200
        status, _, body = server.get("simple/quick/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert name in [f["filename"] for f in json.loads(body)["files"]]


def test_signature_is_stored(packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("signed", "1.0")
    from tests.uploadhelp import form_fields
    parts = form_fields(name, data) + [("gpg_signature", name + ".asc", b"-----BEGIN PGP SIGNATURE-----\n")]
    status, reason, _ = post(server, *multipart(parts), headers=ALICE)
    assert status == 200, reason
    assert (packages / (name + ".asc")).exists()
    parts = form_fields(name, data) + [("gpg_signature", "other.asc", b"sig")]
    assert post(server, *multipart(parts), headers=ALICE)[0] == 400


def test_racing_uploads_of_one_name(packages, passwords, start_server):
    """Two uploads of one filename at once: one lands, the other never clobbers it."""
    from concurrent.futures import ThreadPoolExecutor

    server = start_server("-P", str(passwords), str(packages))
    name, first = wheel_bytes("racy", "1.0", padding=2_000_000)
    _, second = wheel_bytes("racy", "1.0", summary="other", padding=2_000_000)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda data: upload(server, name, data, ALICE), (first, second)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 400], results
    winner = first if results[0][0] == 200 else second
    assert (packages / name).read_bytes() == winner
    assert listed(packages) == [name]


def test_pdm_and_uv_shaped_fields(packages, passwords, start_server):
    """Empty strings for absent fields (pdm), unknown field names, uv's joined pyversion."""
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("shaped", "1.0")
    status, reason, _ = upload(server, name, data, ALICE, md5_digest="", blake2_256_digest="", summary="",
                               description="", requires_python="", metadata_version="", provides_extras="",
                               import_names="", pyversion="py2.py3", attestations="")
    assert status == 200, reason


def test_what_would_not_be_listed_is_refused(packages, passwords, start_server):
    """
    Issue 18 item 8: an upload is checked by the rule that decides listing.
    A wheel with bytes before or after its zip (which the index would never
    list) is refused 400, nothing stays; the right file is then accepted,
    listed, and removable.
    """
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("framed", "1.0")
    for bad in (b"#!/bin/sh\nexit 0\n" + data, data + b"trailing bytes"):
        status, reason, _ = upload(server, name, bad, ALICE)
        assert status == 400, reason
        assert reason.startswith("Invalid distribution file: "), reason
        _clean(packages)
    assert upload(server, name, data, ALICE)[0] == 200
    status, _, body = server.get("simple/framed/")
    assert status == 200 and name.encode() in body
    status, reason, _ = post(server, *multipart([(":action", None, b"remove_pkg"), ("name", None, b"framed"),
                                                 ("version", None, b"1.0")]), headers=ALICE)
    assert status == 200, reason
    _clean(packages)
