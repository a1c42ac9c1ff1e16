"""
The C{Range} request header (RFC 9110, section 14), for downloads: which
bytes of a representation to send. Pure.
"""

from __future__ import annotations

from typing import Optional, Union

#: What L{parse_range} returns when no requested range overlaps the
#: representation: the answer is 416 with C{Content-Range: bytes */SIZE}.
UNSATISFIABLE = "unsatisfiable"


def parse_range(header: Optional[bytes], size: int) -> Union[None, str, tuple[int, int]]:
    """
    The part of a representation of C{size} bytes that a C{Range} header
    asks for.

    @return: C{(first, last)}, the inclusive byte positions of a single
        range to answer with 206; L{UNSATISFIABLE} (416) when the header is
        well-formed but no range in it overlaps the representation; or
        L{None} for the whole representation (200): no header, a unit other
        than C{bytes}, a malformed header (which RFC 9110 says to ignore),
        or several satisfiable ranges (a server may always ignore C{Range};
        whole files are what every client accepts, and no multipart body to
        build).
    """
    if header is None:
        return None
    unit, sep, specs = header.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes":
        return None
    found: Optional[tuple[int, int]] = None
    satisfiable = 0
    seen = False
    for spec in specs.split(b","):
        spec = spec.strip()
        if not spec:
            continue
        first, dash, last = spec.partition(b"-")
        if not dash or not (first or last) or not _digits(first) or not _digits(last):
            return None
        if first:
            start = _number(first)
            end = _number(last) if last else size - 1
            if last and end < start:
                return None
        else:
            # A suffix: the last N bytes, all of them when N is the size or more.
            count = _number(last)
            start, end = (max(size - count, 0) if count else size), size - 1
        seen = True
        if start < size:
            satisfiable += 1
            found = (start, min(end, size - 1))
    if not seen:
        return None
    if satisfiable == 0:
        return UNSATISFIABLE
    return found if satisfiable == 1 else None


#: Larger than any file: longer numbers are read as this (no huge ints).
_HUGE = 10**18


def _digits(text: bytes) -> bool:
    return not text or text.isdigit()


def _number(text: bytes) -> int:
    return int(text) if len(text) < 19 else _HUGE
