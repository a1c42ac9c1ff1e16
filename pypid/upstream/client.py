"""
The treq side of the fallback: one HTTP client over one persistent
connection pool, with timeouts on connecting, on the response headers and
on every pause in a body, and TLS verified against the system's trust store
(or an operator's CA file).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
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


def _producer(protocol: Protocol) -> IPushProducer:
    """The transport of a response body's protocol: a push producer (Twisted's contract)."""
    return cast(IPushProducer, protocol.transport)

USER_AGENT = f"pypid/{__version__} (upstream fallback)"


class PageResponse(NamedTuple):
    code: int
    body: bytes
    content_type: str
    etag: Optional[str]
    last_modified: Optional[str]
    #: The URL the page came from after redirects (links resolve against it).
    url: str
    #: Whether the body was cut at the C{limit} the page was fetched with.
    truncated: bool = False


class Head(NamedTuple):
    """What a C{HEAD} of a file told."""

    code: int
    #: Its C{Content-Length}, if given.
    length: Optional[int]
    #: Whether it says C{Accept-Ranges: bytes}.
    ranges: bool
    content_type: Optional[str]
    etag: Optional[str]
    last_modified: Optional[str]


class RangeResponse(NamedTuple):
    """What a C{GET} with C{Range} gave."""

    #: 206 (the part is in C{body}), 200 (the upstream ignores ranges: no
    #: body was read), 416, or another status.
    code: int
    body: bytes
    #: The whole file's size, from C{Content-Range} (206, 416) or C{Content-Length} (200).
    total: Optional[int]


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


class _Enough(Exception):
    """Raised by a writer that has all it wants: the transfer stops there."""


def load_ca_bundle(path: str) -> list:
    """
    Every certificate of a PEM file (a CA bundle such as the system's, or
    one CA), as L{twisted.internet.ssl.Certificate}s.

    @raise OSError: the file cannot be read.
    @raise ValueError: it holds no PEM certificate, or one that cannot be read.
    """
    from twisted.internet.ssl import Certificate

    with open(path, "rb") as f:
        data = f.read()
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    certificates: list[Certificate] = []
    start = data.find(begin)
    while start != -1:
        stop = data.find(end, start)
        if stop == -1:
            raise ValueError(f"certificate {len(certificates) + 1} has no END line")
        try:
            certificates.append(Certificate.loadPEM(data[start:stop + len(end)] + b"\n"))
        except Exception as e:
            raise ValueError(f"certificate {len(certificates) + 1} cannot be read ({e})")
        start = data.find(begin, stop)
    if not certificates:
        raise ValueError("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return certificates


def _content_range_total(value: Optional[str]) -> Optional[int]:
    """The complete length in C{Content-Range: bytes a-b/N} (or C{bytes */N})."""
    if not value:
        return None
    total = value.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


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
            _producer(self).stopProducing()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
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
        max_connections: int = 32,
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
            from twisted.internet.ssl import trustRootFromCertificates

            # Every certificate of the file: a bundle is what operators behind
            # an intercepting proxy have (checked at start: it loads).
            policy = BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(load_ca_bundle(self.ca_file)))
        agent = Agent(self.reactor, contextFactory=policy, connectTimeout=self.connect_timeout, pool=self.pool)
        self._client = treq.client.HTTPClient(agent)

    def stop(self) -> Deferred:
        pool, self.pool, self._client = self.pool, None, None
        if pool is None:
            from twisted.internet.defer import succeed

            return succeed(None)
        return pool.closeCachedConnections()

    def _get(self, url: str, headers: dict, method: str = "GET") -> Deferred:
        if self._client is None:
            self.start()
        headers = {"User-Agent": USER_AGENT, **headers}
        return self._client.request(
            method, url, headers=headers, unbuffered=True, timeout=self.timeout, reactor=self.reactor
        )

    def _read(self, response, write, limit: Optional[int]) -> Deferred:
        reader = _BodyReader(write, self.reactor, self.timeout, limit)
        response.deliverBody(reader)
        return reader.finished

    def fetchPage(self, url: str, headers: dict, limit: Optional[int] = None) -> Deferred:
        def got(response):
            chunks: list[bytes] = []
            got_bytes = [0]
            truncated = [False]

            def write(data: bytes) -> None:
                if limit is not None and got_bytes[0] + len(data) >= limit:
                    chunks.append(data[: limit - got_bytes[0]])
                    truncated[0] = True
                    raise _Enough()
                got_bytes[0] += len(data)
                chunks.append(data)

            def done(download: Download) -> PageResponse:
                content_type = _header(response, "content-type") or ""
                if not download.framed and "json" not in content_type and not truncated[0]:
                    # A page cut off by a closed connection would silently
                    # lose links; JSON at least fails to parse.
                    raise DownloadError("the upstream page ended without framing; it may be cut off")
                final = response.request.absoluteURI.decode("ascii") if response.request else url
                return PageResponse(
                    response.code, b"".join(chunks), content_type,
                    _header(response, "etag"), _header(response, "last-modified"), final, truncated[0],
                )

            if response.code != 200:
                # Nothing of interest in an error body; drain a little of it.
                chunks_limit = 64 * 1024
            else:
                chunks_limit = self.max_page_size
            d = self._read(response, write, chunks_limit)
            if response.code != 200:
                d.addErrback(lambda _: Download(0, True))
            elif limit is not None:
                d.addErrback(lambda f: f.trap(_Enough) and Download(got_bytes[0], True))
            return d.addCallback(done)

        return self._get(url, headers).addCallback(got)

    def head(self, url: str) -> Deferred:
        def got(response) -> Head:
            response.deliverBody(_Discard())
            # (Twisted keeps a HEAD answer's Content-Length as a header.)
            length = _header(response, "content-length")
            if length is None and isinstance(response.length, int) and response.length:
                length = str(response.length)
            return Head(
                response.code,
                int(length) if length is not None and length.strip().isdigit() else None,
                (_header(response, "accept-ranges") or "").strip().lower() == "bytes",
                _header(response, "content-type"), _header(response, "etag"), _header(response, "last-modified"),
            )

        return self._get(url, {"Accept-Encoding": "identity"}, "HEAD").addCallback(got)

    def fetchRange(self, url: str, first: int, last: int) -> Deferred:
        def got(response):
            if response.code != 206:
                # The whole file (ranges not supported), 416 or an error:
                # nothing of its body is wanted.
                length = response.length if isinstance(response.length, int) else None
                response.deliverBody(_Stop())
                if response.code == 416:
                    total = _content_range_total(_header(response, "content-range"))
                else:
                    total = length if response.code == 200 else None
                return RangeResponse(response.code, b"", total)
            total = _content_range_total(_header(response, "content-range"))
            chunks: list[bytes] = []
            d = self._read(response, chunks.append, last - first + 1)

            def check(download: Download) -> RangeResponse:
                body = b"".join(chunks)
                if len(body) != last - first + 1 and (total is None or len(body) != total - first):
                    raise DownloadError(f"the upstream sent {len(body)} bytes for a range of {last - first + 1}")
                return RangeResponse(206, body, total)

            return d.addCallback(check)

        headers = {"Accept-Encoding": "identity", "Range": f"bytes={first}-{last}"}
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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        pass


class _Stop(_Discard):
    """Stops a body that is not wanted at once (the connection is not reused)."""

    def connectionMade(self) -> None:
        _producer(self).stopProducing()
