"""
Replicas when an engine goes away (real servers, really stopped):
PostgreSQL stopped and restarted while clients read (listings and
downloads keep serving from the last snapshot, uploads get 503 with the
reason, /health says degraded, the replica catches up afterwards), and
SeaweedFS stopped (downloads 503 with a clear message, listings serve,
uploads 503 and no catalog row written; all well again after it restarts).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.process.conftest import need_module
from tests.replicas import Replicas, health
from tests.uploadhelp import upload

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")


def wait_until(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Reader(threading.Thread):
    """Reads the given paths from servers in a loop, counting what was not a 200."""

    def __init__(self, servers, paths) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.paths = paths
        self.stop_event = threading.Event()
        self.reads = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            for server in self.servers:
                for path in self.paths:
                    status, _, _ = server.get(path)
                    self.reads += 1
                    if status != 200:
                        self.failures.append(f"{server.url}{path}: {status}")

    def finish(self) -> None:
        self.stop_event.set()
        self.join(30)


def files_in_catalog(cluster, database: str) -> int:
    return int(cluster.psql("SELECT count(*) FROM pypid_files", database).strip())


def test_postgresql_stopped_and_restarted_during_reads(tmp_path, seaweedfs, own_postgres):
    replicas = Replicas(tmp_path, seaweedfs, own_postgres)
    try:
        a = replicas.start("-a", ".", "-P", ".", name="a")
        b = replicas.start("-a", ".", "-P", ".", name="b")
        wheel = wheel_bytes("steady", "1.0")
        assert upload(a, *wheel)[0] == 200
        wait_until(lambda: health(b)["files"] == 1, what="b to list the upload")
        paths = ["/simple/steady/", f"/packages/{wheel[0]}", f"/packages/{wheel[0]}.metadata", "/simple/"]
        reader = Reader([a, b], paths)
        reader.start()
        time.sleep(0.5)

        own_postgres.stop()
        for server in (a, b):
            state = wait_until(lambda: health(server)["status"] == "degraded" and health(server),
                               what="the catalog outage to show in /health")
            assert any(p.startswith("catalog: ") for p in state["problems"]), state
            assert state["files"] == 1
        status, reason, text = upload(a, *sdist_bytes("steady", "1.0"))
        assert status == 503, text
        assert text.startswith("Service Unavailable: the catalog is unavailable (")
        assert "uploads are refused until it is back" in text
        time.sleep(1)

        own_postgres.start()
        # B takes an upload as soon as it can; A, maybe still waiting to
        # reconnect, catches up on what it missed.
        sdist = sdist_bytes("steady", "1.0")
        wait_until(lambda: upload(b, *sdist)[0] == 200, what="uploads to work again on b")
        for server in (a, b):
            wait_until(lambda: health(server)["status"] == "ok", what="the replica to be healthy again")
        wait_until(lambda: health(a)["files"] == 2, what="a to catch up")
        status, _, page = a.get("/simple/steady/")
        assert sdist[0].encode() in page
        assert upload(a, *wheel_bytes("steady", "2.0"))[0] == 200
        reader.finish()
        assert reader.reads > 50
        assert reader.failures == []
    finally:
        replicas.stop()


def test_object_store_stopped(tmp_path, own_seaweedfs, postgres):
    replicas = Replicas(tmp_path, own_seaweedfs, postgres)
    database = replicas.catalog_url.rsplit("/", 1)[1]
    try:
        server = replicas.start("-a", ".", "-P", ".")
        small = wheel_bytes("fragile", "1.0")
        big = wheel_bytes("fragile", "2.0", padding=200_000)
        for built in (small, big):
            assert upload(server, *built)[0] == 200
        assert server.get(f"/packages/{small[0]}.metadata")[0] == 200
        assert files_in_catalog(postgres, database) == 2

        own_seaweedfs.stop()
        for name in (small[0], big[0]):
            status, headers, body = server.get(f"/packages/{name}")
            assert status == 503, body
            assert body.startswith(b"the object store is unavailable: cannot reach the object store at "), body
            assert headers["Retry-After"] == "5"
        # Metadata read before is still served; listings serve.
        assert server.get(f"/packages/{small[0]}.metadata")[0] == 200
        status, _, page = server.get("/simple/fragile/")
        assert status == 200 and big[0].encode() in page
        status, _, text = upload(server, *sdist_bytes("fragile", "2.0"))
        assert status == 503, text
        assert "the object store is unavailable" in text and "the upload was not stored" in text
        assert files_in_catalog(postgres, database) == 2
        state = health(server)
        assert state["status"] == "degraded"
        assert any(p.startswith("object store: cannot reach the object store at") for p in state["problems"])

        own_seaweedfs.start()
        status, _, body = server.get(f"/packages/{big[0]}")
        assert (status, body) == (200, big[1])
        assert upload(server, *sdist_bytes("fragile", "2.0"))[0] == 200
        assert files_in_catalog(postgres, database) == 3
        assert health(server)["status"] == "ok"
    finally:
        replicas.stop()


def test_kill_9_mid_upload_never_lists_an_incomplete_object(tmp_path, seaweedfs, postgres):
    """A replica killed at any point of an upload leaves at most objects no row names (fsck's orphans)."""
    import subprocess

    from tests.replicas import subprocess_env
    from tests.server import tool

    replicas = Replicas(tmp_path, seaweedfs, postgres)
    uploaded = {}
    try:
        for n, delay in enumerate((0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.2)):
            server = replicas.start("-a", ".", "-P", ".", name=f"killed-{n}")
            built = wheel_bytes("killed", f"1.{n}", padding=20 * 1024 * 1024)
            uploaded[built[0]] = built[1]
            thread = threading.Thread(target=lambda: _quietly(upload, server, *built), daemon=True)
            thread.start()
            time.sleep(delay)
            server.process.kill()
            server.process.wait()
            thread.join(30)
        survivor = replicas.start(name="survivor")
        listed = [name for name in uploaded if name.encode() in survivor.get("/simple/killed/")[2]]
        for name in listed:
            assert survivor.get(f"/packages/{name}")[2] == uploaded[name]
        result = subprocess.run(
            [tool("pypid"), "store", "fsck", "--store", replicas.store, "--s3-endpoint", seaweedfs.endpoint,
             "--catalog", replicas.catalog_url], capture_output=True, text=True, env=subprocess_env(replicas),
            timeout=120)
        assert "missing:" not in result.stdout, result.stdout
        print(f"{len(listed)} of {len(uploaded)} listed; fsck: {result.stdout.splitlines()[-1]}")
        assert f"{len(listed)} row" in result.stdout.splitlines()[-1]
    finally:
        replicas.stop()


def _quietly(f, *args):
    try:
        f(*args)
    except OSError:
        pass
