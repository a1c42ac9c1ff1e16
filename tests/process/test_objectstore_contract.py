"""
The store contract (tests/store/contract.py) run against the object store
backend on a real SeaweedFS and a real PostgreSQL (tests/realservers.py):
each test gets a bucket prefix and a catalog database of its own.

The contract is written for synchronous results; here they come over the
network, so C{successResultOf} and C{failureResultOf} first let the
reactor run (pytest-twisted's greenlet) until the Deferred has fired.
"""

from __future__ import annotations

import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.process.conftest import need_module
from tests.store.contract import WHEEL, PackageStoreContract

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

from pypid.store.objectstore.catalog import Catalog  # noqa: E402
from pypid.store.objectstore.s3 import S3Client, S3Location  # noqa: E402
from pypid.store.objectstore.store import ObjectStore, object_key  # noqa: E402
from pypid.threads import pool_threads  # noqa: E402

#: Longest wait for one result.
TIMEOUT = 60.0


def wait(d: Deferred, timeout: float = TIMEOUT) -> None:
    """Run the reactor until C{d} has a result (which stays in C{d})."""
    done: Deferred = Deferred()
    now = []

    def passed(result):
        now.append(True)
        # Later: the test goes on once d's callbacks have run.
        reactor.callLater(0, lambda: done.called or done.callback(None))
        return result

    d.addBoth(passed)
    if now:
        return
    timer = reactor.callLater(timeout, lambda: done.called or done.errback(TimeoutError(f"no result in {timeout} s")))
    try:
        pytest_twisted.blockon(done)
    finally:
        if timer.active():
            timer.cancel()


class ObjectStoreTests(PackageStoreContract, SynchronousTestCase):
    folders = False

    @pytest.fixture(autouse=True)
    def _servers(self, seaweedfs, postgres, catalog_url, s3_env, tmp_path):
        self.seaweedfs = seaweedfs
        self.catalog_url = catalog_url
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.stores: list[ObjectStore] = []
        yield
        for store in self.stores:
            d = store.stop()
            wait(d)

    def successResultOf(self, deferred):
        wait(deferred)
        return super().successResultOf(deferred)

    def failureResultOf(self, deferred, *expected):
        wait(deferred)
        return super().failureResultOf(deferred, *expected)

    def makeStore(self):
        location = S3Location.from_options(f"s3://{self.seaweedfs.bucket}/{uuid.uuid4().hex}",
                                           self.seaweedfs.endpoint)
        d = S3Client.connect(location, reactor=reactor)
        s3 = self.successResultOf(d)
        catalog = Catalog(self.catalog_url, reactor=reactor)
        store = ObjectStore(s3, catalog, pool_threads(reactor), str(self.work), reactor)
        self.stores.append(store)
        return store

    def startStore(self, store):
        self.successResultOf(store.start())

    def makeFolder(self, store, name):
        raise AssertionError("the object store has no folders")

    def test_objects_are_content_addressed(self):
        """A published file's bytes, signature and metadata are at its content's key; removal takes them away."""
        store = self.store()
        self.publish(store, WHEEL, signature=b"sig")
        f = store.snapshot.files[WHEEL[0]]
        key = object_key(f.digest, WHEEL[0])
        prefix = store.s3.location.prefix
        listed = {o.key for o in self.successResultOf(store.s3.list_all(""))}
        self.assertEqual(listed, {key, key + ".asc", key + ".metadata"})
        self.assertEqual(self.seaweedfs.object_sha256(prefix + key), f.digest)
        self.successResultOf(store.remove([f]))
        self.assertEqual(self.successResultOf(store.s3.list_all("")), [])
