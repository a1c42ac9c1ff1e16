"""
Core metadata over the size limit (issue 18, item 7): not read, refused at
upload, listed without a .metadata file (said once); the store's cache of
core metadata is bounded in bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.checks import UploadError
from pypid.lru import Recent
from pypid.store.directory import scan
from pypid.store.directory import store as directory_store
from pypid.store.directory.store import DirectoryStore
from pypid.store.metadata import MAX_METADATA_SIZE, read_metadata
from pypid.store import metadata
from pypid.threads import immediate
from pypid.testing import metadata_text, sdist_bytes, wheel_bytes, write_dist
from tests.feed import test_checks


def big_metadata(name: str, version: str, size: int) -> bytes:
    """Core metadata of C{size} bytes: its description a long, very compressible text."""
    head = metadata_text(name, version).encode()
    return head + b"x" * (size - len(head))


def wheel_with_metadata(name: str, version: str, size: int) -> tuple[str, bytes]:
    """The wheel of L{wheel_bytes} with a METADATA of C{size} bytes (its RECORD to match)."""
    filename, data = wheel_bytes(name, version)
    files = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            files[info.filename] = z.read(info)
    info_dir = next(p.split("/")[0] for p in files if p.endswith(".dist-info/METADATA"))
    files[f"{info_dir}/METADATA"] = big_metadata(name, version, size)
    record = []
    for path, content in files.items():
        if not path.endswith("/RECORD"):
            digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{info_dir}/RECORD,,")
    files[f"{info_dir}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path, content in files.items():
            z.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), content,
                       compress_type=zipfile.ZIP_DEFLATED)
    return filename, buffer.getvalue()


def sdist_with_pkg_info(name: str, version: str, size: int) -> tuple[str, bytes]:
    filename, data = sdist_bytes(name, version)
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in source.getmembers():
            content = source.extractfile(member).read()
            if member.name.endswith("/PKG-INFO"):
                content = big_metadata(name, version, size)
                member.size = len(content)
            target.addfile(member, io.BytesIO(content))
    return filename, out.getvalue()


class ReadTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def test_limit(self):
        at = write_dist(self.root, wheel_with_metadata("at", "1.0", MAX_METADATA_SIZE))
        self.assertEqual(len(read_metadata(at, "wheel")), MAX_METADATA_SIZE)
        over = write_dist(self.root, wheel_with_metadata("over", "1.0", MAX_METADATA_SIZE + 1))
        e = self.assertRaises(metadata.MetadataTooLarge, read_metadata, over, "wheel")
        self.assertEqual(str(e), "over-1.0.dist-info/METADATA is too large: 2,097,153 bytes, over the limit of 2,097,152 (2 MiB)")
        sdist = write_dist(self.root, sdist_with_pkg_info("big", "1.0", 3 * 1024 * 1024))
        e = self.assertRaises(metadata.MetadataTooLarge, read_metadata, sdist, "sdist")
        self.assertIn("PKG-INFO is too large: 3,145,728 bytes", str(e))


class UploadTests(SynchronousTestCase):
    """Refused at upload, with the reason twine shows."""

    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    check = test_checks.ArchiveTests.check

    def test_refused(self):
        e = self.assertRaises(UploadError, self.check, wheel_with_metadata("demo", "1.0", 15 * 1024 * 1024))
        self.assertEqual(e.code, 400)
        self.assertEqual(
            e.message,
            "Invalid distribution file: demo-1.0.dist-info/METADATA is too large: 15,728,640 bytes,"
            " over the limit of 2,097,152 (2 MiB)",
        )
        e = self.assertRaises(UploadError, self.check, sdist_with_pkg_info("demo", "1.0", 3 * 1024 * 1024))
        self.assertIn("PKG-INFO is too large: 3,145,728 bytes", e.message)
        self.check(wheel_with_metadata("demo", "1.0", 1024 * 1024))


class ListedTests(SynchronousTestCase):
    """A wheel over the limit in the directory: listed, without .metadata, said once."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self):
        return [formatEvent(e) for e in self.events if e.get("log_level").name == "warn"]

    def test_listed_without_metadata(self):
        wheel = write_dist(self.root, wheel_with_metadata("big", "1.0", 3 * 1024 * 1024))
        write_dist(self.root, sdist_with_pkg_info("big", "1.0", 3 * 1024 * 1024))
        write_dist(self.root, wheel_bytes("small", "1.0"))
        result = scan.scan([self.root], "sha256", {})
        listed = {f.filename: f for f in result.added}
        self.assertEqual(sorted(listed), ["big-1.0-py3-none-any.whl", "big-1.0.tar.gz",
                                          "small-1.0-py3-none-any.whl"])
        self.assertIsNone(listed["big-1.0-py3-none-any.whl"].metadata_sha256)
        self.assertIsNotNone(listed["big-1.0-py3-none-any.whl"].digest)
        self.assertIsNotNone(listed["small-1.0-py3-none-any.whl"].metadata_sha256)
        self.assertEqual(sorted(note.reason.split(":")[0] for note in result.notes),
                         ["listed with no .metadata file", "listed with no summary"])
        # The store says it once: not again at a rescan, nor at a refresh of another file.
        store = DirectoryStore([self.root], "sha256", immediate)
        self.successResultOf(store.rescan())
        self.successResultOf(store.rescan())
        self.successResultOf(store.refresh([os.path.join(self.root, "small-1.0-py3-none-any.whl")]))
        said = [w for w in self.warnings() if "big-1.0-py3-none-any.whl" in w]
        self.assertEqual(said, ["big-1.0-py3-none-any.whl: listed with no .metadata file: "
                                "big-1.0.dist-info/METADATA is too large: 3,145,728 bytes,"
                                " over the limit of 2,097,152 (2 MiB)"])
        distfile = store.snapshot.get("big").files
        wheel_file = next(f for f in distfile if f.filename.endswith(".whl"))
        self.failureResultOf(store.readMetadata(wheel_file), metadata.MetadataTooLarge)
        # Rewritten (a new version of the file): said again.
        os.unlink(wheel)
        write_dist(self.root, wheel_with_metadata("big", "1.0", 4 * 1024 * 1024))
        self.successResultOf(store.refresh([wheel]))
        self.assertEqual(len([w for w in self.warnings() if "big-1.0-py3-none-any.whl" in w]), 2)


