"""Complete archives only: the checks of pypid.store.complete, and describe() using them."""

import bz2
import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib

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
        # Two members holding one tar archive between them are a whole one.
        self.assertIsNone(verdict("t-1.0.tar.gz", gzip.compress(tarball()[:512]) + gzip.compress(tarball()[512:])))

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

    def test_zip_central_directory_covers_the_file(self):
        """Entries from the first byte to the central directory, without gaps at the end or overlaps."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("a", b"x" * 1000)
            z.writestr("b", b"y" * 1000)
        data = buffer.getvalue()
        self.assertIsNone(verdict("z-1.0.zip", data))
        cd_offset = struct.unpack("<I", data[-6:-2])[0]
        # Bytes between the last entry and the central directory (its offset moved to match).
        gap = data[:cd_offset] + b"junk" + data[cd_offset:-6] + struct.pack("<I", cd_offset + 4) + data[-2:]
        self.assertIn("does not begin where its last entry ends", verdict("z-1.0.zip", gap))
        # Two entries claiming the same bytes.
        second = data.index(b"PK\x01\x02", cd_offset + 1)
        overlap = bytearray(data)
        overlap[second + 42 : second + 46] = struct.pack("<I", 0)
        self.assertIn("overlap", verdict("z-1.0.zip", bytes(overlap)))
        # The end record counting another number of entries.
        miscount = bytearray(data)
        miscount[-12:-10] = struct.pack("<H", 3)
        miscount[-14:-12] = struct.pack("<H", 3)
        self.assertIsNotNone(verdict("z-1.0.zip", bytes(miscount)))

    def test_zip64_central_entries(self):
        """Sizes and offsets in a central entry's zip64 extra field (files over 4 GiB) are read from there."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("a", b"x" * 1000)
            z.writestr("b", b"y" * 1000)
        data = buffer.getvalue()
        cd_size, cd_offset = struct.unpack("<II", data[-10:-2])
        central = bytearray()
        position = cd_offset
        for _ in range(2):
            name_len, extra_len, comment_len = struct.unpack("<HHH", data[position + 28 : position + 34])
            entry = bytearray(data[position : position + 46 + name_len + extra_len + comment_len])
            csize, usize = struct.unpack("<II", entry[20:28])
            offset = struct.unpack("<I", entry[42:46])[0]
            entry[20:28] = b"\xff" * 8
            entry[42:46] = b"\xff" * 4
            extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
            entry[30:32] = struct.pack("<H", extra_len + len(extra))
            entry[46 + name_len : 46 + name_len] = extra
            central += entry
            position += 46 + name_len + extra_len + comment_len
        eocd = bytearray(data[-22:])
        eocd[12:16] = struct.pack("<I", len(central))
        zip64 = data[:cd_offset] + bytes(central) + bytes(eocd)
        self.assertIsNone(verdict("z-1.0.zip", zip64))
        self.assertEqual(zipfile.ZipFile(io.BytesIO(zip64)).read("b"), b"y" * 1000)
        # The zip64 field missing: not readable as a whole.
        broken = bytearray(zip64)
        broken[cd_offset + 46 + 1 : cd_offset + 46 + 3] = b"\x99\x99"
        self.assertIsNotNone(verdict("z-1.0.zip", bytes(broken)))

    def test_zip_with_data_descriptors(self):
        """A zip written to a pipe (sizes after each entry, in data descriptors) is complete."""

        class Pipe(io.RawIOBase):
            def __init__(self):
                self.data = bytearray()

            def writable(self):
                return True

            def write(self, b):
                self.data += b
                return len(b)

        pipe = Pipe()
        with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("a", "w") as member:
                member.write(os.urandom(5000))
            with z.open("b", "w") as member:
                member.write(b"b" * 5000)
        data = bytes(pipe.data)
        self.assertIn(b"PK\x07\x08", data)
        CompleteTests.assertOnlyWhole(self, "z-1.0.zip", data)

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


