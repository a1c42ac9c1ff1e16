"""
Pre-rendered index pages.

Each page body is rendered once per index change, together with its gzip
variant and strong ETags, and then served from memory until a change to its
project drops it. Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Iterable, NamedTuple, Optional

from pypid.index import render
from pypid.index.model import IndexSnapshot
from pypid.index.negotiate import JSON_V1

#: Bodies smaller than this are not worth compressing.
GZIP_MIN_SIZE = 512


class Page(NamedTuple):
    """A rendered body with its validators and an optional gzip variant."""

    body: bytes
    etag: bytes
    gzipped: Optional[bytes]
    gzip_etag: Optional[bytes]
    #: Newest file time on the page, in seconds, for C{Last-Modified}.
    last_modified: Optional[float]


def make_page(body: bytes, last_modified: Optional[float] = None) -> Page:
    """Wrap C{body} with a strong ETag and, when useful, a gzip variant."""
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    etag = f'"{digest}"'.encode("ascii")
    if len(body) >= GZIP_MIN_SIZE:
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        gzip_etag: Optional[bytes] = f'"{digest}-gz"'.encode("ascii")
    else:
        gzipped, gzip_etag = None, None
    return Page(body, etag, gzipped, gzip_etag, last_modified)


class PageCache:
    """
    Holds rendered simple API pages for the current snapshot.

    Pages are keyed by (project key or C{""} for the project list, format),
    where the format is C{"json"} or C{"html"} (C{text/html} and the
    C{v1+html} type share one body).
    """

    def __init__(self, snapshot: IndexSnapshot, hash_algo: Optional[str]) -> None:
        self.snapshot = snapshot
        self.hash_algo = hash_algo
        self._pages: dict[tuple[str, str], Page] = {}

    def update(self, snapshot: IndexSnapshot, changed: Iterable[str]) -> None:
        """Switch to C{snapshot}, dropping the pages of C{changed} projects."""
        old = self.snapshot
        self.snapshot = snapshot
        changed = frozenset(changed)
        for key in changed:
            self._pages.pop((key, "html"), None)
            self._pages.pop((key, "json"), None)
        if changed:
            self._pages.pop(("/packages", "html"), None)
        if any((key in old.projects) != (key in snapshot.projects) for key in changed) or any(
            key in snapshot.projects
            and old.projects.get(key) is not None
            and old.projects[key].name != snapshot.projects[key].name
            for key in changed
        ):
            self._pages.pop(("", "html"), None)
            self._pages.pop(("", "json"), None)

    @staticmethod
    def format_of(content_type: str) -> str:
        return "json" if content_type == JSON_V1 else "html"

    def index(self, content_type: str) -> Page:
        """The project list in the given media type."""
        fmt = self.format_of(content_type)
        page = self._pages.get(("", fmt))
        if page is None:
            renderer = render.index_json if fmt == "json" else render.index_html
            page = make_page(renderer(self.snapshot))
            self._pages[("", fmt)] = page
        return page

    def project(self, key: str, content_type: str) -> Optional[Page]:
        """A project's page in the given media type, or L{None} if unknown."""
        fmt = self.format_of(content_type)
        page = self._pages.get((key, fmt))
        if page is None:
            project = self.snapshot.get(key)
            if project is None:
                return None
            renderer = render.project_json if fmt == "json" else render.project_html
            page = make_page(
                renderer(project, self.hash_algo, self.snapshot.yanked(key)), project.newest_mtime_ns / 1e9
            )
            self._pages[(key, fmt)] = page
        return page

    def files_listing(self) -> Page:
        """The flat HTML list of every file, at C{/packages/}."""
        page = self._pages.get(("/packages", "html"))
        if page is None:
            page = make_page(render.files_html(self.snapshot, self.hash_algo))
            self._pages[("/packages", "html")] = page
        return page
