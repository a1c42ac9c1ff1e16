"""
C{/project/}, C{/project/<name>/} and C{/search?q=}: the pages for people
(rendered by L{pypid.index.people}), cached until the index changes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web import http
from pypid.web.resource import Answer, PlainResource

from pypid.index import people as browse
from pypid.store.interfaces import IPackageStore
from pypid.index.names import is_valid, normalize
from pypid.index.model import IndexSnapshot
from pypid.index.pages import Page, make_page
from pypid.index.search import SearchIndex, entry_of
from pypid.threads import Prepared, Threads
from pypid.web.util import base_url, redirect, serve_page

HTML = b"text/html; charset=utf-8"
_T = TypeVar("_T")
#: Project pages kept per snapshot (they vary with the visitor's base URL).
CACHE_SIZE = 2048
#: Projects listed on one page of C{/project/}.
PROJECTS_PER_PAGE = 1000
#: Search results shown on one page.
RESULTS = 100
#: Longest query looked at.
MAX_QUERY = 200


class BrowseCache:
    """
    The L{SearchIndex} and rendered pages of the store's current snapshot.

    The search index covers every project: it is built in C{threads} once
    per change of the index (L{prepared}), and searches run there too
    (L{in_thread}), so that no request holds the reactor for a time that
    grows with the index. Without C{threads} (tests) everything runs at once.
    """

    def __init__(self, store: IPackageStore, threads: Optional[Threads] = None) -> None:
        self.store = store
        self.threads = threads
        self._snapshot = None
        #: The index built last: the next one reuses its unchanged entries.
        self._last: Optional[SearchIndex] = None
        self._index: Prepared[tuple[IndexSnapshot, Optional[SearchIndex]], SearchIndex] = Prepared(
            lambda: (self.store.snapshot, self._last), self._build, threads)
        self._pages: dict[tuple, Page] = {}

    def _build(self, state: tuple[IndexSnapshot, Optional[SearchIndex]]) -> SearchIndex:
        snapshot, previous = state
        index = SearchIndex(snapshot, previous)
        # (Read on the reactor thread only when the next build starts.)
        self._last = index
        return index

    def _current(self) -> None:
        snapshot = self.store.snapshot
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._index.invalidate()
            self._pages = {}

    def prepared(self) -> "SearchIndex | Deferred[SearchIndex]":
        """The search index of the current snapshot, or a L{Deferred} of it."""
        self._current()
        return self._index.get()

    @property
    def index(self) -> SearchIndex:
        """
        The search index built last: for work that waited for L{prepared}
        (and may run in a thread meanwhile). Without threads, that of the
        current snapshot.
        """
        if self.threads is None:
            # Built at once without threads.
            return cast(SearchIndex, self.prepared())
        index = self._index.latest()
        if index is None:
            raise RuntimeError("the search index is asked for before it was prepared")
        return index

    def in_thread(self, work: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Once the search index of the current snapshot is ready, run
        C{work(index, *args)} in a thread (at once without threads).
        """
        def run(index: SearchIndex) -> "_T | Deferred[_T]":
            if self.threads is None:
                return work(index, *args)
            return self.threads(work, index, *args)

        # (maybeDeferred waits for the Deferred prepared() may return.)
        ready = cast("Deferred[SearchIndex]", maybeDeferred(self.prepared))
        return ready.addCallback(run)

    def page(self, key: tuple, render) -> Page:
        """The page C{key} of the current snapshot, made by C{render} if need be."""
        page = self.cached(key)
        if page is None:
            page = self.keep(key, self._snapshot, make_page(render()))
        return page

    def cached(self, key: tuple) -> Optional[Page]:
        """The page C{key} of the current snapshot, if it was made."""
        self._current()
        return self._pages.get(key)

    def keep(self, key: tuple, snapshot, page: Page) -> Page:
        """Keep C{page}, made from C{snapshot}, while that is the current snapshot; return it."""
        self._current()
        if snapshot is self._snapshot:
            if len(self._pages) >= CACHE_SIZE:
                self._pages.clear()
            self._pages[key] = page
        return page


def _send(request, page: Page, code: int = http.OK) -> bytes | int:
    request.setResponseCode(code)
    return serve_page(request, page, HTML, vary=b"Accept-Encoding")


class ProjectsRoot(PlainResource):
    """C{/project/} (every project, a page at a time) and C{/project/<name>/} (one)."""

    isLeaf = True

    def __init__(self, cache: BrowseCache, forms: bool = False) -> None:
        """@param forms: show the yank forms (the index takes uploads)."""
        super().__init__()
        self.cache = cache
        self.forms = forms

    def render_GET(self, request) -> Answer:
        segments = request.postpath
        if not segments:
            return redirect(request, "project/")
        if segments == [b""]:
            return self._listing(request)
        try:
            name = segments[0].decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if len(segments) > 2 or (len(segments) == 2 and segments[1] != b"") or not is_valid(name):
            return self._missing(request, name)
        key = normalize(name)
        if len(segments) == 1:
            return redirect(request, f"{key}/")
        if key != name:
            return redirect(request, f"../{key}/")
        project = self.cache.store.snapshot.get(key)
        if project is None:
            return self._missing(request, name)
        base = base_url(request)
        snapshot = self.cache.store.snapshot
        yanked = snapshot.yanked(key)
        page = self.cache.page(
            ("project", key, base),
            lambda: browse.project_page(project, entry_of(project, yanked), base, yanked, self.forms),
        )
        return _send(request, page)

    def _listing(self, request):
        try:
            number = int((request.args.get(b"page") or [b"1"])[0])
        except ValueError:
            number = 0
        if number < 1:
            return redirect(request, "./")
        key = ("projects", number)
        page = self.cache.cached(key)
        if page is not None:
            return _send(request, page)

        def render(index: SearchIndex) -> tuple:
            return index.snapshot, make_page(browse.projects_page(index.entries, number, PROJECTS_PER_PAGE), gzip_now=True)

        return self.cache.in_thread(render).addCallback(
            lambda made: _send(request, self.cache.keep(key, *made)))

    def _missing(self, request, name: str):
        def render(index: SearchIndex) -> Page:
            return make_page(browse.not_found_page(name, index.search(name, limit=10) if name else []), gzip_now=True)

        return self.cache.in_thread(render).addCallback(lambda page: _send(request, page, http.NOT_FOUND))


class SearchPage(PlainResource):
    """C{/search?q=words}: projects by name and summary."""

    isLeaf = True

    def __init__(self, cache: BrowseCache) -> None:
        super().__init__()
        self.cache = cache

    def render_GET(self, request) -> Answer:
        if request.postpath == [b""]:
            return redirect(request, "../search")
        if request.postpath:
            return _send(request, make_page(browse.search_page("", [], 0)), http.NOT_FOUND)
        raw = (request.args.get(b"q") or [b""])[0][: MAX_QUERY * 4]
        query = raw.decode("utf-8", "replace")[:MAX_QUERY]
        key = ("search", query)
        page = self.cache.cached(key)
        if page is not None:
            return _send(request, page)

        def render(index: SearchIndex) -> tuple:
            found = index.search(query)
            return index.snapshot, make_page(browse.search_page(query, found[:RESULTS], len(found)), gzip_now=True)

        return self.cache.in_thread(render).addCallback(lambda made: _send(request, self.cache.keep(key, *made)))
