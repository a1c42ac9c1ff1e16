"""
pypid's HTTP/1.1 connections: how long each part of a request may take,
and how many connections are served at once.

A connection is in one of four phases:

  - C{idle}: waiting for a request's first byte (after connecting, or
    after an answer on a kept-alive connection), for at most the idle
    timeout;
  - C{head}: from that first byte, the request line and headers must all
    arrive within the header timeout; bytes trickling in do not extend it
    (a slowloris client sends a header line now and then to hold a
    connection for ever);
  - C{body}: a request body, with Twisted's own timeout (the idle timeout,
    counted again from every byte), and a minimum rate: after a grace of
    one idle timeout, a body must keep coming at L{MIN_BODY_RATE} bytes a
    second on average, or the connection is answered 408 and closed (a
    trickle cannot hold a connection, or an upload's room, for ever). The
    time pypid itself holds the body back (L{PypidChannel.pause_body}: a
    password being checked, a disk catching up) does not count;
  - C{answer}: pypid is answering. No timeout while pypid works, but an
    answer the client stops reading (the connection cannot take more) for
    the whole idle timeout is cut, so a stalled reader gives its memory
    and its descriptors back.

The L{ConnectionLimit} keeps the number of open connections under
C{--max-connections}: at the limit, a new connection takes the place of
the one that has been idle (or sending its head) the longest, so a crowd
of idle or trickling connections cannot keep real requests out; when
every connection is busy answering or receiving a body, the new one is
answered 503 with C{Retry-After}.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Optional

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

from pypid.counts import counted
from pypid.web.errors import HTTPError, raw_response

if TYPE_CHECKING:
    from twisted.web.server import Site

IDLE, HEAD, BODY, ANSWER = "idle", "head", "body", "answer"

#: Default seconds for a whole request head (request line and headers).
HEADER_TIMEOUT = 10
#: Default seconds a connection may wait for a request, or a client may
#: leave an answer unread.
IDLE_TIMEOUT = 60
#: Default connection limit (C{--max-connections}).
MAX_CONNECTIONS = 4096
#: Seconds a client over the limit is told to wait before it retries.
RETRY_AFTER = 5
#: The slowest a request body may come, on average, in bytes a second
#: (after a grace of one idle timeout).
MIN_BODY_RATE = 4 * 1024
#: Seconds between looks at a body's rate.
RATE_CHECK = 5.0

log = Logger()


class Throttled:
    """
    A warning logged at most once per C{every} seconds, with how many times
    it happened since the last line (an attack must not flood the log).
    """

    def __init__(self, text: str, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.text = text
        self.every = every
        self.clock = clock
        self._last: Optional[float] = None
        self._count = 0

    def __call__(self, **fields) -> None:
        self._count += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return
        log.warn(self.text + " ({times} since the last such line)",
                 times=counted(self._count, "time"), **fields)
        self._last, self._count = now, 0


class ConnectionLimit:
    """
    The open connections of a Site, in the order they became evictable
    (idle, or still sending their request head).
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        #: Every open channel (values unused; insertion order kept).
        self.open: dict = {}
        #: Channels that may be closed for a newcomer, oldest first.
        self.evictable: OrderedDict = OrderedDict()
        self.evicted = Throttled("connection limit ({limit}) reached: closed the connection idle the longest")
        self.refused = Throttled("connection limit ({limit}) reached and every connection busy: answered 503")

    def opened(self, channel) -> None:
        self.open[channel] = None

    def closed(self, channel) -> None:
        self.open.pop(channel, None)
        self.evictable.pop(channel, None)

    def phase(self, channel, phase: str) -> None:
        if phase in (IDLE, HEAD):
            if channel in self.open and channel not in self.evictable:
                self.evictable[channel] = None
        else:
            self.evictable.pop(channel, None)

    def admit(self) -> bool:
        """
        Whether a new connection may be served: there is room, or room was
        made by closing the connection idle the longest.
        """
        if len(self.open) < self.maximum:
            return True
        if self.evictable:
            victim, _ = self.evictable.popitem(last=False)
            self.open.pop(victim, None)
            self.evicted(limit=self.maximum)
            victim.evict()
            return True
        self.refused(limit=self.maximum)
        return False


