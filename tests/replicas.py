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
