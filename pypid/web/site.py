"""pypid's Site: access logging through twisted.logger, no tracebacks."""

from __future__ import annotations

import time

from twisted.logger import Logger
from twisted.web import server


class PypidRequest(server.Request):
    """A request that remembers when it started, for the access log."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()


class PypidSite(server.Site):
    """
    The Site serving pypid's resource tree. Tracebacks never reach clients;
    each finished request is one structured access-log event.
    """

    displayTracebacks = False
    noisy = False
    requestFactory = PypidRequest
    access = Logger(namespace="pypid.access")

    def log(self, request) -> None:
        client = request.getClientAddress()
        self.access.info(
            '{client} "{method} {uri} {protocol}" {status} {size} {duration_ms:.1f}ms "{agent}"',
            client=getattr(client, "host", "-"),
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            protocol=request.clientproto.decode("latin-1"),
            status=request.code,
            size=request.sentLength,
            duration_ms=(time.monotonic() - getattr(request, "started", time.monotonic())) * 1000,
            agent=(request.getHeader(b"user-agent") or b"-").decode("latin-1"),
        )
