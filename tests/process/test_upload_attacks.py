"""
Attacks on the upload path against a real twistd (issue 18 items 3, 10,
12; issue 19 item 7): anonymous and wrongly authenticated bodies never
reach the disk; a trickled body does not hold its connection or its room;
the spool budget; a full disk (a small tmpfs as the package directory) is
a clear 507 and an upload needs only its own size; kill -9 mid-upload
leaves nothing after the next start; the spool directory exists only while
an upload is.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from pypid.testing import wheel_bytes
from tests.process.smalldisk import free, needs_mount, small_disk, used  # noqa: F401 (a fixture)
from tests.process.test_ftp import ftp_port
from tests.server import tool
from tests.uploadhelp import basic, form_fields, htpasswd, listed, multipart, twine, upload

ALICE = basic("alice", "wonderland")
MIB = 1024 * 1024


def head(port: int, length: int | None, ctype: str, path: str = "/", auth: dict | None = None,
         method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {ctype}"]
    if auth:
        lines += [f"{k}: {v}" for k, v in auth.items()]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]


def answer_of(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server answers (up to its blank line and a little), or b'' when it closed without a word."""
    sock.settimeout(timeout)
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            data = sock.recv(65536)
            if not data:
                break
            got += data
    except (socket.timeout, ConnectionResetError):
        pass
    return got


def send_some(sock: socket.socket, pieces, seconds: float = 0.0) -> int:
    """Send what the server takes of C{pieces} (stopping when it will not take more); the bytes sent."""
    sent = 0
    sock.settimeout(2)
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break
        sent += len(piece)
        if seconds:
            time.sleep(seconds)
    return sent


def body_of(name: str, data: bytes, **fields) -> tuple[bytes, str]:
    return multipart(form_fields(name, data, **fields))


@pytest.fixture
def passwords(tmp_path):
    return htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})


# Anonymous clients cannot fill the upload disk (item 3).


