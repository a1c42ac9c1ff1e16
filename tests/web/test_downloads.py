"""Downloads under /packages/ (pypid.web.files), in memory through treq's StubTreq."""

import hashlib
import os
import time

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http

from pypid.index.pages import PageCache
from pypid.store.directory.body import FileBody, unchanged
from pypid.store.directory.store import DirectoryStore
from pypid.testing import MemoryStore
from pypid.threads import immediate
from pypid.web import files
from pypid.web.files import CHUNK, FileSender
from pypid.web.root import Root, WebConfig
from tests.index.test_model import dist

MTIME_NS = 1_700_000_000_250_000_000
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:21 GMT"  # rounded up to the second


class DownloadTests:
    """
    Downloads from a store's bodies; run over the directory store (an open
    descriptor read with pread) and the memory store (bytes, answered at
    once or later).
    """

    def setUp(self):
        self.small = os.urandom(3000)
        self.large = os.urandom(2 * CHUNK + 12345)
        files = [
            self._file("foo-1.0-py3-none-any.whl", self.small),
            self._file("sub/foo-1.0.tar.gz", self.large, version="1.0"),
        ]
        self.store = self.make_store(files)
        self.put("foo-1.0-py3-none-any.whl.asc", b"-----BEGIN PGP SIGNATURE-----\n")
        self.config = WebConfig()
        pages = PageCache(self.store.snapshot, "sha256")
        self.client = StubTreq(Root(self.store, pages, self.config))

    def _file(self, path, data, version="1.0"):
        self.contents = getattr(self, "contents", {})
        self.contents[path] = data
        return dist(path, version=version, size=len(data), mtime=MTIME_NS, kind="wheel")._replace(
            digest=hashlib.sha256(data).hexdigest(), has_sig=path.endswith(".whl"))

    def get(self, path, method="GET", **headers):
        headers = {name.replace("_", "-"): value for name, value in headers.items()}
        response = self.successResultOf(self.client.request(
            method, "http://index.test/packages/" + path, headers=headers, allow_redirects=False))
        return response, self.successResultOf(response.content())

    def header(self, response, name):
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None

    def etag(self, data):
        return '"%s"' % hashlib.sha256(data).hexdigest()

    def test_small_file(self):
        response, body = self.get("foo-1.0-py3-none-any.whl", accept_encoding="gzip")
        self.assertEqual((response.code, body), (200, self.small))
        self.assertEqual(response.length, 3000)
        self.assertEqual(self.header(response, "content-type"), "application/octet-stream")
        self.assertEqual(self.header(response, "etag"), self.etag(self.small))
        self.assertEqual(self.header(response, "last-modified"), LAST_MODIFIED)
        self.assertEqual(self.header(response, "accept-ranges"), "bytes")
        self.assertFalse(self.header(response, "content-encoding"))  # (the client side adds an empty one)
        self.assertIsNone(self.header(response, "cache-control"))

    def test_large_file_streams(self):
        """A file larger than a chunk goes through the producer, whole."""
        response, body = self.get("sub/foo-1.0.tar.gz")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, self.large)
        self.assertEqual(response.length, len(self.large))
        self.assertEqual(self.header(response, "content-type"), "application/gzip")

    def test_head(self):
        for path, data in [("foo-1.0-py3-none-any.whl", self.small), ("sub/foo-1.0.tar.gz", self.large)]:
            response, body = self.get(path, method="HEAD", range="bytes=0-9")
            # (treq hides a HEAD's Content-Length: tests/process/test_http.py checks it.)
            self.assertEqual((response.code, body), (200, b""))
            self.assertEqual(self.header(response, "etag"), self.etag(data))

    def test_cache_control(self):
        self.config = WebConfig(cache_control=b"public, max-age=600")
        self.client = StubTreq(Root(self.store, PageCache(self.store.snapshot, "sha256"), self.config))
        response, _ = self.get("foo-1.0-py3-none-any.whl")
        self.assertEqual(self.header(response, "cache-control"), "public, max-age=600")

    def test_ranges(self):
        for path, data in [("foo-1.0-py3-none-any.whl", self.small), ("sub/foo-1.0.tar.gz", self.large)]:
            size = len(data)
            response, body = self.get(path, range="bytes=10-19")
            self.assertEqual((response.code, body), (206, data[10:20]))
            self.assertEqual(self.header(response, "content-range"), f"bytes 10-19/{size}")
            self.assertEqual(response.length, 10)
            response, body = self.get(path, range="bytes=-100")
            self.assertEqual((response.code, body), (206, data[-100:]))
            response, body = self.get(path, range=f"bytes=-{size + 50}")
            self.assertEqual((response.code, body), (206, data))
            self.assertEqual(self.header(response, "content-range"), f"bytes 0-{size - 1}/{size}")
            response, body = self.get(path, range="bytes=1000-")
            self.assertEqual((response.code, body), (206, data[1000:]))
            response, body = self.get(path, range="bytes=0-9,20-29")
            self.assertEqual((response.code, body), (200, data))
            response, body = self.get(path, range=f"bytes={size}-")
            self.assertEqual((response.code, body), (416, b""))
            self.assertEqual(self.header(response, "content-range"), f"bytes */{size}")
            response, body = self.get(path, range="bytes=")
            self.assertEqual((response.code, body), (200, data))

    def test_if_range(self):
        path, data = "foo-1.0-py3-none-any.whl", self.small
        for condition, code in [(self.etag(data), 206), ('"stale"', 200), (LAST_MODIFIED, 206),
                                ("Tue, 14 Nov 2023 22:13:20 GMT", 200), ("W/" + self.etag(data), 200),
                                ("nonsense", 200)]:
            response, body = self.get(path, range="bytes=100-", if_range=condition)
            self.assertEqual((response.code, body), (code, data[100:] if code == 206 else data), condition)

    def test_not_modified(self):
        path, data = "foo-1.0-py3-none-any.whl", self.small
        etag = self.etag(data)
        for headers in [{"if_none_match": etag}, {"if_none_match": '"x", ' + etag}, {"if_none_match": "*"},
                        {"if_none_match": "W/" + etag}, {"if_none_match": etag, "range": "bytes=0-5"},
                        {"if_modified_since": LAST_MODIFIED}]:
            response, body = self.get(path, **headers)
            self.assertEqual((response.code, body), (304, b""), headers)
            self.assertEqual(self.header(response, "etag"), etag)
        # If-None-Match decides alone when it is there.
        response, body = self.get(path, if_none_match='"x"', if_modified_since=LAST_MODIFIED)
        self.assertEqual((response.code, body), (200, data))
        response, body = self.get(path, if_modified_since="Tue, 14 Nov 2023 22:13:20 GMT")
        self.assertEqual((response.code, body), (200, data))
        # A large file too: nothing is streamed.
        response, body = self.get("sub/foo-1.0.tar.gz", if_none_match=self.etag(self.large))
        self.assertEqual((response.code, body), (304, b""))

    def test_signature(self):
        response, body = self.get("foo-1.0-py3-none-any.whl.asc")
        self.assertEqual((response.code, body), (200, b"-----BEGIN PGP SIGNATURE-----\n"))
        self.assertEqual(self.header(response, "content-type"), "text/plain; charset=utf-8")
        self.assertIsNone(self.header(response, "etag"))
        response, _ = self.get("sub/foo-1.0.tar.gz.asc")
        self.assertEqual(response.code, 404)

    def test_changed_since_indexed(self):
        """A file of another size than indexed is not served; a touched one loses its digest ETag."""
        path = "foo-1.0-py3-none-any.whl"
        self.put(path, self.small, MTIME_NS + 10**9)
        response, body = self.get(path)
        self.assertEqual((response.code, body), (200, self.small))
        self.assertEqual(self.header(response, "etag"), '"%x-%x"' % (len(self.small), MTIME_NS + 10**9))
        self.put(path, self.small + b"more")
        response, _ = self.get(path)
        self.assertEqual(response.code, 404)
        self.delete(path)
        response, _ = self.get(path)
        self.assertEqual(response.code, 404)

    def test_shrunk_while_read(self):
        """A file that is shorter than its size by the time it is read is not served."""
        real_open = self.store.open

        def open_then_truncate(f, sidecar=""):
            body = real_open(f, sidecar)
            self.shrink(body, f.path, 10)
            return body

        self.store.open = open_then_truncate
        response, _ = self.get("foo-1.0-py3-none-any.whl")
        self.assertEqual(response.code, 404)

    def test_redirect(self):
        """A body that names another URL for its bytes is answered with a 307 (the same method again) no cache keeps."""
        real_open = self.store.open

        def elsewhere(f, sidecar=""):
            body = real_open(f, sidecar)
            body.redirect = "https://objects.example/bucket/foo?signature=abc"
            return body

        self.store.open = elsewhere
        response, _ = self.get("foo-1.0-py3-none-any.whl")
        self.assertEqual(response.code, 307)
        self.assertEqual(self.header(response, "location"), "https://objects.example/bucket/foo?signature=abc")
        self.assertEqual(self.header(response, "cache-control"), "no-store")


