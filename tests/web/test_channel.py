"""
pypid.web.channel: the phases of a connection and their timeouts, the
connection limit and the 503 beyond it, driven on a Clock.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET

from pypid.web.channel import (
    ANSWER,
    IDLE,
    MIN_BODY_RATE,
    ConnectionLimit,
    Overflow,
    Throttled,
    connections_for,
    files_needed,
    raise_open_files,
)
from pypid.web.errors import HTTPError
from pypid.web.resource import PlainResource
from pypid.web.site import PypidSite


class Answer(PlainResource):
    """C{/}: answered at once; C{/held}: answered when the test says."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list = []

    def render_GET(self, request):
        if request.path == b"/held":
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"

    def render_POST(self, request):
        return b"posted"


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class _Sink:
    """A body taken as an upload's and dropped (what the channel's rules see is the same)."""

    def addCallbacks(self, ok, failed):
        ok(self)

    def feed(self, data):
        return None

    def release(self):
        pass

    def abort(self):
        pass


class ChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = Answer()
        self.site = PypidSite(self.resource, reactor=self.clock, header_timeout=10, idle_timeout=60,
                              max_connections=3)
        self.site.access_log = False
        self.site.record_metrics = False

    def connect(self):
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_idle_connection_closes_quietly(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_trickled_head_gets_408_within_the_header_timeout(self) -> None:
        """A header line every second does not extend the head's time."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        for i in range(9):
            self.clock.advance(1)
            protocol.dataReceived(b"X-Trickle-%d: 1\r\n" % i)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout"))

    def test_whole_request_is_answered_and_waits_idle_again(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(30)
        protocol.dataReceived(GET)
        self.assertIn(b"200 OK", transport.value())
        self.assertEqual(protocol._channel.phase, IDLE)
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_no_timeout_while_pypid_answers(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(protocol._channel.phase, ANSWER)
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        request = self.resource.held.pop()
        request.write(b"late")
        request.finish()
        self.assertIn(b"late", transport.value())

    def test_a_body_that_does_not_come_is_cut_after_the_idle_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_a_trickled_body_is_cut_past_the_grace(self) -> None:
        """
        A body that keeps trickling (a byte every 50 s restarts the idle
        timeout each time) is answered 408 once it has come at under the
        minimum rate for longer than the grace of one idle timeout.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(2):
            self.clock.advance(50)
            protocol.dataReceived(b"a")
        # The rate is measured from the body's first byte (t=50), after a grace of 60 s.
        self.assertFalse(transport.disconnecting)
        self.clock.advance(50)
        protocol.dataReceived(b"a")
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout: the request body came at under "),
                        transport.value())

    def test_a_body_at_the_minimum_rate_is_not_cut(self) -> None:
        """(The body held here is an upload's, which may be large: none of it stays in memory.)"""
        self.site.take_body = lambda request, method, uri, length: _Sink()
        size = MIN_BODY_RATE * 400
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(399):
            self.clock.advance(1)
            protocol.dataReceived(b"x" * MIN_BODY_RATE)
        self.assertFalse(transport.disconnecting)

    def test_chunks_held_after_a_refused_one_are_dropped(self) -> None:
        """
        An upload's chunks that came while its head was accepted are fed to
        its body once it is: when the body refuses one (507, the spool
        budget), the chunks after it are dropped, and the connection is
        read again (what else comes is dropped too, until it is closed).
        """
        fed: list[bytes] = []

        class Budgeted(_Sink):
            def feed(self, data):
                fed.append(data)
                return HTTPError(507, "Insufficient Storage: no room.") if len(fed) == 2 else None

        admitted: Deferred = Deferred()
        self.site.take_body = lambda request, method, uri, length: admitted
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              + b"3\r\nabc\r\n" * 4)
        self.assertEqual(transport.producerState, "paused")
        admitted.callback(Budgeted())
        self.assertEqual(fed, [b"abc", b"abc"])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 507 Insufficient Storage: no room."),
                        transport.value())
        self.assertEqual(transport.producerState, "producing")
        self.successResultOf(admitted)

    def test_time_held_back_by_pypid_is_not_the_clients(self) -> None:
        """While pypid holds the body back (a password check, a slow disk), neither clock runs against the client."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        channel = protocol._channel
        protocol.dataReceived(b"x" * 1000)
        channel.pause_body()
        self.assertEqual(transport.producerState, "paused")
        self.clock.advance(500)
        self.assertFalse(transport.disconnecting)
        channel.resume_body()
        self.assertEqual(transport.producerState, "producing")
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        # Then the client's own clock runs again.
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)

    def test_unread_answer_is_cut_after_the_idle_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        channel = protocol._channel
        channel.pauseProducing()  # the transport's buffer is full
        self.clock.advance(59)
        self.assertFalse(transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected, "aborted")

    def test_slow_reader_is_not_cut(self) -> None:
        """An answer taken slowly (the transport drains now and then) is never cut."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        channel = protocol._channel
        for _ in range(10):
            channel.pauseProducing()
            self.clock.advance(40)
            channel.resumeProducing()
        channel.pauseProducing()
        self.clock.advance(100)
        self.assertFalse(transport.disconnected)
        self.clock.advance(100)
        self.assertTrue(transport.disconnected)


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resource = Answer()
        self.site = PypidSite(self.resource, reactor=self.clock, max_connections=2)
        self.site.access_log = False
        self.site.record_metrics = False

    def connect(self):
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_newcomer_replaces_the_oldest_idle(self) -> None:
        first, first_transport = self.connect()
        self.clock.advance(1)
        second, second_transport = self.connect()
        third, third_transport = self.connect()
        self.assertTrue(first_transport.disconnected, "the oldest idle connection makes room")
        self.assertFalse(second_transport.disconnected)
        third.dataReceived(GET)
        self.assertIn(b"200 OK", third_transport.value())
        self.assertFalse(isinstance(third, Overflow))

    def test_busy_connections_are_kept_and_the_newcomer_gets_503(self) -> None:
        for _ in range(2):
            protocol, _ = self.connect()
            protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol, transport = self.connect()
        self.assertIsInstance(protocol, Overflow)
        protocol.dataReceived(GET)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 Service Unavailable"))
        self.assertIn(b"retry-after: 5\r\n", transport.value())
        self.assertTrue(transport.disconnecting)
        self.flushWarnings()

    def test_overflow_answers_after_a_while_without_a_head(self) -> None:
        for _ in range(2):
            protocol, _ = self.connect()
            protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.clock.advance(Overflow.WAIT)
        self.assertIn(b" 503 ", transport.value())

    def test_closed_connections_free_their_place(self) -> None:
        limit = ConnectionLimit(1)
        self.assertTrue(limit.admit())
        channel = object()
        limit.opened(channel)
        limit.phase(channel, ANSWER)
        self.assertFalse(limit.admit())
        limit.closed(channel)
        self.assertTrue(limit.admit())


