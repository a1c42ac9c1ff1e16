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

from pypid.testing import wheel_bytes
from tests.process.conftest import need_module
from tests.store.contract import SDIST, WHEEL, PackageStoreContract, SerialContract

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


class ObjectStoreTests(PackageStoreContract, SerialContract, SynchronousTestCase):
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

    def makeStore(self, prefix=None):
        """A new store; with C{prefix}, another replica on the same bucket prefix and catalog."""
        location = S3Location.from_options(f"s3://{self.seaweedfs.bucket}/{prefix or uuid.uuid4().hex}",
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

    def until(self, condition, timeout: float = 10.0) -> None:
        """Let the reactor run until C{condition()} (another replica applies a change by its NOTIFY)."""
        from twisted.internet.task import deferLater

        deadline = reactor.seconds() + timeout
        while not condition():
            self.assertLess(reactor.seconds(), deadline, "not seen in time")
            self.successResultOf(deferLater(reactor, 0.02, lambda: None))

    def test_yanks_and_serials_are_the_same_on_every_replica(self):
        """
        A yank on one replica shows on another that follows the catalog,
        and on one started afterwards: the yanks, the snapshot's serial,
        each project's serial and the change log are the same on all.
        """
        a = self.store()
        b = self.makeStore(a.s3.location.prefix)
        self.startStore(b)
        self.publish(a, WHEEL)
        self.publish(a, SDIST)
        self.publish(a, ("other-2.0-py3-none-any.whl", wheel_bytes("other", "2.0")[1]))
        self.assertEqual(self.successResultOf(a.setYanked([a.snapshot.files[WHEEL[0]]], "broken")), [WHEEL[0]])
        self.until(lambda: b.snapshot.serial == a.snapshot.serial)
        self.assertEqual(b.snapshot.yank_reason(b.snapshot.files[WHEEL[0]]), "broken")
        # Changes made on b reach a; a removal forgets the yank; a file uploaded again starts unyanked.
        self.successResultOf(b.setYanked([b.snapshot.files[SDIST[0]]], ""))
        self.successResultOf(b.remove([b.snapshot.files[WHEEL[0]]]))
        self.until(lambda: a.snapshot.serial == b.snapshot.serial)
        self.assertEqual(a.snapshot.yanks, {"demo-pkg": {SDIST[0]: ""}})
        self.publish(a, WHEEL)
        self.until(lambda: b.snapshot.serial == a.snapshot.serial)
        self.assertIsNone(b.snapshot.yank_reason(b.snapshot.files[WHEEL[0]]))
        c = self.makeStore(a.s3.location.prefix)
        self.startStore(c)
        for store in (b, c):
            self.assertEqual(store.snapshot.serial, a.snapshot.serial)
            self.assertEqual(store.snapshot.yanks, a.snapshot.yanks)
            self.assertEqual({key: p.serial for key, p in store.snapshot.projects.items()},
                             {key: p.serial for key, p in a.snapshot.projects.items()})
            self.assertEqual(self.successResultOf(store.changelog(0)), self.successResultOf(a.changelog(0)))
        self.assertEqual(a.snapshot.get("other").serial, 3)
        self.assertEqual(a.snapshot.get("demo-pkg").serial, a.snapshot.serial)

    def test_a_changelog_asked_past_this_replica_waits_for_it(self):
        """A mirror that saw a serial on a replica ahead gets the changes from one catching up, not a full sync."""
        a = self.store()
        b = self.makeStore(a.s3.location.prefix)
        self.startStore(b)
        self.publish(a, WHEEL)
        self.until(lambda: b.snapshot.serial == a.snapshot.serial)
        b._follower.stop()  # b falls behind
        self.publish(a, SDIST)
        self.successResultOf(a.setYanked([a.snapshot.files[SDIST[0]]], "x"))
        self.assertLess(b.snapshot.serial, a.snapshot.serial)
        behind = b.changelog(a.snapshot.serial - 1)
        b._follower.start()
        answer = self.successResultOf(behind)
        self.assertTrue(answer.complete)
        self.assertEqual(answer, self.successResultOf(a.changelog(a.snapshot.serial - 1)))
        far = self.successResultOf(b.changelog(a.snapshot.serial + 1))
        self.assertEqual(far.changes, ())
        self.assertFalse(far.complete)

    def test_a_catalog_of_schema_1_is_migrated_with_its_files_and_yanks(self):
        """
        A catalog made by a pypid knowing schema version 1 (no change log
        names): after 'pypid catalog migrate' its files, yanks and serials
        are served, its old changes are named by their project keys.
        """
        from pypid.store.objectstore import migrations

        old = Catalog(self.catalog_url, reactor=reactor)
        self.assertEqual(self.successResultOf(old.start(known=migrations.MIGRATIONS[:1])), (0, 1))
        digest = "ab" * 32

        def version_1_rows(cursor):
            # What a pypid of schema version 1 wrote for an upload, and a yank made in SQL.
            cursor.execute(
                "INSERT INTO pypid_files (project, project_name, version, filename, release_key, object_key, size, "
                "sha256, uploaded_at, yanked, yanked_reason, serial) VALUES ('demo-pkg', 'Demo_Pkg', '1.0', %s, "
                "'demo-pkg|1|x', %s, 3, %s, now(), true, 'old', 1) RETURNING id",
                (WHEEL[0], object_key(digest, WHEEL[0]), digest))
            file_id = cursor.fetchone()[0]
            cursor.execute("INSERT INTO pypid_changes (serial, at, action, project, version, filename, file_id, actor)"
                           " VALUES (1, now(), 'add', 'demo-pkg', '1.0', %s, %s, 'alice')", (WHEEL[0], file_id))
            cursor.execute("UPDATE pypid_catalog SET last_serial = 1")

        self.successResultOf(old._run(version_1_rows))
        self.successResultOf(old.stop())
        new = Catalog(self.catalog_url, reactor=reactor)
        self.assertEqual(self.successResultOf(new.migrate()), (1, migrations.LATEST))
        self.successResultOf(new.stop())
        replica = self.makeStore()
        self.startStore(replica)
        self.assertEqual(replica.catalog.schema, (migrations.LATEST, migrations.LATEST))
        self.assertEqual(replica.snapshot.yanks, {"demo-pkg": {WHEEL[0]: "old"}})
        self.assertEqual((replica.snapshot.serial, replica.snapshot.get("demo-pkg").serial), (1, 1))
        log = self.successResultOf(replica.changelog(0))
        self.assertEqual([(c.serial, c.action, c.name, c.filename) for c in log.changes],
                         [(1, "add", "demo-pkg", WHEEL[0])])
