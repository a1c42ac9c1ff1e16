"""
Helpers of the replicas tests: pypid processes started on the object store
and the catalog (tests/realservers.py), with their credentials in the
environment as in production (botocore's chain, PGPASSFILE).
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

from tests.realservers import PostgresCluster, SeaweedFS
from tests.server import PypidServer


class Replicas:
    """
    Starts pypid replicas on one bucket prefix and one catalog database
    (each test gets its own of both); stops them at the end.
    """

    def __init__(self, tmp_path: Path, seaweedfs: SeaweedFS, postgres: PostgresCluster,
                 catalog_url: Optional[str] = None) -> None:
        self.tmp_path = tmp_path
        self.seaweedfs = seaweedfs
        self.postgres = postgres
        self.prefix = uuid.uuid4().hex
        self.catalog_url = catalog_url or postgres.url(postgres.create_database())
        self.servers: list[PypidServer] = []

    @property
    def store(self) -> str:
        return f"s3://{self.seaweedfs.bucket}/{self.prefix}"

    def env(self) -> dict:
        """Credentials as the daemons read them: the environment and the password file."""
        return {
            "AWS_ACCESS_KEY_ID": self.seaweedfs.access_key,
            "AWS_SECRET_ACCESS_KEY": self.seaweedfs.secret_key,
            "AWS_CONFIG_FILE": str(self.tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PGPASSFILE": str(self.postgres.pgpass),
        }

    def args(self, *extra: str) -> list[str]:
        """The options every replica gets."""
        return ["--store", self.store, "--s3-endpoint", self.seaweedfs.endpoint, "--catalog", self.catalog_url,
                *extra]

    def server(self, *extra: str, port: str = "tcp:0:interface=127.0.0.1", name: Optional[str] = None) -> PypidServer:
        """A replica, not started; C{--state-dir} of its own."""
        index = len(self.servers)
        state = self.tmp_path / f"replica-{name or index}"
        state.mkdir(exist_ok=True)
        server = PypidServer(self.args("--state-dir", str(state), *extra),
                             log_path=self.tmp_path / f"replica-{name or index}.log", port=port, env=self.env())
        self.servers.append(server)
        return server

    def start(self, *extra: str, **kwargs) -> PypidServer:
        return self.server(*extra, **kwargs).start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def health(server: PypidServer) -> dict:
    with urllib.request.urlopen(server.url + "health", timeout=10) as response:
        return json.load(response)


def pypid_command() -> list[str]:
    """The pypid command of the test interpreter's environment."""
    from tests.server import tool

    return [tool("pypid")]


def subprocess_env(replicas: Replicas) -> dict:
    env = dict(os.environ)
    env.update(replicas.env())
    return env


def list_keys(seaweedfs: SeaweedFS, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every object of the bucket under C{prefix}, read with a plain signed listing."""
    from urllib.parse import quote
    from xml.etree import ElementTree

    keys: list[tuple[str, int]] = []
    token = None
    while True:
        query = f"list-type=2&prefix={quote(prefix, safe='')}"
        if token:
            query += f"&continuation-token={quote(token, safe='')}"
        status, body = seaweedfs.request("GET", f"/{seaweedfs.bucket}?{query}")
        assert status == 200, body
        root = ElementTree.fromstring(body)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for item in root.findall(f"{ns}Contents"):
            keys.append((item.findtext(f"{ns}Key"), int(item.findtext(f"{ns}Size"))))
        if root.findtext(f"{ns}IsTruncated") != "true":
            return keys
        token = root.findtext(f"{ns}NextContinuationToken")


class ReplicasNginx:
    """
    Real nginx with examples/replicas/nginx.conf in front of the given
    ports (the example's own substitution), on a free port of 127.0.0.1.
    """

    def __init__(self, directory: Path, ports: list[int]) -> None:
        import shutil

        from tests.realservers import free_port
        from tests.server import ROOT

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        site = (ROOT / "examples" / "replicas" / "nginx.conf").read_text()
        for default, port in zip((3141, 3142, 3143), ports):
            old = f"server 127.0.0.1:{default} "
            assert site.count(old) == 1
            site = site.replace(old, f"server 127.0.0.1:{port} ")
        assert site.count("listen 127.0.0.1:8080;") == 1
        site = site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};")
        (self.dir / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/error.log info;\nevents {{ worker_connections 512; }}\n"
            "http {\n"
            f"  access_log {self.dir}/access.log;\n"
            + "".join(f"  {kind}_temp_path {self.dir}/{kind}_temp;\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"  include {self.dir}/site.conf;\n}}\n"
        )
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "ReplicasNginx":
        import http.client
        import subprocess
        import time

        command = [self.binary, "-e", str(self.dir / "error.log"), "-p", str(self.dir), "-c",
                   str(self.dir / "nginx.conf")]
        check = subprocess.run(command + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("HEAD", "/health")
                connection.getresponse()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start:\n" + (self.dir / "error.log").read_text())

    def stop(self) -> None:
        import signal
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
