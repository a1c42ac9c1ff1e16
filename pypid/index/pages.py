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
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from pypid.index import render
from pypid.index.model import IndexSnapshot
from pypid.index.negotiate import JSON_V1
from pypid.lru import Recent
from pypid.threads import Prepared, Threads

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: Bodies smaller than this are not worth compressing.
GZIP_MIN_SIZE = 512


class Page:
    """
    A rendered body with its validators and an optional gzip variant.

    The gzip variant of a small page (a project's) is made when a client
    first asks for it, not with the page: at 200,000 projects most pages
    are made for one request, often by a client that takes no gzip, and
    compressing was most of what making one cost. Pages rendered in
    threads are compressed there (C{gzip_now}).
    """

    __slots__ = ("body", "etag", "last_modified", "_digest", "_gzipped")

    def __init__(self, body: bytes, digest: str, last_modified: Optional[float] = None,
                 gzip_now: bool = False) -> None:
        self.body = body
        self._digest = digest
        self.etag = f'"{digest}"'.encode("ascii")
        #: Newest file time on the page, in seconds, for C{Last-Modified}.
        self.last_modified = last_modified
        self._gzipped: Optional[bytes] = None
        if gzip_now:
            self._gzip()

    def _gzip(self) -> Optional[bytes]:
        if self._gzipped is None and len(self.body) >= GZIP_MIN_SIZE:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped

    @property
    def gzipped(self) -> Optional[bytes]:
        """The gzip variant, L{None} for a page too small to be worth it."""
        return self._gzipped if self._gzipped is not None else self._gzip()

    @property
    def gzip_etag(self) -> Optional[bytes]:
        return f'"{self._digest}-gz"'.encode("ascii") if len(self.body) >= GZIP_MIN_SIZE else None

    @property
    def has_gzip(self) -> bool:
        """Whether there is a gzip variant (made or not yet)."""
        return len(self.body) >= GZIP_MIN_SIZE


def make_page(body: bytes, last_modified: Optional[float] = None, gzip_now: bool = False) -> Page:
    """Wrap C{body} with a strong ETag and, when useful, a gzip variant (made now, or when asked for)."""
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    return Page(body, digest, last_modified, gzip_now)


#: Bytes of project pages kept (with their gzip copies): the most recently
#: asked for. Every project's pages together would grow with the index
#: (some 2.5 KB a project: half a GiB at 200,000 projects).
PROJECT_PAGE_BYTES = 64 * 1024 * 1024


def _index_page(fmt: str, snapshot: IndexSnapshot) -> Page:
    return make_page(render.index_json(snapshot) if fmt == "json" else render.index_html(snapshot), gzip_now=True)


def page_bytes(page: Page) -> int:
    """The bytes a page holds, its gzip variant counted (made or to be) as a third of the body."""
    return len(page.body) + (len(page.body) // 3 if page.has_gzip else 0)


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
        self._pages: Recent[tuple[str, str], Page] = Recent(None, max_bytes=project_bytes, weigh=page_bytes)
        self._lists: dict[str, Prepared[IndexSnapshot, Page]] = {
            fmt: Prepared(lambda: self.snapshot, partial(_index_page, fmt), threads) for fmt in ("html", "json")
        }
        self._keys: Prepared[IndexSnapshot, list[str]] = Prepared(lambda: self.snapshot, _sorted_keys, threads)

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
            self._keys.invalidate()

    def project_keys(self) -> "list[str] | Deferred[list[str]]":
        """Every project's key, sorted (or a L{Deferred} of them)."""
        return self._keys.get()

    @staticmethod
    def format_of(content_type: str) -> str:
        return "json" if content_type == JSON_V1 else "html"

    def index(self, content_type: str) -> "Page | Deferred[Page]":
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
                renderer(project, self.hash_algo, self.snapshot.yanked(key)), project.newest_mtime_ns / 1e9
            )
            self._pages[(key, fmt)] = page
        return page
