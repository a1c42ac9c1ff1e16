"""
pypid's Site: access logging through twisted.logger, no tracebacks, and
request bodies never parsed by Twisted. A body is taken only as small as it
must be: an upload (known from its head, by a user allowed to upload: see
L{pypid.web.upload.LegacyUpload.take_body}) goes straight to the store's
staging area as it arrives, up to C{--max-upload-size}; any other body is
kept in memory, at most L{SMALL_BODY} bytes. Past either, 413.
"""

from __future__ import annotations

import io
import time
from typing import IO, TYPE_CHECKING, Optional
from urllib.parse import parse_qs

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource

from pypid.web.errors import (
    INTERNAL_ERROR,
    HTTPError,
    NotAnUpload,
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
from pypid.web.send import PAGE_CHUNK, bytes_sender
from pypid.web.forwarded import ForwardedRequestMixin
from pypid.ops.metrics import Metrics
from pypid.web.metricspage import record_request

if TYPE_CHECKING:
    from pypid.web.fast import FastPath
    from pypid.web.upload import UploadBody

_log = Logger()

#: The largest body of a request that is not an upload (XML-RPC, a
#: urlencoded remove_pkg), kept in memory: twice what XML-RPC takes
#: (L{pypid.web.xmlrpc.MAX_BODY}), so that it answers a body a little over
#: its limit with its own fault.
SMALL_BODY = 128 * 1024
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


def _small_only(size: int) -> str:
    return (f"Request Entity Too Large: {counted(size, 'byte')}; a body over {counted(SMALL_BODY, 'byte')} "
            "is taken only as an upload (a multipart/form-data POST to / or /legacy/ by a user allowed "
            "to upload).")


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
    whole into memory); and whose body is taken as the Site's rules say:
    an upload's streamed to its L{pypid.web.upload.UploadBody} once its head
    is accepted (the connection paused meanwhile), any other kept in
    memory, at most L{SMALL_BODY}; refused with 413 past the Site's
    C{max_body_size}, at once when Content-Length says so, else as soon as
    the chunks do.
    """

    # Twisted's Request declares content and args None (set before use), and its channel an HTTPChannel.
    content: IO[bytes] | _Discard  # type: ignore[assignment]
    args: dict[bytes, list[bytes]]  # type: ignore[assignment]
    channel: PypidChannel
    #: Where an upload's body goes (L{pypid.web.upload.UploadBody}).
    upload_body: Optional[UploadBody] = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.monotonic()
        self._body_refused = False
        self._body_received = 0
        #: An upload waits for its head to be accepted: what arrives meanwhile.
        self._pending: Optional[list[bytes]] = None
        self._held_request: Optional[tuple] = None
        self._continue = False

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
        site = getattr(self.channel, "site", None)
        take = getattr(site, "take_body", None)
        decision = None
        if take is not None:
            decision = take(self, getattr(self.channel, "_command", b""), getattr(self.channel, "_path", b""),
                            length)
        if decision is None:
            if length is not None and length > SMALL_BODY:
                self._refuse_body(_small_only(length), upload=False)
                return
            super().gotLength(length)
            return
        if isinstance(decision, HTTPError):
            # Known from the head alone (uploads off, no credentials): the
            # body is never read.
            self._refuse_body(decision.message, decision.code, decision.headers,
                              upload=not isinstance(decision, NotAnUpload))
            return
        # An upload: nothing of it is read until its head is accepted (the
        # password checked in its pool, room made in the store).
        self.content = io.BytesIO()
        self._pending = []
        expect = self.requestHeaders.getRawHeaders(b"expect") or [b""]
        self._continue = expect[0].lower() == b"100-continue"
        # "100 Continue" only once the upload is accepted.
        self.requestHeaders.removeHeader(b"expect")
        self.pause_body()
        decision.addCallbacks(self._admitted, self._not_admitted)

    def pause_body(self) -> None:
        """Read no more of the body until L{resume_body} (each pause needs its resume)."""
        pause = getattr(self.channel, "pause_body", None)
        if pause is not None:
            pause()

    def resume_body(self) -> None:
        resume = getattr(self.channel, "resume_body", None)
        if resume is not None:
            resume()

    def _admitted(self, body) -> None:
        pending, self._pending = self._pending or [], None
        if self._body_refused or self._disconnected:
            body.abort()
            body.release()
            return
        self.upload_body = body
        self.notifyFinish().addBoth(lambda _: body.release())
        if self._continue and self._held_request is None:
            self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        for data in pending:
            self._take(data)
        self.resume_body()
        self._go_on()

    def _not_admitted(self, failure) -> None:
        self._pending = None
        if failure.check(HTTPError):
            error = failure.value
        else:
            _log.failure("accepting an upload failed", failure)
            error = HTTPError(http.INTERNAL_SERVER_ERROR, INTERNAL_ERROR)
        if not self._disconnected and not self._body_refused:
            self._refuse_body(error.message, error.code, error.headers)
        self.resume_body()
        self._go_on()

    def _go_on(self) -> None:
        """A request whose whole body came while its head was being accepted goes on now."""
        held, self._held_request = self._held_request, None
        if held is not None and not self._disconnected:
            self.requestReceived(*held)

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
        if self._pending is not None:
            self._pending.append(data)
            return
        if self.upload_body is not None:
            self._take(data)
            return
        if self._body_received > SMALL_BODY:
            self._refuse_body(_small_only(self._body_received), upload=False)
            return
        self.content.write(data)

    def _take(self, data: bytes) -> None:
        body = self.upload_body
        if body is None:
            # Refused by a chunk before it (of those that came while the head
            # was accepted): the rest of the body is dropped.
            return
        refused = body.feed(data)
        if refused is not None:
            self._refuse_body(refused.message, refused.code, refused.headers)

    def connectionLost(self, reason) -> None:
        body = self.upload_body
        if body is not None and not self.finished:
            # Cut short: nothing of it stays (a no-op once it was whole).
            body.abort()
        super().connectionLost(reason)

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
        body, self.upload_body = self.upload_body, None
        if body is not None:
            body.abort()
            body.release()
        answered = getattr(self.channel, "body_answered", None)
        if answered is not None:
            answered()
        transport = self.channel.transport
        head_only = getattr(self.channel, "_command", b"") == b"HEAD"
        transport.write(raw_response(HTTPError(code, message, headers), head_only))
        site = getattr(self.channel, "site", None)
        if site is not None:
            site.body_refused(self, message, code, upload)
        reactor = getattr(site, "reactor", None)
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
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
                bytes_sender(self, body).start()
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
        if self._pending is not None:
            # The whole body came while the upload's head was being
            # accepted: it goes on once that is decided.
            self._held_request = (command, path, version)
            return
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
    #: The fast path for the commonest GETs (L{pypid.web.fast}; set by
    #: C{makeService} when reads are open), which the channel tries first.
    fast: Optional[FastPath] = None

    #: Overflow connections (answered 503) read their request head only
    #: while there are fewer than this many; past it they are answered at once.
    OVERFLOW_READING = 64

    def __init__(
        self,
        resource,
        *args,
        reactor=None,
        max_body_size: Optional[int] = None,
        max_connections: Optional[int] = None,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        metrics: Optional[Metrics] = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("timeout", idle_timeout)
        super().__init__(resource, *args, reactor=reactor, **kwargs)
        #: Where requests (and uploads refused unread) are counted: the
        #: process's L{Metrics}, or one of its own.
        self.metrics = metrics if metrics is not None else Metrics()
        #: Seconds for a whole request head (L{pypid.web.channel}).
        self.header_timeout = header_timeout
        #: At most this many connections at once (None: no limit).
        self.connection_limit = ConnectionLimit(max_connections) if max_connections else None
        self._overflowing = 0
        self.head_timeouts = Throttled("closed a connection whose request head did not arrive within {seconds} s")
        self.stalled_answers = Throttled("cut a connection that read none of its answer for {seconds} s")
        #: Largest request body accepted (None: no limit).
        self.max_body_size = max_body_size
        self.slow_bodies = Throttled("cut a connection whose request body came at under {rate} per second")

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
        """Bodies that are not uploads: in memory (at most L{SMALL_BODY})."""
        return io.BytesIO()

    def take_body(self, request, method: bytes, uri: bytes, length: Optional[int]):
        """
        Who takes a request's body, asked with its head: the root
        resource's C{take_body} decides (see
        L{pypid.web.upload.LegacyUpload.take_body}); L{None}: the Site, in
        memory.
        """
        take = getattr(self.resource, "take_body", None)
        return take(request, method, uri, length) if take is not None else None

    def body_refused(self, request, message: str, code: int = 413, upload: bool = True) -> None:
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
        self.metrics.uploads.inc(result={413: "too_large", 401: "unauthorized", 403: "forbidden"}.get(code, "error"))

    def log(self, request) -> None:
        seconds = time.monotonic() - getattr(request, "started", time.monotonic())
        if self.record_metrics:
            record_request(self.metrics, request, seconds)
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
