"""
The upstream fallback in the web layer: project pages of names that are not
local (C{/simple/<project>/}, through L{UpstreamWeb.serve_project}), and the
cached upstream files under C{/+upstream/<project>/<filename>}.

Local names shadow the upstream entirely (the dependency-confusion
defence): their pages never list upstream files and their upstream files
are never served, unless the operator allowed the name to merge.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from pypid.store.interfaces import IPackageStore
from pypid.index.model import NO_YANKS
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
from pypid.web.send import bytes_sender
from pypid.web.util import base_url, redirect, serve_page


CACHE, REDIRECT = "cache", "redirect"

#: How upstream failures are answered (in this order: the first that matches).
UPSTREAM_ERRORS: dict[type, int] = {NotOnUpstream: http.NOT_FOUND, UpstreamDown: http.GATEWAY_TIMEOUT,
                                    UpstreamUnavailable: http.BAD_GATEWAY}

#: Pages of up to this many files are rendered on the reactor thread.
INLINE_FILES = 50

#: How many rendered upstream pages (per format) are kept in memory.
RENDERED_PAGES = 512


def render_async(request, d: Deferred, on_result: Callable[[Any], object]) -> object:
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
        #: By (project key, format): what a page was rendered from, and the page.
        self._rendered: Recent[tuple[str, str], tuple[Any, ...]] = Recent(RENDERED_PAGES)

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
        snapshot = self.store.snapshot
        local = snapshot.get(key) if self.merges(key) else None
        yanked = snapshot.yanked(key) if local is not None else NO_YANKS

        def found(page) -> object:
            if page is None:
                raise not_found(f"Project {key!r} is neither on this index nor upstream.")
            return serve_page(request, page, ctype)

        d = self.fallback.project(key)
        if local is not None:
            # The local files are served even when the upstream is down.
            d.addErrback(lambda f: f.trap(UpstreamUnavailable) and None)
        d.addCallback(lambda entry: self._page(key, content_type, entry.project if entry else None, local, yanked))
        return render_async(request, d, found)

    def serve_json(self, request, key: str, version: Optional[str]) -> object:
        """
        C{/pypi/<key>/json} (and C{/pypi/<key>/<version>/json}) for a name
        that is not local: the upstream's JSON API document with pypid's
        URLs, or one built from the upstream page and the release's core
        metadata when the upstream has none or is down.
        """
        if self.reserved(key) or self.fallback is None:
            raise not_found(f"Project {key!r} is not on this index.")
        fallback = self.fallback
        base = base_url(request)

        def found(entry):
            if entry is None:
                raise not_found(f"Project {key!r} is neither on this index nor upstream.")
            project = entry.project
            d = fallback.known_metadata(key)
            d.addCallback(lambda known: fallback.upstream_json(key, version).addCallback(
                lambda document: self._json_page(key, version, project, document, dict(known), base)))
            return d

        d = fallback.project(key).addCallback(found)
        return render_async(request, d, lambda page: serve_page(request, page, b"application/json"))

    def _json_page(self, key: str, version: Optional[str], project, document, known: dict, base: str):
        from pypid.index.render import dumps
        from pypid.upstream import jsondoc

        fallback = self.fallback
        assert fallback is not None
        if document is not None:
            rewritten = jsondoc.rewrite(document, project, version, base, known)
            if rewritten is not None:
                return fallback.threads(lambda: make_page(dumps(rewritten)))
        shown = version if version is not None else jsondoc.latest_version(project)
        files = jsondoc.release_files(project, shown) if shown is not None else []
        if not files:
            raise not_found(f"{key} has no release {version!r}." if version else f"{key} has no releases.")
        source = jsondoc.metadata_file(files)

        def render(raw: Optional[bytes], known: dict):
            from pypid.store.metadata import parse_message

            message = parse_message(raw) if raw else None
            built = jsondoc.build(project, version, message, base, known)
            if built is None:
                raise not_found(f"{key} has no release {version!r}.")
            return fallback.threads(lambda: make_page(dumps(built)))

        if source is None:
            return render(None, known)
        d = fallback.metadata(key, source.filename).addCallback(_read_all)
        # Without its metadata the document still lists the files.
        d.addErrback(lambda f: f.trap(NotOnUpstream, UpstreamUnavailable) and None)
        # (With the hash of the metadata just read.)
        return d.addCallback(lambda raw: fallback.known_metadata(key).addCallback(
            lambda now: render(raw, dict(now))))

    def serve_index(self, request, content_type: str) -> object:
        """C{/simple/} with the upstream's projects beside the local ones (C{--list-upstream})."""
        assert self.fallback is not None
        fallback = self.fallback
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
            return fallback.threads(render).addCallback(keep)

        d = fallback.project_names().addCallback(rendered)
        return render_async(request, d, lambda page: serve_page(request, page, ctype))

    def _page(self, key: str, content_type: str, upstream, local, yanked=NO_YANKS):
        """
        The rendered page (or a Deferred of it; L{None} when there is
        nothing), rendered once per fetch of the upstream page (and per
        change to the local files, their yanks, and the metadata files cached).
        """
        if upstream is None and local is None:
            return None
        fallback = self.fallback
        assert fallback is not None
        fmt = PageCache.format_of(content_type)
        generation = fallback.metadata_generation.get(key, 0)
        cached = self._rendered.get((key, fmt))
        # A yank replaces the project's yank mapping (never changed in place).
        if (cached is not None and cached[0] is upstream and cached[1] is local and cached[2] == generation
                and cached[4] is yanked):
            return cached[3]

        def keep(page: Page) -> Page:
            self._rendered[(key, fmt)] = (upstream, local, generation, page, yanked)
            return page

        def render(metadata: dict):
            def build() -> Page:
                return make_page(rewrite.project_page(key, fmt, upstream, local, self.store.hash_algo,
                                                      dict(metadata), yanked))

            files = (len(upstream.files) if upstream is not None else 0) + (len(local.files) if local else 0)
            if files <= INLINE_FILES:
                # (A thread hop would cost more than rendering a small page.)
                return keep(build())
            # Upstream pages can list thousands of files: rendered and
            # compressed in a thread.
            return fallback.threads(build).addCallback(keep)

        return fallback.known_metadata(key).addCallback(render)


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
        if request.method == b"HEAD" or request.getHeader(b"range") is not None:
            # Answered without fetching the file whole: its size from the
            # page (or a HEAD upstream), the bytes asked for from the upstream.
            d = fallback.size(key, filename)
            return render_async(request, d, lambda found: self._remote(request, key, filename, *found))
        return self._later(request, fallback.file(key, filename), key, filename)

    def _remote(self, request, key: str, filename: str, record, size: Optional[int]):
        fallback = self.web.fallback
        assert fallback is not None
        if size is None:
            # Neither the page nor the upstream says: fetched whole after all.
            return self._later(request, fallback.file(key, filename), key, filename)
        body = UpstreamBody(fallback, key, record, size)
        etag = etag_for(record.sha256, size, body.mtime_ns)
        served = send_file(request, body, content_type_for(filename), etag, self.web.cache_control)
        return self._missing(request) if served is None else served

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
        fallback = self.web.fallback
        assert fallback is not None
        entry = fallback.cached_project(key)
        record = entry.project.file(filename) if entry is not None else None
        if metadata:
            digest = record.metadata_sha256 if record is not None else None
            digest = digest or fallback.metadata_sha256(key, filename)
        else:
            digest = record.sha256 if record is not None else None
        etag = etag_for(digest, body.size, body.mtime_ns)
        content_type = "text/plain; charset=utf-8" if metadata else content_type_for(filename)
        served = send_file(request, body, content_type, etag, self.web.cache_control)
        return self._missing(request) if served is None else served