class DirectoryDownloadTests(DownloadTests, SynchronousTestCase):
    def make_store(self, files):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        store = DirectoryStore([self.root], "sha256", immediate)
        self.successResultOf(store.rescan())
        for path, data in self.contents.items():
            self.write(path, data, MTIME_NS)
        store.apply(files, [])
        return store

    def write(self, path, data, mtime_ns=None):
        local = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(data)
        if mtime_ns is not None:
            os.utime(local, ns=(mtime_ns, mtime_ns))

    def put(self, path, data, mtime_ns=None):
        self.write(path, data, mtime_ns)

    def delete(self, path):
        os.unlink(os.path.join(self.root, path))

    def shrink(self, body, path, size):
        os.truncate(os.path.join(self.root, path), size)


class MemoryDownloadTests(DownloadTests, SynchronousTestCase):
    later = False

    def make_store(self, files):
        store = MemoryStore(files, later=self.later)
        for path, data in self.contents.items():
            store.put(path, data, MTIME_NS)
        return store

    def put(self, path, data, mtime_ns=None):
        self.store.put(path, data, mtime_ns)

    def delete(self, path):
        del self.store.contents[path]

    def shrink(self, body, path, size):
        body._data = body._data[:size]


class LaterMemoryDownloadTests(MemoryDownloadTests):
    """A backend whose reads answer later (as a remote one would): the same answers."""

    later = True


