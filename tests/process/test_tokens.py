"""
API tokens end to end: made with C{pypid token}, used by twine, uv publish
and poetry as the password of C{__token__}, by pip and uv to read, and by
FTP; refused (expired, revoked, malformed, out of scope) with a clear
reason; named in audit lines; their last use recorded.
"""

from __future__ import annotations

import ftplib
import io
import json
import shutil
import subprocess
import sys
import time

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.needs import needs
from tests.process.test_ftp import ftp_port
from tests.server import ROOT, tool
from tests.uploadhelp import basic, htpasswd, listed, multipart, post, run, twine

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
DEMO = (wheel_bytes("Demo_Pkg", "1.0"), sdist_bytes("Demo_Pkg", "1.0"))
OTHER = wheel_bytes("Other_Pkg", "1.0")


def token_cli(env, *args):
    result = subprocess.run([sys.executable, "-m", "pypid.cli", "token", *args],
                            env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def create(env, tokens, *args) -> str:
    return token_cli(env, "create", "--file", str(tokens), *args).stdout.strip()


def twine_upload(server, env, token, *paths, check=True):
    return run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "__token__",
                     "-p", token, *map(str, paths)), env, check=check)


def said(result) -> str:
    """What a client printed, as one line (twine wraps its messages)."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def setup(tmp_path, packages):
    passwords = htpasswd(tmp_path / "htpasswd", USERS)
    dist = tmp_path / "dist"
    dist.mkdir()
    for name, data in (*DEMO, OTHER):
        (dist / name).write_bytes(data)
    return passwords, tmp_path / "tokens", dist


def test_publish_with_tokens_twine_and_uv(setup, packages, start_server, env, tmp_path):
    passwords, tokens, dist = setup
    ci = create(env, tokens, "--user", "alice", "--project", "demo-*", "--name", "ci")
    assert ci.startswith("pypid-") and len(ci) == 65
    server = start_server("-P", str(passwords), "--tokens", str(tokens), str(packages))
    # A token made while the server runs works at once.
    uvt = create(env, tokens, "--user", "bob", "--project", "demo-pkg", "--action", "upload,yank", "--name", "uv")

    twine_upload(server, env, ci, dist / DEMO[0][0])
    run([tool("uv"), "publish", "--publish-url", server.url + "legacy/", "--token", uvt, str(dist / DEMO[1][0])], env)
    assert {DEMO[0][0], DEMO[1][0]} <= set(listed(packages))
    log = server.log()
    ci_id = tokens.read_text().splitlines()[-2][8:20]
    assert f"file_upload ok user=alice token=ci:{ci_id} client=127.0.0.1 project=demo-pkg" in log
    assert "file_upload ok user=bob token=uv:" in log

    # Out of scope: another project; an action the token does not have.
    result = twine_upload(server, env, ci, dist / OTHER[0], check=False)
    assert result.returncode != 0
    assert "API token 'ci' may not upload to other-pkg (its scope: upload on demo-*)" in said(result)
    assert OTHER[0] not in listed(packages)
    body, ctype = multipart([(":action", None, b"remove_pkg"), ("name", None, b"demo-pkg"),
                             ("version", None, b"1.0")])
    status, reason, _ = post(server, body, ctype, "/", basic("__token__", ci))
    assert status == 403 and "may not remove from demo-pkg" in reason
    # The yank API takes tokens too, within their scope.
    from tests.process.test_yank import yank

    assert yank(server, {"project": "demo-pkg", "version": "1.0"}, basic("__token__", ci))[0] == 403
    assert yank(server, {"project": "demo-pkg", "version": "1.0"}, basic("__token__", uvt))[0] == 200
    assert "yank ok user=bob token=uv:" in server.log()

    # Malformed, unknown, revoked, expired: 401 and why, never whether a token exists.
    def refused(token):
        result = twine_upload(server, env, token, dist / DEMO[0][0], check=False)
        assert result.returncode != 0
        return said(result)

    assert "malformed API token" in refused("pypid-abc")
    assert "malformed API token" in refused(ci[:-1] + ("a" if ci[-1] != "a" else "b"))
    from pypid.auth.tokens import new_token

    assert "invalid API token" in refused(new_token()[0])
    token_cli(env, "revoke", "--file", str(tokens), "ci")
    assert "this API token ('ci') was revoked" in refused(ci)
    late = create(env, tokens, "--user", "alice", "--name", "late", "--expires", "1d")
    lines = tokens.read_text().splitlines()
    record = json.loads(lines[-1])
    record["expires"] = "2020-01-01T00:00:00Z"
    tokens.write_text("\n".join(lines[:-1] + [json.dumps(record)]) + "\n")
    assert "this API token ('late') expired on 2020-01-01T00:00:00Z" in refused(late)
    log = server.log()
    assert "login refused user=__token__ token=- client=127.0.0.1 service=http: malformed API token" in log
    assert f"login refused user=__token__ token={ci_id} client=127.0.0.1 service=http: this API token" in log

    # The last uses are written when the server stops, and listed.
    server.stop()
    listing = token_cli(env, "list", "--file", str(tokens)).stdout
    rows = {line.split()[1]: line.split() for line in listing.splitlines()[1:]}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    # ... LAST USED (a day and a time, or never) and STATUS last.
    assert rows["ci"][-2:] == ["revoked", today], listing
    assert rows["uv"][-3:-2] + rows["uv"][-1:] == [today, "active"], listing
    assert rows["late"][-2:] == ["never", "expired"], listing


@needs(shutil.which("poetry"), "poetry is not installed (pip install poetry)")
def test_poetry_publishes_with_a_token(setup, packages, start_server, env, tmp_path):
    passwords, tokens, _ = setup
    token = create(env, tokens, "--user", "alice", "--name", "poetry")
    server = start_server("-P", str(passwords), "--tokens", str(tokens), str(packages))
    project = tmp_path / "proj"
    (project / "dist").mkdir(parents=True)
    for name, data in DEMO:
        (project / "dist" / name).write_bytes(data)
    (project / "pyproject.toml").write_text(
        '[tool.poetry]\nname = "demo-pkg"\nversion = "1.0"\ndescription = "x"\nauthors = ["T <t@localhost>"]\n')
    # POETRY_PYPI_TOKEN_<REPO> is poetry's way to send a token: as the password of __token__.
    penv = dict(env, POETRY_VIRTUALENVS_CREATE="false", PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
                POETRY_REPOSITORIES_PYPID_URL=server.url + "legacy/", POETRY_PYPI_TOKEN_PYPID=token)
    run(["poetry", "publish", "-r", "pypid"], penv, cwd=project)
    assert {DEMO[0][0], DEMO[1][0]} <= set(listed(packages))
    assert "file_upload ok user=alice token=poetry:" in server.log()


def test_read_tokens_for_pip_and_uv(setup, packages, start_server, env, tmp_path):
    passwords, tokens, _ = setup
    for name, data in (*DEMO, OTHER):
        (packages / name).write_bytes(data)
    reader = create(env, tokens, "--user", "alice", "--project", "demo-*", "--action", "read", "--name", "reader")
    writer = create(env, tokens, "--user", "alice", "--name", "writer")
    server = start_server("-P", str(passwords), "-a", "update,download,list", "--tokens", str(tokens),
                          str(packages))

    def index(token):
        return f"http://__token__:{token}@127.0.0.1:{server.port}/simple/"

    def pip(token, requirement, target):
        return run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(tmp_path / target),
                    "--index-url", index(token), requirement], env, check=False)

    def uv(token, requirement, target):
        return run([tool("uv"), "pip", "install", "--python", sys.executable, "--target", str(tmp_path / target),
                    "--index-url", index(token), requirement], env, check=False)

    assert pip(reader, "demo-pkg", "p1").returncode == 0
    assert (tmp_path / "p1" / "demo_pkg").is_dir()
    assert uv(reader, "demo-pkg", "u1").returncode == 0
    assert (tmp_path / "u1" / "demo_pkg").is_dir()
    # Another project, and a token that may not read: refused.
    assert pip(reader, "other-pkg", "p2").returncode != 0
    assert uv(reader, "other-pkg", "u2").returncode != 0
    assert pip(writer, "demo-pkg", "p3").returncode != 0
    status, _, body = server.get("simple/other-pkg/", basic("__token__", reader))
    assert status == 403 and b"may not read other-pkg" in body
    status, _, body = server.get("simple/", basic("__token__", reader))
    assert status == 403 and b"the index as a whole" in body
    status, headers, body = server.get("simple/demo-pkg/", basic("__token__", "pypid-nope"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic") and b"malformed" in body
    # A password still reads everything.
    assert server.get("simple/", basic("alice", "alice-pw"))[0] == 200


def test_ftp_takes_tokens(setup, packages, start_server, env):
    passwords, tokens, _ = setup
    token = create(env, tokens, "--user", "alice", "--project", "demo-*", "--name", "ftp")
    server = start_server("-P", str(passwords), "--tokens", str(tokens), "--ftp", "tcp:0:interface=127.0.0.1",
                          str(packages))
    client = ftplib.FTP(timeout=10)
    client.connect("127.0.0.1", ftp_port(server))
    client.login("__token__", token)
    assert client.storbinary(f"STOR {DEMO[0][0]}", io.BytesIO(DEMO[0][1])).startswith("226")
    # Refused before a byte is sent (Twisted's FTP names the file in its 550; the audit line says why).
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.storbinary(f"STOR {OTHER[0]}", io.BytesIO(OTHER[1]))
    client.quit()
    bad = ftplib.FTP(timeout=10)
    bad.connect("127.0.0.1", ftp_port(server))
    with pytest.raises(ftplib.error_perm, match="530"):
        bad.login("__token__", "pypid-nope")
    bad.close()
    assert DEMO[0][0] in listed(packages) and OTHER[0] not in listed(packages)
    log = server.log()
    assert "ftp_upload ok user=alice token=ftp:" in log
    assert "API token 'ftp' may not upload to other-pkg" in log