class ThrottledTests(SynchronousTestCase):
    def test_one_line_per_period_with_the_count(self) -> None:
        now = [0.0]
        events: list = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        warn = Throttled("something {what}", every=10, clock=lambda: now[0])
        for _ in range(5):
            warn(what="odd")
        now[0] = 11
        warn(what="odd")
        lines = [e for e in events if e.get("log_format", "").startswith("something")]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1]["times"], "5 times")


class OpenFilesTests(SynchronousTestCase):
    def test_two_files_per_connection(self) -> None:
        self.assertEqual(connections_for(files_needed(1000)), 1000)

    def test_raise_soft_limit_up_to_the_hard_one(self) -> None:
        class Resource:
            RLIMIT_NOFILE = 7
            RLIM_INFINITY = -1

            def __init__(self, soft, hard):
                self.limits = (soft, hard)

            def getrlimit(self, which):
                return self.limits

            def setrlimit(self, which, limits):
                self.limits = limits

        fake = Resource(1024, 524288)
        self.assertEqual(raise_open_files(8320, fake), (1024, 8320))
        self.assertEqual(fake.limits, (8320, 524288))
        self.assertIsNone(raise_open_files(8000, fake))
        fake = Resource(1024, 2048)
        self.assertEqual(raise_open_files(8320, fake), (1024, 2048))
