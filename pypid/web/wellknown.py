"""
What browsers and crawlers ask every site for: C{/favicon.ico} (a small
icon drawn here) and C{/robots.txt} (crawlers kept out of the machine
pages: the simple index, the files, the JSON API, search and the upstream
cache). Answered at once, never taken for project names and never looked
up upstream.
"""

from __future__ import annotations

import struct
from urllib.parse import urlsplit

from pypid.index.pages import Page, make_page
from pypid.web.errors import not_found
from pypid.web.resource import PlainResource
from pypid.web.util import base_url, serve_page

#: Both files change only with pypid itself.
CACHE_CONTROL = b"public, max-age=86400"

#: The icon, 16 by 16: a white "p" on a blue rounded square.
_GLYPH = (
    "..BBBBBBBBBBBB..",
    ".BBBBBBBBBBBBBB.",
    "BBBBBBBBBBBBBBBB",
    "BBBBWWWWWWBBBBBB",
    "BBBBWWWWWWWWBBBB",
    "BBBBWWBBBBWWWBBB",
    "BBBBWWBBBBBWWBBB",
    "BBBBWWBBBBBWWBBB",
    "BBBBWWBBBBWWWBBB",
    "BBBBWWWWWWWWBBBB",
    "BBBBWWWWWWWBBBBB",
    "BBBBWWBBBBBBBBBB",
    "BBBBWWBBBBBBBBBB",
    "BBBBWWBBBBBBBBBB",
    ".BBBBBBBBBBBBBB.",
    "..BBBBBBBBBBBB..",
)
#: Colours as blue, green, red, alpha (the order of an icon's pixels).
_COLOURS = {".": b"\x00\x00\x00\x00", "B": b"\xa5\x72\x35\xff", "W": b"\xff\xff\xff\xff"}

#: Paths crawlers are asked to keep out of (below the index root).
DISALLOWED = ("simple/", "packages/", "pypi/", "search", "+upstream/", "RPC2")


def icon(glyph: tuple[str, ...] = _GLYPH) -> bytes:
    """A one-image ICO file of C{glyph}: 32-bit pixels with alpha, no mask needed."""
    size = len(glyph)
    # Rows go bottom to top; the AND mask (all zero: alpha decides) pads each row to 32 bits.
    pixels = b"".join(_COLOURS[c] for row in reversed(glyph) for c in row)
    mask = b"\x00" * (((size + 31) // 32) * 4 * size)
    header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, len(pixels) + len(mask), 0, 0, 0, 0)
    image = header + pixels + mask
    directory = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(image), 6 + 16)
    return directory + entry + image


def robots(prefix: str = "") -> bytes:
    """
    C{robots.txt} for an index at C{prefix} (C{""}, or a path such as
    C{/pypi} behind a proxy): every crawler is kept out of the machine pages.
    """
    lines = ["# pypid: the simple index, the files and the APIs are for installers, not crawlers.",
             "User-agent: *"]
    lines.extend(f"Disallow: {prefix}/{path}" for path in DISALLOWED)
    return ("\n".join(lines) + "\n").encode("ascii")


class Favicon(PlainResource):
    """C{/favicon.ico}."""

    isLeaf = True
    page: Page = make_page(icon())

    def render_GET(self, request) -> bytes | int:
        if request.postpath:
            raise not_found()
        return serve_page(request, self.page, b"image/x-icon", CACHE_CONTROL, vary=b"Accept-Encoding")


class Robots(PlainResource):
    """C{/robots.txt}, with the path prefix a trusted proxy names."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._pages: dict[str, Page] = {}

    def render_GET(self, request) -> bytes | int:
        if request.postpath:
            raise not_found()
        prefix = urlsplit(base_url(request)).path.rstrip("/")
        page = self._pages.get(prefix)
        if page is None:
            if len(self._pages) > 64:
                self._pages.clear()
            page = self._pages[prefix] = make_page(robots(prefix))
        return serve_page(request, page, b"text/plain; charset=utf-8", CACHE_CONTROL, vary=b"Accept-Encoding")
