"""The store contract (tests/store/contract.py), run against every backend."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pypid.store.directory.store import DirectoryStore
from pypid.store.memory import MemoryStore
from pypid.threads import immediate
from tests.store.contract import WHEEL, PackageStoreContract, SerialContract


class MemoryStoreTests(PackageStoreContract, SerialContract, SynchronousTestCase):
    def makeStore(self):
        return MemoryStore(ready=False)

    def startStore(self, store):
        store.make_ready()

    def makeFolder(self, store, name):
        store.folders.add(name)


class DirectoryStoreTests(PackageStoreContract, SerialContract, SynchronousTestCase):
    def makeStore(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        return DirectoryStore([self.root], "sha256", immediate)

    def startStore(self, store):
        self.successResultOf(store.rescan())

    def makeFolder(self, store, name):
        os.makedirs(os.path.join(self.root, name))

    def spool(self):
        spool = os.path.join(self.root, ".pypid-incoming")
        return sorted(os.listdir(spool)) if os.path.isdir(spool) else []

    def test_nothing_left_in_the_spool(self):
        """Published, refused or aborted: no temporary file stays behind."""
        store = self.store()
        self.publish(store, WHEEL)
        self.publish(store, WHEEL)
        staged = self.staged(store, b"other bytes")
        staged.finish()
        self.failureResultOf(store.publish(WHEEL[0], staged, False))
        staged.abort()
        self.staged(store, b"never finished").abort()
        self.assertEqual(self.spool(), [])
        # The spool is there only while an upload is.
        self.assertEqual(sorted(os.listdir(self.root)), [WHEEL[0]])
        staged = store.stage()
        self.assertEqual(len(self.spool()), 1)
        staged.abort()
        self.assertEqual(sorted(os.listdir(self.root)), [WHEEL[0]])

    def test_a_folder_that_became_a_link_out_is_refused(self):
        """A listed file's folder swapped for a symlink out after the scan: nothing lands outside."""
        store = self.store()
        self.makeFolder(store, "team")
        self.publish(store, WHEEL, "team/" + WHEEL[0])
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.rename(os.path.join(self.root, "team"), os.path.join(self.root, ".team-old"))
        os.symlink(outside, os.path.join(self.root, "team"))
        staged = self.staged(store, WHEEL[1])
        staged.finish()
        from pypid.store.interfaces import BadName

        self.failureResultOf(store.publish(WHEEL[0], staged, True), BadName)
        staged.abort()
        self.assertEqual(os.listdir(outside), [])


class DirectoryStoreWithSerialBookTests(PackageStoreContract, SerialContract, SynchronousTestCase):
    """The directory store keeping its serial on disk (as the daemon does) passes the same contract."""

    def makeStore(self):
        from pypid.store.directory.serials import SerialBook

        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.book = SerialBook([os.path.join(self.root, ".pypid")])
        self.addCleanup(self.book.close)
        return DirectoryStore([self.root], "sha256", immediate, serials=self.book)

    def startStore(self, store):
        self.successResultOf(store.rescan())

    def makeFolder(self, store, name):
        os.makedirs(os.path.join(self.root, name))
