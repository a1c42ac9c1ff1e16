"""
Protocol limits against a real pypid: slowloris clients (request heads
trickled in), connections over --max-connections, and downloads nobody
reads (issue 18, items 5 and 6).
"""

from __future__ import annotations

import os
import re
import select
import socket
import sys
import threading
import time
import urllib.request

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.rawhttp import parse
from tests.server import PypidServer

#: Runs the rest of its command line with this many open files at most.
LIMIT_FILES = ("import os, resource, sys; n = int(sys.argv[1]); "
               "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execvp(sys.argv[2], sys.argv[2:])")


class LimitedServer(PypidServer):
    """pypid with a hard limit of open files, as a shell or supervisor may give it."""

    def __init__(self, *args, files: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.files = files

    def command(self) -> list[str]:
        return [sys.executable, "-c", LIMIT_FILES, str(self.files), *super().command()]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_rss(pid: int, quiet: float = 1.5, limit: float = 30.0) -> int:
    deadline = time.monotonic() + limit
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_kib(pid)
        if abs(now - last) > max(last // 200, 256):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return rss_kib(pid)


class Tricklers:
    """
    Slowloris clients: each opens a connection, sends a request line, then
    a header line every C{every} seconds and never ends its head.
    """

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        self.port = port
        self.every = every
        self.sockets: dict[socket.socket, float] = {}
        self.closed_after: list[float] = []
        self.answers: list[bytes] = []
        self.unsent: dict[socket.socket, bytes] = {}
        self._stop = threading.Event()
        for _ in range(count):
            self._open()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        self.sockets[s] = time.monotonic()
        self.unsent[s] = b"GET /simple/ HTTP/1.1\r\nHost: slow\r\n"

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and self.sockets:
            readable, _, _ = select.select(list(self.sockets), [], [], self.every)
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.answers.append(data[:40])
                    continue
                self._closed(s)
            n += 1
            for s in list(self.sockets):
                line = self.unsent.get(s, b"") + b"X-Trickle-%d: x\r\n" % n
                try:
                    sent = s.send(line)
                except BlockingIOError:
                    sent = 0  # not connected yet: all of it next time
                    line = self.unsent.get(s, b"")
                except OSError:
                    self._closed(s)
                    continue
                self.unsent[s] = line[sent:]

    def _closed(self, s: socket.socket) -> None:
        self.closed_after.append(time.monotonic() - self.sockets.pop(s))
        self.unsent.pop(s, None)
        s.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        for s in self.sockets:
            s.close()


@pytest.fixture
def packages_with_big_file(packages):
    write_dist(str(packages), wheel_bytes("small", "1.0"))
    name = write_dist(str(packages), wheel_bytes("big", "1.0", padding=8 * 2**20))
    return packages, "/packages/" + os.path.basename(name)


def test_slowloris_does_not_keep_requests_out(packages_with_big_file, tmp_path):
    """
    With 256 open files (a shell's or supervisor's limit, scaled down),
    300 connections trickling their request heads are closed within the
    header timeout, and requests from others keep succeeding meanwhile.
    Before, every trickle restarted a 60 s timer: the tricklers kept every
    descriptor and the other requests waited until they gave up.
    """
    packages, _ = packages_with_big_file
    server = LimitedServer(["--header-timeout", "2", "--no-access-log", str(packages)],
                           log_path=tmp_path / "twistd.log", files=256)
    server.start()
    tricklers = None
    try:
        tricklers = Tricklers(server.port, 300)
        time.sleep(1)
        answered = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with urllib.request.urlopen(server.url + "simple/small/", timeout=5) as response:
                answered.append(response.status)
            time.sleep(0.1)
        assert answered and set(answered) == {200}, answered
        time.sleep(1)
        assert not tricklers.sockets, f"{len(tricklers.sockets)} tricklers still connected"
        assert max(tricklers.closed_after) < 2 + 3, "closed within the header timeout (or sooner, to make room)"
        log = server.log()
        assert "request head did not arrive within 2 s" in log
        assert "Traceback" not in log and "Out of file descriptors" not in log
    finally:
        if tricklers is not None:
            tricklers.stop()
        server.stop()


def stalled_downloads(port: int, path: str, count: int) -> list[socket.socket]:
    """Connections that ask for C{path} and read nothing (a 4 KiB receive buffer)."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        sockets.append(s)
    return sockets


def test_stalled_readers_hold_little_memory_and_are_let_go(start_server, packages_with_big_file):
    """
    A client that asks for a large file and reads nothing costs pypid at
    most 64 KiB (it was 265 KiB: a 256 KiB chunk was written before the
    transport paused), and is cut after the idle timeout, giving back its
    memory's use and its descriptors.
    """
    packages, path = packages_with_big_file
    server = start_server("--idle-timeout", "4", "--no-access-log", str(packages))
    pid = server.process.pid
    with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=30) as response:
        assert len(response.read()) > 8 * 2**20
    files_before = open_files(pid)
    before = settled_rss(pid)
    sockets = stalled_downloads(server.port, path, 200)
    try:
        after = settled_rss(pid)
        assert open_files(pid) >= files_before + 2 * 200
        per_reader = (after - before) / 200
        assert per_reader <= 64, f"{per_reader:.1f} KiB per stalled reader"
        deadline = time.monotonic() + 20
        while open_files(pid) > files_before + 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert open_files(pid) <= files_before + 5, "stalled readers cut after the idle timeout"
        assert "read none of its answer for 4" in server.log()
    finally:
        for s in sockets:
            s.close()


def test_over_the_connection_limit(start_server, packages_with_big_file):
    """
    Idle connections make room for new ones; when every connection is busy
    answering, a new one gets 503 with Retry-After (not a refused or hung
    connection), and is served again once there is room.
    """
    packages, path = packages_with_big_file
    server = start_server("--max-connections", "20", "--no-access-log", str(packages))
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
    try:
        for _ in range(5):
            with urllib.request.urlopen(server.url + "simple/small/", timeout=10) as response:
                assert response.status == 200
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    busy = stalled_downloads(server.port, path, 20)
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /simple/small/ HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        answer = parse(data)
        assert answer.status == 503 and answer.header("retry-after") == "5"
        assert answer.header("cache-control") == "no-store"
    finally:
        for s in busy:
            s.close()
    time.sleep(0.5)
    with urllib.request.urlopen(server.url + "simple/small/", timeout=10) as response:
        assert response.status == 200
    log = server.log()
    assert "connection limit (20) reached: closed the connection idle the longest" in log
    assert "connection limit (20) reached and every connection busy: answered 503" in log


def test_stalled_readers_of_a_large_page(start_server, packages):
    """
    A large page (a 1 MiB JSON document here) is written 128 KiB at a time:
    a client that reads none of it holds at most that (it held a copy of the
    whole page: Twisted joins headers and body into one buffer).
    """
    write_dist(str(packages), wheel_bytes("big-doc", "1.0", summary="y" * 2**20))
    server = start_server("--no-access-log", str(packages))
    pid = server.process.pid
    status, _, body = server.get("pypi/big-doc/json")
    assert status == 200 and len(body) > 2**20
    before = settled_rss(pid)
    sockets = stalled_downloads(server.port, "/pypi/big-doc/json", 100)
    try:
        per_reader = (settled_rss(pid) - before) / 100
        assert per_reader <= 160, f"{per_reader:.1f} KiB per stalled reader of a 1 MiB page"
    finally:
        for s in sockets:
            s.close()


def test_large_download_is_whole_and_logged_whole(start_server, packages_with_big_file):
    """Sent by sendfile(2) and through the transport in turns: every byte, in order, all in the access log."""
    packages, path = packages_with_big_file
    server = start_server(str(packages))
    data = (packages / os.path.basename(path)).read_bytes()
    for _ in range(3):
        with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=30) as response:
            assert response.read() == data
    request = urllib.request.Request(server.url + path.lstrip("/"), headers={"Range": "bytes=1000001-"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 206 and response.read() == data[1000001:]
    log = server.log()
    assert log.count(f'"GET {path} HTTP/1.1" 200 {len(data)} ') == 3
    assert f'"GET {path} HTTP/1.1" 206 {len(data) - 1000001} ' in log
