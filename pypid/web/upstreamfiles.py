"""
The upstream fallback in the web layer: project pages of names that are not
local (C{/simple/<project>/}, through L{UpstreamWeb.serve_project}), and the
cached upstream files under C{/+upstream/<project>/<filename>}.

Local names shadow the upstream entirely (the dependency-confusion
defence): their pages never list upstream files and their upstream files
are never served, unless the operator allowed the name to merge.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.web import http

from pypid.store.interfaces import IPackageStore
from pypid.index.names import is_normalized, is_valid
from pypid.index.pages import Page, PageCache, make_page
from pypid.upstream import rewrite
from pypid.upstream.fallback import Fallback, NotOnUpstream, UpstreamDown, UpstreamUnavailable
from pypid.lru import Recent
from pypid.upstream.policy import reserved
from pypid.upstream.records import safe_filename
from pypid.store.interfaces import IBody
from pypid.web.files import content_type_for, etag_for, send_file
from pypid.web.errors import error_page, not_found, respond
from pypid.web.resource import PlainResource
from pypid.web.util import redirect, serve_page


CACHE, REDIRECT = "cache", "redirect"

#: How upstream failures are answered (in this order: the first that matches).
UPSTREAM_ERRORS = {NotOnUpstream: http.NOT_FOUND, UpstreamDown: http.GATEWAY_TIMEOUT,
                   UpstreamUnavailable: http.BAD_GATEWAY}

#: How many rendered upstream pages (per format) are kept in memory.
RENDERED_PAGES = 512


def render_async(request, d: Deferred, on_result: Callable[[object], object]) -> object:
    """
    L{respond} for upstream work: known failures become 404 and 502
    answers, and a client that leaves cancels only its own wait.
    """
    return respond(request, lambda: d.addCallback(on_result), UPSTREAM_ERRORS)


class UpstreamWeb:
    """
    What the resources ask about the fallback: which names fall back, and
    the rendered pages of upstream projects.

    @param allow: normalised names whose local and upstream files are
        listed together (everything else local shadows the upstream).
    """

    def __init__(
        self,
        store: IPackageStore,
        url: str,
        mode: str = CACHE,
        fallback: Optional[Fallback] = None,
        allow: frozenset = frozenset(),
        cache_control: Optional[bytes] = None,
        list_upstream: bool = False,
        deny: tuple = (),
    ) -> None:
        self.store = store
        self.url = url.rstrip("/") + "/"
        self.mode = mode
        self.fallback = fallback
        self.allow = frozenset(allow)
        self.deny = tuple(deny)
        self.cache_control = cache_control
        self.lists_upstream = list_upstream and fallback is not None
        #: Rendered pages of the most recently asked for projects.
        self._rendered = Recent(RENDERED_PAGES)

    def is_local(self, key: str) -> bool:
        return key in self.store.snapshot.projects

    def reserved(self, key: str) -> bool:
        """Whether C{key} is reserved for local projects (C{--upstream-deny})."""
        return reserved(key, self.deny)

    def shadowed(self, key: str) -> bool:
        """Whether the upstream's C{key} is hidden (by a local project or a reservation)."""
        return (self.is_local(key) and key not in self.allow) or self.reserved(key)

    def merges(self, key: str) -> bool:
        """Whether C{key}'s page lists local and upstream files together."""
        return self.mode == CACHE and key in self.allow and self.is_local(key) and not self.reserved(key)

    def serve_project(self, request, key: str, content_type: str) -> object:
        """Answer C{/simple/<key>/} for a name not local (or allowed to merge)."""
        if self.reserved(key):
            raise not_found(f"Project {key!r} is not on this index (reserved for local projects).")
        if self.mode == REDIRECT:
            code = http.FOUND if request.clientproto == b"HTTP/1.0" else http.SEE_OTHER
            return redirect(request, self.url + key + "/", code)
        assert self.fallback is not None
        ctype = content_type.encode("ascii") + (b"; charset=utf-8" if content_type == "text/html" else b"")
        local = self.store.snapshot.get(key) if self.merges(key) else None

        def found(page) -> object:
            if page is None:
                raise not_found(f"Project {key!r} is neither on this index nor upstream.")
            return serve_page(request, page, ctype)

        d = self.fallback.project(key)
        if local is not None:
            # The local files are served even when the upstream is down.
            d.addErrback(lambda f: f.trap(UpstreamUnavailable) and None)
        d.addCallback(lambda entry: self._page(key, content_type, entry.project if entry else None, local))
        return render_async(request, d, found)

    def serve_index(self, request, content_type: str) -> object:
        """C{/simple/} with the upstream's projects beside the local ones (C{--list-upstream})."""
        assert self.fallback is not None
        ctype = content_type.encode("ascii") + (b"; charset=utf-8" if content_type == "text/html" else b"")
        fmt = PageCache.format_of(content_type)

        def rendered(upstream_names):
            snapshot = self.store.snapshot
            cached = self._rendered.get(("", fmt))
            if cached is not None and cached[0] is upstream_names and cached[1] is snapshot:
                return cached[2]

            def render() -> Page:
                names = [(k, n) for k, n in rewrite.merged_names(snapshot.projects, upstream_names)
                         if k in snapshot.projects or not self.reserved(k)]
                return make_page(rewrite.index_json(names) if fmt == "json" else rewrite.index_html(names))

            def keep(page: Page) -> Page:
                self._rendered[("", fmt)] = (upstream_names, snapshot, page)
                return page

            # The upstream's list can hold hundreds of thousands of names.
            return self.fallback.threads(render).addCallback(keep)

        d = self.fallback.project_names().addCallback(rendered)
        return render_async(request, d, lambda page: serve_page(request, page, ctype))

    def _page(self, key: str, content_type: str, upstream, local):
        """The rendered page (or a Deferred of it; L{None} when there is nothing)."""
        if upstream is None and local is None:
            return None
        fmt = PageCache.format_of(content_type)
        cached = self._rendered.get((key, fmt))
        if cached is not None and cached[0] is upstream and cached[1] is local:
            return cached[2]

        def keep(page: Page) -> Page:
            self._rendered[(key, fmt)] = (upstream, local, page)
            return page

        # Upstream pages can list thousands of files: rendered and
        # compressed in a thread.
        return self.fallback.threads(
            lambda: make_page(rewrite.project_page(key, fmt, upstream, local, self.store.hash_algo))
        ).addCallback(keep)


