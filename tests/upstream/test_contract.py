"""The upstream contract (tests/upstream/contract.py), run against the canned and the real client."""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pypid.upstream.client import PageResponse, TreqUpstream
from pypid.upstream.testing import CannedUpstream
from tests.upstream.contract import UpstreamContract


class CannedUpstreamTests(UpstreamContract, SynchronousTestCase):
    def makeUpstream(self, pages, files, ranges=True):
        self.canned = CannedUpstream()
        self.canned.range_support = ranges
        for url, page in pages.items():
            def answer(headers, url=url, page=page):
                if page.etag is not None and headers.get("If-None-Match") == page.etag:
                    return PageResponse(304, b"", page.content_type, page.etag, page.last_modified, url)
                return PageResponse(page.code, page.body, page.content_type, page.etag, page.last_modified, url)

            self.canned.pages[url] = answer
        self.canned.files.update(files)
        return self.canned

    def pageRequests(self):
        return self.canned.page_requests

    def settle(self):
        pass


class Upstream(Resource):
    """An upstream index in memory: the pages and files of the contract, 304 on a matching ETag."""

    isLeaf = True

    def __init__(self, pages, files, ranges=True):
        super().__init__()
        self.pages, self.files, self.ranges = pages, files, ranges
        self.seen = []

    def render_GET(self, request):
        url = "http://up.test" + request.uri.decode("ascii")
        page = self.pages.get(url)
        if page is not None:
            self.seen.append((url, {k.decode(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}))
            if page.etag is not None:
                request.setHeader(b"etag", page.etag.encode())
            if page.last_modified is not None:
                request.setHeader(b"last-modified", page.last_modified.encode())
            request.setHeader(b"content-type", page.content_type.encode())
            if page.etag is not None and request.getHeader(b"if-none-match") == page.etag.encode():
                request.setResponseCode(304)
                return b""
            request.setResponseCode(page.code)
            return page.body
        data = self.files.get(url)
        if data is None:
            request.setResponseCode(404)
            return b"Not Found"
        request.setHeader(b"content-type", b"application/octet-stream")
        wanted = request.getHeader(b"range")
        if self.ranges:
            request.setHeader(b"accept-ranges", b"bytes")
        if self.ranges and wanted:
            first, _, last = wanted.partition(b"=")[2].partition(b"-")
            first, last = int(first), min(int(last), len(data) - 1)
            if first >= len(data):
                request.setResponseCode(416)
                request.setHeader(b"content-range", b"bytes */%d" % len(data))
                return b""
            request.setResponseCode(206)
            request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, len(data)))
            data = data[first:last + 1]
        request.setHeader(b"content-length", b"%d" % len(data))
        return b"" if request.method == b"HEAD" else data

    render_HEAD = render_GET


class TreqUpstreamTests(UpstreamContract, SynchronousTestCase):
    def makeUpstream(self, pages, files, ranges=True):
        self.server = Upstream(pages, files, ranges)
        self.stub = StubTreq(self.server)
        return TreqUpstream(Clock(), client=self.stub)

    def pageRequests(self):
        return self.server.seen

    def settle(self):
        self.stub.flush()