class CacheTests(SynchronousTestCase):
    def test_recent_in_bytes(self):
        gone = []
        recent = Recent(None, on_evict=gone.append, max_bytes=10_000)
        for i in range(10):
            recent[i] = b"x" * 2000
        self.assertLessEqual(recent.total, 10_000)
        self.assertEqual(len(recent), 10_000 // (2000 + Recent.ENTRY_OVERHEAD))
        self.assertEqual(gone, list(range(10 - len(recent))))
        # Replacing an entry counts it once; a value over the whole budget is not kept.
        recent[9] = b"y" * 100
        self.assertEqual(recent.total, sum(len(v) + Recent.ENTRY_OVERHEAD for v in recent._items.values()))
        recent["huge"] = b"z" * 20_000
        self.assertNotIn("huge", recent)
        self.assertEqual(recent.get(9), b"y" * 100)
        self.assertEqual(recent.pop(9), b"y" * 100)
        self.assertEqual(recent.total, sum(len(v) + Recent.ENTRY_OVERHEAD for v in recent._items.values()))

    def test_store_cache_bounded_in_bytes(self):
        """Many large metadata files read: the store keeps at most directory_store.METADATA_CACHE_BYTES of them."""
        root = os.path.abspath(self.mktemp())
        for i in range(12):
            write_dist(root, wheel_with_metadata(f"m{i}", "1.0", 1900 * 1024))
        store = DirectoryStore([root], "sha256", immediate)
        self.successResultOf(store.rescan())
        for project in store.snapshot.projects.values():
            for f in project.files:
                self.assertEqual(len(self.successResultOf(store.readMetadata(f))), 1900 * 1024)
        self.assertLessEqual(store._metadata.total, directory_store.METADATA_CACHE_BYTES)
        self.assertEqual(len(store._metadata), directory_store.METADATA_CACHE_BYTES // (1900 * 1024 + Recent.ENTRY_OVERHEAD))
