"""
Whether an archive has been written to its end: the check that keeps a file
still arriving through FTP, C{cp}, C{git checkout} or a slow network copy out
of the index until its last byte is there.

The rule, one function for every user (L{check}, blocking: call it from a
thread): the archive itself says it is complete.

 - A zip (wheel, C{.zip}, C{.egg}) ends with its end-of-central-directory
   record, and its central directory covers the file: it begins where the
   last entry ends, its entries start at the first byte and do not overlap.
 - A tarball, compressed or not, is decompressed to its end and its tar
   structure walked: it ends with the two zero blocks that end a tar
   archive, reached by following the member headers. A compression stream
   ending is not enough: a writer of several gzip members (BGZF, C{bgzip},
   concatenated gzip) or bzip2 streams (C{pbzip2}) ends one at every member
   boundary, mid-archive.

L{check} runs the two steps it is made of, both usable alone:

 - L{check_tail} reads only the end of the file: a file caught half-written
   mostly fails here at the cost of one small read, however often it is
   looked at while it grows.
 - L{stream_check} returns a checker fed with every byte of the file, during
   the hashing pass that reads it anyway.

Each returns L{None} when the file is complete, else the reason it is not;
L{is_incomplete} tells a file that may still be growing from a corrupt one.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from typing import BinaryIO, Callable, Generic, Iterator, Optional, Protocol, TypeVar, Union

#: The end-of-central-directory record, its zip64 locator and record.
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL_ENTRY = b"PK\x01\x02"
_LOCAL_ENTRY = b"PK\x03\x04"
#: The longest comment a zip may carry.
_MAX_COMMENT = 0xFFFF

_GZIP_MAGIC = b"\x1f\x8b"
#: The gzip header flag of an extra field.
_FEXTRA = 0x04
_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FOOTER_MAGIC = b"YZ"

_INCOMPLETE = "incomplete or corrupt archive (still being written, or cut short): "



def is_incomplete(reason: str) -> bool:
    """Whether C{reason} (from these checks) says the file may still be growing."""
    return reason.startswith(_INCOMPLETE)


_ZIP_SUFFIXES = (".whl", ".zip", ".egg")
_GZIP_SUFFIXES = (".tar.gz", ".tgz")
_XZ_SUFFIXES = (".tar.xz", ".txz")
_BZ2_SUFFIXES = (".tar.bz2", ".tbz")


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def check_zip_tail(f: BinaryIO, size: int) -> Optional[str]:
    """
    A zip is complete when its end-of-central-directory record ends the file
    (after its comment, to the byte), the central directory ends exactly
    where that record (or its zip64 record) begins, and local and central
    entries start where they should. A half-written zip has no such record;
    a prefix that happens to end with a zip stored inside the archive fails
    the offset test.
    """
    if size < _EOCD_SIZE:
        return _INCOMPLETE + "too short to be a zip"
    tail_size = min(size, _EOCD_SIZE + _MAX_COMMENT)
    tail = _read_at(f, size - tail_size, tail_size)
    position = len(tail) - _EOCD_SIZE
    while position >= 0:
        position = tail.rfind(_EOCD, 0, position + 4)
        if position < 0:
            break
        (_, _, _, _, entries, cd_size, cd_offset, comment) = struct.unpack(
            "<4sHHHHIIH", tail[position : position + _EOCD_SIZE]
        )
        if position + _EOCD_SIZE + comment == len(tail):
            eocd_offset = size - tail_size + position
            return _check_central_directory(f, size, eocd_offset, entries, cd_size, cd_offset)
        position -= 1
    return _INCOMPLETE + "no end-of-central-directory record at the end of the zip"


def _check_central_directory(
    f: BinaryIO, size: int, eocd_offset: int, entries: int, cd_size: int, cd_offset: int
) -> Optional[str]:
    end_of_cd = eocd_offset
    if 0xFFFFFFFF in (cd_size, cd_offset) or entries == 0xFFFF:
        if eocd_offset < _ZIP64_LOCATOR_SIZE:
            return _INCOMPLETE + "zip64 locator missing"
        locator = _read_at(f, eocd_offset - _ZIP64_LOCATOR_SIZE, _ZIP64_LOCATOR_SIZE)
        signature, _, record_offset, _ = struct.unpack("<4sIQI", locator)
        if signature != _ZIP64_LOCATOR or record_offset + 56 > eocd_offset:
            return _INCOMPLETE + "zip64 locator missing"
        record = _read_at(f, record_offset, 56)
        if len(record) < 56 or record[:4] != _ZIP64_EOCD:
            return _INCOMPLETE + "zip64 end-of-central-directory record missing"
        entries, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
        end_of_cd = record_offset
    if cd_offset + cd_size != end_of_cd:
        return _INCOMPLETE + "the zip's central directory does not end where its end record begins"
    if entries:
        if _read_at(f, cd_offset, 4) != _CENTRAL_ENTRY:
            return _INCOMPLETE + "no central directory where the zip's end record points"
        if _read_at(f, 0, 4) != _LOCAL_ENTRY:
            return _INCOMPLETE + "the zip does not start with a local entry"
        return _check_covered(f, entries, cd_offset, cd_size)
    return None


_CENTRAL_SIZE = 46
_LOCAL_SIZE = 30
_ZIP64_EXTRA = 0x0001
_HAS_DESCRIPTOR = 0x08


def _central_entries(f: BinaryIO, cd_offset: int, cd_size: int) -> Iterator[Union[tuple[int, int, int], str]]:
    """
    Walk the central directory: for each entry, (local header offset,
    compressed size, flags); or a str, why the directory is not readable.
    """
    f.seek(cd_offset)
    position = 0
    while position < cd_size:
        fixed = f.read(_CENTRAL_SIZE)
        if len(fixed) < _CENTRAL_SIZE or fixed[:4] != _CENTRAL_ENTRY:
            yield "a central directory entry is cut or missing"
            return
        (flags, compressed, uncompressed, name_len, extra_len, comment_len, offset) = struct.unpack(
            "<8xH10xIIHHH8xI", fixed
        )
        variable = f.read(name_len + extra_len + comment_len)
        if len(variable) < name_len + extra_len + comment_len:
            yield "a central directory entry is cut"
            return
        if 0xFFFFFFFF in (compressed, uncompressed, offset):
            # The zip64 extra field holds, in this order, each of these
            # whose 32-bit field is all ones.
            values = _zip64_values(variable[name_len : name_len + extra_len])
            wanted = [value == 0xFFFFFFFF for value in (uncompressed, compressed, offset)]
            if len(values) < sum(wanted):
                yield "a zip64 entry lacks its zip64 sizes"
                return
            found = iter(values)
            uncompressed, compressed, offset = (
                next(found) if large else value for large, value in zip(wanted, (uncompressed, compressed, offset))
            )
        yield offset, compressed, flags
        position += _CENTRAL_SIZE + len(variable)
    if position != cd_size:
        yield "the central directory's entries overrun it"


def _zip64_values(extra: bytes) -> list[int]:
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        if tag == _ZIP64_EXTRA:
            data = extra[4 : 4 + size]
            return list(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))
        extra = extra[4 + size :]
    return []


def _check_covered(f: BinaryIO, entries: int, cd_offset: int, cd_size: int) -> Optional[str]:
    """
    The central directory covers the file: it lists an entry at the first
    byte, entries that do not overlap, and a last entry (with its data
    descriptor, if any) that ends where the central directory begins.
    """
    spans = []
    for item in _central_entries(f, cd_offset, cd_size):
        if isinstance(item, str):
            return _INCOMPLETE + item
        spans.append(item)
    if len(spans) != entries and entries != 0xFFFF:
        return _INCOMPLETE + "the zip's central directory does not hold the entries its end record counts"
    spans.sort()
    if spans[0][0] != 0:
        return _INCOMPLETE + "the zip's central directory has no entry at the start of the file"
    for (offset, compressed, _), (following, _, _) in zip(spans, spans[1:]):
        if following < offset + _LOCAL_SIZE + compressed:
            return _INCOMPLETE + "the zip's entries overlap"
    offset, compressed, flags = spans[-1]
    local = _read_at(f, offset, _LOCAL_SIZE)
    if len(local) < _LOCAL_SIZE or local[:4] != _LOCAL_ENTRY:
        return _INCOMPLETE + "no local entry where the central directory points"
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    end = offset + _LOCAL_SIZE + name_len + extra_len + compressed
    # A data descriptor: CRC and sizes (4 or 8 bytes each), perhaps signed.
    ends = {end} if not flags & _HAS_DESCRIPTOR else {end + n for n in (12, 16, 20, 24)}
    if cd_offset not in ends:
        return _INCOMPLETE + "the zip's central directory does not begin where its last entry ends"
    return None


def check_gzip_tail(f: BinaryIO, size: int) -> Optional[str]:
    """
    A cheap first look at a gzip-compressed tarball: the gzip magic at the
    start, and a trailer whose size field (the uncompressed size modulo
    2**32) is a non-zero whole number of 512-byte tar blocks. A file cut at
    a random place passes this only once in 512 tries; L{stream_check}
    settles it.
    """
    head = _read_at(f, 0, 4)
    if size < 18 or head[:2] != _GZIP_MAGIC:
        return _INCOMPLETE + "no gzip header and trailer"
    tail = _read_at(f, size - 4, 4)
    (isize,) = struct.unpack("<I", tail)
    if isize == 0 or isize % 512:
        if tail.endswith(b"\0"):
            # Perhaps zero padding after the stream (gzip and pip accept
            # it): only decompressing to the end can tell.
            return None
        if head[3] & _FEXTRA:
            # Members with an extra field (BGZF, bgzip) are one of many:
            # the last one's size says nothing of the whole.
            return None
        return _INCOMPLETE + "the gzip trailer is not that of a whole tarball"
    return None


def check_xz_tail(f: BinaryIO, size: int) -> Optional[str]:
    """An xz stream ends with a footer: CRC32 of the next 6 bytes, then 'YZ'."""
    if size < 24 or _read_at(f, 0, 6) != _XZ_MAGIC:
        return _INCOMPLETE + "no xz header"
    footer = _read_at(f, size - 12, 12)
    (crc,) = struct.unpack("<I", footer[:4])
    if footer[10:] != _XZ_FOOTER_MAGIC or zlib.crc32(footer[4:10]) != crc:
        return _INCOMPLETE + "no xz stream footer at the end"
    return None


def check_tar_tail(f: BinaryIO, size: int) -> Optional[str]:
    """An uncompressed tar is whole blocks ending with two zero blocks."""
    if size < 1024 or size % 512 or _read_at(f, size - 1024, 1024).strip(b"\0"):
        return _INCOMPLETE + "the tar does not end with its end-of-archive blocks"
    return None


def check_tail(f: BinaryIO, size: int, filename: str) -> Optional[str]:
    """
    The cheap check for the archive C{f} (C{size} bytes) named C{filename}:
    L{None} when its end looks like the end of a complete archive, else why
    not. Formats without such a check pass.
    """
    lower = filename.lower()
    if lower.endswith(_ZIP_SUFFIXES):
        return check_zip_tail(f, size)
    if lower.endswith(_GZIP_SUFFIXES):
        return check_gzip_tail(f, size)
    if lower.endswith(_XZ_SUFFIXES):
        return check_xz_tail(f, size)
    if lower.endswith(".tar"):
        return check_tar_tail(f, size)
    return None


class StreamCheck(Protocol):
    def update(self, chunk: bytes) -> None: ...

    def result(self) -> Optional[str]: ...


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
#: Type flags of members whose data tarfile (what pip and uv's build
#: frontends read sdists with) skips: regular files, contiguous files and
#: old GNU sparse files, and any type it does not know (pax headers among
#: them). Links, directories, devices and FIFOs have no data, whatever
#: their size field says.
_NO_DATA_TYPES = frozenset(b"123456")
_PAX_TYPES = frozenset(b"xX")
_GNU_SPARSE = ord("S")
#: The most pax extended header data read to find a member's size.
_MAX_PAX = 1024 * 1024


class _TarEnd:
    """
    Walk a tar archive's structure as its bytes come (uncompressed, in any
    slices) and require that it ends with its end-of-archive blocks: from
    header to header, each member's data skipped by the size its header
    (or a pax header before it) gives, until two zero blocks where a header
    should be. A tar cut anywhere before them is incomplete, however its
    compression streams end; what follows them is not looked at.
    """

    def __init__(self) -> None:
        self._skip = 0
        self._header = bytearray()
        #: Pax extended header data being collected, and how much more.
        self._pax: Optional[bytearray] = None
        self._pax_left = 0
        self._pax_padding = 0
        #: The size a pax header gives the next member.
        self._next_size: Optional[int] = None
        #: Old GNU sparse extension blocks still to come.
        self._sparse_extensions = False
        self._sparse_size = 0
        self._zero_blocks = 0
        self._ended = False
        self._error: Optional[str] = None
        self._offset = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        position, size = 0, len(view)
        while position < size and not self._ended and self._error is None:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                continue
            if self._pax is not None:
                step = min(self._pax_left, size - position)
                self._pax += view[position : position + step]
                self._pax_left -= step
                position += step
                if not self._pax_left:
                    self._next_size = _pax_size(bytes(self._pax))
                    self._pax = None
                    self._skip = self._pax_padding
                continue
            if not self._header and size - position >= _BLOCK:
                block = bytes(view[position : position + _BLOCK])
                position += _BLOCK
            else:
                step = min(_BLOCK - len(self._header), size - position)
                self._header += view[position : position + step]
                position += step
                if len(self._header) < _BLOCK:
                    continue
                block, self._header = bytes(self._header), bytearray()
            self._block(block)
            self._offset += _BLOCK

    def _block(self, block: bytes) -> None:
        """A block where a header (or a sparse extension) is due."""
        if self._sparse_extensions:
            self._sparse_extensions = bool(block[504])
            if not self._sparse_extensions:
                self._data(self._sparse_size)
            return
        if block == _ZERO_BLOCK:
            self._zero_blocks += 1
            self._ended = self._zero_blocks == 2
            return
        if self._zero_blocks:
            self._error = "corrupt tar archive: a lone zero block before a header"
            return
        stored = _number(block[148:156])
        if stored is None or not _checksum_matches(block, stored):
            self._error = f"corrupt tar archive: no valid header where one is due (after {self._offset} bytes)"
            return
        size = _number(block[124:136])
        if size is None or size < 0:
            self._error = "corrupt tar archive: a header's size is not a number"
            return
        kind = block[156]
        if kind in _PAX_TYPES:
            if size > _MAX_PAX:
                self._error = "corrupt tar archive: a pax header too large to read"
                return
            self._pax, self._pax_left = bytearray(), size
            self._pax_padding = -size % _BLOCK
            if not size:
                self._pax = None
            return
        size, self._next_size = (size if self._next_size is None else self._next_size), None
        if kind in _NO_DATA_TYPES:
            return
        if kind == _GNU_SPARSE and block[482]:
            self._sparse_extensions, self._sparse_size = True, size
            return
        self._data(size)

    def _data(self, size: int) -> None:
        self._skip = size + (-size % _BLOCK)

    def result(self) -> Optional[str]:
        if self._error is not None:
            return self._error
        if not self._ended:
            return _INCOMPLETE + "the tar archive does not end (no end-of-archive blocks yet)"
        return None


def _number(field: bytes) -> Optional[int]:
    """A tar number field: octal digits, or base-256 when its first byte says so."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0o377 else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        return None


