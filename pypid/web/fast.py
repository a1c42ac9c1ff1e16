"""
The fast path: the two commonest requests, answered straight from the bytes
received, without twisted.web's request machinery.

A resolver's run, or a CI job's install, is mostly two kinds of request: a
project's simple page and a small file's download, each a plain GET with a
handful of headers. twisted.web spends some 100 microseconds of CPU on one
(a Request object, header objects set one by one, a resource traversal,
Deferreds, a header block joined from 30 pieces, a reactor turn before the
answer is sent); this path answers the same request with the same bytes in
about half that, so a core serves twice as many.

It answers only what it fully understands, and hands anything else to
twisted.web untouched (L{FastPath.answer} returns False): one whole request
head in the bytes received and nothing after it; C{GET} or C{HEAD} over
HTTP/1.1; C{/packages/<listed file>} of at most L{CHUNK} bytes, its
C{.metadata} when the store has it at hand, or C{/simple/<normalised
name>/} of a listed project; no query; only the
headers L{PLAIN} (one C{Host}); the index ready, reads open (no
C{-a download} or C{-a list}) and, for pages, no upstream fallback. The
answer is what twisted.web would have sent, header for header; the access
line and the metrics are the same too. Everything else (conditional and
range requests, redirects, errors, .asc files, large files) takes the
usual way.
"""

from __future__ import annotations

import time
from typing import Optional
from urllib.parse import unquote_to_bytes

from twisted.internet import tcp
from twisted.web import http, server

from pypid.index.names import is_valid, normalize
from pypid.index.negotiate import accepts_gzip, choose_content_type
from pypid.ops.logs import AccessEntry
from pypid.web.files import CHUNK, content_type_for, etag_for, file_etag
from pypid.web.send import PAGE_CHUNK
from pypid.web.util import REVALIDATE

#: The request headers this path knows what to do with (others, such as
#: If-None-Match, Range, Authorization or X-Forwarded-For, go the usual way).
PLAIN = frozenset({b"host", b"user-agent", b"accept", b"accept-encoding", b"connection", b"cache-control",
                   b"pragma", b"accept-language"})

_SERVER = b"Server: " + server.version + b"\r\n"
_REVALIDATE = b"Cache-Control: " + REVALIDATE + b"\r\n"


