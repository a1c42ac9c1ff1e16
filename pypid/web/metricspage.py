"""
C{/metrics}: the registry in the Prometheus text format, for the addresses
allowed to see it; and the per-request recording the Site does.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from twisted.web import http

from pypid.ops.metrics import CONTENT_TYPE, Metrics, Registry
from pypid.web.proxy import TrustedProxies
from pypid.web.forwarded import peer_of
from pypid.web.errors import HTTPError, not_found
from pypid.web.resource import PlainResource

_FIXED = {
    b"packages": "packages",
    b"pypi": "pypi_json",
    b"RPC2": "xmlrpc",
    b"project": "browse",
    b"search": "search",
    b"metrics": "metrics",
    b"health": "health",
    b"favicon.ico": "favicon",
    b"robots.txt": "robots",
}


def route_of(method: bytes, path: bytes) -> str:
    """
    A low-cardinality name for the kind of resource C{path} asks for (never
    a project or file name).
    """
    segments = path.split(b"?", 1)[0].split(b"/")[1:]
    first = segments[0] if segments else b""
    if first == b"":
        return "upload" if method == b"POST" else "welcome"
    if first == b"simple":
        rest = [s for s in segments[1:] if s]
        return "simple_project" if rest else "simple_index"
    if first == b"pypi" and method == b"POST":
        return "xmlrpc"
    if first in _FIXED:
        return _FIXED[first]
    if method == b"POST":
        return "upload"
    return "shortcut" if len([s for s in segments if s]) == 1 else "other"


_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"}


def record_request(metrics: Metrics, request, seconds: float) -> None:
    """Count a finished request in C{metrics}."""
    method = request.method if request.method in _METHODS else b"OTHER"
    route = route_of(request.method, request.path or b"/")
    metrics.http_requests.inc(route=route, method=method.decode("ascii"), code=str(request.code))
    metrics.http_duration.observe(seconds, route=route)
    metrics.http_sent_bytes.inc(request.sentLength or 0, route=route)


class MetricsPage(PlainResource):
    """
    C{/metrics}: C{registry} (the process's L{Metrics}) for clients in C{allow} (every
    client when C{allow} is empty); 403 for others. The client is the one
    trusted proxies name (L{pypid.web.forwarded}).
    """

    isLeaf = True

    def __init__(self, registry: Registry, allow: Sequence[str] = (),
                 source: Optional[Callable[[], bytes]] = None) -> None:
        """
        @param source: renders the page instead of C{registry} (with
            C{--workers}: every worker's metrics, labelled).
        """
        super().__init__()
        self.allow = TrustedProxies.parse(allow) if allow else None
        self.registry = registry
        self.source = source

    def render_GET(self, request) -> bytes:
        if request.postpath not in ([], [b""]):
            raise not_found()
        if self.allow is not None and not self.allow.trusts(peer_of(request.getClientAddress())):
            raise HTTPError(http.FORBIDDEN, "Metrics are not available to this address (--metrics-allow).")
        body = self.source() if self.source is not None else self.registry.render()
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body