@needs_mount
def test_bodies_that_are_not_uploads_by_a_user_allowed_to_never_reach_the_disk(
        passwords, start_server, small_disk, tmp_path):
    """
    Large bodies of every other kind (XML-RPC, any method and path, an
    upload with a wrong password or none, chunked or declared) are refused
    from their head, or past 128 KiB in memory: the package directory's
    disk does not see a byte of them.
    """
    disk = small_disk(64)
    packages = disk / "packages"
    packages.mkdir()
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("big", "1.0", padding=8 * MIB)
    body, ctype = body_of(name, data)
    wrong = basic("alice", "not-her-password")
    attacks = [
        ("XML-RPC", head(server.port, 20 * MIB, "text/xml", "/RPC2"), [b"x" * 65536] * 64, b"413"),
        ("XML-RPC chunked", head(server.port, None, "text/xml", "/RPC2"), chunked(b"x" * 4 * MIB), b"413"),
        ("PUT", head(server.port, 20 * MIB, "application/octet-stream", "/simple/", method="PUT"),
         [b"x" * 65536] * 64, b"413"),
        ("upload, no password", head(server.port, len(body), ctype), [body], b"401"),
        ("upload, wrong password", head(server.port, len(body), ctype, auth=wrong), [body], b"401"),
        ("upload, wrong password, chunked", head(server.port, None, ctype, auth=wrong), chunked(body), b"401"),
    ]
    for what, request_head, pieces, status in attacks:
        before = used(disk)
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(request_head)
        sent = send_some(sock, pieces)
        during = used(disk)
        answer = answer_of(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 " + status), (what, answer[:200])
        # tmpfs counts pages: a spooled body would show to the byte.
        assert during - before < 256 * 1024, f"{what}: {during - before} bytes on disk after sending {sent}"
    assert listed(packages) == []
    log = server.log()
    assert "Traceback" not in log
    assert log.count("upload refused user=- client=127.0.0.1") >= 3


def test_a_trickled_body_is_cut_and_gives_its_room_back(passwords, start_server, packages):
    """
    A body trickled a few bytes a second (an upload by a real user, or
    XML-RPC) is answered 408 once past the grace of one idle timeout; the
    upload's staged bytes and its part of the spool budget go with it.
    """
    server = start_server("-P", str(passwords), "--idle-timeout", "2", "--max-spool", "2M",
                          "--max-upload-size", "2M", str(packages))
    name, data = wheel_bytes("slow", "1.0", padding=1 * MIB)
    body, ctype = body_of(name, data)
    for request_head, first in ((head(server.port, len(body), ctype, auth=ALICE), body[:70000]),
                                (head(server.port, 60000, "text/xml", "/RPC2"), b"<?xml")):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(request_head + first)
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < 20 and not answer:
            try:
                sock.sendall(b"x" * 10)
                answer = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout: the request body came at under 4096 bytes a second"), \
            answer[:200]
        assert time.monotonic() - started < 12
    # The upload's room is free again: the whole spool budget is there for the next one.
    assert not (packages / ".pypid-incoming").exists()
    status, reason, _ = upload(server, name, data, ALICE)
    assert status == 200, reason
    assert "cut a connection whose request body came at under 4096 bytes per second" in server.log()


def test_the_spool_budget(passwords, start_server, packages):
    """Uploads in flight hold at most --max-spool: beyond it 507 with Retry-After, at once; then room again."""
    server = start_server("-P", str(passwords), "--max-spool", "3M", "--max-upload-size", "2M", str(packages))
    first = wheel_bytes("first", "1.0", padding=int(1.5 * MIB))
    second = wheel_bytes("second", "1.0", padding=int(1.6 * MIB))
    body, ctype = body_of(*first)
    held = socket.create_connection(("127.0.0.1", server.port))
    held.sendall(head(server.port, len(body), ctype, auth=ALICE) + body[: len(body) // 2])
    deadline = time.monotonic() + 10
    while not list((packages / ".pypid-incoming").glob(".upload-*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    other, other_ctype = body_of(*second)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head(server.port, len(other), other_ctype, auth=ALICE))
    answer = answer_of(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 507 Insufficient Storage: uploads in flight already hold "), answer[:300]
    assert b"(--max-spool); try again shortly" in answer
    assert b"retry-after: 10" in answer.lower()
    held.sendall(body[len(body) // 2:])
    assert answer_of(held).startswith(b"HTTP/1.1 200 OK")
    held.close()
    status, reason, _ = upload(server, *second, ALICE)
    assert status == 200, reason
    assert sorted(listed(packages)) == sorted([first[0], second[0]])


# A full disk (item 10).


@needs_mount
def test_a_full_disk_is_507_and_an_upload_needs_only_its_own_size(
        passwords, start_server, small_disk, env, tmp_path):
    """
    On a 24 MiB disk: a 14 MiB upload fits (its bytes are written once,
    on the disk they land on); another does not, and twine shows why
    (507 from its declared length, before its body is read); chunked (no
    length to go by) and by FTP, the disk fills mid-way: 507 (552) with the
    reason, and nothing is left of it.
    """
    disk = small_disk(24)
    packages = disk / "packages"
    packages.mkdir()
    server = start_server("-P", str(passwords), "--ftp", "tcp:0:interface=127.0.0.1", str(packages))
    dist = tmp_path / "dist"
    dist.mkdir()
    first = wheel_bytes("first", "1.0", padding=14 * MIB)
    (dist / first[0]).write_bytes(first[1])
    result = subprocess.run(twine("upload", "--repository-url", server.url, "-u", "alice", "-p", "wonderland",
                                  "--disable-progress-bar", str(dist / first[0])),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (packages / first[0]).stat().st_size == len(first[1])
    room = free(disk)
    second = wheel_bytes("second", "1.0", padding=14 * MIB)
    (dist / first[0]).unlink()
    (dist / second[0]).write_bytes(second[1])
    result = subprocess.run(twine("upload", "--repository-url", server.url, "-u", "alice", "-p", "wonderland",
                                  "--disable-progress-bar", str(dist / second[0])),
                            env=env, capture_output=True, text=True, timeout=120)
    shown = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    # (twine tries a 5xx five times, and shows the reason each time.)
    assert "HTTPError: 507 Insufficient Storage from" in shown, shown
    assert "Insufficient Storage: the upload is 14.0 MiB, and the disk of the package directory" in shown, shown
    # Chunked: no length to go by; the disk fills while it comes.
    body, ctype = body_of(*second)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head(server.port, None, ctype, auth=ALICE))
    send_some(sock, chunked(body) + [b"0\r\n\r\n"])
    answer = answer_of(sock, 30)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 507 Insufficient Storage: the disk of the package directory "), answer[:300]
    # By FTP: the same, as 552 with the reason.
    client = ftplib.FTP(timeout=30)
    client.connect("127.0.0.1", ftp_port(server))
    client.login("alice", "wonderland")
    with pytest.raises(ftplib.error_perm, match="^552 Insufficient Storage: the disk of the package directory"):
        client.storbinary(f"STOR {second[0]}", io.BytesIO(second[1]))
    client.quit()
    # Nothing is left of them: the room is back, and the spool gone.
    time.sleep(0.5)
    assert listed(packages) == [first[0]]
    assert free(disk) >= room - 64 * 1024
    log = server.log()
    assert "Traceback" not in log
    assert re.search(r'"POST / HTTP/1.1" 5(?!07)\d\d', log) is None, "no 5xx but 507"
    # twine's five tries, the chunked upload, the FTP one.
    assert log.count("status=507") == 7 and "ftp_upload refused" in log


# kill -9 mid-upload (item 12).


def test_leftovers_of_an_upload_cut_by_kill_9_are_removed_at_start(passwords, start_server, packages):
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("killed", "1.0", padding=8 * MIB)
    body, ctype = body_of(name, data)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head(server.port, len(body), ctype, auth=ALICE) + body[: 5 * MIB])
    spool = packages / ".pypid-incoming"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        parts = list(spool.glob(".upload-*.part")) if spool.exists() else []
        if parts and parts[0].stat().st_size > 2 * MIB:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no upload in flight in {spool}")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    sock.close()
    left = list(spool.glob(".upload-*.part"))
    assert len(left) == 1
    size = left[0].stat().st_size
    again = start_server("-P", str(passwords), str(packages))
    assert not spool.exists(), "the leftover and the spool are gone"
    line = next(line for line in again.log().splitlines() if "leftover upload file" in line)
    assert f"removed 1 leftover upload file of uploads cut short by a crash from {spool} (" in line
    assert f"({size / MIB:.1f} MiB freed)" in line
    assert upload(again, name, data, ALICE)[0] == 200


# The spool is there only while an upload is (issue 19 item 7).


def test_no_spool_but_while_an_upload_is_in_flight_and_git_sees_none(passwords, start_server, tmp_path, env):
    """
    With --state-dir elsewhere, the package directory holds nothing of
    pypid's at rest, before or after uploads; in a git-fed package
    directory (pypid git-init), git status stays clean even while an
    upload is in flight.
    """
    packages = tmp_path / "packages"
    repo = tmp_path / "repo.git"
    subprocess.run([tool("pypid"), "git-init", str(repo), str(packages)], check=True, capture_output=True, env=env)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    built = wheel_bytes("pushed", "1.0")
    (work / built[0]).write_bytes(built[1])
    for args in (["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"],
                 ["push", "-q", str(repo), "HEAD:main"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    server = start_server("-P", str(passwords), "--state-dir", str(tmp_path / "state"), str(packages))
    assert sorted(os.listdir(packages)) == [built[0]]

    def git_status() -> str:
        return subprocess.run(["git", "--git-dir", str(repo), "--work-tree", str(packages), "status",
                               "--porcelain", "--untracked-files=all"], capture_output=True, text=True,
                              check=True).stdout

    assert git_status() == ""
    name, data = wheel_bytes("uploaded", "1.0", padding=4 * MIB)
    body, ctype = body_of(name, data)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head(server.port, len(body), ctype, auth=ALICE) + body[: 2 * MIB])
    deadline = time.monotonic() + 10
    while not (packages / ".pypid-incoming").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (packages / ".pypid-incoming").exists(), "in flight"
    assert git_status() == ""
    sock.sendall(body[2 * MIB:])
    assert answer_of(sock).startswith(b"HTTP/1.1 200 OK")
    sock.close()
    assert sorted(os.listdir(packages)) == sorted([built[0], name])
    assert git_status() == f"?? {name}\n"
    server.stop()
    assert sorted(os.listdir(packages)) == sorted([built[0], name])
