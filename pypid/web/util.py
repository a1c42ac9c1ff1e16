"""Small helpers shared by pypid's resources."""

from __future__ import annotations

import re

from twisted.web import http
from twisted.web.server import NOT_DONE_YET

from pypid.index.negotiate import accepts_gzip
from pypid.index.pages import Page
from pypid.web.errors import HTTPError, error_page
from pypid.web.send import PAGE_CHUNK, bytes_sender

#: Cache-Control of index pages: always revalidate, so uploads show at once.
REVALIDATE = b"max-age=0, must-revalidate"

_HOST = re.compile(rb"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def text_response(request, code: int, message: str) -> bytes:
    """
    An error answer, through L{pypid.web.errors.error_page} (for resources
    that do not raise L{pypid.web.errors.HTTPError} yet).
    """
    return error_page(request, HTTPError(code, message))


def redirect(request, location: str, code: int = http.MOVED_PERMANENTLY) -> bytes:
    """
    Redirect to C{location} (usually relative, so that a path prefix in
    front of pypid is kept), carrying over the query string.
    """
    query = request.uri.partition(b"?")[2]
    target = location.encode("utf-8") + (b"?" + query if query else b"")
    body = f"Redirecting to {location}\n".encode("utf-8")
    request.setResponseCode(code)
    request.setHeader(b"location", target)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


def host_of(request) -> bytes:
    """The Host the client used, if well-formed, else the local address."""
    host = request.getHeader(b"host")
    if host and _HOST.match(host):
        return host
    addr = request.getHost()
    return f"{addr.host}:{addr.port}".encode("ascii")


def base_url(request) -> str:
    """
    The absolute URL of the index root as the client reached it, with a
    trailing C{/}: scheme, host and path prefix from a trusted proxy's
    C{X-Forwarded-Proto}/C{-Host}/C{-Prefix} (L{pypid.web.forwarded}), else
    from the connection and the C{Host} header.
    """
    scheme = "https" if request.isSecure() else "http"
    forwarded = getattr(request, "forwarded", None)
    info = forwarded() if callable(forwarded) else None
    host = info.host if info is not None and info.host else host_of(request).decode("ascii")
    prefix = info.prefix if info is not None else ""
    return f"{scheme}://{host}{prefix}/"


def serve_page(
    request,
    page: Page,
    content_type: bytes,
    cache_control: bytes = REVALIDATE,
    vary: bytes = b"Accept, Accept-Encoding",
) -> bytes | int:
    """
    Answer with a pre-rendered page: gzip when the client accepts it, strong
    ETag with C{If-None-Match}, C{Last-Modified}, and a bodiless C{HEAD}.
    """
    gz = page.has_gzip and accepts_gzip(
        (request.getHeader(b"accept-encoding") or b"").decode("latin-1")
    )
    body = page.gzipped if gz else page.body
    etag = page.gzip_etag if gz else page.etag
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"vary", vary)
    request.setHeader(b"cache-control", cache_control)
    if gz:
        request.setHeader(b"content-encoding", b"gzip")
    if page.last_modified is not None:
        request.setHeader(b"last-modified", http.datetimeToString(page.last_modified))
    if request.setETag(etag) is http.CACHED:
        return b""
    if (
        page.last_modified is not None
        and request.getHeader(b"if-none-match") is None
        and not_modified_since(request, page.last_modified)
    ):
        request.setResponseCode(http.NOT_MODIFIED)
        return b""
    assert body is not None
    request.setHeader(b"content-length", b"%d" % len(body))
    if request.method == b"HEAD":
        return b""
    if len(body) > PAGE_CHUNK:
        # Not written whole: every connection would hold a copy until it
        # has taken it all.
        bytes_sender(request, body).start()
        return NOT_DONE_YET
    return body


def not_modified_since(request, last_modified: float) -> bool:
    """Whether C{If-Modified-Since} is no earlier than C{last_modified}."""
    header = request.getHeader(b"if-modified-since")
    if header is None:
        return False
    try:
        since = http.stringToDatetime(header.split(b";", 1)[0])
    except (ValueError, IndexError, KeyError):
        return False
    return int(last_modified) <= since