def _checksum_matches(block: bytes, stored: int) -> bool:
    """
    Whether C{stored} is the header's checksum (its own field counted as
    spaces): the sum of its bytes, or of them signed, as some old tars wrote it.
    """
    unsigned = sum(block) - sum(block[148:156]) + 256
    if stored == unsigned:
        return True
    rest = block[:148] + block[156:]
    return stored == unsigned - 256 * (len(rest) - len(rest.translate(None, bytes(range(128, 256)))))


def _pax_size(data: bytes) -> Optional[int]:
    """The C{size} record of pax extended header data, if any (the last one counts)."""
    size = None
    while data:
        length, _, rest = data.partition(b" ")
        try:
            record = data[: int(length)]
        except ValueError:
            return size
        if not record:
            return size
        keyword, _, value = record[len(length) + 1 :].partition(b"=")
        if keyword == b"size":
            try:
                size = int(value.rstrip(b"\n"))
            except ValueError:
                pass
        data = data[len(record) :]
    return size


class _Stream(Protocol):
    """What L{_DecompressToEnd} uses of a decompressor (bz2, lzma or zlib)."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


class _Decompressor(_Stream, Protocol):
    """A bz2 or lzma decompressor."""

    @property
    def needs_input(self) -> bool: ...


_D = TypeVar("_D", bound=_Stream)


class _DecompressToEnd(Generic[_D]):
    """
    Decompress a stream (possibly several concatenated members, possibly
    padded with zero bytes), require that it ends, and pass what it holds to
    L{_TarEnd}, which requires that the tar archive ends too. The output
    goes as it comes, at most C{_MAX_OUTPUT} bytes at a time: memory stays
    bounded whatever the compression ratio.
    """

    _MAX_OUTPUT = 1024 * 1024

    def __init__(self, factory: Callable[[], _D], name: str) -> None:
        self._factory = factory
        self._name = name
        self._decompressor = factory()
        self._tar = _TarEnd()
        self._error: Optional[str] = None
        self._ended = False

    def update(self, chunk: bytes) -> None:
        while chunk and self._error is None:
            if self._ended:
                chunk = chunk.lstrip(b"\0")
                if not chunk:
                    return
                self._decompressor = self._factory()
                self._ended = False
            try:
                self._drain(chunk)
            except (zlib.error, OSError, EOFError, lzma.LZMAError) as e:
                self._error = f"corrupt {self._name} stream: {e}"
                return
            chunk = b""
            if self._decompressor.eof:
                chunk = self._decompressor.unused_data
                self._ended = True

    def _drain(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self) -> Optional[str]:
        if self._error is not None:
            return self._error
        if not self._ended:
            return _INCOMPLETE + f"the {self._name} stream does not end"
        return self._tar.result()


class _BoundedToEnd(_DecompressToEnd[_Decompressor]):
    def _drain(self, chunk: bytes) -> None:
        d = self._decompressor
        self._tar.update(d.decompress(chunk, self._MAX_OUTPUT))
        while not d.eof and not d.needs_input:
            self._tar.update(d.decompress(b"", self._MAX_OUTPUT))


class _GzipToEnd(_DecompressToEnd["zlib._Decompress"]):
    def __init__(self) -> None:
        super().__init__(lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), "gzip")

    def _drain(self, chunk: bytes) -> None:
        # zlib checks the trailer's CRC32 and length when it reaches it.
        d = self._decompressor
        self._tar.update(d.decompress(chunk, self._MAX_OUTPUT))
        while d.unconsumed_tail and not d.eof:
            self._tar.update(d.decompress(d.unconsumed_tail, self._MAX_OUTPUT))


def stream_check(filename: str) -> Optional[StreamCheck]:
    """
    A checker to feed with the whole file named C{filename}, in order, or
    L{None} when its format needs none beyond L{check_tail}.
    """
    lower = filename.lower()
    if lower.endswith(_GZIP_SUFFIXES):
        return _GzipToEnd()
    if lower.endswith(_XZ_SUFFIXES):
        return _BoundedToEnd(lzma.LZMADecompressor, "xz")
    if lower.endswith(_BZ2_SUFFIXES):
        return _BoundedToEnd(bz2.BZ2Decompressor, "bzip2")
    if lower.endswith(".tar"):
        return _TarEnd()
    return None


_CHUNK = 1024 * 1024


def check(f: BinaryIO, size: int, filename: str, feed: Optional[Callable[[bytes], object]] = None) -> Optional[str]:
    """
    The completeness rule: L{None} when the archive C{f} (C{size} bytes,
    named C{filename}) is complete, else why not (see L{is_incomplete}).
    Reads its tail, then the whole file once (from its start) when its
    format needs it or C{feed} is given: C{feed} gets every byte, in order
    (a digest's C{update}), so that the caller need not read it again.
    Blocking: call it from a thread.
    """
    reason = check_tail(f, size, filename)
    if reason is not None:
        return reason
    stream = stream_check(filename)
    if stream is None and feed is None:
        return None
    f.seek(0)
    while chunk := f.read(_CHUNK):
        if feed is not None:
            feed(chunk)
        if stream is not None:
            stream.update(chunk)
    return stream.result() if stream is not None else None