#: Ranges of a file not cached up to this size are fetched from the upstream
#: into memory and sent; longer ones are served once the file is cached whole.
PASS_THROUGH = 4 * 1024 * 1024


@implementer(IBody)
class UpstreamBody:
    """
    An upstream file not cached yet, as a body for
    L{pypid.web.files.send_file} (which answers C{HEAD}, conditions and
    C{Range} from its size alone): a range of it is fetched from the
    upstream (L{PASS_THROUGH} bytes at most; an upstream that serves no
    ranges has the file fetched whole, into the cache), all of it is
    fetched into the cache and sent from there.
    """

    redirect = None

    def __init__(self, fallback: Fallback, key: str, record, size: int) -> None:
        self.fallback = fallback
        self.key = key
        self.record = record
        self.size = size
        self.mtime_ns = _upload_time_ns(record.upload_time)

    def _whole(self, offset: int, count: int) -> bool:
        return (offset == 0 and count >= self.size) or count > PASS_THROUGH

    def read(self, offset: int, count: int) -> Deferred:
        if self._whole(offset, count):
            d = self._from_cache(offset, count)
        else:
            d = self.fallback.fetch_range(self.record, offset, offset + count - 1)
            d.addCallback(lambda data: data if data is not None else self._from_cache(offset, count))
        return d.addErrback(_as_http_error)

    def _from_cache(self, offset: int, count: int) -> Deferred:
        def opened(body: Optional[IBody]):
            if body is None:
                return b""
            try:
                return body.read(offset, count)
            finally:
                body.close()

        return self.fallback.file(self.key, self.record.filename).addCallback(opened)

    def stream(self, request, offset: int, count: int) -> None:
        if self._whole(offset, count):
            d = self.fallback.file(self.key, self.record.filename)

            def opened(body: Optional[IBody]) -> None:
                if body is not None and (request.finished or getattr(request, "_disconnected", False)):
                    body.close()
                    return
                if body is None or body.size != self.size:
                    if body is not None:
                        body.close()
                    request.loseConnection()
                    return
                body.stream(request, offset, count)

            d.addCallbacks(opened, lambda f: _unsent(request, f))
            return
        d = self.read(offset, count)

        def arrived(data: bytes) -> None:
            if len(data) != count:
                request.loseConnection()
                return
            bytes_sender(request, data).start()

        d.addCallbacks(arrived, lambda f: _unsent(request, f))

    def close(self) -> None:
        pass


