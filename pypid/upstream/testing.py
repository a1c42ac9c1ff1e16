"""
A canned L{IUpstream} for tests: pages and files from dicts, every request
recorded, downloads optionally held until released.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from pypid.upstream.interfaces import IUpstream
from pypid.upstream.client import Download, DownloadError, PageResponse

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
        self.hold = False
        self.held: list[tuple[Deferred, str, Callable]] = []

    def page(self, url: str, body: bytes, content_type: str = JSON, code: int = 200,
             etag: Optional[str] = None, last_modified: Optional[str] = None) -> None:
        self.pages[url] = PageResponse(code, body, content_type, etag, last_modified, url)

    def fetchPage(self, url: str, headers: dict) -> Deferred:
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
        return succeed(value)

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