class PypidChannel(http.HTTPChannel):
    """
    An HTTPChannel with the phases above. C{timeOut} (Twisted's idle
    timeout, from the Site) is the idle timeout; C{header_timeout} comes
    from the Site too.
    """

    #: Set by the Site that builds the channel, and the TCP connection it runs on.
    site: Site
    transport: ITCPTransport
    header_timeout: float = HEADER_TIMEOUT
    phase = IDLE
    _stalled = None
    _resumed = False
    _evicted = False
    #: The body: when it began, its bytes, and the time it was held back.
    _body_started = 0.0
    _body_bytes = 0
    _body_pauses = 0
    _paused_at = 0.0
    _paused_for = 0.0
    _rate_check = None
    _body_answered = False

    def _limit(self) -> Optional[ConnectionLimit]:
        return getattr(getattr(self, "site", None), "connection_limit", None)

    def _enter(self, phase: str) -> None:
        self.phase = phase
        limit = self._limit()
        if limit is not None:
            limit.phase(self, phase)

    def connectionMade(self) -> None:
        self.header_timeout = getattr(self.site, "header_timeout", self.header_timeout)
        limit = self._limit()
        if limit is not None:
            limit.opened(self)
        super().connectionMade()
        self._enter(IDLE)

    def dataReceived(self, data: bytes) -> None:
        if self.phase == IDLE and data and not self._handlingRequest:
            fast = getattr(self.site, "fast", None)
            if fast is not None and not self._buffer and fast.answer(self, data):
                # Answered whole by the fast path (pypid.web.fast): idle
                # again, for a whole idle timeout from now.
                TimeoutMixin.resetTimeout(self)
                return
            # A request begins: its whole head is due within the header
            # timeout, however slowly its bytes come.
            self._enter(HEAD)
            self.setTimeout(self.header_timeout)
        elif self.phase == BODY:
            self._body_bytes += len(data)
            if self._rate_check is None and not self._body_answered:
                # A body is coming: its rate is watched from its first
                # byte (requests without one pay for no clock and no timer).
                self._body_started = self._now()
                self._rate_check = self.callLater(min(RATE_CHECK, self._idle()), self._check_rate)
        super().dataReceived(data)

    def _now(self) -> float:
        clock = getattr(getattr(self, "site", None), "reactor", None)
        return clock.seconds() if clock is not None else time.monotonic()

    def pause_body(self) -> None:
        """
        Read no more of the request body (until as many L{resume_body}):
        pypid holds it back, and that time is not the client's.
        """
        self._body_pauses += 1
        if self._body_pauses == 1:
            self._paused_at = self._now()
            if self.phase == BODY:
                self._networkProducer.pauseProducing()

    def resume_body(self) -> None:
        if self._body_pauses <= 0:
            return
        self._body_pauses -= 1
        if self._body_pauses == 0:
            self._paused_for += self._now() - self._paused_at
            if self.phase == BODY:
                self._networkProducer.resumeProducing()
                # Held back: the idle timeout starts again.
                super().resetTimeout()

    def _held_for(self, now: float) -> float:
        """Seconds of the body pypid held back since it began."""
        held = self._paused_for + (now - self._paused_at if self._body_pauses else 0.0)
        return min(held, now - self._body_started)

    def _check_rate(self) -> None:
        self._rate_check = None
        if self.phase != BODY or self._body_answered or getattr(self.transport, "disconnecting", False):
            return
        now = self._now()
        grace = self._idle()
        active = now - self._body_started - self._held_for(now)
        if active > grace and self._body_bytes < MIN_BODY_RATE * (active - grace):
            slow = getattr(self.site, "slow_bodies", None)
            if slow is not None:
                slow(rate=counted(MIN_BODY_RATE, "byte"))
            message = (f"Request Timeout: the request body came at under {counted(MIN_BODY_RATE, 'byte')} "
                       f"a second ({counted(self._body_bytes, 'byte')} in {active:.0f} seconds).")
            self.setTimeout(None)
            self.transport.write(raw_response(HTTPError(http.REQUEST_TIMEOUT, message)))
            self._close_soon()
            return
        self._rate_check = self.callLater(min(RATE_CHECK, grace), self._check_rate)

    def body_answered(self) -> None:
        """The request was answered before its body was all here (a refusal): its rate no longer matters."""
        self._body_answered = True
        self._stop_rate_check()

    def _stop_rate_check(self) -> None:
        check, self._rate_check = self._rate_check, None
        if check is not None and check.active():
            check.cancel()

    def resetTimeout(self) -> None:
        # Bytes restart the clock only in a body (Twisted's own rule);
        # waiting for a request or for its head, a trickle changes nothing.
        if self.phase == BODY:
            super().resetTimeout()

    def allHeadersReceived(self) -> None:
        self._enter(BODY)
        self.setTimeout(self._idle())
        self._body_bytes = 0
        self._paused_for = 0.0
        self._body_answered = False
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._enter(ANSWER)
        self._stop_rate_check()
        # Pauses of the body are over with it (Twisted resumes reading
        # once the answer is done).
        self._body_pauses = 0
        super().allContentReceived()

    def requestDone(self, request) -> None:
        self._not_stalled()
        if self.persistent:
            # Before super(): it may go on with a pipelined request at once.
            self._enter(IDLE)
        super().requestDone(request)

    def timeoutConnection(self) -> None:
        if self.phase == BODY and self._body_pauses:
            # pypid is holding the body back, not the client.
            self.setTimeout(self._idle())
            return
        self._stop_rate_check()
        if self.phase == HEAD:
            timeouts = getattr(self.site, "head_timeouts", None)
            if timeouts is not None:
                timeouts(seconds=f"{self.header_timeout:g}")
            message = (f"Request Timeout: the request head did not arrive within "
                       f"{self.header_timeout:g} seconds.")
            self.transport.write(raw_response(HTTPError(http.REQUEST_TIMEOUT, message)))
            self._close_soon()
        elif self.phase == IDLE:
            # A kept-alive connection nobody used: closed without a word.
            self._close_soon()
        else:
            super().timeoutConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """A malformed request head: Twisted's bare 400, with a reason, and 431 for a too large one."""
        if self._receivedHeaderSize > self.totalHeadersSize:
            error = HTTPError(431, f"Request Header Fields Too Large: the request head is over "
                                   f"{self.totalHeadersSize} bytes.")
        else:
            error = HTTPError(http.BAD_REQUEST, "Bad Request: a malformed request line, header or length.")
        self.transport.write(raw_response(error))
        self.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """One request line or header longer than the whole head may be."""
        self._receivedHeaderSize = self.totalHeadersSize + 1
        self._respondToBadRequestAndDisconnect()

    def _close_soon(self) -> None:
        """Close now; cut it if the client does not let it close (as Twisted's timeout does)."""
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self.phase == ANSWER and self._stalled is None:
            # The client takes no more of the answer: if it takes none for
            # a whole idle timeout, the connection is cut. (One timer per
            # stall, not per pause: downloads pause after every chunk.)
            self._resumed = False
            self._stalled = self.callLater(self._idle(), self._check_stall)

    def resumeProducing(self) -> None:
        self._resumed = True
        super().resumeProducing()

    def _idle(self) -> float:
        return getattr(self.site, "timeOut", None) or IDLE_TIMEOUT

    def _check_stall(self) -> None:
        self._stalled = None
        if self.phase != ANSWER or not self._waitingForTransport:
            return
        if self._resumed:
            # It took some since: look again one idle timeout from now.
            self._resumed = False
            self._stalled = self.callLater(self._idle(), self._check_stall)
            return
        stalls = getattr(self.site, "stalled_answers", None)
        if stalls is not None:
            stalls(seconds=f"{self._idle():g}")
        self.transport.abortConnection()

    def _not_stalled(self) -> None:
        stalled, self._stalled = self._stalled, None
        if stalled is not None and stalled.active():
            stalled.cancel()

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""
        self._evicted = True
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._not_stalled()
        self._stop_rate_check()
        limit = self._limit()
        if limit is not None:
            limit.closed(self)
        super().connectionLost(reason)