class FakeRequest:
    """Just what L{FileSender} uses of a request."""

    def __init__(self):
        self.written = []
        self.producer = None
        self.finished = False
        self.lost = False
        from twisted.internet.defer import Deferred
        self.finish_deferred = Deferred()
        self.pause_after = None

    def registerProducer(self, producer, streaming):
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        return self.finish_deferred

    def write(self, data):
        self.written.append(data)
        if self.pause_after is not None and len(self.written) >= self.pause_after:
            self.producer.pauseProducing()

    def finish(self):
        self.finished = True

    def loseConnection(self):
        self.lost = True


class FileSenderTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.data = os.urandom(3 * CHUNK + 100)
        with open(self.path, "wb") as f:
            f.write(self.data)
        self.fd = os.open(self.path, os.O_RDONLY)
        self.request = FakeRequest()

    def fd_closed(self):
        try:
            os.fstat(self.fd)
        except OSError:
            return True
        return False

    def test_backpressure(self):
        """One chunk per resume while the transport pauses after each write; then finished and closed."""
        self.request.pause_after = 0
        sender = FileSender(self.request, self.fd, 50, len(self.data) - 60)
        sender.start()
        self.assertEqual([len(w) for w in self.request.written], [CHUNK])
        sender.resumeProducing()
        sender.resumeProducing()
        self.assertFalse(self.request.finished)
        sender.resumeProducing()
        self.assertEqual(b"".join(self.request.written), self.data[50:-10])
        self.assertTrue(max(len(w) for w in self.request.written) <= CHUNK)
        self.assertTrue(self.request.finished)
        self.assertIsNone(self.request.producer)
        self.assertTrue(self.fd_closed())

    def test_a_file_written_to_meanwhile_is_cut_before_its_last_bytes(self):
        """
        The last bytes go only if the file is still as opened: rewritten in
        place mid-answer (same size, other bytes), the answer is cut short.
        """
        self.request.pause_after = 0
        identity = FileBody(os.dup(self.fd), os.fstat(self.fd)).identity
        sender = FileSender(self.request, self.fd, 0, len(self.data), lambda fd: unchanged(fd, identity))
        sender.start()
        time.sleep(0.01)
        with open(self.path, "r+b") as f:
            f.write(os.urandom(len(self.data)))
        while self.request.producer is not None:
            sender.resumeProducing()
        self.assertTrue(self.request.lost)
        self.assertFalse(self.request.finished)
        self.assertLess(sum(map(len, self.request.written)), len(self.data))
        self.assertTrue(self.fd_closed())

    def test_an_untouched_file_is_sent_whole_with_the_check(self):
        self.request.pause_after = 0
        identity = FileBody(os.dup(self.fd), os.fstat(self.fd)).identity
        sender = FileSender(self.request, self.fd, 7, len(self.data) - 7, lambda fd: unchanged(fd, identity))
        sender.start()
        while not self.request.finished:
            sender.resumeProducing()
        self.assertEqual(b"".join(self.request.written), self.data[7:])

    def test_one_chunk_in_flight(self):
        """
        While a file is sent the socket transport (under TLS too) pauses the
        sender after every write; its limit comes back when the file is sent.
        """

        class Transport:
            bufferSize = 65536

        class TLS:
            def __init__(self, transport):
                self.transport = transport

        class Channel:
            pass

        socket_transport = Transport()
        self.request.channel = Channel()
        self.request.channel.transport = TLS(socket_transport)
        self.request.pause_after = 0
        sender = FileSender(self.request, self.fd, 0, len(self.data))
        sender.start()
        self.assertEqual(socket_transport.bufferSize, 0)
        self.assertLessEqual(CHUNK, 64 * 1024)
        while not self.request.finished:
            sender.resumeProducing()
        self.assertEqual(b"".join(self.request.written), self.data)
        self.assertEqual(socket_transport.bufferSize, 65536)

    def test_sendfile_on_a_socket(self):
        """
        On a plain socket, once the transport has sent all it had, the file
        goes by sendfile(2) until the socket is full, then a chunk through
        the transport: the client gets every byte, in order, and the
        request counts them all.
        """
        import socket
        import threading

        data = os.urandom(3 * 2**20 + 17)
        with open(self.path, "wb") as f:
            f.write(data)
        fd = os.open(self.path, os.O_RDONLY)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        received: list = []

        def read():
            while chunk := theirs.recv(65536):
                received.append(chunk)

        reader = threading.Thread(target=read)
        reader.start()

        class Transport:
            bufferSize = 65536

            def fileno(self):
                return ours.fileno()

        class Channel:
            transport = Transport()

        class Request(FakeRequest):
            """A transport writing what it is given when the socket takes it, then resuming."""

            channel = Channel()
            sentLength = 0

            def write(self, data):
                self.sentLength += len(data)
                self.written.append(data)
                self.producer.pauseProducing()
                ours.setblocking(True)
                ours.sendall(data)
                ours.setblocking(False)

        request = Request()
        sender = FileSender(request, fd, 10, len(data) - 20)
        sender.start()
        for _ in range(10000):
            if request.finished:
                break
            sender.resumeProducing()
        ours.shutdown(socket.SHUT_WR)
        reader.join(10)
        self.assertTrue(request.finished)
        self.assertEqual(b"".join(received), data[10:-10])
        self.assertEqual(request.sentLength, len(data) - 20)
        self.assertLess(sum(map(len, request.written)), len(data) // 2, "most of it by sendfile")
        self.assertEqual(Channel.transport.bufferSize, 65536)

    def test_connection_lost(self):
        """stopProducing (or the request's end) closes the file; nothing more is written."""
        self.request.pause_after = 0
        sender = FileSender(self.request, self.fd, 0, len(self.data))
        sender.start()
        self.request.finish_deferred.errback(ConnectionError("gone"))
        self.assertTrue(self.fd_closed())
        sender.resumeProducing()
        self.assertEqual(len(self.request.written), 1)
        self.assertFalse(self.request.finished)

    def test_file_shrinks(self):
        """A file cut short while sent: the connection is dropped, never finished short."""
        self.request.pause_after = 0
        sender = FileSender(self.request, self.fd, 0, len(self.data))
        sender.start()
        os.truncate(self.path, CHUNK + 10)
        sender.resumeProducing()
        sender.resumeProducing()
        self.assertEqual(b"".join(self.request.written), self.data[: CHUNK + 10])
        self.assertTrue(self.request.lost)
        self.assertFalse(self.request.finished)
        self.assertTrue(self.fd_closed())


class FileBodyTests(SynchronousTestCase):
    def test_missing_or_not_regular(self):
        self.assertIsNone(FileBody.open(self.mktemp()))
        directory = self.mktemp()
        os.makedirs(directory)
        self.assertIsNone(FileBody.open(directory))

    def test_fifo_does_not_block(self):
        fifo = self.mktemp()
        os.mkfifo(fifo)
        self.assertIsNone(FileBody.open(fifo))

    def test_closed_once(self):
        """Closing lets the descriptor go and calls on_close, once however often it is closed."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"abc")
        closed = []
        body = FileBody.open(path, on_close=lambda: closed.append(True))
        self.assertEqual((body.size, body.read(1, 5)), (3, b"bc"))
        body.close()
        body.close()
        self.assertEqual((closed, body.read(0, 3)), ([True], b""))


class ValidatorTests(SynchronousTestCase):
    def test_none_match(self):
        self.assertTrue(files.none_match(b'"a"', b'"a"'))
        self.assertTrue(files.none_match(b'"b", "a"', b'"a"'))
        self.assertTrue(files.none_match(b'W/"a"', b'"a"'))
        self.assertTrue(files.none_match(b"*", None))
        self.assertFalse(files.none_match(b'"b"', b'"a"'))
        self.assertFalse(files.none_match(b'"a"', None))

    def test_if_range(self):
        self.assertTrue(files.if_range_holds(b'"a"', b'"a"', 0))
        self.assertFalse(files.if_range_holds(b'"a"', None, 0))
        self.assertFalse(files.if_range_holds(b'W/"a"', b'"a"', 0))
        date = http.datetimeToString(1_700_000_001)
        self.assertTrue(files.if_range_holds(date, None, 1_700_000_001))
        self.assertFalse(files.if_range_holds(date, None, 1_700_000_002))
        self.assertFalse(files.if_range_holds(b"garbage", None, 1_700_000_001))
