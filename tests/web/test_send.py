"""pypid.web.send: bodies from memory streamed a chunk at a time."""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from pypid.index.pages import make_page
from pypid.web.send import PAGE_CHUNK, bytes_sender, one_chunk_in_flight
from pypid.web.util import serve_page


class Transport:
    bufferSize = 65536


class Channel:
    def __init__(self) -> None:
        self.transport = Transport()


class Request:
    """Pauses its producer after every write, as a transport with limit 0 does."""

    def __init__(self) -> None:
        self.channel = Channel()
        self.written: list[bytes] = []
        self.producer = None
        self.finished = False
        self.finish_deferred: Deferred = Deferred()

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        return self.finish_deferred

    def write(self, data):
        self.written.append(data)
        self.producer.pauseProducing()

    def finish(self):
        self.finished = True


class BytesSenderTests(SynchronousTestCase):
    def test_one_chunk_per_resume(self) -> None:
        body = bytes(range(256)) * (PAGE_CHUNK * 3 // 256 + 7)
        request = Request()
        bytes_sender(request, body).start()
        self.assertEqual(request.channel.transport.bufferSize, 0)
        self.assertEqual(len(request.written), 1)
        while not request.finished:
            request.producer.resumeProducing()
        self.assertEqual(b"".join(request.written), body)
        self.assertTrue(all(len(w) <= PAGE_CHUNK for w in request.written))
        self.assertEqual(request.channel.transport.bufferSize, 65536)

    def test_client_gone(self) -> None:
        request = Request()
        sender = bytes_sender(request, b"x" * (3 * PAGE_CHUNK))
        sender.start()
        request.finish_deferred.errback(ConnectionError("gone"))
        sender.resumeProducing()
        self.assertEqual(len(request.written), 1)
        self.assertFalse(request.finished)
        self.assertEqual(request.channel.transport.bufferSize, 65536)

    def test_no_transport(self) -> None:
        restore = one_chunk_in_flight(object())
        restore()


class ServePageTests(SynchronousTestCase):
    def test_large_page_is_streamed(self) -> None:
        page = make_page(b"<p>x</p>\n" * (PAGE_CHUNK // 4))
        request = DummyRequest([b""])
        self.assertIs(serve_page(request, page, b"text/html"), NOT_DONE_YET)
        self.assertEqual(b"".join(request.written), page.body)
        self.assertEqual(request.finished, 1)

    def test_small_page_is_returned(self) -> None:
        page = make_page(b"<p>x</p>\n")
        self.assertEqual(serve_page(DummyRequest([b""]), page, b"text/html"), page.body)


class ChunkSenderTests(SynchronousTestCase):
    def test_one_chunk_made_per_resume(self) -> None:
        """Each chunk is made only when the connection can take it."""
        made: list[int] = []

        def chunks():
            for i in range(5):
                made.append(i)
                yield b"%d" % i

        request = Request()
        from pypid.web.send import ChunkSender

        ChunkSender(request, chunks()).start()
        self.assertEqual((made, request.written), ([0], [b"0"]))
        self.assertEqual(request.channel.transport.bufferSize, 0)
        while not request.finished:
            request.producer.resumeProducing()
        self.assertEqual(b"".join(request.written), b"01234")
        self.assertEqual(request.channel.transport.bufferSize, 65536)

    def test_client_gone(self) -> None:
        """A client that goes away stops the rendering."""
        from pypid.web.send import ChunkSender

        made: list[int] = []

        def chunks():
            for i in range(5):
                made.append(i)
                yield b"x"

        request = Request()
        sender = ChunkSender(request, chunks())
        sender.start()
        request.finish_deferred.errback(ConnectionError("gone"))
        sender.resumeProducing()
        self.assertEqual(made, [0])
        self.assertFalse(request.finished)

    def test_failure_cuts_the_answer(self) -> None:
        from pypid.web.send import ChunkSender

        def chunks():
            yield b"x"
            raise ValueError("broken")

        request = Request()
        lost: list[bool] = []
        request.loseConnection = lambda: lost.append(True)
        ChunkSender(request, chunks()).start()
        request.producer.resumeProducing()
        self.assertEqual(lost, [True])
        self.assertFalse(request.finished)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
