"""
The treq side of the fallback: one HTTP client over one persistent
connection pool, with timeouts on connecting, on the response headers and
on every pause in a body, and TLS verified against the system's trust store
(or an operator's CA file).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from pypid import __version__
from pypid.counts import counted
from pypid.upstream.interfaces import IUpstream

USER_AGENT = f"pypid/{__version__} (upstream fallback)"


class PageResponse(NamedTuple):
    code: int
    body: bytes
    content_type: str
    etag: Optional[str]
    last_modified: Optional[str]
    #: The URL the page came from after redirects (links resolve against it).
    url: str


class Download(NamedTuple):
    #: Bytes passed to C{write}.
    length: int
    #: Whether the body's end was certain (a Content-Length or chunked
    #: framing); L{False} when only a closed connection ended it.
    framed: bool


class DownloadError(Exception):
    """A download did not deliver the whole file."""

    def __init__(self, message: str, code: Optional[int] = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.timed_out = timed_out


class BodyTooLarge(DownloadError):
    pass


class _BodyReader(Protocol):
    """
    Receives a response body: passes each chunk on, restarts an idle timer
    on every chunk, and drops the connection when the timer runs out, the
    body grows past C{limit} or C{write} raises.
    """

    def __init__(self, write: Callable[[bytes], None], clock, idle: float, limit: Optional[int]) -> None:
        self.write = write
        self.clock = clock
        self.idle = idle
        self.limit = limit
        self.length = 0
        self.finished: Deferred = Deferred()
        self._error: Optional[BaseException] = None
        self._timer = None

    def connectionMade(self) -> None:
        self._timer = self.clock.callLater(self.idle, self._abort, DownloadError(
            f"the upstream sent nothing for {self.idle:g} seconds", timed_out=True))

    def dataReceived(self, data: bytes) -> None:
        if self._error is not None:
            return
        self.length += len(data)
        if self.limit is not None and self.length > self.limit:
            self._abort(BodyTooLarge(f"the upstream body is larger than {self.limit} bytes"))
            return
        try:
            self.write(data)
        except Exception as e:
            self._abort(e)
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.idle)

    def _abort(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            self.transport.stopProducing()

    def connectionLost(self, reason) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._error is not None:
            self.finished.errback(self._error)
        elif reason.check(ResponseDone):
            self.finished.callback(Download(self.length, True))
        elif reason.check(PotentialDataLoss):
            self.finished.callback(Download(self.length, False))
        else:
            self.finished.errback(DownloadError(
                f"the upstream connection broke after {self.length} bytes: {reason.getErrorMessage()}"))


def _quiet_factory(factory):
    """The pool's connection factory without its "Starting factory" log lines."""
    return type("QuietHTTP11ClientFactory", (factory,), {"noisy": False})


def _header(response, name: str) -> Optional[str]:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


@implementer(IUpstream)
class TreqUpstream:
    """
    The real L{IUpstream}. C{start()} builds the pool and the client (call it
    from C{startService}, after twistd has forked); C{stop()} closes the
    pool's connections.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        connect_timeout: float = 10,
        timeout: float = 30,
        max_page_size: int = 64 * 1024 * 1024,
        ca_file: Optional[str] = None,
        max_connections: int = 8,
        client=None,
    ) -> None:
        """
        @param client: a treq client to use instead of one over a connection
            pool of its own (tests: C{treq.testing.StubTreq}).
        """
        self.reactor = reactor
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_page_size = max_page_size
        self.ca_file = ca_file
        self.max_connections = max_connections
        self.pool: Optional[HTTPConnectionPool] = None
        self._client = client

    def start(self) -> None:
        import treq.client

        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = self.max_connections
        self.pool._factory = _quiet_factory(self.pool._factory)
        policy = BrowserLikePolicyForHTTPS()
        if self.ca_file is not None:
            from twisted.internet.ssl import Certificate

            with open(self.ca_file, "rb") as f:
                policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(f.read()))
        agent = Agent(self.reactor, contextFactory=policy, connectTimeout=self.connect_timeout, pool=self.pool)
        self._client = treq.client.HTTPClient(agent)

    def stop(self) -> Deferred:
        pool, self.pool, self._client = self.pool, None, None
        if pool is None:
            from twisted.internet.defer import succeed

            return succeed(None)
        return pool.closeCachedConnections()

    def _get(self, url: str, headers: dict) -> Deferred:
        if self._client is None:
            self.start()
        headers = {"User-Agent": USER_AGENT, **headers}
        return self._client.get(
            url, headers=headers, unbuffered=True, timeout=self.timeout, reactor=self.reactor
        )

    def _read(self, response, write, limit: Optional[int]) -> Deferred:
        reader = _BodyReader(write, self.reactor, self.timeout, limit)
        response.deliverBody(reader)
        return reader.finished

    def fetchPage(self, url: str, headers: dict) -> Deferred:
        def got(response):
            chunks: list[bytes] = []

            def done(download: Download) -> PageResponse:
                content_type = _header(response, "content-type") or ""
                if not download.framed and "json" not in content_type:
                    # A page cut off by a closed connection would silently
                    # lose links; JSON at least fails to parse.
                    raise DownloadError("the upstream page ended without framing; it may be cut off")
                final = response.request.absoluteURI.decode("ascii") if response.request else url
                return PageResponse(
                    response.code, b"".join(chunks), content_type,
                    _header(response, "etag"), _header(response, "last-modified"), final,
                )

            if response.code != 200:
                # Nothing of interest in an error body; drain a little of it.
                chunks_limit = 64 * 1024
            else:
                chunks_limit = self.max_page_size
            d = self._read(response, chunks.append, chunks_limit)
            if response.code != 200:
                d.addErrback(lambda _: Download(0, True))
            return d.addCallback(done)

        return self._get(url, headers).addCallback(got)

    def download(self, url: str, write: Callable[[bytes], None]) -> Deferred:
        def got(response):
            if response.code != 200:
                response.deliverBody(_Discard())
                raise DownloadError(f"the upstream answered {response.code} for {url}", response.code)
            expected = response.length if isinstance(response.length, int) else None
            d = self._read(response, write, None)

            def check(download: Download) -> Download:
                if expected is not None and download.length != expected:
                    raise DownloadError(
                        f"the upstream sent {download.length} of {counted(expected, 'byte')} of {url}")
                return download

            return d.addCallback(check)

        return self._get(url, {"Accept-Encoding": "identity"}).addCallback(got)


class _Discard(Protocol):
    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason) -> None:
        pass
