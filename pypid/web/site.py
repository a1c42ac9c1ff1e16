"""
pypid's Site: access logging through twisted.logger, no tracebacks, and
request bodies kept off the heap: spooled to a temporary file next to the
package directory, never parsed by Twisted, and cut off past a size limit.
"""

from __future__ import annotations

import io
import tempfile
import time
from typing import Optional
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource

from pypid.web.errors import (
    HTTPError,
    error_page,
    internal_error,
    method_not_allowed,
    raw_response,
)

from pypid.counts import counted
from pypid.feed.audit import AuditEvent, AuditLog
from pypid.ops.logs import AccessEntry, access_logger, emit_access
from pypid.web.channel import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    ConnectionLimit,
    Overflow,
    PypidChannel,
    Throttled,
    files_needed,
    raise_open_files,
)
from pypid.web.proxy import TrustedProxies
from pypid.web.resource import allowed_methods
from pypid.web.send import PAGE_CHUNK, BytesSender
from pypid.web.forwarded import ForwardedRequestMixin
from pypid.ops.metrics import UPLOADS
from pypid.web.metricspage import record_request

_log = Logger()

#: Bodies smaller than this stay in memory (Twisted's own threshold).
MEMORY_BODY = 100_000
#: After refusing an over-large body, keep reading (and dropping) it this
#: long so the client can see the 413 before the connection closes.
LINGER_SECONDS = 5.0


#: The methods this server answers somewhere (the C{Allow} of C{OPTIONS *}).
SERVER_METHODS = (b"GET", b"HEAD", b"POST")


def _no_head(resrc) -> bool:
    """
    Whether a Twisted resource's default C{HEAD} would fail: it calls a
    C{render_GET} the resource does not have.
    """
    return (
        isinstance(resrc, Resource)
        and type(resrc).render is Resource.render
        and getattr(resrc, "render_GET", None) is None
        and getattr(type(resrc), "render_HEAD", None) is Resource.render_HEAD
    )


class _Discard:
    """Where the rest of a refused body goes."""

    def write(self, data: bytes) -> None:
        pass

    def seek(self, *args) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, *args) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _remembered(get):
    """C{get}, called once: its first answer is kept."""
    kept: list = []

    def remembered():
        if not kept:
            kept.append(get())
        return kept[0]

    return remembered


