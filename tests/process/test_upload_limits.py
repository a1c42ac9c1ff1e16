"""
Upload bodies at the edges: over --max-upload-size (declared or chunked),
cut off by a dropped connection, and a 200 MiB upload's memory footprint.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time

import pytest

from pypid.testing import wheel_bytes
from tests.uploadhelp import basic, form_fields, htpasswd, listed, multipart, raw_exchange, upload

AUTH = basic("alice", "pw")


@pytest.fixture
def passwords(tmp_path):
    return htpasswd(tmp_path / "htpasswd", {"alice": "pw"})


def _head(port: int, length: int | None, expect: bool = False, ctype: str = "multipart/form-data; boundary=xyz"):
    lines = [
        "POST / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: {ctype}",
        "Authorization: " + AUTH["Authorization"],
    ]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _nothing_left(packages):
    assert listed(packages) == []


def test_declared_length_over_limit_is_refused_before_the_body(packages, passwords, start_server):
    server = start_server("-P", str(passwords), "--max-upload-size", "1M", str(packages))
    for expect in (True, False):
        started = time.monotonic()
        answer = raw_exchange(server.port, _head(server.port, 50 * 1024 * 1024, expect), read_first=True)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"100 Continue" not in answer
        assert b"--max-upload-size" in answer
        assert time.monotonic() - started < 8
    _nothing_left(packages)
    assert "request body refused with 413" in server.log()
    assert "upload refused user=- client=127.0.0.1" in server.log()
    # The server is fine afterwards, and bodies under the limit still work.
    name, data = wheel_bytes("small", "1.0")
    assert upload(server, name, data, AUTH)[0] == 200


def test_declared_length_over_limit_client_sending_anyway(packages, passwords, start_server):
    """A client that sends the body without waiting still gets the 413."""
    server = start_server("-P", str(passwords), "--max-upload-size", "1M", str(packages))
    name, data = wheel_bytes("big", "1.0", padding=3 * 1024 * 1024)
    status, reason, text = upload(server, name, data, AUTH)
    assert status == 413, (status, reason)
    _nothing_left(packages)


def test_chunked_body_cut_off_at_the_limit(packages, passwords, start_server):
    server = start_server("-P", str(passwords), "--max-upload-size", "1M", str(packages))
    piece = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 40 + [b"0\r\n\r\n"]
    answer = raw_exchange(server.port, _head(server.port, None), chunks)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    _nothing_left(packages)


def test_chunked_body_under_the_limit_is_accepted(packages, passwords, start_server):
    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("chunky", "1.0", padding=300_000)
    body, ctype = multipart(form_fields(name, data))
    chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + 9999]), body[i:i + 9999]) for i in range(0, len(body), 9999)]
    answer = raw_exchange(server.port, _head(server.port, None, ctype=ctype), chunks + [b"0\r\n\r\n"],
                          timeout=5)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert (packages / name).read_bytes() == data


def test_connection_dropped_mid_upload_leaves_nothing(packages, passwords, start_server):
    import socket

    server = start_server("-P", str(passwords), str(packages))
    name, data = wheel_bytes("dropped", "1.0", padding=2 * 1024 * 1024)
    body, ctype = multipart(form_fields(name, data))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(_head(server.port, len(body), ctype=ctype))
    sock.sendall(body[: len(body) // 2])
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    _nothing_left(packages)
    status, _, text = server.get("simple/dropped/")
    assert status == 404
    # Nothing is stuck: the same upload, complete, works.
    assert upload(server, name, data, AUTH)[0] == 200


def _vmhwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_200_mib_upload_keeps_server_memory_flat(packages, passwords, start_server, tmp_path):
    """Peak RSS (VmHWM) of the server rises by less than 64 MiB for a 200 MiB upload."""
    server = start_server("-P", str(passwords), str(packages))
    # Warm up: the first upload loads passlib, bcrypt, zipfile and friends.
    name, data = wheel_bytes("warmup", "1.0", padding=200_000)
    assert upload(server, name, data, AUTH)[0] == 200
    name, data = wheel_bytes("huge", "1.0", padding=200 * 1024 * 1024)
    body_path = tmp_path / "body"
    fields = form_fields(name, data)
    # Digests of the real data in the form; the body is written to disk
    # and streamed, so the test process does not hold it twice.
    body, ctype = multipart([f for f in fields if f[0] != "content"] + [("content", name, b"\0")])
    head, _, tail = body.rpartition(b"\0")
    with open(body_path, "wb") as f:
        f.write(head)
        f.write(data)
        f.write(tail)
    digest = hashlib.sha256(data).hexdigest()
    del data
    before = _vmhwm(server.process.pid)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    with open(body_path, "rb") as f:
        conn.request("POST", "/", body=f, headers={
            "Content-Type": ctype, "Content-Length": str(os.path.getsize(body_path)), **AUTH})
        response = conn.getresponse()
        text = response.read()
    assert response.status == 200, (response.status, response.reason, text)
    after = _vmhwm(server.process.pid)
    with open(packages / name, "rb") as f:
        got = hashlib.sha256()
        while chunk := f.read(1 << 20):
            got.update(chunk)
    assert got.hexdigest() == digest
    grew = after - before
    print(f"server VmHWM before {before >> 20} MiB, after {after >> 20} MiB (+{grew >> 20} MiB)")
    assert grew < 64 * 1024 * 1024, f"peak RSS grew by {grew >> 20} MiB"


def test_upload_without_credentials_is_refused_before_the_body(packages, passwords, start_server):
    """Anonymous upload bodies never reach the disk: 401 from the headers alone."""
    server = start_server("-P", str(passwords), str(packages))
    head = _head(server.port, 50 * 1024 * 1024).replace(b"Authorization: " + AUTH["Authorization"].encode() + b"\r\n", b"")
    assert b"Authorization" not in head
    answer = raw_exchange(server.port, head, read_first=True)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized: uploads need a user name and password."), answer[:200]
    assert b'www-authenticate: basic realm="pypid"' in answer.lower()
    _nothing_left(packages)
    assert "upload refused user=- client=127.0.0.1 project=- version=- file=- status=401" in server.log()
    # XML-RPC (pip search) POSTs to / are not uploads and are not refused.
    read_only = start_server(str(packages))
    head = _head(read_only.port, 10, ctype="text/xml").replace(
        b"Authorization: " + AUTH["Authorization"].encode() + b"\r\n", b"")
    answer = raw_exchange(read_only.port, head, [b"<x></x>..."], read_first=False, timeout=3)
    assert not answer.startswith(b"HTTP/1.1 403"), answer[:200]
