"""
The contract of L{pypid.upstream.interfaces.IUpstream}, run against the
canned upstream of the fallback's tests and the treq one over StubTreq
(tests/upstream/test_contract.py): the canned one may not drift from what
the real client does.

A test case mixes L{UpstreamContract} into a C{SynchronousTestCase} and
provides C{makeUpstream(pages, files, ranges=True)} (pages: URL -> L{Page},
answered 304 to a matching C{If-None-Match}; files: URL -> bytes, served in
ranges unless C{ranges} is false), C{pageRequests()} (the URLs and headers
the upstream side saw) and C{settle()} (let in-memory I/O run).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from zope.interface.verify import verifyObject

from pypid.upstream.client import Download, DownloadError, Head, PageResponse, RangeResponse
from pypid.upstream.interfaces import IUpstream

JSON = "application/vnd.pypi.simple.v1+json"
PAGE_URL = "http://up.test/simple/demo/"
FILE_URL = "http://up.test/packages/demo-1.0-py3-none-any.whl"
FILE = bytes(range(256)) * 50


class Page(NamedTuple):
    code: int
    body: bytes
    content_type: str = JSON
    etag: Optional[str] = None
    last_modified: Optional[str] = None


PAGES = {
    PAGE_URL: Page(200, b'{"meta": {"api-version": "1.1"}, "files": []}', JSON, '"v1"', "Tue, 14 Nov 2023 22:13:21 GMT"),
    "http://up.test/simple/broken/": Page(500, b"", "text/plain"),
}


class UpstreamContract:
    def upstream(self, ranges=True):
        return self.makeUpstream(PAGES, {FILE_URL: FILE}, ranges)

    def result(self, d):
        self.settle()
        return self.successResultOf(d)

    def failure(self, d, *kinds):
        self.settle()
        return self.failureResultOf(d, *kinds)

    def test_provides_the_interface(self):
        verifyObject(IUpstream, self.upstream())

    def test_page(self):
        page = PAGES[PAGE_URL]
        response = self.result(self.upstream().fetchPage(PAGE_URL, {"Accept": JSON}))
        self.assertEqual(response, PageResponse(200, page.body, JSON, page.etag, page.last_modified, PAGE_URL))

    def test_request_headers_reach_the_upstream(self):
        upstream = self.upstream()
        self.result(upstream.fetchPage(PAGE_URL, {"Accept": JSON, "If-None-Match": '"v0"'}))
        [(url, headers)] = self.pageRequests()
        self.assertEqual(url, PAGE_URL)
        self.assertEqual({k.lower(): v for k, v in headers.items() if k.lower() in ("accept", "if-none-match")},
                         {"accept": JSON, "if-none-match": '"v0"'})

    def test_not_modified(self):
        response = self.result(self.upstream().fetchPage(PAGE_URL, {"If-None-Match": '"v1"'}))
        self.assertEqual((response.code, response.body), (304, b""))

    def test_statuses_are_answers_not_failures(self):
        upstream = self.upstream()
        self.assertEqual(self.result(upstream.fetchPage("http://up.test/simple/nothing/", {})).code, 404)
        self.assertEqual(self.result(upstream.fetchPage("http://up.test/simple/broken/", {})).code, 500)

    def test_download(self):
        chunks = []
        download = self.result(self.upstream().download(FILE_URL, chunks.append))
        self.assertEqual(download, Download(len(FILE), True))
        self.assertEqual(b"".join(chunks), FILE)

    def test_missing_file(self):
        failure = self.failure(self.upstream().download(FILE_URL + ".missing", lambda data: None), DownloadError)
        self.assertEqual(failure.value.code, 404)

    def test_failing_write_fails_the_download(self):
        def write(data):
            raise OSError("disk full")

        self.failure(self.upstream().download(FILE_URL, write), OSError)

    def test_page_prefix(self):
        """With a limit, only the first bytes are read, and the answer says it was cut."""
        page = PAGES[PAGE_URL]
        response = self.result(self.upstream().fetchPage(PAGE_URL, {}, limit=10))
        self.assertEqual((response.code, response.body, response.truncated), (200, page.body[:10], True))
        whole = self.result(self.upstream().fetchPage(PAGE_URL, {}, limit=10_000))
        self.assertEqual((whole.body, whole.truncated), (page.body, False))

    def test_head(self):
        head = self.result(self.upstream().head(FILE_URL))
        self.assertEqual((head.code, head.length, head.ranges), (200, len(FILE), True))
        self.assertIsInstance(head, Head)
        self.assertEqual(self.result(self.upstream().head(FILE_URL + ".missing")).code, 404)

    def test_range(self):
        upstream = self.upstream()
        self.assertEqual(self.result(upstream.fetchRange(FILE_URL, 10, 19)), RangeResponse(206, FILE[10:20], len(FILE)))
        tail = self.result(upstream.fetchRange(FILE_URL, len(FILE) - 5, len(FILE) + 100))
        self.assertEqual(tail, RangeResponse(206, FILE[-5:], len(FILE)))
        self.assertEqual(self.result(upstream.fetchRange(FILE_URL, len(FILE), len(FILE) + 9)).code, 416)
        self.assertEqual(self.result(upstream.fetchRange(FILE_URL + ".missing", 0, 9)).code, 404)

    def test_no_range_support(self):
        """An upstream that ignores Range answers 200: nothing of the body is read."""
        response = self.result(self.upstream(ranges=False).fetchRange(FILE_URL, 10, 19))
        self.assertEqual(response, RangeResponse(200, b"", len(FILE)))
        self.assertFalse(self.result(self.upstream(ranges=False).head(FILE_URL)).ranges)
