"""The persistent state cache, and the store using it so that a restart reads nothing again."""

import os

from twisted.trial.unittest import SynchronousTestCase

from pypid.store.directory import scan
from pypid.store.directory.statecache import FILENAME, StateCache, default_state_dirs
from pypid.store.directory.store import DirectoryStore
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.threads import immediate


class StateCacheTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.state = os.path.join(self.root, ".pypid")

    def found(self):
        found, _, _ = scan.walk([self.root])
        return found

    def details(self):
        return scan.Details("ab" * 32, "W", ">=3", "summary", "cd" * 32)

    def test_round_trip_across_instances(self):
        path = write_dist(self.root, wheel_bytes("w", "1.0"))
        item = self.found()[os.path.basename(path)]
        cache = StateCache([self.state])
        self.assertIsNone(cache.get(item, "sha256"))
        cache.put(item, "sha256", self.details())
        cache.flush()
        cache.close()
        again = StateCache([self.state])
        self.assertEqual(again.get(item, "sha256"), self.details())
        self.assertIsNone(again.get(item, "sha512"), "another algorithm is another entry")
        self.assertEqual(again.hits, 1)
        self.assertTrue(os.path.exists(os.path.join(self.state, FILENAME)))

    def test_changed_file_misses(self):
        """Size, mtime, inode or ctime changed: the entry is not used."""
        path = write_dist(self.root, wheel_bytes("w", "1.0"))
        item = self.found()[os.path.basename(path)]
        cache = StateCache([self.state])
        cache.put(item, "sha256", self.details())
        for changed in (
            item._replace(size=item.size + 1),
            item._replace(mtime_ns=item.mtime_ns + 1),
            item._replace(ino=item.ino + 1),
            item._replace(ctime_ns=item.ctime_ns + 1),
        ):
            self.assertIsNone(cache.get(changed, "sha256"))
        # Rewritten in place with its mtime put back: ctime tells.
        st = os.stat(path)
        with open(path, "r+b") as f:
            f.write(b"X")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertIsNone(cache.get(self.found()[os.path.basename(path)], "sha256"))

    def test_fallback_and_no_directory(self):
        blocked = os.path.join(self.root, "file")
        open(blocked, "w").close()
        fallback = os.path.join(self.root, "fallback")
        cache = StateCache([os.path.join(blocked, "sub"), fallback])
        item = self.found()["file"]
        cache.put(item, "sha256", self.details())
        self.assertEqual(cache.path, os.path.join(fallback, FILENAME))
        levels = [level for level, _ in cache.messages()]
        self.assertEqual(levels, ["warn", "warn"])
        nothing = StateCache([os.path.join(blocked, "sub")])
        self.assertIsNone(nothing.get(item, "sha256"))
        nothing.put(item, "sha256", self.details())
        nothing.flush()
        self.assertIn("no usable state directory", nothing.messages()[-1][1])

    def test_damaged_file_is_started_afresh(self):
        os.makedirs(self.state)
        with open(os.path.join(self.state, FILENAME), "wb") as f:
            f.write(b"this is not a database" * 100)
        path = write_dist(self.root, wheel_bytes("w", "1.0"))
        item = self.found()[os.path.basename(path)]
        cache = StateCache([self.state])
        self.assertIsNone(cache.get(item, "sha256"))
        cache.put(item, "sha256", self.details())
        cache.flush()
        self.assertEqual(cache.get(item, "sha256"), self.details())

    def test_default_dirs(self):
        dirs = default_state_dirs(self.root)
        self.assertEqual(dirs[0], os.path.join(self.root, ".pypid"))
        self.assertIn(os.path.join("pypid", ""), dirs[1])


