"""
The wrong-password flood of issue 18 against a real twistd: four
connections sending wrong passwords from one address are limited (401s,
then 429 with Retry-After, a second late and with no check), for reads,
FTP and uploads alike, while a client at another address is served. Timings are measured by
bench/flood.py, not here.
"""

from __future__ import annotations

import base64
import ftplib
import http.client
import threading
import time

import pytest

from pypid.auth.limiter import FAILURES, PERIOD
from pypid.testing import wheel_bytes, write_dist
from tests.process.test_ftp import ftp_port
from tests.uploadhelp import htpasswd, upload

FLOODER = "127.0.0.1"
OTHER = "127.0.0.2"


def request(port: int, path: str, user: str, password: str, source: str = FLOODER):
    """(status, headers, body) of one GET from the address C{source}."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        connection.request("GET", path, headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def ftp_login(port: int, password: str, source: str = FLOODER) -> str:
    client = ftplib.FTP(timeout=10, source_address=(source, 0))
    client.connect("127.0.0.1", port)
    try:
        return client.login("alice", password)
    except ftplib.error_perm as e:
        return str(e)
    finally:
        client.close()


@pytest.fixture
def server(tmp_path, packages, start_server):
    write_dist(str(packages), wheel_bytes("private", "1.0"))
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    server = start_server("-P", str(passwords), "-a", "update,download,list",
                          "--ftp", "tcp:0:interface=127.0.0.1", str(packages))
    server.ftp_port = ftp_port(server)
    return server


def test_flood_is_limited_and_others_are_served(server):
    statuses: list[int] = []
    retry_afters: set[str] = set()
    served: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def flood(n: int) -> None:
        for i in range(12):
            if time.monotonic() > deadline:
                return
            status, headers, body = request(server.port, "/simple/private/", "alice", f"guess-{n}-{i}")
            with lock:
                statuses.append(status)
                if status == 429:
                    retry_afters.add(headers.get("Retry-After"))
                    assert b"too many failed logins" in body

    def other() -> None:
        for _ in range(20):
            status, _, body = request(server.port, "/simple/private/", "alice", "wonderland", OTHER)
            served.append(status)
            assert b"private-1.0-py3-none-any.whl" in body

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)] + [threading.Thread(target=other)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    elapsed = time.monotonic() - started
    assert len(statuses) == 48
    assert set(statuses) == {401, 429}, statuses
    # The budget, and what refilled meanwhile (FAILURES per PERIOD).
    assert statuses.count(401) <= FAILURES + elapsed * FAILURES / PERIOD + 1
    assert len(retry_afters) >= 1 and all(int(v) >= 1 for v in retry_afters), retry_afters
    assert served == [200] * 20
    # The right password from the flooding address is refused unchecked too...
    status, headers, _ = request(server.port, "/simple/private/", "alice", "wonderland")
    assert status == 429 and int(headers["Retry-After"]) >= 1
    # ...and by FTP, which shares the limit, with the reason.
    assert ftp_login(server.ftp_port, "wonderland").startswith("530 Too many failed logins")
    assert ftp_login(server.ftp_port, "wonderland", OTHER).startswith("230")
    log = server.log()
    assert log.count("login refused user=alice client=127.0.0.1 service=http") == statuses.count(401)
    assert "login blocked client=127.0.0.1" in log
    assert "Traceback" not in log


def test_ftp_wrong_passwords_are_limited(server):
    answers = [ftp_login(server.ftp_port, f"guess-{i}") for i in range(FAILURES + 3)]
    assert answers[:FAILURES] == ["530 Sorry, Authentication failed."] * FAILURES
    assert all(a.startswith("530 Too many failed logins from your address; try again in ") for a in answers[FAILURES:])
    # HTTP from that address is limited too; another address is not.
    assert request(server.port, "/simple/", "alice", "wonderland")[0] == 429
    assert request(server.port, "/simple/", "alice", "wonderland", OTHER)[0] == 200
    assert "login refused user=alice client=127.0.0.1 service=ftp" in server.log()


def test_upload_from_a_flooding_address_is_429(server, packages):
    """An upload from an address over its limit is refused 429 from its head: no password checked, no byte written."""
    for i in range(FAILURES):
        assert request(server.port, "/simple/", "alice", f"guess-{i}")[0] == 401
    name, data = wheel_bytes("later", "1.0")
    status, reason, _ = upload(server, name, data, {"Authorization": "Basic " + base64.b64encode(
        b"alice:wonderland").decode()})
    assert status == 429, (status, reason)
    assert reason.startswith("Too Many Requests: too many failed logins from your address; try again in ")
    assert not (packages / name).exists() and not (packages / ".pypid-incoming").exists()
    assert "upload refused user=- client=127.0.0.1" in server.log() and "status=429" in server.log()
