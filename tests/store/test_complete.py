"""Complete archives only: the checks of pypid.store.complete, and describe() using them."""

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zipfile

from twisted.trial.unittest import SynchronousTestCase

from pypid.store import complete

from pypid.store.directory import scan
from pypid.index.model import DistFile
from pypid.testing import sdist_bytes, wheel_bytes, write_dist


def verdict(filename: str, data: bytes):
    """What the two checks say about C{data}, as describe() runs them."""
    f = io.BytesIO(data)
    reason = complete.check_tail(f, len(data), filename)
    if reason is None:
        check = complete.stream_check(filename)
        if check is not None:
            for start in range(0, len(data), 997):
                check.update(data[start : start + 997])
            reason = check.result()
    return reason


def tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("t-1.0/PKG-INFO")
        data = b"Metadata-Version: 2.1\nName: t\nVersion: 1.0\n\n"
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class CompleteTests(SynchronousTestCase):
    def assertOnlyWhole(self, filename: str, data: bytes, step: int = 1):
        self.assertIsNone(verdict(filename, data))
        passing = [n for n in range(0, len(data), step) if verdict(filename, data[:n]) is None]
        self.assertEqual(passing, [], f"prefixes of {filename} taken for complete")

    def test_wheel_prefixes(self):
        """No prefix of a wheel, cut at any byte, passes; the whole does."""
        self.assertOnlyWhole(*wheel_bytes("w", "1.0", padding=5000))

    def test_sdist_prefixes(self):
        self.assertOnlyWhole(*sdist_bytes("s", "1.0"))

    def test_gzip_needs_its_whole_stream(self):
        """A gzip cut so that its last bytes look like a trailer still fails: the stream does not end."""
        data = gzip.compress(tarball())
        forged = data[:-20] + data[-8:]
        self.assertIsNone(complete.check_tail(io.BytesIO(forged), len(forged), "t-1.0.tar.gz"))
        self.assertIsNotNone(verdict("t-1.0.tar.gz", forged))
        # Zero padding after the stream, as some tar writers leave, is fine.
        self.assertIsNone(verdict("t-1.0.tar.gz", data + b"\0" * 1024))
        self.assertIsNotNone(verdict("t-1.0.tar.gz", data[:-100] + b"\0" * 1024))
        # Two members are a whole stream too.
        self.assertIsNone(verdict("t-1.0.tar.gz", gzip.compress(tarball()[:512]) + data))

    def test_zip_with_comment_and_nested_zip(self):
        """A zip stored inside the archive does not make a prefix look complete."""
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as z:
            z.writestr("x", "y")
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w") as z:
            z.writestr("inner.zip", inner.getvalue())
            z.writestr("z", "hello" * 100)
            z.comment = b"a comment"
        self.assertOnlyWhole("x-1.0.zip", outer.getvalue())

    def test_zip64(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            with z.open("big", "w", force_zip64=True) as member:
                member.write(b"x" * 100)
        self.assertIsNone(verdict("z-1.0-py3-none-any.whl", buffer.getvalue()))

    def test_other_formats(self):
        raw = tarball()
        self.assertOnlyWhole("t-1.0.tar.xz", lzma.compress(raw))
        self.assertOnlyWhole("t-1.0.tar.bz2", bz2.compress(raw))
        self.assertIsNone(verdict("t-1.0.tar", raw))
        self.assertIsNotNone(verdict("t-1.0.tar", raw[:700]))
        self.assertIsNotNone(verdict("t-1.0-py3.8.egg", b"not a zip"))

    def test_bounded_memory_on_bombs(self):
        """Decompressing to the end does not keep the output."""
        bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
        check = complete.stream_check("b-1.0.tar.gz")
        check.update(bomb)
        self.assertIsNone(check.result())


class DescribeTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def found(self, name):
        found, _, _ = scan.walk([self.root])
        return found[name]

    def test_truncated_files_are_skipped_and_say_why(self):
        for built in (wheel_bytes("w", "1.0"), sdist_bytes("s", "1.0")):
            name, data = built
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(data[:-1])
            result = scan.describe(self.found(name), "sha256")
            self.assertIsInstance(result, scan.Skipped)
            self.assertIn("incomplete", result.reason)
            self.assertTrue(result.transient, "may still be being written")

    def test_corrupt_is_not_transient(self):
        name, data = sdist_bytes("s", "1.0")
        broken = bytearray(data)
        broken[len(data) // 2] ^= 0xFF
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(bytes(broken))
        result = scan.describe(self.found(name), "sha256")
        self.assertIsInstance(result, scan.Skipped)
        self.assertFalse(result.transient)

    def test_changed_since_the_walk(self):
        """A file that grew after it was seen is left for the next look, quietly."""
        path = write_dist(self.root, wheel_bytes("w", "1.0"))
        seen = self.found(os.path.basename(path))
        with open(path, "ab") as f:
            f.write(b"more")
        result = scan.describe(seen, "sha256")
        self.assertIsInstance(result, scan.Skipped)
        self.assertTrue(result.transient)

    def test_hash_off_still_checks_streams(self):
        name, data = sdist_bytes("s", "1.0")
        forged = data[:-20] + data[-8:]
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(forged)
        result = scan.describe(self.found(name), None)
        self.assertIsInstance(result, scan.Skipped)

    def test_cache_is_used_and_filled(self):
        path = write_dist(self.root, wheel_bytes("w", "1.0", summary="From the file"))
        item = self.found(os.path.basename(path))

        class Cache:
            def __init__(self):
                self.stored = {}

            def get(self, found, algo):
                return self.stored.get((found, algo))

            def put(self, found, algo, details):
                self.stored[(found, algo)] = details

        cache = Cache()
        first = scan.describe(item, "sha256", cache=cache)
        self.assertIsInstance(first, DistFile)
        self.assertEqual(list(cache.stored.values())[0].summary, "From the file")
        cache.stored[(item, "sha256")] = cache.stored[(item, "sha256")]._replace(summary="From the cache")
        os.unlink(path)  # the cache answers: the file is not read again
        self.assertEqual(scan.describe(item, "sha256", cache=cache).summary, "From the cache")


class ScanPathsTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def previous(self, roots=None):
        return {f.path: f for f in scan.scan(roots or [self.root], "sha256", {}).added}

    def test_second_root_takes_over(self):
        """The first root wins for a path; when its file goes, the second root's is listed."""
        other = os.path.abspath(self.mktemp())
        first = write_dist(self.root, wheel_bytes("a", "1.0"))
        write_dist(other, wheel_bytes("a", "1.0", summary="second"))
        roots = [self.root, other]
        previous = self.previous(roots)
        result = scan.scan_paths(roots, "sha256", previous, [os.path.join(other, os.path.basename(first))])
        self.assertEqual((result.added, result.removed), ([], []))
        os.unlink(first)
        result = scan.scan_paths(roots, "sha256", previous, [first])
        self.assertEqual([(f.root, f.summary) for f in result.added], [(1, "second")])

    def test_one_file_does_not_search_everything(self):
        """A file event never runs the per-listed-file prefix pass."""
        write_dist(self.root, wheel_bytes("a", "1.0"))
        previous = self.previous()

        class Counting(dict):
            iterations = 0

            def __iter__(self):
                Counting.iterations += 1
                return super().__iter__()

        counted = Counting(previous)
        new = write_dist(self.root, wheel_bytes("b", "1.0"))
        gone = os.path.join(self.root, "a-1.0-py3-none-any.whl")
        os.unlink(gone)
        result = scan.scan_paths([self.root], "sha256", counted, [new, gone])
        self.assertEqual(Counting.iterations, 0)
        self.assertEqual([f.path for f in result.added], ["b-1.0-py3-none-any.whl"])
        self.assertEqual(result.removed, ["a-1.0-py3-none-any.whl"])

    def test_gone_directory(self):
        sub = os.path.join(self.root, "sub")
        for i in range(3):
            write_dist(sub, wheel_bytes(f"p{i}", "1.0"))
        previous = self.previous()
        for name in os.listdir(sub):
            os.unlink(os.path.join(sub, name))
        os.rmdir(sub)
        result = scan.scan_paths([self.root], "sha256", previous, [sub])
        self.assertEqual(len(result.removed), 3)

    def test_signature_event(self):
        path = write_dist(self.root, wheel_bytes("a", "1.0"))
        previous = self.previous()
        with open(path + ".asc", "w") as f:
            f.write("sig")
        result = scan.scan_paths([self.root], "sha256", previous, [path + ".asc"])
        self.assertTrue(result.added[0].has_sig)
        self.assertEqual(result.read, 0, "a signature does not make the file be read again")


class StoreLinkTests(SynchronousTestCase):
    """A symlinked file follows its target: a refresh of the target refreshes the link."""

    def test_target_changes(self):
        from pypid.store.directory.store import DirectoryStore
        from pypid.threads import immediate

        root = os.path.abspath(self.mktemp())
        target = write_dist(os.path.join(root, "releases"), wheel_bytes("l", "1.0", summary="old"))
        os.makedirs(os.path.join(root, "latest"))
        link = os.path.join(root, "latest", os.path.basename(target))
        os.symlink(target, link)
        store = DirectoryStore([root], "sha256", immediate)
        self.successResultOf(store.rescan())
        self.assertEqual([f.summary for f in store.snapshot.get("l").files], ["old", "old"])
        write_dist(os.path.join(root, "releases"), wheel_bytes("l", "1.0", summary="new", padding=10))
        self.successResultOf(store.refresh([target]))
        self.assertEqual([f.summary for f in store.snapshot.get("l").files], ["new", "new"])
        os.unlink(target)
        self.successResultOf(store.refresh([os.path.join(root, "releases")]))
        self.assertIsNone(store.snapshot.get("l"), "a dangling link is not listed")


class ReplacedTests(SynchronousTestCase):
    def test_file_replaced_by_directory(self):
        root = os.path.abspath(self.mktemp())
        path = write_dist(root, wheel_bytes("a", "1.0"))
        previous = {f.path: f for f in scan.scan([root], "sha256", {}).added}
        os.unlink(path)
        os.makedirs(path)
        result = scan.scan_paths([root], "sha256", previous, [path])
        self.assertEqual(result.removed, [os.path.basename(path)])


class StuckTests(SynchronousTestCase):
    """An incomplete file is an info line at first, a warning if a whole rescan later it still is."""

    def test_escalation(self):
        from twisted.logger import formatEvent, globalLogPublisher

        from pypid.store.directory.store import DirectoryStore
        from pypid.threads import immediate

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        root = os.path.abspath(self.mktemp())
        name, data = wheel_bytes("stuck", "1.0")
        os.makedirs(root)
        with open(os.path.join(root, name), "wb") as f:
            f.write(data[:100])
        store = DirectoryStore([root], "sha256", immediate)

        def lines(level):
            return [formatEvent(e) for e in events if e.get("log_level").name == level
                    and "stuck" in formatEvent(e)]

        self.successResultOf(store.rescan())
        self.assertEqual(len(lines("info")), 1)
        self.assertEqual(lines("warn"), [])
        self.successResultOf(store.refresh([os.path.join(root, name)]))
        self.assertEqual(lines("warn"), [], "a refresh of a growing file is no alarm")
        self.successResultOf(store.rescan())
        self.assertEqual(len(lines("warn")), 1)
        self.assertIn("still incomplete since the previous rescan", lines("warn")[0])
        self.successResultOf(store.rescan())
        self.assertEqual(len(lines("warn")), 1, "said once")
