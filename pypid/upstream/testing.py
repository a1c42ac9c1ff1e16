"""
A canned L{IUpstream} for tests: pages and files from dicts, every request
recorded, downloads optionally held until released.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from pypid.upstream.interfaces import IUpstream
from pypid.upstream.client import Download, DownloadError, Head, PageResponse, RangeResponse

JSON = "application/vnd.pypi.simple.v1+json"


@implementer(IUpstream)
class CannedUpstream:
    def __init__(self) -> None:
        #: url -> PageResponse, an exception, or a callable(headers) giving one.
        self.pages: dict[str, Union[PageResponse, Exception, Callable]] = {}
        #: url -> bytes, or an exception.
        self.files: dict[str, Union[bytes, Exception]] = {}
        self.page_requests: list[tuple[str, dict]] = []
        self.downloads: list[str] = []
        #: Every HEAD (url) and ranged GET (url, first, last).
        self.heads: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []
        #: Whether files are served in ranges (else a ranged GET answers 200).
        self.range_support = True
        self.hold = False
        self.held: list[tuple[Deferred, str, Callable]] = []

    def page(self, url: str, body: bytes, content_type: str = JSON, code: int = 200,
             etag: Optional[str] = None, last_modified: Optional[str] = None) -> None:
        self.pages[url] = PageResponse(code, body, content_type, etag, last_modified, url)

    def fetchPage(self, url: str, headers: dict, limit: Optional[int] = None) -> Deferred:
        self.page_requests.append((url, dict(headers)))
        value = self.pages.get(url)
        if callable(value):
            value = value(headers)
        if value is None:
            return succeed(PageResponse(404, b"", "text/plain", None, None, url))
        if isinstance(value, Exception):
            return fail(value)
        if isinstance(value, Deferred):
            return value
        if limit is not None and len(value.body) >= limit:
            value = value._replace(body=value.body[:limit], truncated=True)
        return succeed(value)

    def head(self, url: str) -> Deferred:
        self.heads.append(url)
        data = self.files.get(url)
        if isinstance(data, Exception) and not isinstance(data, DownloadError):
            return fail(data)
        if not isinstance(data, bytes):
            return succeed(Head(404, None, False, "text/plain", None, None))
        return succeed(Head(200, len(data), self.range_support, "application/octet-stream", None, None))

    def fetchRange(self, url: str, first: int, last: int) -> Deferred:
        self.ranges.append((url, first, last))
        data = self.files.get(url)
        if isinstance(data, Exception) and not isinstance(data, DownloadError):
            return fail(data)
        if not isinstance(data, bytes):
            return succeed(RangeResponse(404, b"", None))
        if not self.range_support:
            return succeed(RangeResponse(200, b"", len(data)))
        if first >= len(data):
            return succeed(RangeResponse(416, b"", len(data)))
        return succeed(RangeResponse(206, data[first:last + 1], len(data)))

    def download(self, url: str, write: Callable[[bytes], None]) -> Deferred:
        self.downloads.append(url)
        if self.hold:
            d: Deferred = Deferred()
            self.held.append((d, url, write))
            return d
        return self._deliver(url, write)

    def _deliver(self, url: str, write) -> Deferred:
        data = self.files.get(url)
        if data is None:
            return fail(DownloadError(f"404 for {url}", 404))
        if isinstance(data, Exception):
            return fail(data)
        try:
            for i in range(0, len(data), 1000):
                write(data[i:i + 1000])
        except Exception as e:
            return fail(e)
        return succeed(Download(len(data), True))

    def release(self) -> None:
        """Deliver every held download."""
        held, self.held = self.held, []
        for d, url, write in held:
            self._deliver(url, write).chainDeferred(d)
