"""
--workers: several processes on one listening socket, each with its own
index of the same package directory, on a real twistd.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.uploadhelp import form_fields, multipart


@pytest.fixture
def packages(tmp_path):
    packages = tmp_path / "packages"
    for i in range(10):
        write_dist(str(packages), wheel_bytes(f"base{i}", "1.0"))
    return packages


class Worker:
    """A kept-alive connection known to be served by one worker."""

    def __init__(self, port: int, index: int, pid: int, conn: http.client.HTTPConnection) -> None:
        self.port, self.index, self.pid, self.conn = port, index, pid, conn

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None):
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.read()


def health(conn: http.client.HTTPConnection) -> dict:
    conn.request("GET", "/health")
    response = conn.getresponse()
    return json.loads(response.read())


def connect_to(server, index: int, tries: int = 400) -> Worker:
    """A connection that worker C{index} took (new connections go to whichever worker takes them)."""
    for _ in range(tries):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            status = health(conn)
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            time.sleep(0.02)
            continue
        if status.get("worker") == index and status.get("status") == "ok":
            return Worker(server.port, index, status["pid"], conn)
        conn.close()
    raise AssertionError(f"no connection reached worker {index}")


def workers_ready(server, count: int, timeout: float = 60) -> dict[int, int]:
    """Wait until every worker answers; their pids by index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count("] worker ") and all(f"worker {i} is ready" in server.log() for i in range(count)):
            return {i: connect_to(server, i).pid for i in range(count)}
        time.sleep(0.05)
    raise AssertionError(f"workers not ready:\n{server.log()}")


def upload_on(worker: Worker, name: str, version: str = "1.0", summary: str = None):
    filename, data = wheel_bytes(name, version, summary=summary)
    body, ctype = multipart(form_fields(filename, data))
    status, _ = worker.request("POST", "/", body, {"Content-Type": ctype})
    return status, filename, data


def test_workers_share_the_socket_and_the_directory(start_server, packages):
    """Both workers serve; an upload taken by one is listed by the other; metrics are labelled."""
    server = start_server("-P", ".", "-a", ".", "--workers", "2", "--metrics", str(packages))
    pids = workers_ready(server, 2)
    assert len(set(pids.values())) == 2 and server.process.pid not in pids.values()
    log = server.log()
    # Worker 1 started once worker 0 had read every file: it read none.
    assert log.count("10 files (10 files read") == 1 and "10 files (0 files read, 0 from the state cache, 10" in log
    first, second = connect_to(server, 0), connect_to(server, 1)
    for worker in (first, second):
        status, body = worker.request("GET", "/simple/")
        assert status == 200 and body.count(b"<a href=") == 10
    status, filename, data = upload_on(first, "uploaded-one")
    assert status == 200
    deadline = time.monotonic() + 5
    while second.request("GET", "/simple/uploaded-one/")[0] != 200:
        assert time.monotonic() < deadline, "the other worker never listed the upload"
        time.sleep(0.01)
    status, body = second.request("GET", f"/packages/{filename}")
    assert (status, body) == (200, data)
    status, body = first.request("GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert 'pypid_index_files{worker="0"} 11' in text and 'pypid_index_files{worker="1"}' in text
    assert text.count("# TYPE pypid_index_files gauge") == 1
    # The state cache, shared by both, never failed.
    assert "database is locked" not in server.log() and not re.search(r"state cache .* failed", server.log())


def test_one_filename_taken_by_two_workers_at_once(start_server, packages):
    """Two uploads of one filename racing on two workers: one stored, the other refused, nothing lost."""
    server = start_server("-P", ".", "-a", ".", "--workers", "2", str(packages))
    workers_ready(server, 2)
    for round_ in range(6):
        a, b = connect_to(server, 0), connect_to(server, 1)
        name = f"raced{round_}"
        results: dict[str, tuple] = {}
        barrier = threading.Barrier(2)

        def race(worker: Worker, summary: str) -> None:
            filename, data = wheel_bytes(name, "1.0", summary=summary)
            body, ctype = multipart(form_fields(filename, data))
            barrier.wait()
            status, _ = worker.request("POST", "/", body, {"Content-Type": ctype})
            results[summary] = (status, data)

        threads = [threading.Thread(target=race, args=(a, "from worker 0")),
                   threading.Thread(target=race, args=(b, "from worker 1"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(status for status, _ in results.values())
        assert statuses[0] == 200 and statuses[1] in (400, 409), results
        stored = (packages / f"{name}-1.0-py3-none-any.whl").read_bytes()
        (winner,) = [data for status, data in results.values() if status == 200]
        assert stored == winner
        for worker in (a, b):
            deadline = time.monotonic() + 5
            while True:
                status, body = worker.request("GET", f"/packages/{name}-1.0-py3-none-any.whl")
                if status == 200:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert body == winner
    leftovers = [n for n in os.listdir(packages / ".pypid-incoming")] if (packages / ".pypid-incoming").exists() else []
    assert leftovers == []


def test_a_killed_worker_is_started_again(start_server, packages):
    server = start_server("-P", ".", "-a", ".", "--workers", "2", str(packages))
    pids = workers_ready(server, 2)
    other = connect_to(server, 0)
    os.kill(pids[1], signal.SIGKILL)
    # Served meanwhile by the other worker.
    for _ in range(20):
        assert other.request("GET", "/simple/base1/")[0] == 200
    exited = "worker 1 (pid %d) exited (signal 9)" % pids[1]
    deadline = time.monotonic() + 30
    # The exit logged, then the worker started again after it.
    while exited not in server.log() or "worker 1 started" not in server.log().split(exited)[-1]:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while server.log().count("worker 1 is ready") < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    again = connect_to(server, 1)
    assert again.pid != pids[1]
    assert again.request("GET", "/simple/base2/")[0] == 200


def test_shutdown_stops_every_worker(start_server, packages):
    server = start_server("-P", ".", "-a", ".", "--workers", "3", str(packages))
    pids = workers_ready(server, 3)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) in (0, -signal.SIGTERM)  # (twistd ends by the signal it got)
    for pid in pids.values():
        assert not _alive(pid), f"worker {pid} outlived its supervisor"
    log = server.log()
    assert all(f"worker {i} stopped" in log for i in range(3)), log
    assert "Traceback" not in log


def test_workers_stop_when_their_supervisor_is_killed(start_server, packages):
    server = start_server("-P", ".", "-a", ".", "--workers", "2", str(packages))
    pids = workers_ready(server, 2)
    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, "workers outlived a killed supervisor"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False
