"""The index image: a start reads the whole index back in one go, and checks every file against it."""

import os
import shutil

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pypid.index import model
from pypid.store.directory import image, scan
from pypid.store.directory.rescans import IndexService
from pypid.store.directory.statecache import StateCache
from pypid.store.directory.store import DirectoryStore
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.threads import immediate


class ImageFileTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        for i in range(30):
            write_dist(os.path.join(self.root, f"d{i % 4}"), wheel_bytes(f"p{i % 12}", f"1.{i}", summary=f"s{i % 5}"))
            write_dist(self.root, sdist_bytes(f"s{i}", "1.0", requires_python=">=3.8"))
        with open(os.path.join(self.root, "d0", "p0-1.0-py3-none-any.whl.asc"), "w") as f:
            f.write("sig")
        result = scan.scan([self.root], "sha256", {})
        self.snapshot = model.IndexSnapshot.build(result.added)
        self.path = os.path.join(os.path.abspath(self.mktemp()) + ".image")

    def test_round_trip(self):
        """What is read back is the index written: every file, field and order, and the projects."""
        self.patch(image, "CHUNK", 7)
        image.save(self.path, self.snapshot, [self.root], "sha256")
        read = image.load(self.path, [self.root], "sha256")
        self.assertEqual(dict(read.files), dict(self.snapshot.files))
        self.assertEqual(read.projects, self.snapshot.projects)
        self.assertEqual(read.file_count, 60)
        f = read.get("p0").files[0]
        self.assertIs(read.get("s0").files[0].version, read.get("s29").files[0].version, "one Version per version")
        self.assertEqual(f.ino, os.stat(os.path.join(self.root, f.path)).st_ino)

    def test_large_map_is_sharded(self):
        self.patch(model, "SHARD_FROM", 10)
        image.save(self.path, self.snapshot, [self.root], "sha256")
        read = image.load(self.path, [self.root], "sha256")
        self.assertIsNone(read.files._whole)
        self.assertEqual(dict(read.files), dict(self.snapshot.files))

    def test_refused(self):
        image.save(self.path, self.snapshot, [self.root], "sha256")
        with self.assertRaises(image.ImageError):
            image.load(self.path, [self.root, "/elsewhere"], "sha256")
        with self.assertRaises(image.ImageError):
            image.load(self.path, [self.root], "sha512")
        with open(self.path, "rb") as f:
            data = f.read()
        for broken in (data[: len(data) // 2], b"junk" + data, data[:-3], data[:40] + b"\xff" * 50 + data[90:]):
            with open(self.path, "wb") as f:
                f.write(broken)
            with self.assertRaises(image.ImageError):
                image.load(self.path, [self.root], "sha256")
        with self.assertRaises(FileNotFoundError):
            image.load(self.path + ".nothing", [self.root], "sha256")


class StartFromImageTests(SynchronousTestCase):
    """A start from the image lists what is on disk, whatever changed while pypid was not running."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.state = os.path.join(self.root, ".pypid")
        for i in range(20):
            write_dist(os.path.join(self.root, f"p{i % 3}"), wheel_bytes(f"p{i}", "1.0"))
            write_dist(self.root, sdist_bytes(f"s{i}", "1.0"))

    def start(self):
        store = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]))
        self.successResultOf(store.rescan())
        self.successResultOf(store.save_image())
        return store

    def counts(self, store):
        result = store.last_result
        return result.read, result.cached, result.imaged

    def test_restart_from_the_image(self):
        first = self.start()
        self.assertEqual(self.counts(first), (40, 0, 0))
        self.assertTrue(os.path.exists(os.path.join(self.state, image.FILENAME)))
        second = self.start()
        self.assertEqual(self.counts(second), (0, 0, 40))
        self.assertEqual(dict(second.snapshot.files), dict(first.snapshot.files))
        self.assertEqual(second.snapshot.projects, first.snapshot.projects)

    def test_changes_while_not_running(self):
        self.start()
        # New, gone, replaced by a new file, and rewritten in place with its mtime put back.
        write_dist(self.root, wheel_bytes("new", "1.0"))
        os.unlink(os.path.join(self.root, "s0-1.0.tar.gz"))
        replaced = write_dist(self.root, sdist_bytes("s1", "1.0", summary="replaced"))
        inplace = os.path.join(self.root, "s2-1.0.tar.gz")
        st = os.stat(inplace)
        with open(inplace, "r+b") as f, open(write_dist(self.mktemp(), sdist_bytes("s2", "1.0", summary="in place")),
                                              "rb") as new:
            f.write(new.read())
            f.truncate()
        os.utime(inplace, ns=(st.st_atime_ns, st.st_mtime_ns))
        second = self.start()
        self.assertEqual(second.snapshot.get("s1").files[0].summary, "replaced")
        self.assertEqual(second.snapshot.get("s2").files[0].summary, "in place")
        self.assertIsNotNone(second.snapshot.get("new"))
        self.assertIsNone(second.snapshot.get("s0"))
        self.assertEqual(second.snapshot.file_count, 40)
        self.assertEqual(self.counts(second)[2], 37)
        del replaced
        # The image follows: the next start takes all from it.
        third = self.start()
        self.assertEqual(self.counts(third), (0, 0, 40))
        self.assertEqual(third.snapshot.get("s2").files[0].summary, "in place")

    def test_signatures_while_not_running(self):
        self.start()
        with open(os.path.join(self.root, "s3-1.0.tar.gz.asc"), "w") as f:
            f.write("sig")
        second = self.start()
        self.assertTrue(second.snapshot.get("s3").files[0].has_sig)
        os.unlink(os.path.join(self.root, "s3-1.0.tar.gz.asc"))
        third = self.start()
        self.assertFalse(third.snapshot.get("s3").files[0].has_sig)

    def test_directory_gone(self):
        self.start()
        shutil.rmtree(os.path.join(self.root, "p1"))
        second = self.start()
        self.assertEqual(second.snapshot.file_count, 33)

    def test_broken_image_is_only_a_cache(self):
        self.start()
        with open(os.path.join(self.state, image.FILENAME), "r+b") as f:
            f.seek(100)
            f.write(b"\x00" * 200)
        second = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]))
        self.successResultOf(second.rescan())
        self.assertEqual(self.counts(second), (0, 40, 0))
        self.assertEqual(second.snapshot.file_count, 40)

    def test_only_the_writer_writes(self):
        store = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]), write_image=False)
        self.successResultOf(store.rescan())
        self.successResultOf(store.save_image())
        self.assertFalse(os.path.exists(os.path.join(self.state, image.FILENAME)))


class ProgressTests(SynchronousTestCase):
    def test_progress_lines(self):
        """A first scan says how far it has got every few seconds, until it ends."""
        from twisted.internet.defer import Deferred

        class Store:
            progress = scan.Progress()
            scanning: Deferred = Deferred()

            def rescan(self):
                return self.scanning

        store = Store()
        clock = Clock()
        service = IndexService(store, clock, None)
        from twisted.logger import formatEvent, globalLogPublisher

        lines = []

        def observe(event):
            lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        service.startService()
        store.progress.total = 1_000_000
        store.progress.scanned = 120_000
        clock.advance(5)
        self.assertIn("scanned 120,000 of ~1,000,000 files (0 read) in 5 s", lines)
        store.scanning.callback(None)
        clock.advance(5)
        self.assertEqual(len([line for line in lines if "scanned" in line and "files" in line]), 1)
        service.stopService()


class ChildWalkTests(StartFromImageTests):
    """The same starts, the tree walked in a child process (as for a large tree)."""

    def setUp(self):
        super().setUp()
        from pypid.store.directory import store

        self.patch(store, "CHILD_WALK_FROM", 0)
        self.walks = []
        real = store.ChildWalk

        def counted(*args):
            walk = real(*args)
            self.walks.append(walk)
            return walk

        self.patch(store, "ChildWalk", counted)

    def test_restart_from_the_image(self):
        super().test_restart_from_the_image()
        self.assertEqual(len(self.walks), 1)
        self.assertEqual(self.walks[0].process.returncode, 0)

    def test_failed_child_walks_here(self):
        """A walker that dies: the start walks in its own process, and lists all the same."""
        from pypid.store.directory import walk

        self.start()
        self.patch(walk.sys, "executable", "/bin/false")
        store = self.start()
        self.assertEqual(store.snapshot.file_count, 40)
        self.assertEqual(self.counts(store), (0, 0, 40))
