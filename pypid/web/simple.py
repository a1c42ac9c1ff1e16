"""The simple repository API: C{/simple/} and C{/simple/<project>/}."""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.resource import Resource

from pypid.index.names import is_valid, normalize
from pypid.index.negotiate import choose_content_type
from pypid.index.pages import PageCache
from pypid.web.errors import HTTPError, not_found
from pypid.web.resource import Answer, PlainResource
from pypid.web.util import redirect, serve_page

NOT_ACCEPTABLE = (
    "None of the media types in Accept can be served. This index serves "
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html "
    "and text/html."
)


def _negotiate(request) -> Optional[str]:
    accept = request.getHeader(b"accept")
    fmt = request.args.get(b"format")
    return choose_content_type(
        accept.decode("latin-1") if accept is not None else None,
        # An unescaped '+' in the query arrives as a space; media types have none.
        fmt[0].decode("latin-1").replace(" ", "+") if fmt else None,
    )


def set_serial(request, serial: int) -> None:
    """The serial mirroring tools check a page against (C{X-PyPI-Last-Serial})."""
    request.setHeader(b"x-pypi-last-serial", b"%d" % serial)


def _serve(request, pages: PageCache, key: Optional[str], fallback=None) -> Answer:
    content_type = _negotiate(request)
    if content_type is None:
        raise HTTPError(http.NOT_ACCEPTABLE, NOT_ACCEPTABLE)
    # For the access log: which clients read which API.
    request.representation = "json" if content_type.endswith("+json") else "html"
    # Mirrors (bandersnatch, devpi) check that a page is as new as the
    # serial they were told: the project's, or the index's for the list and
    # for pages of upstream projects (it is never lower than a serial they saw).
    snapshot = pages.snapshot
    if key is None:
        set_serial(request, snapshot.serial)
        if fallback is not None and fallback.lists_upstream:
            return fallback.serve_index(request, content_type)
        page = pages.index(content_type)
        if isinstance(page, Deferred):
            # The list is being rendered (in a thread): answered once it is.
            return page.addCallback(lambda page: serve_page(request, page, _media(content_type)))
    else:
        found = pages.project(key, content_type)
        # The upstream fallback (pypid.web.upstreamfiles) answers for names that
        # are not local, and for local names the operator allowed to merge.
        if fallback is not None and (found is None or fallback.merges(key)):
            set_serial(request, snapshot.serial)
            return fallback.serve_project(request, key, content_type)
        if found is None:
            raise not_found(f"Project {key!r} is not on this index.")
        set_serial(request, snapshot.projects[key].serial)
        page = found
    return serve_page(request, page, _media(content_type))


def _media(content_type: str) -> bytes:
    """The Content-Type header of a page of C{content_type}."""
    return content_type.encode("ascii") + (b"; charset=utf-8" if content_type == "text/html" else b"")


class SimpleRoot(PlainResource):
    """C{/simple}: redirects to C{/simple/}, whose children are projects."""

    def __init__(self, pages: PageCache, fallback=None) -> None:
        super().__init__()
        self.pages = pages
        self.fallback = fallback

    def getChild(self, name: bytes, request) -> Resource:
        if name == b"":
            return ProjectList(self.pages, self.fallback)
        return ProjectPage(self.pages, name, self.fallback)

    def render_GET(self, request) -> bytes:
        return redirect(request, "simple/")


class ProjectList(PlainResource):
    """C{/simple/}: every project, HTML or JSON."""

    isLeaf = True

    def __init__(self, pages: PageCache, fallback=None) -> None:
        super().__init__()
        self.pages = pages
        self.fallback = fallback

    def render_GET(self, request) -> Answer:
        if request.postpath:
            raise not_found()
        return _serve(request, self.pages, None, self.fallback)


class ProjectPage(PlainResource):
    """C{/simple/<project>/}: one project's files, HTML or JSON."""

    isLeaf = True

    def __init__(self, pages: PageCache, segment: bytes, fallback=None) -> None:
        super().__init__()
        self.pages = pages
        self.segment = segment
        self.fallback = fallback

    def render_GET(self, request) -> Answer:
        try:
            name = self.segment.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if not is_valid(name) or request.postpath not in ([], [b""]):
            raise not_found()
        key = normalize(name)
        if not request.postpath:
            # /simple/Name -> /simple/name/ in one hop.
            return redirect(request, f"{key}/")
        if key != name:
            return redirect(request, f"../{key}/")
        return _serve(request, self.pages, key, self.fallback)


