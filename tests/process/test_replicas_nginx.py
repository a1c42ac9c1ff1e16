"""
Three pypid replicas on one bucket and one catalog, behind a real nginx
(examples/replicas/nginx.conf): an upload to replica A is listed by
replica C within a second and installs from there with pip and uv;
simultaneous uploads of one filename to A and B leave exactly one object
and one row; and a replica killed with SIGKILL during 200 installs
through nginx costs no install.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pypid.testing import wheel_bytes, write_dist
from tests.needs import needs
from tests.process.conftest import need_module
from tests.realservers import free_port
from tests.replicas import Replicas, ReplicasNginx, health, list_keys
from tests.server import tool
from tests.uploadhelp import htpasswd, pip_install, run, twine, upload

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

NGINX = __import__("shutil").which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = needs(NGINX, "nginx is not installed (apt-get install nginx; .ci/run does)")


class Cluster:
    def __init__(self, tmp_path, seaweedfs, postgres) -> None:
        self.replicas = Replicas(tmp_path, seaweedfs, postgres)
        self.passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
        self.ports = [free_port() for _ in range(3)]
        self.servers = [self.replicas.server("-P", str(self.passwords), "--trusted-proxy", "127.0.0.1",
                                             "--no-access-log", port=f"tcp:{port}:interface=127.0.0.1", name=name)
                        for port, name in zip(self.ports, "abc")]
        for server in self.servers:
            server.start()
        self.nginx = ReplicasNginx(tmp_path / "nginx", self.ports).start()

    def restart(self, index: int):
        old = self.servers[index]
        server = self.replicas.server(*old.args[len(self.replicas.args()):], port=old.port_description,
                                      name=f"{'abc'[index]}-again")
        self.servers[index] = server
        return server.start()

    def stop(self) -> None:
        self.nginx.stop()
        self.replicas.stop()


@pytest.fixture
def cluster(tmp_path, seaweedfs, postgres):
    made = Cluster(tmp_path, seaweedfs, postgres)
    yield made
    made.stop()


def test_upload_to_a_installs_through_c_within_a_second(cluster, tmp_path, env):
    a, b, c = cluster.servers
    dist = tmp_path / "dist"
    dist.mkdir()
    path = write_dist(str(dist), wheel_bytes("spread", "1.0"))
    run(twine("upload", "--repository-url", a.url, "-u", "alice", "-p", "alice-pw", "--disable-progress-bar",
              path), env)
    uploaded = time.monotonic()
    while b"spread-1.0-py3-none-any.whl" not in c.get("/simple/spread/")[2]:
        assert time.monotonic() - uploaded < 1.0, "replica C did not list the upload within a second"
        time.sleep(0.005)
    seen = time.monotonic() - uploaded
    pip_install(c, env, tmp_path / "pip-target", "spread==1.0")
    run([tool("uv"), "pip", "install", "--no-deps", "--target", str(tmp_path / "uv-target"), "--index-url",
         c.url + "simple/", "spread==1.0"], env)
    assert (tmp_path / "pip-target" / "spread").is_dir() and (tmp_path / "uv-target" / "spread").is_dir()
    # And through nginx, whichever replica answers.
    pip_install(c, env, tmp_path / "nginx-target", "spread==1.0", index=cluster.nginx.url + "simple/")
    print(f"listed on replica C {seen * 1000:.0f} ms after twine returned from replica A")


def test_simultaneous_uploads_of_one_filename_leave_one_object_and_one_row(cluster):
    a, b, c = cluster.servers
    headers = {"Authorization": "Basic " + __import__("base64").b64encode(b"alice:alice-pw").decode()}
    rounds = 12
    outcomes = []
    for n in range(rounds):
        first = wheel_bytes("race", f"1.{n}", summary="from A")
        second = wheel_bytes("race", f"1.{n}", summary="from B")
        assert first[0] == second[0] and first[1] != second[1]
        barrier = threading.Barrier(2)
        results = {}

        def send(server, built, name):
            barrier.wait()
            results[name] = upload(server, *built, headers=headers)

        threads = [threading.Thread(target=send, args=(a, first, "a")),
                   threading.Thread(target=send, args=(b, second, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(result[0] for result in results.values())
        assert codes == [200, 400], results
        loser = "a" if results["a"][0] == 400 else "b"
        assert results[loser][2].startswith(f"File already exists ('{first[0]}' with different content)")
        winner_bytes = first[1] if loser == "b" else second[1]
        outcomes.append((first[0], winner_bytes))

    database = cluster.replicas.catalog_url.rsplit("/", 1)[1]
    rows = cluster.replicas.postgres.psql("SELECT filename, sha256 FROM pypid_files ORDER BY filename",
                                          database).split()
    assert len(rows) == rounds
    keys = list_keys(cluster.replicas.seaweedfs, cluster.replicas.prefix + "/files/")
    for filename, data in outcomes:
        sha256 = hashlib.sha256(data).hexdigest()
        assert f"{filename}|{sha256}" in rows
        objects = [key for key, _ in keys if key.endswith("/" + filename)]
        assert objects == [f"{cluster.replicas.prefix}/files/{sha256[:2]}/{sha256}/{filename}"]
        for server in cluster.servers:
            deadline = time.monotonic() + 5
            while server.get(f"/packages/{filename}")[2] != data:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    # Each winner's file and its metadata: nothing else is left behind.
    assert len(keys) == 2 * rounds


def test_a_replica_killed_during_200_installs_costs_none(cluster, tmp_path, env):
    a, b, c = cluster.servers
    for built in (wheel_bytes("steady_app", "1.0", requires=["steady-lib"]), wheel_bytes("steady_lib", "2.0")):
        assert upload(a, *built, headers={"Authorization": "Basic YWxpY2U6YWxpY2UtcHc="})[0] == 200
    for server in cluster.servers:
        deadline = time.monotonic() + 5
        while health(server)["files"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    index = cluster.nginx.url + "simple/"
    done = []
    failures = []
    lock = threading.Lock()

    def install(n: int) -> None:
        target = tmp_path / "targets" / str(n)
        result = subprocess.run(
            [tool("uv"), "pip", "install", "--no-cache", "--target", str(target), "--index-url", index,
             "steady-app"], env=env, capture_output=True, text=True, timeout=120)
        with lock:
            done.append(n)
            if result.returncode != 0 or not (target / "steady_lib").is_dir():
                failures.append(f"install {n}: {result.stdout}{result.stderr}")

    killed = restarted = None
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(install, n) for n in range(200)]
        while len(done) < 200:
            if killed is None and len(done) >= 40:
                b.process.kill()  # SIGKILL, mid-traffic
                killed = len(done)
            if restarted is None and len(done) >= 140:
                cluster.restart(1)
                restarted = len(done)
            time.sleep(0.02)
        for future in futures:
            future.result()
    assert failures == [], failures[:3]
    assert killed is not None and restarted is not None
    assert b.process.wait(5) == -9
    assert health(cluster.servers[1])["files"] == 2
