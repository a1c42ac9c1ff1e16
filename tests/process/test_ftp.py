"""FTP uploads against a real twistd, with Python's ftplib as the client."""

from __future__ import annotations

import ftplib
import io
import os
import re
import socket
import time

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.uploadhelp import htpasswd, pip_install


def ftp_port(server) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = re.search(r"UploadFTPFactory starting on (\d+)", server.log())
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError("no FTP port in the log:\n" + server.log())


def connect(port: int, user="alice", password="wonderland") -> ftplib.FTP:
    client = ftplib.FTP(timeout=10)
    client.connect("127.0.0.1", port)
    client.login(user, password)
    return client


def listed(server, project: str) -> str:
    status, _, body = server.get(f"simple/{project}/")
    return body.decode() if status == 200 else ""


def leftovers(packages) -> list[str]:
    """Every file under the package directory but pypid's state."""
    found = []
    for top, dirs, files in os.walk(packages):
        dirs[:] = [d for d in dirs if d != ".pypid"]
        found.extend(os.path.relpath(os.path.join(top, f), packages) for f in files)
    return sorted(found)


@pytest.fixture
def ftp_server(tmp_path, packages, start_server):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    server = start_server("-P", str(passwords), "--ftp", "tcp:0:interface=127.0.0.1",
                          "--rescan-interval", "0", str(packages))
    server.ftp_port = ftp_port(server)
    return server


def test_upload_then_install(ftp_server, packages, env, tmp_path):
    """A wheel and an sdist stored by FTP are listed when STOR is answered, and pip installs them."""
    wheel = wheel_bytes("ftp-demo", "1.0")
    sdist = sdist_bytes("ftp-demo", "1.0")
    client = connect(ftp_server.ftp_port)
    for name, data in (wheel, sdist):
        reply = client.storbinary(f"STOR {name}", io.BytesIO(data))
        assert reply.startswith("226")
        assert name in listed(ftp_server, "ftp-demo")
    # Hidden things are not shown, and nothing is downloaded or deleted by FTP.
    assert sorted(client.nlst(".")) == sorted([wheel[0], sdist[0]])
    with pytest.raises(ftplib.error_perm):
        client.retrbinary(f"RETR {wheel[0]}", lambda data: None)
    with pytest.raises(ftplib.error_perm):
        client.delete(wheel[0])
    client.quit()
    pip_install(ftp_server, env, tmp_path / "target", "ftp-demo==1.0")
    assert (tmp_path / "target" / "ftp_demo" / "__init__.py").exists()
    assert leftovers(packages) == sorted([wheel[0], sdist[0]])


def test_wrong_password_and_anonymous_refused(ftp_server):
    with pytest.raises(ftplib.error_perm):
        connect(ftp_server.ftp_port, password="wrong")
    with pytest.raises(ftplib.error_perm):
        connect(ftp_server.ftp_port, user="anonymous", password="guest@example.invalid")


def test_only_distributions_accepted(ftp_server, packages):
    client = connect(ftp_server.ftp_port)
    for name, data in (("notes.txt", b"hello"), (".hidden-1.0.tar.gz", b"x"),
                       ("junk-1.0-py3-none-any.whl", b"not a zip at all")):
        with pytest.raises(ftplib.error_perm):
            client.storbinary(f"STOR {name}", io.BytesIO(data))
    client.quit()
    assert leftovers(packages) == []


def test_aborted_uploads_leave_nothing(ftp_server, packages):
    """Cut short by closing the data connection, or by dropping the session: no file, no listing."""
    name, data = wheel_bytes("aborted", "1.0", padding=300_000)
    client = connect(ftp_server.ftp_port)
    client.voidcmd("TYPE I")
    conn = client.transfercmd(f"STOR {name}")
    conn.sendall(data[: len(data) // 2])
    conn.close()
    with pytest.raises(ftplib.error_perm):
        client.voidresp()
    # Now the session itself dies mid-transfer.
    conn = client.transfercmd(f"STOR {name}")
    conn.sendall(data[: len(data) // 3])
    client.sock.shutdown(socket.SHUT_RDWR)
    client.sock.close()
    conn.close()
    time.sleep(1.0)
    assert listed(ftp_server, "aborted") == ""
    assert leftovers(packages) == []
    assert not (packages / ".pypid-incoming").exists(), "the spool goes with the last upload"


def test_overwrite_rule(ftp_server, packages):
    """The same bytes again are fine; other bytes under an existing name are refused."""
    name, data = wheel_bytes("same", "1.0")
    client = connect(ftp_server.ftp_port)
    client.storbinary(f"STOR {name}", io.BytesIO(data))
    assert client.storbinary(f"STOR {name}", io.BytesIO(data)).startswith("226")
    other = wheel_bytes("same", "1.0", summary="changed")[1]
    with pytest.raises(ftplib.error_perm, match="already exists"):
        client.storbinary(f"STOR {name}", io.BytesIO(other))
    client.quit()
    assert (packages / name).read_bytes() == data
    # A refusal is one audit line with its reason, never an "Unexpected error" traceback.
    log = ftp_server.log()
    assert "ftp_upload refused user=alice" in log and "File already exists" in log
    assert "Unexpected error" not in log and "Traceback" not in log


def test_ftp_needs_a_password_file(packages, start_server):
    with pytest.raises(RuntimeError, match="--ftp needs -P"):
        start_server("--ftp", "tcp:0:interface=127.0.0.1", str(packages))


def test_acl_applies_to_ftp(tmp_path, packages, start_server):
    """The --acl rights of HTTP uploads hold for FTP too."""
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "carol": "c"})
    acl = tmp_path / "acl"
    acl.write_text("team-a-* = alice\nteam-b-* = carol\nunlisted-projects = nobody\n")
    server = start_server("-P", str(passwords), "--acl", str(acl), "--ftp", "tcp:0:interface=127.0.0.1",
                          "--rescan-interval", "0", str(packages))
    port = ftp_port(server)
    client = connect(port, "carol", "c")
    name, data = wheel_bytes("team-a-tool", "1.0")
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.storbinary(f"STOR {name}", io.BytesIO(data))
    # One audit line, of the shape HTTP uploads have.
    assert ("ftp_upload refused user=carol client=127.0.0.1 project=team-a-tool version=1.0 "
            f"file={name} status=403: Forbidden: carol may not upload to team-a-tool") in server.log()
    name, data = wheel_bytes("team-b-tool", "1.0")
    assert client.storbinary(f"STOR {name}", io.BytesIO(data)).startswith("226")
    client.quit()
    assert leftovers(packages) == [name]


def test_upload_into_a_subdirectory(ftp_server, packages):
    """A STOR in an existing subdirectory lands there; a folder that is not there is refused, nothing written."""
    (packages / "team").mkdir()
    name, data = wheel_bytes("team-tool", "1.0")
    client = connect(ftp_server.ftp_port)
    client.cwd("team")
    assert client.storbinary(f"STOR {name}", io.BytesIO(data)).startswith("226")
    client.cwd("/")
    other, other_data = wheel_bytes("lost-tool", "1.0")
    with pytest.raises(ftplib.error_perm):
        client.storbinary(f"STOR nowhere/{other}", io.BytesIO(other_data))
    client.quit()
    assert (packages / "team" / name).read_bytes() == data
    assert name in listed(ftp_server, "team-tool")
    assert leftovers(packages) == [f"team/{name}"]
