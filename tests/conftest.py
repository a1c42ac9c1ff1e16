"""
Shared fixtures: real C{twistd pypid} processes on loopback, and an
isolated environment for the real clients (pip, uv, twine) driven against
them. Nothing here touches the internet.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.server import PypidServer, client_env

#: A missing outside program fails a test in CI (tests/needs.py).
pytest_plugins = ["tests.needs"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run every test in its own directory (trial's mktemp() is relative to it)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _no_quiet_period(monkeypatch):
    """
    In-process scans read files the test has just written: no quiet period
    (pypid.store.directory.scan.QUIET), which its own tests inject with a
    fake clock. The daemons of tests/process keep theirs.
    """
    from pypid.store.directory import scan

    monkeypatch.setattr(scan, "DEFAULT_QUIET", scan.Quiet(seconds=0))


@pytest.fixture
def packages(tmp_path):
    """An empty package directory."""
    path = tmp_path / "packages"
    path.mkdir()
    return path


@pytest.fixture
def start_server(tmp_path):
    """
    A factory starting C{twistd -n pypid} on 127.0.0.1 with the given
    arguments; every server it started is stopped at the end of the test.
    """
    servers: list[PypidServer] = []

    def start(*args: str, **kwargs) -> PypidServer:
        server = PypidServer(list(args), log_path=tmp_path / f"twistd-{len(servers)}.log", **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def env(tmp_path):
    """Environment variables isolating pip and uv from the machine's config."""
    return client_env(tmp_path)
