"""
The upstream fallback with replicas: a file replica A fetched from the
upstream (a real, local fake upstream) is shared through the object store,
and replica B serves it without fetching it again.
"""

from __future__ import annotations

import time

from pypid.testing import wheel_bytes
from tests.process.conftest import need_module
from tests.process.test_upstream_http import fake_upstream, installed, pip_install  # noqa: F401 (fixture)
from tests.replicas import Replicas, list_keys

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")


def test_a_file_fetched_by_one_replica_is_not_fetched_again(tmp_path, seaweedfs, postgres, fake_upstream, env):
    name = fake_upstream.add(wheel_bytes("far_away", "1.0"))
    replicas = Replicas(tmp_path, seaweedfs, postgres)
    try:
        a, b = (replicas.start("--fallback-url", fake_upstream.url, name=n) for n in "ab")
        pip_install(a, env, tmp_path / "from-a", "far-away")
        assert fake_upstream.requests(f"/files/{name}") == 1
        deadline = time.monotonic() + 10
        while not (keys := [key for key, _ in list_keys(replicas.seaweedfs, replicas.prefix + "/upstream/")]):
            assert time.monotonic() < deadline, "replica A did not share the file"
            time.sleep(0.05)
        assert len(keys) == 1 and keys[0].endswith("/" + name), keys
        pip_install(b, env, tmp_path / "from-b", "far-away")
        assert installed(tmp_path / "from-b") == ["far_away-1.0.dist-info"]
        assert fake_upstream.requests(f"/files/{name}") == 1, "replica B fetched the file again"
        assert "took " in b.log() and "from the shared upstream files" in b.log()
        # The upstream's pages are each replica's own (they expire); only files are shared.
        assert fake_upstream.requests("/simple/far-away/") == 2
    finally:
        replicas.stop()
