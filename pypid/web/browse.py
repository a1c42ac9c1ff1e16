"""
C{/project/}, C{/project/<name>/} and C{/search?q=}: the pages for people
(rendered by L{pypid.index.people}), cached until the index changes.
"""

from __future__ import annotations

from typing import Optional

from twisted.web import http
from pypid.web.resource import PlainResource

from pypid.index import people as browse
from pypid.store.interfaces import IPackageStore
from pypid.index.names import is_valid, normalize
from pypid.index.pages import Page, make_page
from pypid.index.search import SearchIndex
from pypid.web.util import base_url, redirect, serve_page

HTML = b"text/html; charset=utf-8"
#: Project pages kept per snapshot (they vary with the visitor's base URL).
CACHE_SIZE = 2048
#: Search results shown on one page.
RESULTS = 100
#: Longest query looked at.
MAX_QUERY = 200


class BrowseCache:
    """The L{SearchIndex} and rendered pages of the store's current snapshot."""

    def __init__(self, store: IPackageStore) -> None:
        self.store = store
        self._snapshot = None
        self._index: Optional[SearchIndex] = None
        self._previous: Optional[SearchIndex] = None
        self._pages: dict[tuple, Page] = {}

    def _current(self) -> None:
        snapshot = self.store.snapshot
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._index = None
            self._pages = {}

    @property
    def index(self) -> SearchIndex:
        self._current()
        if self._index is None:
            self._index = SearchIndex(self.store.snapshot, self._previous)
            self._previous = self._index
        return self._index

    def page(self, key: tuple, render) -> Page:
        self._current()
        page = self._pages.get(key)
        if page is None:
            if len(self._pages) >= CACHE_SIZE:
                self._pages.clear()
            page = self._pages[key] = make_page(render())
        return page


def _send(request, page: Page, code: int = http.OK) -> bytes:
    request.setResponseCode(code)
    return serve_page(request, page, HTML, vary=b"Accept-Encoding")


class ProjectsRoot(PlainResource):
    """C{/project/} (every project) and C{/project/<name>/} (one)."""

    isLeaf = True

    def __init__(self, cache: BrowseCache, forms: bool = False) -> None:
        """@param forms: show the yank forms (the index takes uploads)."""
        super().__init__()
        self.cache = cache
        self.forms = forms

    def render_GET(self, request) -> bytes:
        segments = request.postpath
        if not segments:
            return redirect(request, "project/")
        if segments == [b""]:
            page = self.cache.page(("projects",), lambda: browse.projects_page(self.cache.index.entries))
            return _send(request, page)
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
        index = self.cache.index
        project = index.snapshot.get(key)
        if project is None:
            return self._missing(request, name)
        base = base_url(request)
        yanked = index.snapshot.yanked(key)
        page = self.cache.page(
            ("project", key, base),
            lambda: browse.project_page(project, index.by_key[key], base, yanked, self.forms),
        )
        return _send(request, page)

    def _missing(self, request, name: str) -> bytes:
        suggestions = self.cache.index.search(name, limit=10) if name else []
        page = make_page(browse.not_found_page(name, suggestions))
        return _send(request, page, http.NOT_FOUND)


class SearchPage(PlainResource):
    """C{/search?q=words}: projects by name and summary."""

    isLeaf = True

    def __init__(self, cache: BrowseCache) -> None:
        super().__init__()
        self.cache = cache

    def render_GET(self, request) -> bytes:
        if request.postpath == [b""]:
            return redirect(request, "../search")
        if request.postpath:
            return _send(request, make_page(browse.search_page("", [], 0)), http.NOT_FOUND)
        raw = (request.args.get(b"q") or [b""])[0][: MAX_QUERY * 4]
        query = raw.decode("utf-8", "replace")[:MAX_QUERY]
        found = self.cache.index.search(query)
        page = self.cache.page(("search", query), lambda: browse.search_page(query, found[:RESULTS], len(found)))
        return _send(request, page)
