"""
Pre-rendered index pages.

Each page body is rendered once per index change, together with its gzip
variant and strong ETags, and then served from memory until a change to its
project drops it. No I/O; the pages that grow with the index are rendered
in threads (L{pypid.threads.Prepared}).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from functools import partial
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Optional

from pypid.index import render
from pypid.index.model import IndexSnapshot
from pypid.index.negotiate import JSON_V1
from pypid.lru import Recent
from pypid.threads import Prepared, Threads

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

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


#: Bytes of project pages kept (with their gzip copies): the most recently
#: asked for. Every project's pages together would grow with the index
#: (some 2.5 KB a project: half a GiB at 200,000 projects).
PROJECT_PAGE_BYTES = 64 * 1024 * 1024


def _index_page(fmt: str, snapshot: IndexSnapshot) -> Page:
    return make_page(render.index_json(snapshot) if fmt == "json" else render.index_html(snapshot))


def page_bytes(page: Page) -> int:
    """The bytes a page holds."""
    return len(page.body) + (len(page.gzipped) if page.gzipped is not None else 0)


def _sorted_keys(snapshot: IndexSnapshot) -> list[str]:
    return sorted(snapshot.projects)


def gzip_chunks(chunks: Iterable[bytes], level: int = 1) -> Iterator[bytes]:
    """C{chunks} compressed as they come, as one gzip stream."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


class PageCache:
    """
    Holds rendered simple API pages for the current snapshot.

    Project pages are keyed by (project key, format), where the format is
    C{"json"} or C{"html"} (C{text/html} and the C{v1+html} type share one
    body), rendered when first asked for (a project's page is small) and
    kept, the most recently used up to L{PROJECT_PAGE_BYTES}, until a
    change to their project drops them. The project list grows with the
    index: it is rendered (and compressed) in C{threads} once per change
    to the list of projects, and L{index} answers with a L{Deferred}
    meanwhile (at once when C{threads} is L{None}).
    """

    def __init__(
        self,
        snapshot: IndexSnapshot,
        hash_algo: Optional[str],
        threads: Optional[Threads] = None,
        project_bytes: int = PROJECT_PAGE_BYTES,
    ) -> None:
        self.snapshot = snapshot
        self.hash_algo = hash_algo
        self._pages = Recent(None, max_bytes=project_bytes, weigh=page_bytes)
        self._lists = {
            fmt: Prepared(lambda: self.snapshot, partial(_index_page, fmt), threads) for fmt in ("html", "json")
        }
        self._lists["keys"] = Prepared(lambda: self.snapshot, _sorted_keys, threads)

    def update(self, snapshot: IndexSnapshot, changed: Iterable[str]) -> None:
        """Switch to C{snapshot}, dropping the pages of C{changed} projects."""
        old = self.snapshot
        self.snapshot = snapshot
        changed = frozenset(changed)
        for key in changed:
            self._pages.pop((key, "html"))
            self._pages.pop((key, "json"))
        if any((key in old.projects) != (key in snapshot.projects) for key in changed) or any(
            key in snapshot.projects
            and old.projects.get(key) is not None
            and old.projects[key].name != snapshot.projects[key].name
            for key in changed
        ):
            for prepared in self._lists.values():
                prepared.invalidate()

    def project_keys(self) -> "list[str] | Deferred":
        """Every project's key, sorted (or a L{Deferred} of them)."""
        return self._lists["keys"].get()

    @staticmethod
    def format_of(content_type: str) -> str:
        return "json" if content_type == JSON_V1 else "html"

    def index(self, content_type: str) -> "Page | Deferred":
        """The project list in the given media type (or a L{Deferred} of it)."""
        return self._lists[self.format_of(content_type)].get()

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
                renderer(project, self.hash_algo), project.newest_mtime_ns / 1e9
            )
            self._pages[(key, fmt)] = page
        return page
