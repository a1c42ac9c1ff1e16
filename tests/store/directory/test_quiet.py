"""
The quiet period (issue 18, item 9, listing half): a file is read for
listing only once it has been left alone for scan.QUIET seconds, and is
listed only if it did not change while it was read. Files are real; the
clock is injected.
"""

from __future__ import annotations

import os
import time

from twisted.trial.unittest import SynchronousTestCase

from pypid.store.directory import scan
from pypid.testing import wheel_bytes, write_dist

SECOND = 1_000_000_000


class FakeClock:
    """A wall clock in nanoseconds that moves only when slept on; C{during_sleep} runs as it does."""

    def __init__(self, now: int) -> None:
        self.t = now
        self.sleeps: list[float] = []
        self.during_sleep = None

    def now(self) -> int:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += int(seconds * SECOND)
        if self.during_sleep is not None:
            self.during_sleep()

    def quiet(self, seconds: float = 0.2) -> scan.Quiet:
        return scan.Quiet(seconds, self.now, self.sleep)


class QuietTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def write(self, name="q", version="1.0"):
        path = write_dist(self.root, wheel_bytes(name, version))
        return path, os.stat(path).st_ctime_ns

    def scan(self, clock, previous=None, paths=None):
        changes = scan._Changes("sha256", previous or {}, None, clock.quiet())
        found, signatures, skipped = scan.walk([self.root])
        changes.skipped = skipped
        changes.take(found.values(), signatures)
        return changes.result()

    def test_young_file_waits_out_the_period(self):
        """Changed 50 ms ago: one wait of the 150 ms left, then listed."""
        _, ctime = self.write()
        clock = FakeClock(ctime + SECOND // 20)
        result = self.scan(clock)
        self.assertEqual([f.filename for f in result.added], ["q-1.0-py3-none-any.whl"])
        self.assertEqual(clock.sleeps, [0.15])

    def test_old_file_is_read_at_once(self):
        _, ctime = self.write()
        clock = FakeClock(ctime + SECOND)
        result = self.scan(clock)
        self.assertEqual(len(result.added), 1)
        self.assertEqual(clock.sleeps, [])

    def test_changed_during_the_wait_is_not_listed(self):
        """A rewrite in place goes on while pypid waits: nothing listed; its own event brings it back."""
        path, ctime = self.write()
        clock = FakeClock(ctime)

        def rewrite():
            with open(path, "r+b") as f:
                f.seek(100)
                f.write(b"\0" * 10)

        clock.during_sleep = rewrite
        result = self.scan(clock)
        self.assertEqual(result.added, [])
        self.assertEqual([(s.path, s.reason, s.transient) for s in result.skipped],
                         [("q-1.0-py3-none-any.whl", scan._WRITING, True)])

    def test_one_wait_for_many(self):
        """Files of a batch wait together: one sleep, as long as the youngest needs."""
        _, first = self.write("a")
        _, last = self.write("b")
        clock = FakeClock(max(first, last) + SECOND // 10)
        result = self.scan(clock)
        self.assertEqual(len(result.added), 2)
        self.assertEqual(len(clock.sleeps), 1)
        self.assertAlmostEqual(clock.sleeps[0], 0.1, places=6)

    def test_ctime_in_the_future(self):
        """Another host's clock ahead of ours: waited the whole period, no longer."""
        _, ctime = self.write()
        clock = FakeClock(ctime - 3600 * SECOND)
        result = self.scan(clock)
        self.assertEqual(len(result.added), 1)
        self.assertEqual(clock.sleeps, [0.2])

    def test_gone_during_the_wait(self):
        path, ctime = self.write()
        clock = FakeClock(ctime)
        clock.during_sleep = lambda: os.unlink(path)
        result = self.scan(clock)
        self.assertEqual((result.added, result.skipped), ([], []))

    def test_scan_and_scan_paths_take_the_default(self):
        """The module's DEFAULT_QUIET is what scans use unless given one."""
        path, ctime = self.write()
        clock = FakeClock(ctime)
        self.patch(scan, "DEFAULT_QUIET", clock.quiet())
        for run in (lambda: scan.scan([self.root], "sha256", {}),
                    lambda: scan.scan_paths([self.root], "sha256", {}, [path]),
                    lambda: scan.scan([self.root, os.path.abspath(self.mktemp())], "sha256", {})):
            clock.t = ctime
            self.assertEqual(len(run().added), 1)
        self.assertEqual(clock.sleeps, [0.2, 0.2, 0.2])

    def test_state_cache_hit_does_not_wait(self):
        """A file the state cache knows by its exact stamp was read, unchanged, before."""
        path, ctime = self.write()
        found = scan.walk([self.root])[0]["q-1.0-py3-none-any.whl"]
        details = scan.read_details(found, scan.parse_filename(found.path), "sha256")

        class Cache:
            def get_many(self, items, algo):
                return {item.abspath: details for item in items}

            def put(self, *args):
                raise AssertionError("not read again")

        clock = FakeClock(ctime)
        changes = scan._Changes("sha256", {}, Cache(), clock.quiet())
        changes.take([found], set())
        self.assertEqual(len(changes.result().added), 1)
        self.assertEqual(clock.sleeps, [])

    def test_moved_or_linked_into_place_is_read_at_once(self):
        """Renamed in, linked in (as uploads are), or given its times back after the write: the writer is done."""
        elsewhere = os.path.abspath(self.mktemp())
        moved = write_dist(elsewhere, wheel_bytes("moved", "1.0"))
        linked = write_dist(elsewhere, wheel_bytes("linked", "1.0"))
        touched, _ = self.write("touched")
        time.sleep(0.02)  # past the timestamps' granularity (a clock tick)
        os.rename(moved, os.path.join(self.root, os.path.basename(moved)))
        os.link(linked, os.path.join(self.root, os.path.basename(linked)))
        os.unlink(linked)
        os.utime(touched, (1_700_000_000, 1_700_000_000))
        stamps = [os.stat(os.path.join(self.root, name)) for name in sorted(os.listdir(self.root))]
        if any(st.st_ctime_ns == st.st_mtime_ns for st in stamps):
            self.skipTest("the rename or link came within the filesystem's timestamp granularity")
        clock = FakeClock(max(st.st_ctime_ns for st in stamps))
        result = self.scan(clock)
        self.assertEqual(len(result.added), 3)
        self.assertEqual(clock.sleeps, [])

    def test_ctime_change_alone_is_a_change(self):
        """chmod (or a write that put the mtime back) between the walk and the read: read again later."""
        path, _ = self.write()
        found = scan.walk([self.root])[0]["q-1.0-py3-none-any.whl"]
        st = os.stat(path)
        os.chmod(path, 0o600)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.stat(path).st_ctime_ns == found.ctime_ns:
            self.skipTest("the filesystem's ctime did not move")
        result = scan.describe(found, "sha256")
        self.assertIsInstance(result, scan.Skipped)
        self.assertTrue(result.transient)