def big_tarball(fmt=tarfile.PAX_FORMAT, size: int = 70_000) -> bytes:
    """A tar of several members, some data all zeros (so zero blocks sit mid-archive), links and a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        def add(name, data=b"", kind=tarfile.REGTYPE, **fields):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            for key, value in fields.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("t-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: t\nVersion: 1.0\n\n")
        add("t-1.0/src", kind=tarfile.DIRTYPE)
        add("t-1.0/src/" + "long" * 40 + ".py", os.urandom(size))
        add("t-1.0/zeros.bin", bytes(5 * 512))
        add("t-1.0/link", kind=tarfile.SYMTYPE, linkname="PKG-INFO")
        add("t-1.0/hard", kind=tarfile.LNKTYPE, linkname="t-1.0/PKG-INFO")
        add("t-1.0/empty")
        add("t-1.0/more.bin", os.urandom(40_000))
    return buffer.getvalue()


def tar_end(raw: bytes) -> int:
    """Where a tar archive's end-of-archive blocks end (what follows is record padding)."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + (0 if last.type in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE)
                              else -(-last.size // 512) * 512)
    assert raw[end : end + 1024] == bytes(1024)
    return end + 1024


def pieces(data: bytes, cuts) -> list[bytes]:
    cuts = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def bgzf(data: bytes, eof_block: bool = True) -> list[bytes]:
    """BGZF members (what bgzip writes): gzip members of up to 65280 bytes with a 'BC' extra field, then an empty one."""
    out = []
    for start in range(0, len(data), 0xFF00):
        chunk = data[start : start + 0xFF00]
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = compressor.compress(chunk) + compressor.flush()
        extra = b"BC" + struct.pack("<HH", 2, 25 + len(body))
        header = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
        out.append(header + body + struct.pack("<II", zlib.crc32(chunk), len(chunk)))
    if eof_block:
        out.append(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    return out


def split_members(data: bytes, kind: str) -> list[bytes]:
    """The members (streams) a multi-member file is made of, found by decompressing it."""
    out = []
    while data:
        d = zlib.decompressobj(31) if kind == "gzip" else bz2.BZ2Decompressor()
        d.decompress(data)
        rest = d.unused_data
        out.append(data[: len(data) - len(rest)])
        data = rest
    return out


def uncompressed_size(filename: str, data: bytes) -> int:
    if filename.endswith(".gz"):
        return len(gzip.decompress(data)) if data else 0
    if filename.endswith(".bz2"):
        return len(bz2.decompress(data)) if data else 0
    return len(lzma.decompress(data)) if data else 0


class MultiMemberTests(SynchronousTestCase):
    """
    Issue 18, item 4: a tarball written as several compression members
    (BGZF, bgzip, concatenated gzip, pbzip2) ends a stream at every member
    boundary; only the tar archive's own end says it is complete.
    """

    def assertOnlyWholeAtBoundaries(self, filename, members, raw):
        """
        A writer that pauses after each member: the file is taken for
        complete only once the tar archive's end-of-archive blocks are in
        (then only record padding may be missing).
        """
        data = b"".join(members)
        self.assertIsNone(verdict(filename, data))
        end = tar_end(raw)
        boundaries = [sum(map(len, members[: i + 1])) for i in range(len(members) - 1)]
        self.assertGreater(len(boundaries), 1)
        early = [n for n in boundaries if uncompressed_size(filename, data[:n]) < end]
        self.assertGreater(len(early), 0)
        passing = [n for n in early if verdict(filename, data[:n]) is None]
        self.assertEqual(passing, [], f"a prefix of {filename} ending at a member boundary taken for complete")
        for n in early:
            reason = verdict(filename, data[:n])
            self.assertTrue(complete.is_incomplete(reason), reason)

    def assertOnlyWhole(self, filename, raw, step=512):
        """No prefix of the tar C{raw} that lacks its end-of-archive blocks passes."""
        self.assertIsNone(verdict(filename, raw))
        end = tar_end(raw)
        passing = [n for n in range(0, end, step) if verdict(filename, raw[:n]) is None]
        self.assertEqual(passing, [], f"prefixes of {filename} taken for complete")

    def test_concatenated_gzip(self):
        raw = big_tarball()
        # Cut on block boundaries too: each member's trailer then looks like a whole tarball's.
        for cuts in ([512, 1024, 8192, 65536, 80896, len(raw) - 10240, len(raw) - 9216],
                     list(range(1000, len(raw), 7777))):
            members = [gzip.compress(p) for p in pieces(raw, cuts)]
            self.assertOnlyWholeAtBoundaries("t-1.0.tar.gz", members, raw)

    def test_bgzf(self):
        raw = big_tarball(size=300_000)
        self.assertOnlyWholeAtBoundaries("t-1.0.tar.gz", bgzf(raw), raw)
        # Without the empty last member, as some BGZF writers leave it.
        self.assertOnlyWholeAtBoundaries("t-1.0.tar.gz", bgzf(raw, eof_block=False), raw)

    def test_multi_stream_bzip2(self):
        raw = big_tarball()
        members = [bz2.compress(p) for p in pieces(raw, [512, 1024, 65536, 80896, len(raw) - 10240])]
        self.assertOnlyWholeAtBoundaries("t-1.0.tar.bz2", members, raw)

    def test_multi_stream_xz(self):
        raw = big_tarball()
        members = [lzma.compress(p) for p in pieces(raw, [512, 65536, len(raw) - 10240])]
        self.assertOnlyWholeAtBoundaries("t-1.0.tar.xz", members, raw)

    def test_real_bgzip_and_pbzip2(self):
        """The real tools, where installed (Debian: tabix, pbzip2)."""
        raw = big_tarball(size=400_000)
        tools = [("bgzip", ["bgzip", "-c"], "gzip", "t-1.0.tar.gz"),
                 ("pbzip2", ["pbzip2", "-c", "-b1", "-p2"], "bzip2", "t-1.0.tar.bz2")]
        ran = 0
        for name, command, kind, filename in tools:
            if shutil.which(name) is None:
                continue
            data = subprocess.run(command, input=raw, capture_output=True, check=True).stdout
            self.assertOnlyWholeAtBoundaries(filename, split_members(data, kind), raw)
            ran += 1
        if not ran:
            raise self.skipTest("neither bgzip nor pbzip2 is installed")

    def test_plain_tar_with_zero_blocks_inside(self):
        """A .tar cut just after zero blocks of a member's data is not complete."""
        raw = big_tarball()
        zeros_end = raw.index(bytes(5 * 512)) + 5 * 512
        self.assertIsNotNone(verdict("t-1.0.tar", raw[:zeros_end]))
        self.assertOnlyWhole("t-1.0.tar", raw)

    def test_tar_formats_and_member_kinds(self):
        """What tarfile writes (ustar, GNU, pax; links, directories, long names) is read to its end."""
        for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
            raw = big_tarball(fmt)
            self.assertOnlyWhole("t-1.0.tar", raw)
            compressed = gzip.compress(raw)
            self.assertIsNone(verdict("t-1.0.tar.gz", compressed))
            for n in range(0, len(compressed), 1999):
                self.assertIsNotNone(verdict("t-1.0.tar.gz", compressed[:n]))

    def test_real_gnu_tar_sparse(self):
        """GNU tar's own archives, sparse files among them (old GNU format: extension blocks)."""
        if shutil.which("tar") is None:
            raise self.skipTest("no tar")
        top = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(top, "t-1.0"))
        with open(os.path.join(top, "t-1.0", "sparse.bin"), "wb") as f:
            for i in range(30):  # many holes: more than the header's four sparse entries
                f.seek(i * 65536)
                f.write(os.urandom(100))
        with open(os.path.join(top, "t-1.0", "PKG-INFO"), "w") as f:
            f.write("Name: t\n")
        for fmt in ("oldgnu", "gnu", "posix"):
            raw = subprocess.run(["tar", "--sparse", f"--format={fmt}", "-C", top, "-cf", "-", "t-1.0"],
                                 capture_output=True, check=True).stdout
            self.assertOnlyWhole("t-1.0.tar", raw)

    def test_pax_size_record_and_base256(self):
        """A pax 'size' record, and a base-256 size field, give the member's size."""
        data = os.urandom(3000)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            info = tarfile.TarInfo("t-1.0/PKG-INFO")
            info.size = len(data)
            info.pax_headers = {"size": "3000"}
            archive.addfile(info, io.BytesIO(data))
        raw = bytearray(buffer.getvalue())
        # The ustar field says 0: only the pax record tells where the next header is.
        header = raw.index(b"t-1.0/PKG-INFO", 512)
        raw[header + 124 : header + 136] = b"00000000000\0"
        raw[header + 148 : header + 156] = b"        "
        raw[header + 148 : header + 156] = b"%06o\0 " % sum(raw[header : header + 512])
        self.assertEqual(tarfile.open(fileobj=io.BytesIO(bytes(raw))).getmember("t-1.0/PKG-INFO").size, 3000)
        self.assertOnlyWhole("t-1.0.tar", bytes(raw))
        # Base-256: the same size, binary.
        head = bytearray(raw)
        head[header + 124 : header + 136] = b"\x80" + (3000).to_bytes(11, "big")
        head[header + 148 : header + 156] = b"        "
        head[header + 148 : header + 156] = b"%06o\0 " % sum(head[header : header + 512])
        self.assertIsNone(verdict("t-1.0.tar", bytes(head)))

    def test_signed_checksum(self):
        """Some old tars summed the header's bytes as signed chars: tarfile reads them, and so does the walk."""
        raw = bytearray(tarball())
        raw[10] = 0xE9  # a name byte with the high bit set
        raw[148:156] = b"        "
        signed = sum(b - 256 if b > 127 else b for b in raw[:512])
        raw[148:156] = b"%06o\0 " % signed
        tarfile.open(fileobj=io.BytesIO(bytes(raw))).getmembers()
        self.assertIsNone(verdict("t-1.0.tar", bytes(raw)))
        raw[148:156] = b"%06o\0 " % (signed + 1)
        self.assertIn("corrupt", verdict("t-1.0.tar", bytes(raw)))

    def test_corrupt_tar_is_not_transient(self):
        raw = bytearray(big_tarball())
        raw[1024 + 100] ^= 0xFF  # a header's bytes: its checksum no longer matches
        reason = verdict("t-1.0.tar.gz", gzip.compress(bytes(raw)))
        self.assertIn("corrupt tar archive", reason)
        self.assertFalse(complete.is_incomplete(reason))

    def test_check_feeds_every_byte(self):
        """check(): the rule in one call, and the caller's digest fed from the same read."""
        import hashlib

        for filename, data in (sdist_bytes("s", "1.0"), wheel_bytes("w", "1.0")):
            digest = hashlib.sha256()
            self.assertIsNone(complete.check(io.BytesIO(data), len(data), filename, digest.update))
            self.assertEqual(digest.hexdigest(), hashlib.sha256(data).hexdigest())
            cut = data[:-1]
            self.assertTrue(complete.is_incomplete(complete.check(io.BytesIO(cut), len(cut), filename)))


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
        paths = sorted(store.snapshot.files)
        self.assertEqual([store.snapshot.files[p].summary for p in paths], ["old", "old"])
        # One release file: listed once (the same one every time).
        self.assertEqual([f.path for f in store.snapshot.get("l").files], [paths[0]])
        write_dist(os.path.join(root, "releases"), wheel_bytes("l", "1.0", summary="new", padding=10))
        self.successResultOf(store.refresh([target]))
        self.assertEqual([store.snapshot.files[p].summary for p in paths], ["new", "new"])
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
