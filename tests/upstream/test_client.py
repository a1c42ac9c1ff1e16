"""The treq client's body reader: idle timeout, size cap, framing, failing writes."""

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from pypid.upstream.client import BodyTooLarge, Download, DownloadError, _BodyReader


class FakeTransport:
    stopped = False

    def stopProducing(self):
        self.stopped = True


class BodyReaderTests(SynchronousTestCase):
    def reader(self, write=None, limit=None):
        self.clock = Clock()
        self.chunks = []
        reader = _BodyReader(write or self.chunks.append, self.clock, 10, limit)
        reader.transport = FakeTransport()
        reader.connectionMade()
        return reader

    def test_complete(self):
        reader = self.reader()
        reader.dataReceived(b"abc")
        reader.dataReceived(b"de")
        reader.connectionLost(Failure(ResponseDone()))
        self.assertEqual(self.successResultOf(reader.finished), Download(5, True))
        self.assertEqual(self.chunks, [b"abc", b"de"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unframed_end_is_reported(self):
        reader = self.reader()
        reader.dataReceived(b"abc")
        reader.connectionLost(Failure(PotentialDataLoss()))
        self.assertEqual(self.successResultOf(reader.finished), Download(3, False))

    def test_idle_timer_restarts_on_every_chunk(self):
        reader = self.reader()
        for _ in range(5):
            self.clock.advance(9)
            reader.dataReceived(b"x")
        self.assertFalse(reader.transport.stopped)
        self.clock.advance(10)
        self.assertTrue(reader.transport.stopped)
        reader.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(reader.finished, DownloadError)
        self.assertIn("nothing for 10 seconds", str(failure.value))

    def test_size_cap(self):
        reader = self.reader(limit=4)
        reader.dataReceived(b"abc")
        reader.dataReceived(b"de")
        self.assertTrue(reader.transport.stopped)
        reader.dataReceived(b"more")
        reader.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(reader.finished, BodyTooLarge)
        self.assertEqual(self.chunks, [b"abc"])

    def test_failing_write_drops_the_connection(self):
        def write(data):
            raise OSError("disk full")

        reader = self.reader(write=write)
        reader.dataReceived(b"abc")
        self.assertTrue(reader.transport.stopped)
        reader.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(reader.finished, OSError)

    def test_broken_connection(self):
        reader = self.reader()
        reader.dataReceived(b"abc")
        reader.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(reader.finished, DownloadError)
        self.assertIn("after 3 bytes", str(failure.value))