class _Date:
    """The C{Date} header line, made once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"Date: " + http.datetimeToString(now) + b"\r\n"
        return self.line


_date = _Date()
_http_dates: dict[int, bytes] = {}


def _http_date(seconds: int) -> bytes:
    line = _http_dates.get(seconds)
    if line is None:
        if len(_http_dates) > 4096:
            _http_dates.clear()
        line = _http_dates[seconds] = http.datetimeToString(seconds)
    return line


class FastPath:
    """
    Answers plain GETs of downloads and project pages for C{site} (see the
    module's docstring).

    @param store: the L{pypid.store.interfaces.IPackageStore}.
    @param pages: the L{pypid.index.pages.PageCache}.
    @param cache_control: the C{Cache-Control} of downloads, if any.
    @param pages_too: whether project pages are answered (not with an
        upstream fallback, which may merge them).
    """

    def __init__(self, store, pages, cache_control: Optional[bytes] = None, pages_too: bool = True) -> None:
        self.store = store
        self.pages = pages
        self.cache_control = b"Cache-Control: " + cache_control + b"\r\n" if cache_control else b""
        self.pages_too = pages_too
        #: Requests answered here (the tests count them).
        self.answered = 0

    def answer(self, channel, data: bytes) -> bool:
        """Answer the request in C{data} on C{channel}; False to leave it to twisted.web."""
        started = time.monotonic()
        end = data.find(b"\r\n\r\n")
        if end != len(data) - 4 or not self.store.ready:
            return False
        lines = data[:end].split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3:
            return False
        method, target, version = request_line
        if (method != b"GET" and method != b"HEAD") or version != b"HTTP/1.1" or b"?" in target:
            return False
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            name = name.lower()
            if not colon or name not in PLAIN or name in headers or name != name.strip():
                return False
            headers[name] = value.strip()
        host = headers.get(b"host")
        if not host or b"," in host:
            return False
        if headers.get(b"connection", b"keep-alive").lower() != b"keep-alive":
            # (Twisted answers "Connection: close" with one of its own.)
            return False
        # (Page answers say which representation they are, for the access log.)
        answered: tuple[bytes, bytes] | tuple[bytes, bytes, str] | None
        try:
            if target.startswith(b"/packages/"):
                answered = self._download(target, method, headers)
                representation = None
            elif target.startswith(b"/simple/") and self.pages_too:
                answered = self._page(target, method, headers)
                representation = answered[2] if answered is not None else None
            else:
                return False
        except Exception:
            # Whatever went wrong, the usual way says so properly.
            return False
        if answered is None:
            return False
        head, body = answered[0], answered[1]
        out = head + body if method == b"GET" else head
        self._send(channel, out)
        self.answered += 1
        site = channel.site
        seconds = time.monotonic() - started
        if site.record_metrics:
            route = "packages" if representation is None else "simple_project"
            metrics = site.metrics
            metrics.http_requests.inc(route=route, method=method.decode("ascii"), code="200")
            metrics.http_duration.observe(seconds, route=route)
            metrics.http_sent_bytes.inc(len(body) if method == b"GET" else 0, route=route)
        if site.access_log:
            peer = channel.transport.getPeer()
            agent = headers.get(b"user-agent")
            site.access_sink(AccessEntry(
                getattr(peer, "host", "-"), method.decode("ascii"), target.decode("latin-1"), "HTTP/1.1", 200,
                len(body) if method == b"GET" else 0, seconds,
                agent.decode("latin-1") if agent is not None else "-", representation))
        return True

    @staticmethod
    def _send(channel, out: bytes) -> None:
        """
        Write C{out}: straight to the socket when nothing else waits to go
        (no reactor turn before it leaves), the rest through the transport.
        """
        transport = channel.transport
        if (
            transport.__class__ is tcp.Server and not transport.dataBuffer and not transport._tempDataBuffer
            and transport.connected and not transport.disconnecting
        ):
            try:
                sent = transport.socket.send(out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # Gone: the transport finds out when it reads.
                return
            if sent == len(out):
                return
            out = out[sent:]
        transport.write(out)

    def _download(self, target: bytes, method: bytes, headers: dict) -> Optional[tuple[bytes, bytes]]:
        raw = target[10:]
        try:
            if b"%" in raw:
                raw = b"/".join([unquote_to_bytes(segment) for segment in raw.split(b"/")])
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        f = self.store.snapshot.files.get(path)
        if f is None:
            if path.endswith(".metadata"):
                return self._metadata(path[:-9], method)
            return None
        body = self.store.open(f, "")
        if body is None:
            return None
        try:
            if body.redirect is not None or body.size != f.size or body.size > CHUNK:
                return None
            etag = file_etag(f) if body.mtime_ns == f.mtime_ns else etag_for(None, body.size, body.mtime_ns)
            size = body.size
            data = body.read(0, size) if method == b"GET" else b""
            if data.__class__ is not bytes or (method == b"GET" and len(data) != size):
                return None
            mtime = -(-body.mtime_ns // 1_000_000_000)
        finally:
            body.close()
        head = b"".join((
            b"HTTP/1.1 200 OK\r\n", _SERVER, _date(), self.cache_control,
            b"ETag: ", etag, b"\r\nLast-Modified: ", _http_date(mtime),
            b"\r\nAccept-Ranges: bytes\r\nContent-Type: ", content_type_for(f.filename).encode("ascii"),
            b"\r\nContent-Length: %d\r\n\r\n" % size,
        ))
        return head, data

    def _metadata(self, path: str, method: bytes) -> Optional[tuple[bytes, bytes]]:
        """A wheel's core metadata, when the store has it at hand (see L{DirectoryStore.metadata_now})."""
        f = self.store.snapshot.files.get(path)
        now = getattr(self.store, "metadata_now", None)
        if f is None or not f.metadata_sha256 or now is None:
            return None
        raw = now(f)
        if raw is None:
            return None
        head = b"".join((
            b"HTTP/1.1 200 OK\r\n", _SERVER, _date(), self.cache_control,
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nETag: \"" % len(raw),
            f.metadata_sha256.encode("ascii"), b"\"\r\n\r\n",
        ))
        return head, raw

    def _page(self, target: bytes, method: bytes, headers: dict) -> Optional[tuple[bytes, bytes, str]]:
        segments = target[len(b"/simple/"):].split(b"/")
        if len(segments) != 2 or segments[1] != b"":
            return None
        try:
            name = unquote_to_bytes(segments[0]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not is_valid(name) or normalize(name) != name:
            return None
        accept = headers.get(b"accept")
        content_type = choose_content_type(accept.decode("latin-1") if accept is not None else None, None)
        if content_type is None:
            return None
        project = self.store.snapshot.projects.get(name)
        page = self.pages.project(name, content_type) if project is not None else None
        if page is None:
            return None
        encoding = headers.get(b"accept-encoding")
        gz = page.has_gzip and accepts_gzip(encoding.decode("latin-1") if encoding else "")
        body = page.gzipped if gz else page.body
        if len(body) > PAGE_CHUNK:
            return None
        media = content_type.encode("ascii") + (b"; charset=utf-8" if content_type == "text/html" else b"")
        # The serial mirroring tools check the page against (as simple.set_serial).
        parts = [b"HTTP/1.1 200 OK\r\n", _SERVER, _date(), b"X-Pypi-Last-Serial: %d\r\n" % project.serial,
                 b"Content-Type: ", media,
                 b"\r\nVary: Accept, Accept-Encoding\r\n", _REVALIDATE]
        if gz:
            parts.append(b"Content-Encoding: gzip\r\n")
        if page.last_modified is not None:
            parts += (b"Last-Modified: ", _http_date(int(page.last_modified)), b"\r\n")
        parts += (b"Content-Length: %d\r\nETag: " % len(body), page.gzip_etag if gz else page.etag, b"\r\n\r\n")
        return b"".join(parts), body, "json" if content_type.endswith("+json") else "html"

