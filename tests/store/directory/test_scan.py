import os
import shutil

from twisted.trial.unittest import SynchronousTestCase

from pypid.store.directory import scan
from pypid.store.metadata import CorruptArchive, read_sdist_metadata, read_wheel_metadata
from pypid.store.directory.store import DirectoryStore
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.threads import immediate


class ScanTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def test_walk_filters(self):
        """Hidden and temporary files, hidden dirs and symlinks out are skipped; nested dirs walked."""
        write_dist(self.root, wheel_bytes("a", "1.0"))
        write_dist(os.path.join(self.root, "x", "y"), wheel_bytes("b", "1.0"))
        write_dist(os.path.join(self.root, ".git"), wheel_bytes("c", "1.0"))
        open(os.path.join(self.root, "d-1.0.tar.gz.part"), "w").close()
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        target = write_dist(outside, wheel_bytes("e", "1.0"))
        os.symlink(target, os.path.join(self.root, "e-1.0-py3-none-any.whl"))
        inside = write_dist(os.path.join(self.root, "real"), wheel_bytes("f", "1.0"))
        os.symlink(inside, os.path.join(self.root, "f-1.0-py3-none-any.whl"))
        os.symlink(outside, os.path.join(self.root, "linked-dir"))
        found, sigs, skipped = scan.walk([self.root])
        self.assertEqual(
            sorted(found),
            ["a-1.0-py3-none-any.whl", "f-1.0-py3-none-any.whl", "real/f-1.0-py3-none-any.whl",
             "x/y/b-1.0-py3-none-any.whl"],
        )
        self.assertEqual(sorted(s.path for s in skipped), ["e-1.0-py3-none-any.whl", "linked-dir"])

    def test_first_root_wins(self):
        other = os.path.abspath(self.mktemp())
        write_dist(self.root, wheel_bytes("a", "1.0"))
        write_dist(other, wheel_bytes("a", "1.0", summary="second"))
        found, _, _ = scan.walk([self.root, other])
        self.assertEqual(found["a-1.0-py3-none-any.whl"].root, 0)

    def test_describe(self):
        """A wheel is hashed and its metadata fields and hash are read."""
        path = write_dist(self.root, wheel_bytes("My.Pkg", "2.0", requires_python=">=3.9", summary="Hi"))
        found, _, _ = scan.walk([self.root])
        f = scan.describe(found[os.path.basename(path)], "sha256")
        self.assertEqual((f.project, f.name, str(f.version)), ("my-pkg", "My.Pkg", "2.0"))
        self.assertEqual((f.requires_python, f.summary), (">=3.9", "Hi"))
        self.assertEqual(len(f.digest), 64)
        self.assertEqual(len(f.metadata_sha256), 64)
        self.assertIsNone(scan.describe(found[os.path.basename(path)], None).digest)

    def test_sdist_has_no_core_metadata_hash(self):
        write_dist(self.root, sdist_bytes("s", "1.0", requires_python=">=3"))
        found, _, _ = scan.walk([self.root])
        f = scan.describe(found["s-1.0.tar.gz"], "sha256")
        self.assertEqual(f.requires_python, ">=3")
        self.assertIsNone(f.metadata_sha256)

    def test_corrupt_archives_skipped(self):
        """A truncated wheel and a file that is no archive are not listed; the reason is reported."""
        name, data = wheel_bytes("w", "1.0")
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(data[: len(data) // 2])
        with open(os.path.join(self.root, "t-1.0.tar.gz"), "wb") as f:
            f.write(b"plain text, not gzip")
        result = scan.scan([self.root], "sha256", {})
        self.assertEqual(result.added, [])
        self.assertEqual(len(result.skipped), 2)
        self.assertTrue(all("corrupt" in s.reason for s in result.skipped))

    def test_metadata_readers(self):
        wheel = write_dist(self.root, wheel_bytes("w", "1.0"))
        sdist = write_dist(self.root, sdist_bytes("w", "1.0"))
        self.assertIn(b"Name: w", read_wheel_metadata(wheel))
        self.assertIn(b"Name: w", read_sdist_metadata(sdist, os.path.basename(sdist)))
        junk = os.path.join(self.root, "junk-1.0.tar.gz")
        with open(junk, "wb") as f:
            f.write(b"not a tarball")
        self.assertRaises(CorruptArchive, read_sdist_metadata, junk, os.path.basename(junk))

    def test_rescan_reuses_unchanged(self):
        """A rescan describes only new or changed files."""
        write_dist(self.root, wheel_bytes("a", "1.0"))
        first = scan.scan([self.root], "sha256", {})
        previous = {f.path: f for f in first.added}
        write_dist(self.root, wheel_bytes("b", "1.0"))
        second = scan.scan([self.root], "sha256", previous)
        self.assertEqual([f.path for f in second.added], ["b-1.0-py3-none-any.whl"])
        self.assertEqual(second.removed, [])

    def test_signature_flag(self):
        write_dist(self.root, wheel_bytes("a", "1.0"))
        open(os.path.join(self.root, "a-1.0-py3-none-any.whl.asc"), "w").close()
        result = scan.scan([self.root], "sha256", {})
        self.assertTrue(result.added[0].has_sig)

    def test_one_root_as_several(self):
        """
        One root is scanned a directory at a time, several roots after one
        walk of them all: both find the same changes.
        """
        for i in range(3):
            write_dist(os.path.join(self.root, f"d{i}"), wheel_bytes("a", f"1.{i}"))
            write_dist(os.path.join(self.root, f"d{i}", "sub"), sdist_bytes("b", f"2.{i}"))
        open(os.path.join(self.root, "d1", "a-1.1-py3-none-any.whl.asc"), "w").close()
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        first = scan.scan([self.root], "sha256", {})
        self.assertEqual(first, scan.scan([self.root, empty], "sha256", {}))
        previous = {f.path: f for f in first.added}
        os.unlink(os.path.join(self.root, "d0", "a-1.0-py3-none-any.whl"))
        os.unlink(os.path.join(self.root, "d1", "a-1.1-py3-none-any.whl.asc"))
        write_dist(os.path.join(self.root, "d2", "sub"), sdist_bytes("b", "2.2"), mtime=1)
        second = scan.scan([self.root], "sha256", previous)
        self.assertEqual(second, scan.scan([self.root, empty], "sha256", previous))
        self.assertEqual(sorted(second.removed), ["d0/a-1.0-py3-none-any.whl", "d2/sub/b-2.2.tar.gz"])
        self.assertEqual(
            sorted((f.path, f.has_sig, f.mtime_ns) for f in second.added),
            [("d1/a-1.1-py3-none-any.whl", False, previous["d1/a-1.1-py3-none-any.whl"].mtime_ns),
             ("d2/sub/b-2.2.tar.gz", False, 10**9)],
        )

    def test_records_share_strings(self):
        """The files of a project share one copy of its key, name, tags and summary."""
        write_dist(os.path.join(self.root, "x"), wheel_bytes("Shared_Name", "1.0", summary="Same"))
        write_dist(os.path.join(self.root, "y"), wheel_bytes("Shared_Name", "2.0", summary="Same"))
        a, b = scan.scan([self.root], "sha256", {}).added
        for field in ("project", "name", "python_version", "summary"):
            self.assertIs(getattr(a, field), getattr(b, field), field)


class StoreTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.store = DirectoryStore([self.root], "sha256", immediate)
        self.changes = []
        self.store.subscribe(lambda snapshot, changed: self.changes.append(changed))

    def test_ready_after_first_scan(self):
        d = self.store.whenReady()
        self.assertNoResult(d)
        self.assertFalse(self.store.ready)
        write_dist(self.root, wheel_bytes("a", "1.0"))
        self.successResultOf(self.store.rescan())
        self.successResultOf(d)
        self.assertTrue(self.store.ready)
        self.assertEqual(list(self.store.snapshot.projects), ["a"])

    def test_refresh_paths(self):
        """refresh() picks up new files, deleted files and deleted directories."""
        self.successResultOf(self.store.rescan())
        sub = os.path.join(self.root, "sub")
        new = write_dist(sub, wheel_bytes("b", "1.0"))
        self.successResultOf(self.store.refresh([new]))
        self.assertEqual(self.changes[-1], frozenset({"b"}))
        shutil.rmtree(sub)
        self.successResultOf(self.store.refresh([sub]))
        self.assertIsNone(self.store.snapshot.get("b"))
        moved_in = os.path.join(self.root, "moved")
        write_dist(moved_in, wheel_bytes("c", "1.0"))
        self.successResultOf(self.store.refresh([moved_in]))
        self.assertEqual(list(self.store.snapshot.projects), ["c"])

    def test_refresh_ignores_outside_and_hidden(self):
        self.successResultOf(self.store.rescan())
        hidden = write_dist(os.path.join(self.root, ".incoming"), wheel_bytes("h", "1.0"))
        self.successResultOf(self.store.refresh([hidden, "/etc/passwd"]))
        self.assertEqual(self.store.snapshot.file_count, 0)

    def test_local_path_refuses_escapes(self):
        outside = os.path.abspath(self.mktemp())
        target = write_dist(outside, wheel_bytes("e", "1.0"))
        write_dist(self.root, wheel_bytes("e", "1.0"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["e-1.0-py3-none-any.whl"]
        self.assertEqual(self.store._checked(f.root, f.path), os.path.join(self.root, f.path))
        os.unlink(os.path.join(self.root, f.path))
        os.symlink(target, os.path.join(self.root, f.path))
        self.assertIsNone(self.store._checked(f.root, f.path), "swapped for a symlink out after the scan")
        self.assertIsNone(self.store.open(f))

    def read(self, body):
        """The bytes of an open() result, closing it."""
        self.assertIsNotNone(body)
        try:
            return body.read(0, body.size + 1)
        finally:
            body.close()

    def test_open_file(self):
        """open() opens a listed file and its .asc; the check is remembered per directory."""
        path = write_dist(os.path.join(self.root, "x", "y"), wheel_bytes("o", "1.0"))
        with open(path + ".asc", "wb") as sig:
            sig.write(b"signature")
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["x/y/o-1.0-py3-none-any.whl"]
        self.assertEqual(self.read(self.store.open(f)), open(path, "rb").read())
        self.assertEqual(self.read(self.store.open(f, ".asc")), b"signature")
        self.assertEqual(list(self.store._dirs), [(0, "x/y")])
        self.assertEqual(self.read(self.store.open(f)), open(path, "rb").read())
        os.unlink(path)
        self.assertIsNone(self.store.open(f))

    def test_open_file_refuses_escapes(self):
        """Neither a file nor a directory swapped for a symlink out is opened, even once checked."""
        outside = os.path.abspath(self.mktemp())
        write_dist(os.path.join(outside, "y"), wheel_bytes("e", "1.0"))
        path = write_dist(os.path.join(self.root, "x", "y"), wheel_bytes("e", "1.0"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["x/y/e-1.0-py3-none-any.whl"]
        self.read(self.store.open(f))
        # The directory on the way becomes a symlink to a look-alike outside.
        os.rename(os.path.join(self.root, "x"), os.path.join(self.root, ".x-old"))
        os.symlink(outside, os.path.join(self.root, "x"))
        self.assertIsNone(self.store.open(f))
        os.unlink(os.path.join(self.root, "x"))
        os.rename(os.path.join(self.root, ".x-old"), os.path.join(self.root, "x"))
        self.read(self.store.open(f))
        # The file itself becomes a symlink out.
        os.unlink(path)
        os.symlink(os.path.join(outside, "y", "e-1.0-py3-none-any.whl"), path)
        self.assertIsNone(self.store.open(f))
        self.assertIsNone(self.store.open(f._replace(path="x/../../" + os.path.basename(outside) + "/y/e-1.0-py3-none-any.whl")))

    def test_open_file_not_regular(self):
        """A FIFO or a directory in a listed file's place is not opened (and opening does not block)."""
        path = write_dist(self.root, wheel_bytes("p", "1.0"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["p-1.0-py3-none-any.whl"]
        os.unlink(path)
        os.mkfifo(path)
        self.assertIsNone(self.store.open(f))
        os.unlink(path)
        os.mkdir(path)
        self.assertIsNone(self.store.open(f))

    def test_open_file_symlink_inside(self):
        """A symlinked file whose target is inside the root is opened (its target)."""
        real = write_dist(os.path.join(self.root, "real"), wheel_bytes("s", "1.0"))
        os.symlink(real, os.path.join(self.root, "s-1.0-py3-none-any.whl"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["s-1.0-py3-none-any.whl"]
        self.assertEqual(self.read(self.store.open(f)), open(real, "rb").read())
        self.assertEqual(self.read(self.store.open(f)), open(real, "rb").read())

    def test_open_file_checks_again_after_a_change(self):
        """What was checked is forgotten when the snapshot changes."""
        write_dist(self.root, wheel_bytes("c", "1.0"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["c-1.0-py3-none-any.whl"]
        self.read(self.store.open(f))
        checked = self.store._dirs[(0, "")]
        write_dist(self.root, wheel_bytes("d", "1.0"))
        self.successResultOf(self.store.rescan())
        self.read(self.store.open(self.store.snapshot.files["d-1.0-py3-none-any.whl"]))
        self.assertEqual(list(self.store._dirs), [(0, "")])
        self.assertIsNot(self.store._dirs[(0, "")], checked)

    def test_metadata_read_once(self):
        """A wheel's METADATA is read from the archive once, then kept."""
        write_dist(self.root, wheel_bytes("m", "1.0"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["m-1.0-py3-none-any.whl"]
        calls = []

        def counting(work, *args):
            calls.append(work)
            return immediate(work, *args)

        self.store._threads = counting
        first = self.successResultOf(self.store.readMetadata(f))
        second = self.successResultOf(self.store.readMetadata(f))
        self.assertEqual(first, second)
        self.assertIn(b"Name: m", first)
        self.assertEqual(len(calls), 1)

    def test_local_path_symlink_inside(self):
        """A symlinked file whose target is inside the root is served from the link."""
        real = write_dist(os.path.join(self.root, "real"), wheel_bytes("s", "1.0"))
        os.symlink(real, os.path.join(self.root, "s-1.0-py3-none-any.whl"))
        self.successResultOf(self.store.rescan())
        f = self.store.snapshot.files["s-1.0-py3-none-any.whl"]
        self.assertEqual(self.store._checked(f.root, f.path), os.path.realpath(real))
        plain = self.store.snapshot.files["real/s-1.0-py3-none-any.whl"]
        self.assertEqual(self.store._checked(plain.root, plain.path),
                         os.path.join(self.root, "real", "s-1.0-py3-none-any.whl"))


class ConcurrentScansTests(SynchronousTestCase):
    """
    Once the index is ready, a refresh does not wait for a full rescan
    (many seconds at a million files). Each scan's thread is a job of a
    L{FakeThreads}: a test reads the disk when it chooses (C{_read}) and
    hands the result back later (C{_deliver}), in every order that matters.
    """

    def setUp(self):
        from tests.test_threads import FakeThreads

        self.root = os.path.abspath(self.mktemp())
        write_dist(self.root, wheel_bytes("old", "1.0"))
        self.threads = FakeThreads()
        self.store = DirectoryStore([self.root], "sha256", self.threads)
        first = self.store.rescan()
        self.threads.run()
        self.successResultOf(first)

    def _read(self, full):
        """Run the pending full scan (or refresh) in its thread now; its result is kept back."""
        for job in self.threads.jobs:
            if (job[1][0].paths is None) == full:
                self.threads.jobs.remove(job)
                f, args, d = job
                return d, f(*args)
        self.fail("no such scan pending")

    def _deliver(self, read):
        d, result = read
        d.callback(result)

    def _settle(self):
        while self.threads.jobs:
            self.threads.run()

    def _summary(self, project):
        listed = self.store.snapshot.get(project)
        return None if listed is None else listed.files[0].summary

    def _refresh(self, path):
        d = self.store.refresh([path])
        self._deliver(self._read(full=False))
        self.successResultOf(d)

    def test_not_before_the_index_is_ready(self):
        """The first scan covers the refreshes asked for while it runs: they do not run beside it."""
        store = DirectoryStore([self.root], "sha256", self.threads)
        first = store.rescan()
        refreshed = store.refresh([os.path.join(self.root, "old-1.0-py3-none-any.whl")])
        self.assertEqual(len(self.threads.jobs), 1)
        self.threads.run()
        self.successResultOf(first)
        self.assertNoResult(refreshed)
        self.assertEqual(len(self.threads.jobs), 1, "then the refresh")
        self.threads.run()
        self.successResultOf(refreshed)

    def test_drop_during_a_rescan_it_did_not_see(self):
        """A file dropped after the rescan walked its directory is listed at once, and stays listed."""
        rescan = self.store.rescan()
        read = self._read(full=True)
        path = write_dist(self.root, wheel_bytes("dropped", "1.0"))
        refreshed = self.store.refresh([path])
        self.assertEqual(len(self.threads.jobs), 1, "the refresh runs beside the rescan")
        self.threads.run()
        self.successResultOf(refreshed)
        self.assertIsNotNone(self.store.snapshot.get("dropped"))
        self.assertNoResult(rescan)
        self._deliver(read)
        self.successResultOf(rescan)
        self.assertIsNotNone(self.store.snapshot.get("dropped"))
        # The paths refreshed meanwhile are looked at once more after it.
        self.assertEqual([job[1][0].paths for job in self.threads.jobs], [(path,)])
        self._settle()
        self.assertIsNotNone(self.store.snapshot.get("dropped"))
        self.assertEqual(self.store.scans, {"full": 2, "paths": 2})

    def test_drop_the_rescan_saw_too(self):
        rescan = self.store.rescan()
        path = write_dist(self.root, wheel_bytes("dropped", "1.0"))
        read = self._read(full=True)
        self._refresh(path)
        self._deliver(read)
        self.successResultOf(rescan)
        self._settle()
        self.assertEqual(len(self.store.snapshot.get("dropped").files), 1)

    def test_removed_during_a_rescan_that_saw_it_changed(self):
        """A file the rescan saw rewritten, then removed and refreshed, is not listed again by the rescan."""
        path = write_dist(self.root, wheel_bytes("gone", "1.0", summary="first"))
        self._refresh(path)
        write_dist(self.root, wheel_bytes("gone", "1.0", summary="second"))
        rescan = self.store.rescan()
        read = self._read(full=True)
        self.assertEqual([f.path for f in read[1][0].added], ["gone-1.0-py3-none-any.whl"])
        os.remove(path)
        self._refresh(path)
        self.assertIsNone(self.store.snapshot.get("gone"))
        self._deliver(read)
        self.successResultOf(rescan)
        self.assertIsNone(self.store.snapshot.get("gone"), "not even until the refresh after the rescan")
        self.assertIsNotNone(self.store.snapshot.get("old"), "the rest of the rescan applied")
        self._settle()
        self.assertIsNone(self.store.snapshot.get("gone"))

    def test_a_change_the_rescan_saw_first_is_not_undone(self):
        """A file the rescan saw in one state and a refresh in a later one ends in the later one."""
        path = write_dist(self.root, wheel_bytes("changing", "1.0", summary="first"))
        self._refresh(path)
        write_dist(self.root, wheel_bytes("changing", "1.0", summary="second"))
        rescan = self.store.rescan()
        read = self._read(full=True)
        write_dist(self.root, wheel_bytes("changing", "1.0", summary="third and longer"))
        self._refresh(path)
        self.assertEqual(self._summary("changing"), "third and longer")
        self._deliver(read)
        self.successResultOf(rescan)
        self.assertEqual(self._summary("changing"), "third and longer")
        self._settle()
        self.assertEqual(self._summary("changing"), "third and longer")

    def test_other_changes_of_the_rescan_apply(self):
        """What the rescan found elsewhere (no event for it) is applied as usual."""
        rescan = self.store.rescan()
        unseen = write_dist(self.root, wheel_bytes("unseen", "1.0"))
        os.remove(os.path.join(self.root, "old-1.0-py3-none-any.whl"))
        read = self._read(full=True)
        self._refresh(write_dist(self.root, wheel_bytes("dropped", "1.0")))
        self._deliver(read)
        self.successResultOf(rescan)
        self.assertIsNotNone(self.store.snapshot.get("unseen"))
        self.assertIsNone(self.store.snapshot.get("old"))
        self.assertIsNotNone(self.store.snapshot.get("dropped"))
        self.assertTrue(os.path.exists(unseen))

    def test_a_refresh_ending_after_a_rescan_is_done_again(self):
        """
        A refresh that read a file before a rescan, and ends after the
        rescan was applied, is done once more: the file's later state (here
        removed, with no event for it) is what stays listed.
        """
        path = write_dist(self.root, wheel_bytes("brief", "1.0"))
        refreshed = self.store.refresh([path])
        rescan = self.store.rescan()
        self.assertEqual(len(self.threads.jobs), 2)
        early = self._read(full=False)
        os.remove(path)
        self._deliver(self._read(full=True))
        self.successResultOf(rescan)
        self._deliver(early)
        self.successResultOf(refreshed)
        self.assertIsNotNone(self.store.snapshot.get("brief"), "what the refresh saw, for now")
        self._settle()
        self.assertIsNone(self.store.snapshot.get("brief"))

    def test_a_refresh_ending_after_a_rescan_that_saw_more(self):
        """The refresh's older state of a file is replaced by the newer one the rescan saw."""
        path = write_dist(self.root, wheel_bytes("changing", "1.0", summary="first"))
        self._refresh(path)
        write_dist(self.root, wheel_bytes("changing", "1.0", summary="second"))
        refreshed = self.store.refresh([path])
        rescan = self.store.rescan()
        early = self._read(full=False)
        write_dist(self.root, wheel_bytes("changing", "1.0", summary="third and longer"))
        self._deliver(self._read(full=True))
        self.assertEqual(self._summary("changing"), "third and longer")
        self._deliver(early)
        self.successResultOf(rescan)
        self.successResultOf(refreshed)
        self._settle()
        self.assertEqual(self._summary("changing"), "third and longer")

    def test_a_failed_rescan(self):
        """A rescan that fails leaves the refreshes done meanwhile in place."""
        rescan = self.store.rescan()
        job = [j for j in self.threads.jobs if j[1][0].paths is None][0]
        self.threads.jobs.remove(job)
        path = write_dist(self.root, wheel_bytes("dropped", "1.0"))
        self._refresh(path)
        job[2].errback(OSError("disk gone"))
        self.successResultOf(rescan)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self._settle()
        self.assertIsNotNone(self.store.snapshot.get("dropped"))


class ListedUnderTests(SynchronousTestCase):
    """Paths under directory prefixes: the same answer for a few prefixes and for many."""

    def test_few_and_many(self):
        from pypid.store.directory import scan as scanning

        paths = [f"d{i}/sub{j}/p{i}-{j}.whl" for i in range(50) for j in range(3)] + ["top-1.whl", "d1x/q-1.whl"]
        few = {"d1/", "d7/sub2/"}
        self.assertEqual(sorted(scanning.listed_under(paths, few)),
                         sorted(p for p in paths if p.startswith(("d1/", "d7/sub2/"))))
        self.assertNotIn("d1x/q-1.whl", scanning.listed_under(paths, few))
        many = {f"gone{i}/" for i in range(1000)} | few
        self.assertGreater(len(many), scanning.FEW_PREFIXES)
        self.assertEqual(sorted(scanning.listed_under(paths, many)), sorted(scanning.listed_under(paths, few)))
        self.assertEqual(scanning.listed_under(paths, {f"gone{i}/" for i in range(1000)}), [])

    def test_gone_distribution_names_are_not_directories(self):
        """A gone path named as a distribution file is not looked for as a directory; others are."""
        from pypid.store.directory import scan as scanning

        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "sub"))
        write_dist(os.path.join(root, "sub"), wheel_bytes("kept", "1.0"))
        first = scanning.scan([root], "sha256", {})
        previous = {f.path: f for f in first.added}
        gone_file = os.path.join(root, "gone-1.0-py3-none-any.whl")
        result = scanning.scan_paths([root], "sha256", previous, [gone_file])
        self.assertEqual((result.added, result.removed), ([], []))
        # A directory that is gone: what was listed under it is removed.
        import shutil

        shutil.rmtree(os.path.join(root, "sub"))
        result = scanning.scan_paths([root], "sha256", previous, [os.path.join(root, "sub")])
        self.assertEqual(result.removed, ["sub/kept-1.0-py3-none-any.whl"])
