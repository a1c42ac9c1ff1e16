"""
The fast path (pypid.web.fast): what it answers is byte for byte what
twisted.web answers (but the Date), and what it does not fully understand
goes to twisted.web untouched.
"""

import os
import re

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.pages import PageCache
from pypid.ops.logs import AccessEntry
from pypid.store.directory.store import DirectoryStore
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.threads import immediate
from pypid.web.fast import FastPath
from pypid.web.root import Root, WebConfig
from pypid.web.site import PypidSite

WHEEL = "/packages/d/demo_app-1.0-py3-none-any.whl"
SDIST = "/packages/d/demo_app-1.0.tar.gz"
PLUS = "/packages/d/demo_app-1.0%2Blocal-py3-none-any.whl"


class FastPathTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        write_dist(os.path.join(self.root, "d"), wheel_bytes("demo-app", "1.0", summary="x" * 3000))
        write_dist(os.path.join(self.root, "d"), wheel_bytes("demo-app", "1.0+local"))
        write_dist(os.path.join(self.root, "d"), sdist_bytes("demo-app", "1.0"))
        write_dist(os.path.join(self.root, "big"), wheel_bytes("big", "1.0", padding=200_000))
        self.store = DirectoryStore([self.root], "sha256", immediate)
        self.successResultOf(self.store.rescan())
        self.pages = PageCache(self.store.snapshot, "sha256")
        self.store.subscribe(self.pages.update)
        self.site = PypidSite(Root(self.store, self.pages, WebConfig()))
        self.fast = FastPath(self.store, self.pages)
        self.entries: list[AccessEntry] = []
        self.site.access_sink = self.entries.append

    def exchange(self, head: bytes, fast: bool) -> bytes:
        self.site.fast = self.fast if fast else None
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        protocol.makeConnection(transport)
        protocol.dataReceived(head)
        out = transport.value()
        protocol.connectionLost(None)
        return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", out)

    def same(self, head: bytes, answered: bool = True) -> bytes:
        before = self.fast.answered
        first = len(self.entries)
        usual = self.exchange(head, fast=False)
        middle = len(self.entries)
        quick = self.exchange(head, fast=True)
        self.assertEqual(quick, usual)
        self.assertEqual(self.fast.answered - before, int(answered), head)
        # The access lines are the same too (but the time taken).
        self.assertEqual([e._replace(seconds=0) for e in self.entries[middle:]],
                         [e._replace(seconds=0) for e in self.entries[first:middle]])
        return quick

    @staticmethod
    def get(path: str, *headers: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
        lines = [f"{method} {path} {version}", "Host: index.test", *headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def test_downloads(self):
        for path in (WHEEL, SDIST, PLUS):
            out = self.same(self.get(path, "User-Agent: pip/24", "Accept: */*", "Accept-Encoding: gzip"))
            self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:100])
            self.same(self.get(path, method="HEAD"))

    def test_metadata(self):
        """A wheel's .metadata, from the state cache or the recent ones (the first read takes a thread)."""
        self.site.fast = self.fast
        self.assertFalse(self.fast.answer(None, self.get(WHEEL + ".metadata")), "not at hand yet")
        # (Read through the usual way first by same(): at hand after it.)
        self.same(self.get(WHEEL + ".metadata"))
        self.same(self.get(WHEEL + ".metadata", method="HEAD"))

    def test_download_cache_control(self):
        self.fast = FastPath(self.store, self.pages, b"public, max-age=600")
        self.site.resource = Root(self.store, self.pages, WebConfig(cache_control=b"public, max-age=600"))
        self.assertIn(b"Cache-Control: public, max-age=600\r\n", self.same(self.get(WHEEL)))

    def test_pages(self):
        for headers in ((), ("Accept: application/vnd.pypi.simple.v1+json",), ("Accept-Encoding: gzip",),
                        ("Accept: application/vnd.pypi.simple.v1+json, text/html;q=0.1", "Accept-Encoding: gzip"),
                        ("Accept: text/html", "Connection: keep-alive", "Cache-Control: max-age=0")):
            self.same(self.get("/simple/demo-app/", *headers))
        self.same(self.get("/simple/demo-app/", method="HEAD"))
        self.assertEqual(self.entries[-1].representation, "html")

    def test_left_to_twisted(self):
        """What the fast path does not fully understand gets twisted.web's answer, untouched."""
        for head in (
            self.get(WHEEL, 'If-None-Match: "x"'),
            self.get(WHEEL, "Range: bytes=0-10"),
            self.get(WHEEL, "Authorization: Basic eDp5"),
            self.get(WHEEL, "X-Forwarded-For: 10.0.0.1"),
            self.get(WHEEL, "Connection: close"),
            self.get(WHEEL, "Host: twice"),
            self.get(WHEEL + "?x=1"),
            self.get(WHEEL, version="HTTP/1.0"),
            self.get(WHEEL, method="POST"),
            self.get(SDIST + ".metadata"),
            self.get(WHEEL + ".asc"),
            self.get("/packages/"),
            self.get("/packages/nothing.whl"),
            self.get("/packages/big/big-1.0-py3-none-any.whl"),
            self.get("/simple/Demo_App/"),
            self.get("/simple/demo-app"),
            self.get("/simple/nothing/"),
            self.get("/simple/"),
            self.get("/simple/demo-app/", "Accept: image/png"),
            self.get("/"),
            b"GET " + WHEEL.encode() + b" HTTP/1.1\r\n\r\n",
            self.get(WHEEL) + self.get(SDIST),
        ):
            self.same(head, answered=False)

    def test_partial_head(self):
        """A head in pieces goes the usual way."""
        self.site.fast = self.fast
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        head = self.get(WHEEL)
        protocol.dataReceived(head[:10])
        protocol.dataReceived(head[10:])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertEqual(self.fast.answered, 0)

    def test_keep_alive(self):
        """Several requests on one connection, one after the other, all answered."""
        self.site.fast = self.fast
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        for path in (WHEEL, "/simple/demo-app/", "/packages/nothing.whl", SDIST):
            protocol.dataReceived(self.get(path))
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(transport.value().count(b"HTTP/1.1 404"), 1)
        self.assertEqual(self.fast.answered, 3)
        self.assertFalse(transport.disconnecting)

    def test_not_ready(self):
        store = DirectoryStore([self.root], "sha256", immediate)
        fast = FastPath(store, PageCache(store.snapshot, "sha256"))
        self.assertFalse(fast.answer(None, self.get(WHEEL)))

    def test_changed_file(self):
        """A file rewritten since it was indexed is not served by its old record."""
        path = os.path.join(self.root, "d", "demo_app-1.0.tar.gz")
        with open(path, "ab") as f:
            f.write(b"more")
        self.same(self.get(SDIST), answered=False)

    def test_metrics(self):
        """The fast path counts its requests as twisted.web's path does."""
        metrics = self.site.metrics
        self.site.record_metrics = True
        for path, route in ((WHEEL, "packages"), ("/simple/demo-app/", "simple_project")):
            for fast in (False, True):
                before = metrics.http_requests.value(route=route, method="GET", code="200")
                sent = metrics.http_sent_bytes.value(route=route)
                self.exchange(self.get(path), fast)
                self.assertEqual(metrics.http_requests.value(route=route, method="GET", code="200"), before + 1)
                self.assertGreater(metrics.http_sent_bytes.value(route=route), sent)
        self.assertEqual(self.fast.answered, 2)
