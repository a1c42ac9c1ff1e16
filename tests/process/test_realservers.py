"""
The real servers of the replicas tests start, answer, keep their data
across a restart and stop: the fault tests rely on that.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.realservers import PostgresCluster


def test_seaweedfs_keeps_objects_across_a_restart(own_seaweedfs):
    server = own_seaweedfs
    status, _ = server.request("PUT", f"/{server.bucket}/kept.txt", b"kept")
    assert status == 200
    server.restart()
    status, body = server.request("GET", f"/{server.bucket}/kept.txt")
    assert (status, body) == (200, b"kept")
    server.stop()
    with pytest.raises(OSError):
        server.request("GET", f"/{server.bucket}/kept.txt")


def test_seaweedfs_checks_signatures(seaweedfs):
    status, body = seaweedfs.request("GET", f"/{seaweedfs.bucket}?list-type=2", secret="wrong")
    assert status == 403 and b"SignatureDoesNotMatch" in body
    status, body = seaweedfs.request("PUT", f"/{seaweedfs.bucket}/x", b"x", key=seaweedfs.reader_key,
                                     secret=seaweedfs.reader_secret)
    assert status == 403 and b"AccessDenied" in body


def _psql_tcp(cluster: PostgresCluster, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(cluster.bindir / "psql"), "-X", "-A", "-t", "-c", "select current_user",
         cluster.url("postgres")], capture_output=True, text=True, env=env,
    )


def test_postgres_needs_the_password_from_pgpassfile(own_postgres, tmp_path):
    cluster = own_postgres
    ok = _psql_tcp(cluster, {"PGPASSFILE": str(cluster.pgpass), "PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "pypid"
    refused = _psql_tcp(cluster, {"PGPASSFILE": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"})
    assert refused.returncode != 0


def test_postgres_keeps_data_across_stop_kill_and_start(own_postgres):
    cluster = own_postgres
    database = cluster.create_database()
    cluster.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)", database)
    cluster.stop()
    assert not cluster.running
    cluster.start()
    assert cluster.psql("SELECT v FROM t", database).strip() == "7"
    cluster.kill()
    assert not cluster.running
    cluster.start()
    assert cluster.psql("SELECT v FROM t", database).strip() == "7"