class RestartTests(SynchronousTestCase):
    """A restart with a warm cache reads no file: proved by the store's counters."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.state = os.path.join(self.root, ".pypid")
        for i in range(20):
            write_dist(os.path.join(self.root, f"p{i % 3}"), wheel_bytes(f"p{i}", "1.0"))
            write_dist(self.root, sdist_bytes(f"s{i}", "1.0"))

    def start(self):
        store = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]))
        self.successResultOf(store.rescan())
        return store

    def test_restart_reads_nothing(self):
        first = self.start()
        self.assertEqual((first.last_result.read, first.last_result.cached), (40, 0))
        second = self.start()
        self.assertEqual((second.last_result.read, second.last_result.cached), (0, 40))
        self.assertEqual(second.snapshot.files, first.snapshot.files)

    def test_changed_and_gone_files(self):
        first = self.start()
        changed = write_dist(self.root, wheel_bytes("p1", "1.0", summary="changed"))
        changed = os.path.join(self.root, "p1", os.path.basename(changed))
        os.replace(os.path.join(self.root, os.path.basename(changed)), changed)
        os.unlink(os.path.join(self.root, "s0-1.0.tar.gz"))
        second = self.start()
        self.assertEqual((second.last_result.read, second.last_result.cached), (1, 38))
        self.assertEqual(second.snapshot.get("p1").files[0].summary, "changed")
        # The gone file's entry was pruned at that start; a third start is all hits.
        third = self.start()
        self.assertEqual((third.last_result.read, third.last_result.cached), (0, 39))
        self.assertEqual(third.cache.stores, 0)
        del first

    def test_gone_directory_is_pruned(self):
        """The entries of a directory removed while pypid was not running go at the next start."""
        import shutil

        self.start()
        shutil.rmtree(os.path.join(self.root, "p1"))
        second = self.start()
        self.assertEqual((second.last_result.read, second.last_result.cached), (0, 33))
        (entries,) = second.cache._connection().execute("SELECT count(*) FROM files").fetchone()
        self.assertEqual(entries, 33)

    def test_removed_files_are_forgotten(self):
        store = self.start()
        gone = os.path.join(self.root, "s1-1.0.tar.gz")
        os.unlink(gone)
        self.successResultOf(store.refresh([gone]))
        self.assertIsNone(store.snapshot.get("s1"))
        # Put the very same bytes back: a new inode, read again.
        write_dist(self.root, sdist_bytes("s1", "1.0"))
        self.successResultOf(store.refresh([gone]))
        self.assertEqual(store.last_result.read, 1)

    def test_failed_first_scan_prunes_nothing(self):
        self.start()
        store = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]))

        def broken(*args, **kwargs):
            raise OSError("disk on fire")

        self.patch(scan, "scan", broken)
        store.rescan()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.patch(scan, "scan", StoreScan)
        third = self.start()
        self.assertEqual((third.last_result.read, third.last_result.cached), (0, 40))


StoreScan = scan.scan


class GetManyTests(SynchronousTestCase):
    def test_batched_lookup(self):
        """get_many answers like get for many files, over several query batches."""
        from pypid.store.directory import statecache

        root = os.path.abspath(self.mktemp())
        for i in range(7):
            write_dist(root, wheel_bytes(f"p{i}", "1.0"))
        found = list(scan.walk([root])[0].values())
        cache = StateCache([os.path.join(root, ".pypid")])
        self.patch(statecache, "_IN_BATCH", 3)
        details = scan.Details("ab" * 32, "W", None, None, None)
        for item in found[:5]:
            cache.put(item, "sha256", details)
        cache.flush()
        got = cache.get_many(found, "sha256")
        self.assertEqual(sorted(got), sorted(item.abspath for item in found[:5]))
        self.assertEqual(cache.get_many(found, "md5"), {})
        changed = found[0]._replace(size=found[0].size + 1)
        self.assertNotIn(changed.abspath, cache.get_many([changed], "sha256"))

    def test_directory_range_lookup(self):
        """Many files of one directory are looked up as one range of the table, with the same answers."""
        from pypid.store.directory import statecache

        root = os.path.abspath(self.mktemp())
        for i in range(6):
            write_dist(os.path.join(root, "a"), wheel_bytes(f"p{i}", "1.0"))
            write_dist(os.path.join(root, "b"), wheel_bytes(f"q{i}", "1.0"))
        found = sorted(scan.walk([root])[0].values())
        cache = StateCache([os.path.join(root, ".pypid")])
        details = scan.Details("ab" * 32, "W", None, None, None)
        for item in found:
            if item.path not in ("a/p2-1.0-py3-none-any.whl", "b/q5-1.0-py3-none-any.whl"):
                cache.put(item, "sha256", details)
        cache.flush()
        self.patch(statecache, "_RANGE_MIN", 2)
        wanted = [item for item in found if item.path != "a/p0-1.0-py3-none-any.whl"]
        got = cache.get_many(wanted, "sha256")
        self.assertEqual(
            sorted(got),
            sorted(item.abspath for item in wanted
                   if item.path not in ("a/p2-1.0-py3-none-any.whl", "b/q5-1.0-py3-none-any.whl")),
        )
        self.assertEqual(set(got.values()), {details})


class SchemaTests(SynchronousTestCase):
    def test_version_1_is_converted(self):
        """A cache written by version 1 (one row per absolute path) is kept, under the new key."""
        import sqlite3

        root = os.path.abspath(self.mktemp())
        path = write_dist(os.path.join(root, "sub dir", "\u00e9t\u00e9"), wheel_bytes("w", "1.0"))
        item = scan.walk([root])[0]["sub dir/\u00e9t\u00e9/" + os.path.basename(path)]
        state = os.path.join(root, ".pypid")
        os.makedirs(state)
        db = sqlite3.connect(os.path.join(state, FILENAME))
        db.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
            " ctime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, algo TEXT NOT NULL, digest TEXT, name TEXT,"
            " requires_python TEXT, summary TEXT, metadata_sha256 TEXT)"
        )
        db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, 'sha256', 'ab', 'W', '>=3', 'Caf\u00e9 summary', 'cd')",
            (item.abspath, item.size, item.mtime_ns, item.ctime_ns, item.ino),
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()
        db.close()
        cache = StateCache([state])
        self.assertEqual(cache.get(item, "sha256"), scan.Details("ab", "W", ">=3", "Caf\u00e9 summary", "cd"))
        self.assertEqual(cache.get_many([item], "sha256"), {item.abspath: cache.get(item, "sha256")})
        cache.close()
        (version,) = sqlite3.connect(os.path.join(state, FILENAME)).execute("PRAGMA user_version").fetchone()
        self.assertEqual(version, 2)


class MetadataTests(SynchronousTestCase):
    """Core metadata kept compressed in the state cache, served at once on the reactor thread."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.state = os.path.join(self.root, ".pypid")
        self.wheel = write_dist(self.root, wheel_bytes("w", "1.0", summary="kept"))
        write_dist(self.root, sdist_bytes("s", "1.0"))

    def store(self):
        store = DirectoryStore([self.root], "sha256", immediate, StateCache([self.state]))
        self.successResultOf(store.rescan())
        return store

    def no_threads(self, *args, **kwargs):
        self.fail("a thread was asked for")

    def test_served_without_a_thread(self):
        from pypid.store.metadata import read_wheel_metadata

        self.store()
        # Another start (another process): the metadata comes from the cache, not the wheel.
        store = self.store()
        store._threads = self.no_threads
        f = store.snapshot.get("w").files[0]
        raw = self.successResultOf(store.readMetadata(f))
        self.assertEqual(raw, read_wheel_metadata(self.wheel))
        self.assertIn(b"Summary: kept", raw)

    def test_checked_against_its_hash(self):
        """A damaged entry is not served: the wheel is read instead."""
        import zlib

        store = self.store()
        f = store.snapshot.get("w").files[0]
        db = store.cache._connection()
        db.execute("UPDATE metadata SET data = ?", (zlib.compress(b"Name: evil\n"),))
        self.assertIsNone(store.cache.read_metadata(f.raw_metadata_sha256))
        self.assertIn(b"Summary: kept", self.successResultOf(store.readMetadata(f)))

    def test_filled_for_wheels_read_before(self):
        """Wheels indexed before metadata was kept: the first read in a thread keeps it."""
        store = self.store()
        store.cache._connection().execute("DELETE FROM metadata")
        f = store.snapshot.get("w").files[0]
        self.assertIsNone(store.cache.read_metadata(f.raw_metadata_sha256))
        self.successResultOf(store.readMetadata(f))
        self.assertIsNotNone(store.cache.read_metadata(f.raw_metadata_sha256))

    def test_pruned_with_their_files(self):
        store = self.store()
        os.unlink(self.wheel)
        store = self.store()
        (count,) = store.cache._connection().execute("SELECT count(*) FROM metadata").fetchone()
        self.assertEqual(count, 0)


_WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[3])
from pypid.store.directory import scan
from pypid.store.directory.statecache import StateCache
state, which = sys.argv[1], sys.argv[2]
cache = StateCache([state])
details = scan.Details("ab" * 32, "W", ">=3", "summary", "cd" * 32)
for round_ in range(40):
    for i in range(50):
        found = scan.Found(0, f"{which}{i}.whl", f"/tree/{which}/{which}{i}-{round_}.whl", 10, 1, 1, 1)
        cache.put(found, "sha256", details)
        cache.put_metadata(bytes([i]) * 32, b"Name: %d\n" % i)
    cache.flush()
    found = scan.Found(0, "x", f"/tree/{which}/{which}0-{round_}.whl", 10, 1, 1, 1)
    assert cache.get(found, "sha256") == details, "lost a write"
    cache.forget([f"/tree/{which}/{which}1-{round_}.whl"])
problems = [text for level, text in cache.messages() if level == "warn"]
print("\n".join(problems))
sys.exit(1 if problems else 0)
"""


def test_several_processes_share_the_state_cache(tmp_path):
    """Workers write one state cache at once: SQLite's locking keeps every write, none fails."""
    import subprocess
    import sys

    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    state = str(tmp_path / "state")
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, state, which, top], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for which in "abc"]
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0, out
    cache = StateCache([state])
    (count,) = cache._connection().execute("SELECT count(*) FROM files").fetchone()
    assert count == 3 * 40 * 49