class UpstreamFiles(PlainResource):
    """C{/+upstream/<project>/<filename>[.metadata]}: cached upstream files."""

    isLeaf = True

    def __init__(self, web: UpstreamWeb) -> None:
        super().__init__()
        self.web = web

    def render_GET(self, request):
        segments = request.postpath
        if len(segments) != 2 or self.web.fallback is None:
            return self._missing(request)
        try:
            key, filename = segments[0].decode("utf-8"), segments[1].decode("utf-8")
        except UnicodeDecodeError:
            return self._missing(request)
        if not (is_valid(key) and is_normalized(key) and safe_filename(filename)):
            return self._missing(request)
        if self.web.shadowed(key):
            return self._missing(request)
        fallback = self.web.fallback
        if filename.endswith(".metadata") and len(filename) > len(".metadata"):
            base = filename[: -len(".metadata")]
            return self._later(request, fallback.metadata(key, base), key, base, metadata=True)
        body = fallback.cached_file(key, filename)
        if body is not None:
            return self._send(request, key, filename, body)
        return self._later(request, fallback.file(key, filename), key, filename)

    @staticmethod
    def _missing(request) -> bytes:
        return error_page(request, not_found())

    def _later(self, request, d: Deferred, key: str, filename: str, metadata: bool = False):
        """Send the body C{d} fires with; let it go unsent if the client has left."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def unless_gone(body: Optional[IBody]) -> Optional[IBody]:
            if gone and body is not None:
                body.close()
                return None
            return body

        return render_async(request, d.addCallback(unless_gone),
                            lambda body: self._send(request, key, filename, body, metadata))

    def _send(self, request, key: str, filename: str, body: Optional[IBody], metadata: bool = False):
        """Send a cached file (opened, and pinned in the cache until it is sent), or 404."""
        if body is None:
            return self._missing(request)
        entry = self.web.fallback.cached_project(key)
        record = entry.project.file(filename) if entry is not None else None
        digest = (record.metadata_sha256 if metadata else record.sha256) if record is not None else None
        etag = etag_for(digest, body.size, body.mtime_ns)
        content_type = "text/plain; charset=utf-8" if metadata else content_type_for(filename)
        served = send_file(request, body, content_type, etag, self.web.cache_control)
        return self._missing(request) if served is None else served
