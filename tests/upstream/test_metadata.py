"""PEP 658 for every upstream wheel: METADATA read from ranges of the wheel, the cached wheel, or the upstream's file."""

import hashlib
import io
import json
import os
import zipfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pypid.store.metadata import read_wheel_metadata
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.threads import immediate
from pypid.upstream import lazyzip
from pypid.upstream.fallback import Fallback, NotOnUpstream, UpstreamUnavailable
from pypid.upstream.testing import CannedUpstream

UP = "http://up.test/simple/"


def read(body):
    try:
        return body.read(0, body.size)
    finally:
        body.close()


def many_files_wheel(files: int) -> tuple[str, bytes]:
    """A wheel with a central directory larger than the first fetch."""
    buffer = io.BytesIO()
    info = "huge-1.0.dist-info"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: huge\nVersion: 1.0\n")
        for i in range(files):
            archive.writestr(f"huge/module_with_a_long_name_{i:05d}.py", f"x = {i}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\n")
    return "huge-1.0-py3-none-any.whl", buffer.getvalue()


class SparseFileTests(SynchronousTestCase):
    def test_reads_what_is_there_and_asks_for_the_rest(self):
        data = bytes(range(256)) * 10
        pieces = {}
        lazyzip.add_piece(pieces, 100, data[100:200])
        lazyzip.add_piece(pieces, 200, data[200:300])
        lazyzip.add_piece(pieces, 50, data[50:120])
        self.assertEqual(list(pieces), [50], "overlapping and adjacent pieces are joined")
        f = lazyzip.SparseFile(len(data), pieces)
        f.seek(60)
        self.assertEqual(f.read(200), data[60:260])
        self.assertEqual(f.tell(), 260)
        with self.assertRaises(lazyzip.NeedBytes) as caught:
            f.read(100)
        self.assertEqual((caught.exception.start, caught.exception.end), (260, 360))
        self.assertEqual(lazyzip.next_fetch(caught.exception, len(data)), (260, len(data) - 1))
        f.seek(-10, 2)
        with self.assertRaises(lazyzip.NeedBytes):
            f.read()

    def test_a_wheel_read_by_ranges(self):
        filename, data = wheel_bytes("demo", "1.0", padding=300_000)
        pieces = {}
        fetches = 0
        span = (len(data) - lazyzip.TAIL, len(data) - 1)
        while True:
            lazyzip.add_piece(pieces, span[0], data[span[0]:span[1] + 1])
            fetches += 1
            try:
                raw = lazyzip.read_metadata_from(len(data), pieces)
                break
            except lazyzip.NeedBytes as need:
                span = lazyzip.next_fetch(need, len(data))
        self.assertEqual(raw, read_wheel_metadata(io.BytesIO(data)))
        self.assertEqual(fetches, 2, "the tail, then the member")
        self.assertLess(sum(len(p) for p in pieces.values()), 200_000)


class WheelMetadataTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.upstream = CannedUpstream()
        self.wheel = wheel_bytes("demo", "1.0", padding=300_000)
        self.sdist = sdist_bytes("demo", "1.0")
        self.page()
        self.fallback = self.make()

    def page(self, sizes=True, metadata=None, files=None):
        entries = []
        for filename, data in files or (self.wheel, self.sdist):
            entry = {"filename": filename, "url": f"../../files/{filename}",
                     "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}
            if sizes:
                entry["size"] = len(data)
            if metadata is not None and filename.endswith(".whl"):
                entry["core-metadata"] = metadata
            entries.append(entry)
            self.upstream.files[f"http://up.test/files/{filename}"] = data
        self.upstream.page(UP + "demo/", json.dumps({"meta": {"api-version": "1.1"}, "files": entries}).encode())

    def make(self):
        fallback = Fallback(self.upstream, UP, self.dir, Clock(), immediate)
        self.successResultOf(fallback.start())
        return fallback

    def expected(self):
        return read_wheel_metadata(io.BytesIO(self.wheel[1]))

    def test_from_ranges_without_the_whole_wheel(self):
        name = self.wheel[0]
        raw = read(self.successResultOf(self.fallback.metadata("demo", name)))
        self.assertEqual(raw, self.expected())
        self.assertEqual(self.upstream.downloads, [], "the wheel is not fetched whole")
        self.assertEqual(len(self.upstream.ranges), 2)
        self.assertLess(sum(last - first + 1 for _, first, last in self.upstream.ranges), 200_000)
        # Kept: asked again, or by a new process, nothing is fetched.
        read(self.successResultOf(self.fallback.metadata("demo", name)))
        read(self.successResultOf(self.make().metadata("demo", name)))
        self.assertEqual(len(self.upstream.ranges), 2)
        known = self.successResultOf(self.make().known_metadata("demo"))
        self.assertEqual(known, {name: hashlib.sha256(raw).hexdigest()})

    def test_size_from_a_head_when_the_page_has_none(self):
        self.page(sizes=False)
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, self.expected())
        self.assertEqual(len(self.upstream.heads), 1)
        self.assertEqual(self.upstream.downloads, [])

    def test_upstream_without_ranges_gives_the_whole_wheel(self):
        self.upstream.range_support = False
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, self.expected())
        self.assertEqual(self.upstream.downloads, [f"http://up.test/files/{self.wheel[0]}"])
        self.assertTrue(self.fallback.no_ranges)
        self.assertEqual(read(self.fallback.cached_file("demo", self.wheel[0])), self.wheel[1])

    def test_from_the_cached_wheel(self):
        read(self.successResultOf(self.fallback.file("demo", self.wheel[0])))
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, self.expected())
        self.assertEqual(self.upstream.ranges, [])

    def test_large_central_directory(self):
        name, data = many_files_wheel(3000)
        self.assertGreater(len(data) - data.rfind(b"PK\x01\x02"), 0)
        self.page(files=[(name, data)])
        raw = read(self.successResultOf(self.fallback.metadata("demo", name)))
        self.assertEqual(raw, read_wheel_metadata(io.BytesIO(data)))
        self.assertGreaterEqual(len(self.upstream.ranges), 2)
        self.assertEqual(self.upstream.downloads, [])

    def test_too_much_to_read_in_ranges_fetches_the_wheel(self):
        from pypid.upstream import fallback as module

        self.patch(module, "MAX_RANGE_BYTES", 1000)
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, self.expected())
        self.assertEqual(len(self.upstream.downloads), 1)

    def test_the_upstreams_own_file_first(self):
        self.upstream.files[f"http://up.test/files/{self.wheel[0]}.metadata"] = b"Metadata-Version: 2.1\nName: demo\n"
        self.page(metadata=True)
        self.assertEqual(self.successResultOf(self.fallback.known_metadata("demo")), {})
        generation = self.fallback.metadata_generation.get("demo", 0)
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, b"Metadata-Version: 2.1\nName: demo\n")
        self.assertEqual(self.upstream.ranges, [])
        self.assertEqual(self.successResultOf(self.fallback.known_metadata("demo")),
                         {self.wheel[0]: hashlib.sha256(raw).hexdigest()})
        self.assertEqual(self.fallback.metadata_generation["demo"], generation + 1)

    def test_listed_but_missing_upstream_is_read_from_the_wheel(self):
        self.page(metadata=True)
        raw = read(self.successResultOf(self.fallback.metadata("demo", self.wheel[0])))
        self.assertEqual(raw, self.expected())

    def test_sdists_have_none(self):
        self.failureResultOf(self.fallback.metadata("demo", self.sdist[0]), NotOnUpstream)
        self.assertEqual(self.upstream.ranges, [])

    def test_a_broken_wheel_is_a_clear_error(self):
        self.page(files=[("demo-1.0-py3-none-any.whl", b"PK\x03\x04 not really a zip" * 1000)])
        failure = self.failureResultOf(self.fallback.metadata("demo", "demo-1.0-py3-none-any.whl"),
                                       UpstreamUnavailable)
        self.assertIn("the metadata of demo-1.0-py3-none-any.whl cannot be read", str(failure.value))
        self.assertEqual(os.listdir(self.dir), ["pages"], "nothing cached")

    # Zips that lie about themselves: a clear error or the whole file, never a loop or a 500.

    def test_central_directory_past_the_end(self):
        import struct

        name, data = self.wheel
        # The end-of-central-directory record's offset field, pointed far past the file.
        end = data.rfind(b"PK\x05\x06")
        broken = data[:end + 16] + struct.pack("<I", len(data) * 10) + data[end + 20:]
        self.page(files=[(name, broken)])
        failure = self.failureResultOf(self.fallback.metadata("demo", name), UpstreamUnavailable)
        self.assertIn("cannot be read", str(failure.value))
        self.assertLess(len(self.upstream.ranges), 5)

    def test_endless_asking_stops_at_the_cap(self):
        from pypid.upstream import fallback as module

        name, data = many_files_wheel(3000)
        self.page(files=[(name, data)])
        self.patch(module, "MAX_RANGE_BYTES", 100)
        raw = read(self.successResultOf(self.fallback.metadata("demo", name)))
        self.assertEqual(raw, read_wheel_metadata(io.BytesIO(data)))
        self.assertEqual(len(self.upstream.downloads), 1, "fetched whole after the cap")