class PypidRequest(ForwardedRequestMixin, server.Request):
    """
    A request that remembers when it started, for the access log; whose
    body is never parsed into C{args} (Twisted would read a multipart body
    whole into memory; the upload resource streams it instead); and whose
    body is refused with 413 once it exceeds the Site's C{max_body_size}:
    at once when Content-Length says so, else as soon as the chunks do.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self._body_refused = False
        self._body_received = 0

    def _limit(self) -> Optional[int]:
        return getattr(getattr(self.channel, "site", None), "max_body_size", None)

    def gotLength(self, length) -> None:
        bad = self._bad_head()
        if bad is not None:
            self._refuse_body(bad, http.BAD_REQUEST, upload=False)
            return
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self._refuse_body(
                f"Request Entity Too Large: {counted(length, 'byte')}, over this server's limit of "
                f"{counted(limit, 'byte')} (--max-upload-size)."
            )
            return
        # An answer known from the headers alone (an upload without the
        # credentials it needs) is given before the body is read.
        early = getattr(getattr(self.channel, "site", None), "early_answer", None)
        if early is not None:
            answer = early(
                getattr(self.channel, "_command", b""), getattr(self.channel, "_path", b""), self.requestHeaders
            )
            if answer is not None:
                self._refuse_body(answer[1], answer[0], answer[2])
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._body_refused:
            return
        self._body_received += len(data)
        limit = self._limit()
        if limit is not None and self._body_received > limit:
            self._refuse_body(
                f"Request Entity Too Large: the body is over this server's limit of "
                f"{counted(limit, 'byte')} (--max-upload-size)."
            )
            return
        self.content.write(data)

    def _refuse_body(self, message: str, code: int = 413, headers: tuple = (), upload: bool = True) -> None:
        """
        Answer now (413 by default) with L{raw_response}'s bytes, drop the
        body, and close the connection soon. C{upload}: the refusal is of
        an upload (the audit log and the upload metrics count it).
        """
        self._body_refused = True
        # No "100 Continue" after our final answer.
        self.requestHeaders.removeHeader(b"expect")
        old, self.content = getattr(self, "content", None), _Discard()
        if old is not None:
            old.close()
        transport = self.channel.transport
        head_only = getattr(self.channel, "_command", b"") == b"HEAD"
        transport.write(raw_response(HTTPError(code, message, headers), head_only))
        site = getattr(self.channel, "site", None)
        if site is not None:
            site.bodyRefused(self, message, code, upload)
        reactor = getattr(site, "reactor", None)
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self._linger = reactor.callLater(LINGER_SECONDS, transport.loseConnection)

    def _bad_head(self) -> Optional[str]:
        """
        Why the request head must be refused, or None: an HTTP/1.1 request
        names its one host in one C{Host} header (RFC 9112, 3.2), and no
        request has two.
        """
        hosts = self.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1 or any(b"," in host for host in hosts):
            return "Bad Request: more than one Host header."
        if not hosts and getattr(self.channel, "_version", b"") == b"HTTP/1.1":
            return "Bad Request: an HTTP/1.1 request needs a Host header."
        return None

    def render(self, resrc) -> None:
        """
        Ask C{resrc} to render itself; what it raises or answers wrongly is
        answered by L{pypid.web.errors} (405 with C{Allow} for a method it
        has no answer for, never Twisted's 501 or HTML pages).
        """
        try:
            if self.method == b"HEAD" and _no_head(resrc):
                raise UnsupportedMethod(allowed_methods(resrc))
            body = resrc.render(self)
        except UnsupportedMethod as e:
            allowed = list(e.allowedMethods)
            if b"GET" in allowed and b"HEAD" not in allowed:
                allowed.append(b"HEAD")
            if b"GET" not in allowed and b"HEAD" in allowed:
                allowed.remove(b"HEAD")
            body = error_page(self, method_not_allowed(allowed))
        except HTTPError as e:
            body = error_page(self, e)
        except Exception:
            body = internal_error(self, Failure())
        if body is server.NOT_DONE_YET:
            return
        if not isinstance(body, bytes):
            body = internal_error(self, Failure(TypeError(f"{resrc!r} answered {type(body).__name__}")))
            if body is server.NOT_DONE_YET:
                return
        if self.method == b"HEAD":
            if body:
                self.setHeader(b"content-length", b"%d" % len(body))
            self.write(b"")
        else:
            self.setHeader(b"content-length", b"%d" % len(body))
            if len(body) > PAGE_CHUNK:
                # Written as the client takes it (it finishes the request).
                BytesSender(self, body).start()
                return
            self.write(body)
        self.finish()

    def processingFailed(self, reason):
        """Anything that escaped rendering: logged, and a plain 500 (never Twisted's HTML page)."""
        if self.finished:
            _log.failure("request {uri} failed after its answer", reason, uri=self.uri)
            return reason
        body = internal_error(self, reason)
        if body is not server.NOT_DONE_YET:
            if body:
                self.write(body)
            self.finish()
        return reason

    def _handleStar(self) -> None:
        """C{OPTIONS *}: 405 like OPTIONS anywhere; C{*} with any other method is malformed."""
        if self.method == b"OPTIONS":
            error = method_not_allowed(SERVER_METHODS)
        else:
            error = HTTPError(http.BAD_REQUEST, "Bad Request: the target * is for OPTIONS only.")
        body = error_page(self, error)
        if body:
            self.write(body)
        self.finish()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._body_refused:
            # The 413 is out; the whole body has been dropped: close.
            if self._linger.active():
                self._linger.cancel()
            self.channel.transport.loseConnection()
            return
        # What server.Request.requestReceived does, minus the parse of
        # form bodies into args (22.4: cgi.parse_multipart; 24+: the email
        # package on the whole body in memory). Query arguments are kept.
        self.content.seek(0, 0)
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path, sep, query = path.partition(b"?")
        if sep:
            self.args = parse_qs(query, keep_blank_values=True)
        self.process()


class PypidSite(server.Site):
    """
    The Site serving pypid's resource tree. Tracebacks never reach clients;
    each finished request is one L{AccessEntry} for the C{access_sink}.
    """

    displayTracebacks = False
    noisy = False
    requestFactory = PypidRequest
    #: Peers whose X-Forwarded-* headers are believed (C{--trusted-proxy};
    #: the request's proxy handling is L{ForwardedRequestMixin}).
    trusted_proxies = TrustedProxies()
    #: Count requests for /metrics (off when nothing can read them).
    record_metrics = True
    #: Log one line per request (off with --no-access-log).
    access_log = True
    #: Where access entries go (L{pypid.ops.logs.LoggingService.access} sends
    #: them the cheap way when it can).
    access_sink = staticmethod(emit_access)
    #: Where bodies refused unread are recorded (the upload audit log; set by
    #: C{makeService}).
    audit: Optional[AuditLog] = None

    #: Overflow connections (answered 503) read their request head only
    #: while there are fewer than this many; past it they are answered at once.
    OVERFLOW_READING = 64

    def __init__(
        self,
        resource,
        *args,
        reactor=None,
        max_body_size: Optional[int] = None,
        spool_dir: Optional[str] = None,
        max_connections: Optional[int] = None,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        **kwargs,
    ) -> None:
        kwargs.setdefault("timeout", idle_timeout)
        super().__init__(resource, *args, reactor=reactor, **kwargs)
        #: Seconds for a whole request head (L{pypid.web.channel}).
        self.header_timeout = header_timeout
        #: At most this many connections at once (None: no limit).
        self.connection_limit = ConnectionLimit(max_connections) if max_connections else None
        self._overflowing = 0
        self.head_timeouts = Throttled("closed a connection whose request head did not arrive within {seconds} s")
        self.stalled_answers = Throttled("cut a connection that read none of its answer for {seconds} s")
        #: Largest request body accepted (None: no limit).
        self.max_body_size = max_body_size
        #: Where large bodies are spooled (None: the system's temp directory).
        #: Uploads give a hidden directory next to the first package
        #: directory, so the file lands there by rename.
        self.spool_dir = spool_dir

    def startFactory(self) -> None:
        super().startFactory()
        if self.connection_limit is not None:
            maximum = self.connection_limit.maximum
            try:
                raised = raise_open_files(files_needed(maximum))
            except (OSError, ValueError) as e:
                _log.warn("could not raise the open-file limit for {maximum} connections: {error}",
                          maximum=maximum, error=e)
            else:
                if raised is not None:
                    _log.info("open-file limit raised from {old} to {new} for --max-connections {maximum}",
                              old=raised[0], new=raised[1], maximum=maximum)

    def protocol(self):
        """pypid's channel (L{PypidChannel}) in Twisted's HTTP/1.1-or-2 wrapper."""
        return _GenericHTTPChannelProtocol(PypidChannel())

    def buildProtocol(self, addr):
        if self.connection_limit is not None and not self.connection_limit.admit():
            return self._overflow()
        protocol = super().buildProtocol(addr)
        channel = getattr(protocol, "_channel", None)
        if channel is not None and hasattr(channel, "getHost"):
            # Twisted asks the channel for its local address on every
            # request (a getsockname() call and an address object); it
            # cannot change while the connection lives.
            channel.getHost = _remembered(channel.getHost)
        return protocol

    def _overflow(self) -> Overflow:
        """A connection over the limit, answered 503 (at once when many are)."""
        self._overflowing += 1

        def gone() -> None:
            self._overflowing -= 1

        wait = Overflow.WAIT if self._overflowing <= self.OVERFLOW_READING else 0
        return Overflow(self.reactor, wait, gone)

    def getContentFile(self, length: Optional[int]):
        """Small bodies in memory; others in an anonymous temporary file."""
        if length is not None and length < MEMORY_BODY:
            return io.BytesIO()
        return tempfile.TemporaryFile(dir=self.spool_dir)

    def early_answer(self, method: bytes, uri: bytes, headers):
        """
        None, or (code, message, headers) to answer a request with before
        its body is read: the root resource's C{early_answer} decides (an
        upload without the credentials it needs).
        """
        answer = getattr(self.resource, "early_answer", None)
        return answer(method, uri, headers) if answer is not None else None

    def bodyRefused(self, request, message: str, code: int = 413, upload: bool = True) -> None:
        client = getattr(request.getClientAddress(), "host", "-")
        if not upload:
            access_logger.warn("{client} request refused with {code}: {message}",
                               client=client, code=code, message=message)
            return
        access_logger.warn(
            "{client} request body refused with {code}: {message}", client=client, code=code, message=message
        )
        # Bodies refused unread are uploads: the refusal goes to the audit log.
        if self.audit is not None:
            self.audit.record(AuditEvent("upload", "refused", client=client, status=code, message=message))
        UPLOADS.inc(result={413: "too_large", 401: "unauthorized", 403: "forbidden"}.get(code, "error"))

    def log(self, request) -> None:
        seconds = time.monotonic() - getattr(request, "started", time.monotonic())
        if self.record_metrics:
            record_request(request, seconds)
        if not self.access_log:
            return
        self.access_sink(AccessEntry(
            getattr(request.getClientAddress(), "host", "-"),
            request.method.decode("latin-1"),
            request.uri.decode("latin-1"),
            request.clientproto.decode("latin-1"),
            request.code,
            request.sentLength,
            seconds,
            (request.getHeader(b"user-agent") or b"-").decode("latin-1"),
            getattr(request, "representation", None),
        ))
