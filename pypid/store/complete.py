"""
Whether an archive has been written to its end: the check that keeps a file
still arriving through FTP, C{cp}, C{git checkout} or a slow network copy out
of the index until its last byte is there.

Two steps, both blocking (call them from a thread):

 - L{check_tail} reads only the end of the file: a zip (wheel, C{.zip},
   C{.egg}) must end with an end-of-central-directory record whose central
   directory sits exactly before it; a gzip stream must end with a trailer
   whose size field is a whole number of tar blocks; an xz stream must end
   with its footer. A file caught half-written fails here at the cost of one
   small read, however often it is looked at while it grows.
 - L{stream_check} returns a checker fed with every byte of the file during
   the hashing pass that reads it anyway: compressed tarballs are
   decompressed to their end, so the stream's own end marker and CRC prove it
   complete. No extra read of the file.

Both return L{None} when the file looks complete, else the reason it does not.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from typing import BinaryIO, Optional, Protocol

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
    return None


def check_gzip_tail(f: BinaryIO, size: int) -> Optional[str]:
    """
    A cheap first look at a gzip-compressed tarball: the gzip magic at the
    start, and a trailer whose size field (the uncompressed size modulo
    2**32) is a non-zero whole number of 512-byte tar blocks. A file cut at
    a random place passes this only once in 512 tries; L{stream_check}
    settles it.
    """
    if size < 18 or _read_at(f, 0, 2) != _GZIP_MAGIC:
        return _INCOMPLETE + "no gzip header and trailer"
    tail = _read_at(f, size - 4, 4)
    (isize,) = struct.unpack("<I", tail)
    if isize == 0 or isize % 512:
        if tail.endswith(b"\0"):
            # Perhaps zero padding after the stream (gzip and pip accept
            # it): only decompressing to the end can tell.
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


class _DecompressToEnd:
    """
    Decompress a stream (possibly several concatenated members, possibly
    padded with zero bytes) and require that it ends. The output is thrown
    away as it comes, at most C{_MAX_OUTPUT} bytes at a time: memory stays
    bounded whatever the compression ratio.
    """

    _MAX_OUTPUT = 1024 * 1024

    def __init__(self, factory, name: str) -> None:
        self._factory = factory
        self._name = name
        self._decompressor = factory()
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
        d = self._decompressor
        d.decompress(chunk, self._MAX_OUTPUT)
        while not d.eof and not d.needs_input:
            d.decompress(b"", self._MAX_OUTPUT)

    def result(self) -> Optional[str]:
        if self._error is not None:
            return self._error
        if not self._ended:
            return _INCOMPLETE + f"the {self._name} stream does not end"
        return None


class _GzipToEnd(_DecompressToEnd):
    def __init__(self) -> None:
        super().__init__(lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), "gzip")

    def _drain(self, chunk: bytes) -> None:
        # zlib checks the trailer's CRC32 and length when it reaches it.
        d = self._decompressor
        d.decompress(chunk, self._MAX_OUTPUT)
        while d.unconsumed_tail and not d.eof:
            d.decompress(d.unconsumed_tail, self._MAX_OUTPUT)


def stream_check(filename: str) -> Optional[StreamCheck]:
    """
    A checker to feed with the whole file named C{filename}, in order, or
    L{None} when its format needs none beyond L{check_tail}.
    """
    lower = filename.lower()
    if lower.endswith(_GZIP_SUFFIXES):
        return _GzipToEnd()
    if lower.endswith(_XZ_SUFFIXES):
        return _DecompressToEnd(lzma.LZMADecompressor, "xz")
    if lower.endswith(_BZ2_SUFFIXES):
        return _DecompressToEnd(bz2.BZ2Decompressor, "bzip2")
    return None