def _upload_time_ns(stamp: Optional[str]) -> int:
    """A PEP 700 upload time as nanoseconds since the epoch (0 when unknown)."""
    from datetime import datetime

    if not stamp:
        return 0
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1_000_000_000)
    except ValueError:
        return 0


def _read_all(body: Optional[IBody]):
    """All the bytes of a small cached file (its core metadata), then let go."""
    if body is None:
        return None
    try:
        data = body.read(0, body.size)
    except BaseException:
        body.close()
        raise
    if isinstance(data, Deferred):
        def closed(result: object) -> object:
            body.close()
            return result

        return data.addBoth(closed)
    body.close()
    return data


def _as_http_error(failure):
    """An upstream failure as the L{HTTPError} it is answered with."""
    from pypid.web.errors import HTTPError

    for kind, code in UPSTREAM_ERRORS.items():
        if failure.check(kind):
            raise HTTPError(code, str(failure.value))
    return failure


def _unsent(request, failure) -> None:
    """
    A streamed answer that failed before anything was written (its status
    and headers are set, not sent): answered with the error instead.
    """
    from pypid.web.errors import _failure_page

    if request.finished or getattr(request, "_disconnected", False):
        return
    if request.startedWriting:
        request.loseConnection()
        return
    for name in (b"content-range", b"etag", b"last-modified", b"accept-ranges", b"cache-control"):
        request.responseHeaders.removeHeader(name)
    body = _failure_page(request, failure, UPSTREAM_ERRORS)
    if body is NOT_DONE_YET:
        return
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