class Overflow(Protocol):
    """
    A connection over the limit: its request head is read (so that closing
    does not reset the connection before the client reads the answer), then
    503 with C{Retry-After}, and closed.
    """

    transport: ITCPTransport

    #: Read at most this much of the head, this long, before answering.
    HEAD_LIMIT = 16 * 1024
    WAIT = 2.0

    def __init__(self, clock, wait: float = WAIT, on_lost: Callable[[], None] = lambda: None,
                 retry_after: int = RETRY_AFTER) -> None:
        self.clock = clock
        self.wait = wait
        self.on_lost = on_lost
        self.retry_after = retry_after
        self._seen = b""
        self._received = 0
        self._timer = None
        self._done = False

    def connectionMade(self) -> None:
        if self.wait > 0:
            self._timer = self.clock.callLater(self.wait, self._answer)
        else:
            self._answer()

    def dataReceived(self, data: bytes) -> None:
        self._received += len(data)
        self._seen = (self._seen + data)[-4:]
        if b"\r\n\r\n" in self._seen or self._received >= self.HEAD_LIMIT:
            self._answer()

    def _answer(self) -> None:
        if self._done:
            return
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        message = "Service Unavailable: this server has as many connections as it serves; retry soon."
        self.transport.write(raw_response(HTTPError(
            http.SERVICE_UNAVAILABLE, message, [(b"retry-after", b"%d" % self.retry_after)])))
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.on_lost()


#: Open files pypid needs besides its connections (listening sockets, logs,
#: the watcher, the state cache, the upstream pool, threads' files).
RESERVED_FILES = 128


def files_needed(connections: int) -> int:
    """
    Open files for C{connections} connections: each may hold its socket
    and the file it sends.
    """
    return 2 * connections + RESERVED_FILES


def connections_for(files: int) -> int:
    """The most connections C{files} open files can serve (L{files_needed}'s inverse)."""
    return max(1, (files - RESERVED_FILES) // 2)


def raise_open_files(needed: int, resource_module=None) -> Optional[tuple[int, int]]:
    """
    Raise this process's soft limit of open files to C{needed} (at most
    the hard limit, which only root may raise). Returns (old, new) when it
    changed, else None.
    """
    if resource_module is None:
        import resource as resource_module
    soft, hard = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    if soft == resource_module.RLIM_INFINITY or soft >= needed:
        return None
    new = needed if hard == resource_module.RLIM_INFINITY else min(needed, hard)
    if new <= soft:
        return None
    resource_module.setrlimit(resource_module.RLIMIT_NOFILE, (new, hard))
    return soft, new
