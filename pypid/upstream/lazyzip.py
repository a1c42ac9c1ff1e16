"""
A wheel's core metadata read from the few byte ranges of it that hold it
(the end of the zip with its central directory, then the METADATA member),
as uv reads wheels from indexes without PEP 658 files.

The zip is read by Python's own L{zipfile} from a L{SparseFile}: the bytes
fetched so far, at their offsets in a file of known size. A read that needs
bytes not fetched yet raises L{NeedBytes} with the range wanted; the caller
fetches it (a ranged GET) and reads again from the start. Parsing is cheap;
a typical wheel takes two fetches (the tail, then the member).

L{read_metadata_from} blocks (decompression): call it in a thread.
"""

from __future__ import annotations

import bisect
from typing import Optional

from pypid.store.metadata import read_wheel_metadata

#: Bytes fetched from the end first: the end-of-central-directory record and,
#: for most wheels, the whole central directory.
TAIL = 64 * 1024
#: Least bytes fetched from a place a read wants more of (a member's local
#: header, name and compressed data are usually within this).
MIN_FETCH = 64 * 1024


class NeedBytes(Exception):
    """A read wanted bytes C{start} to C{end} (exclusive) that are not here yet."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(f"bytes {start}-{end - 1} are not fetched yet")
        self.start = start
        self.end = end


class SparseFile:
    """
    A read-only, seekable file of C{size} bytes of which only C{pieces} (a
    dict of offset: bytes) are known.
    """

    def __init__(self, size: int, pieces: dict[int, bytes]) -> None:
        self.size = size
        self._starts = sorted(pieces)
        self._pieces = pieces
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._pos
        elif whence == 2:
            offset += self.size
        if offset < 0:
            raise OSError(22, "seek before the start of the file")
        self._pos = offset
        return offset

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        if end <= start:
            return b""
        data = self._covered(start, end)
        if data is None:
            raise NeedBytes(start, end)
        self._pos = end
        return data

    def _covered(self, start: int, end: int) -> Optional[bytes]:
        """The bytes C{start} to C{end} if one fetched piece holds them all."""
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0:
            return None
        offset = self._starts[i]
        piece = self._pieces[offset]
        if offset + len(piece) < end:
            return None
        return piece[start - offset:end - offset]

    def close(self) -> None:
        pass


def add_piece(pieces: dict[int, bytes], offset: int, data: bytes) -> None:
    """Put C{data} at C{offset}, merged with the pieces it touches (so that a read finds it in one)."""
    end = offset + len(data)
    for start in sorted(pieces):
        piece = pieces[start]
        stop = start + len(piece)
        if stop < offset or start > end:
            continue
        # Overlapping or adjacent: join them.
        del pieces[start]
        if start < offset:
            data = piece[: offset - start] + data
            offset = start
        if stop > end:
            data = data + piece[end - start:]
            end = stop
    pieces[offset] = data


def read_metadata_from(size: int, pieces: dict[int, bytes]) -> bytes:
    """
    The wheel's C{.dist-info/METADATA} from the pieces fetched so far.

    @raise NeedBytes: more bytes are needed first.
    @raise pypid.store.metadata.MetadataError: it is not a wheel with one.
    """
    return read_wheel_metadata(SparseFile(size, pieces))  # type: ignore[arg-type]


def next_fetch(need: NeedBytes, size: int) -> tuple[int, int]:
    """The range to fetch (inclusive) for what a read wanted: at least L{MIN_FETCH} bytes."""
    end = min(size, max(need.end, need.start + MIN_FETCH))
    return need.start, end - 1
