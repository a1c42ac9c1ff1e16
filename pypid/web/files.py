"""
Downloads under C{/packages/}: distribution files, their core metadata
(C{.metadata}) and detached signatures (C{.asc}), plus the flat list of every
file at C{/packages/} that C{pip --find-links} reads.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web import http
from twisted.web.http import (
    NOT_MODIFIED,
    OK,
    PARTIAL_CONTENT,
    REQUESTED_RANGE_NOT_SATISFIABLE,
    datetimeToString,
    stringToDatetime,
)
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from pypid.index.model import DistFile
from pypid.store.interfaces import IBody, IPackageStore
from pypid.store.metadata import MetadataError
from pypid.index import render
from pypid.index.negotiate import accepts_gzip
from pypid.index.pages import PageCache, gzip_chunks
from pypid.web.errors import respond
from pypid.web.ranges import UNSATISFIABLE, parse_range
from pypid.web.errors import error_page, not_found
from pypid.web.resource import PlainResource
from pypid.web.send import ChunkSender
from pypid.web.util import REVALIDATE, not_modified_since, redirect, text_response

#: Answers of up to this many bytes are read at once and written in one go;
#: longer ones are streamed by a L{FileSender}, which over TLS hands the
#: connection one chunk of this size at a time: a client that reads nothing
#: holds at most this much of pypid's memory (256 KiB chunks held 265 KiB
#: per stalled reader; bench/stalled.py).
CHUNK = 48 * 1024

#: On a plain TCP connection the file goes from the page cache to the socket
#: by sendfile(2), as much as the socket takes, up to this much per reactor
#: turn (so one fast client does not hold up the others).
SENDFILE_TURN = 1024 * 1024

#: After sendfile(2), the piece handed to the transport to be woken up
#: when the socket can take more: what a stalled reader then holds.
SENDFILE_WAKE = 16 * 1024

#: Tells this process's listings from another's (in their ETags).
_PROCESS = os.urandom(6).hex().encode("ascii")

#: Last-Modified values, formatted once per distinct second. (The names above
#: are imported one by one: attributes of twisted.web.http go through a
#: deprecation proxy, a Python call each, which every download paid.)
_http_date = functools.lru_cache(maxsize=4096)(datetimeToString)


def download_cache_control(seconds: Optional[int], private: bool = False) -> Optional[bytes]:
    """
    The C{Cache-Control} of downloads under C{--cache-control SECONDS}:
    C{public}, or C{private} when downloads need a password (shared caches
    must not keep them). L{None} when the option is not given.
    """
    if seconds is None:
        return None
    return b"%s, max-age=%d" % (b"private" if private else b"public", seconds)


def content_type_for(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "application/gzip"
    if lower.endswith(".zip"):
        return "application/zip"
    if lower.endswith(".asc"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def file_etag(f: DistFile) -> bytes:
    """A strong ETag for the file's bytes."""
    return etag_for(f.digest, f.size, f.mtime_ns)


def etag_for(digest: Optional[str], size: int, mtime_ns: int) -> bytes:
    """A strong ETag: the content's hex digest, else its size and mtime."""
    if digest:
        return f'"{digest}"'.encode("ascii")
    return f'"{size:x}-{mtime_ns:x}"'.encode("ascii")


def none_match(header: bytes, etag: Optional[bytes]) -> bool:
    """
    Whether C{If-None-Match: header} matches C{etag}: C{*}, or one of its
    entity tags compared weakly (C{W/"x"} matches C{"x"}), as RFC 9110 says.
    """
    for tag in header.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag == etag or (tag.startswith(b"W/") and tag[2:] == etag):
            return True
    return False


def if_range_holds(value: bytes, etag: Optional[bytes], last_modified: int) -> bool:
    """
    Whether C{If-Range: value} lets a C{Range} be honoured: its validator
    must match the current representation exactly (the strong ETag, or the
    very C{Last-Modified} date sent).
    """
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag
    if value.startswith(b"W/"):
        return False
    try:
        return stringToDatetime(value) == last_modified
    except (ValueError, IndexError, KeyError):
        return False


def send_file(
    request,
    body: IBody,
    content_type: str,
    etag: Optional[bytes],
    cache_control: Optional[bytes] = None,
):
    """
    Answer a GET or HEAD with the bytes of C{body} (an
    L{pypid.store.interfaces.IBody}), which this takes over (it is closed
    when done): a strong C{ETag} with C{If-None-Match}, C{Last-Modified}
    with C{If-Modified-Since}, a single C{Range} (206, or 416 with
    C{Content-Range: bytes */SIZE}) with C{If-Range}, and never a
    content-coding. Answers of up to L{CHUNK} bytes are one read and one
    write (for a file on disk, one C{pread}); longer ones are streamed by
    the body (for a file on disk, through a L{FileSender}).

    @return: what a C{render} method returns (bytes or C{NOT_DONE_YET}), or
        L{None}, with nothing set on C{request}, when the file no longer
        has C{size} bytes.
    """
    size = body.size
    # Last-Modified as twisted.web sends it: whole seconds, rounded up.
    last_modified = -(-body.mtime_ns // 1_000_000_000)
    status = OK
    first, count = 0, size
    condition = request.getHeader(b"if-none-match")
    if condition is not None:
        if none_match(condition, etag):
            status = NOT_MODIFIED
    elif not_modified_since(request, last_modified):
        status = NOT_MODIFIED
    if status == OK and request.method != b"HEAD":
        wanted = request.getHeader(b"range")
        if wanted is not None:
            condition = request.getHeader(b"if-range")
            if condition is None or if_range_holds(condition, etag, last_modified):
                span = parse_range(wanted, size)
                if span is UNSATISFIABLE:
                    status, count = REQUESTED_RANGE_NOT_SATISFIABLE, 0
                elif isinstance(span, tuple):
                    status = PARTIAL_CONTENT
                    first, count = span[0], span[1] - span[0] + 1
    data = b""
    if request.method == b"HEAD" or status == NOT_MODIFIED:
        body.close()
    elif count <= CHUNK:
        try:
            read = body.read(first, count)
        except BaseException:
            body.close()
            raise
        if not isinstance(read, bytes):
            later = read
            # A Deferred: a backend that answers later; the headers go once the bytes are here.
            def arrived(data: bytes):
                if len(data) != count:
                    return text_response(request, http.NOT_FOUND, "Not Found")
                return _headers(request, status, first, count, size, content_type, etag,
                                last_modified, cache_control, data)

            def closed(result):
                body.close()
                return result

            return respond(request, lambda: later.addBoth(closed).addCallback(arrived))
        data = read
        body.close()
        if len(data) != count:
            return None
    result = _headers(request, status, first, count, size, content_type, etag, last_modified, cache_control, data)
    if request.method == b"HEAD" or status == NOT_MODIFIED or count <= CHUNK:
        return result
    body.stream(request, first, count)
    return NOT_DONE_YET


def _headers(request, status: int, first: int, count: int, size: int, content_type: str,
             etag: Optional[bytes], last_modified: int, cache_control: Optional[bytes], data: bytes) -> bytes:
    """Set the status and headers of L{send_file}'s answer; return C{data}, or nothing for a 304."""
    if cache_control is not None:
        request.setHeader(b"cache-control", cache_control)
    if etag is not None:
        request.setHeader(b"etag", etag)
    request.setHeader(b"last-modified", _http_date(last_modified))
    if status == NOT_MODIFIED:
        request.setResponseCode(status)
        return b""
    request.setHeader(b"accept-ranges", b"bytes")
    request.setHeader(b"content-type", content_type.encode("ascii"))
    request.setHeader(b"content-length", b"%d" % count)
    if status != OK:
        request.setResponseCode(status)
        if status == PARTIAL_CONTENT:
            request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, first + count - 1, size))
        else:
            request.setHeader(b"content-range", b"bytes */%d" % size)
    return data


@implementer(IPushProducer)
class FileSender:
    """
    Streams C{count} bytes of an open file from C{offset} into a request,
    as fast as the connection takes them: a push producer, paused and
    resumed by the transport. While it sends, the connection's buffer
    limit is 0, so the transport pauses it after every write and resumes it
    once the kernel has taken all: no more than one L{CHUNK} per connection
    is ever held in memory. On a plain TCP connection, once the transport
    has sent all it had, the file goes to the socket by sendfile(2) (no
    copy through Python) until the socket is full or L{SENDFILE_TURN} is
    sent; then one chunk is handed to the transport, which writes it when
    the socket can take more and resumes the sender. The file is closed
    when all is sent or the connection is lost.

    With C{unchanged} (C{unchanged(fd)}: whether the file is as it was
    when opened), the last bytes are read apart (never by sendfile), and
    sent only if the file was not written to meanwhile: a file rewritten in
    place during the download (C{cp} over it) is never a whole answer of
    old and new bytes; the connection is cut instead, and the client sees
    the answer short.
    """

    def __init__(self, request, fd: int, offset: int, count: int,
                 unchanged: Optional[Callable[[int], bool]] = None) -> None:
        self.request = request
        self.fd: Optional[int] = fd
        self.offset = offset
        self.remaining = count
        self.unchanged = unchanged
        #: Bytes sendfile leaves for the checked last read.
        self._tail = 1 if unchanged is not None else 0
        self.paused = False
        self._writing = False
        self._transport = None
        self._buffer_size = 0
        #: The socket to sendfile() to (None: TLS, or no socket).
        self._socket: Optional[int] = None
        #: Whether the transport has sent all it was given (we were resumed).
        self._drained = False
        self._wrote = False

    def start(self) -> None:
        # The socket's transport (below TLS, if any) decides when to pause.
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        while transport is not None and not hasattr(transport, "bufferSize"):
            transport = getattr(transport, "transport", None)
        if transport is not None:
            self._transport, self._buffer_size = transport, transport.bufferSize
            transport.bufferSize = 0
            if transport is self.request.channel.transport and hasattr(os, "sendfile"):
                try:
                    self._socket = transport.fileno()
                except (AttributeError, OSError):
                    self._socket = None
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            # The transport resumes us once it has sent all it had.
            self._drained = True
        self.paused = False
        if self._writing:
            # Resumed from within our own write: the loop below goes on.
            return
        self._writing = True
        try:
            if self._drained and self._socket is not None and self.fd is not None and self.remaining > self._tail:
                self._drained = False
                if not self._sendfile():
                    return
            # The first write carries the headers; after it, with sendfile,
            # the transport only needs a piece to wake us up with.
            size = SENDFILE_WAKE if self._socket is not None and self._wrote else CHUNK
            while not self.paused and self.fd is not None and self.remaining:
                try:
                    data = os.pread(self.fd, min(size, self.remaining), self.offset)
                except OSError:
                    data = b""
                if not data:
                    # The file shrank under us.
                    self._cut()
                    return
                if len(data) == self.remaining and self.unchanged is not None and not self._unchanged():
                    # The last bytes: only if every byte sent was of one file.
                    self._cut()
                    return
                self.offset += len(data)
                self.remaining -= len(data)
                self._wrote = True
                self.request.write(data)
        finally:
            self._writing = False
        if self.fd is not None and not self.remaining:
            self._close()
            self.request.unregisterProducer()
            self.request.finish()

    def _sendfile(self) -> bool:
        """
        Send what the socket takes (up to L{SENDFILE_TURN}) straight from
        the file; False when the answer has been cut.
        """
        socket, fd = self._socket, self.fd
        assert socket is not None and fd is not None  # (only called with both)
        turn = 0
        while self.remaining > self._tail and turn < SENDFILE_TURN:
            try:
                sent = os.sendfile(socket, fd, self.offset,
                                   min(self.remaining - self._tail, SENDFILE_TURN - turn))
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                # The connection is gone (the transport will see it) or the
                # file cannot be read: either way this answer ends here.
                self._cut()
                return False
            if sent == 0:
                # The file shrank under us.
                self._cut()
                return False
            self.offset += sent
            self.remaining -= sent
            self.request.sentLength += sent
            turn += sent
        return True

    def _unchanged(self) -> bool:
        unchanged, fd = self.unchanged, self.fd
        assert unchanged is not None and fd is not None  # (only called with both)
        try:
            return unchanged(fd)
        except OSError:
            return False

    def _cut(self) -> None:
        """The promised length cannot be kept: the client must see the answer cut off."""
        self._close()
        self.request.unregisterProducer()
        self.request.loseConnection()

    def stopProducing(self) -> None:
        """The connection is gone: stop, and let the file go."""
        self._close()

    def _close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.bufferSize = self._buffer_size


def redirect_elsewhere(request, url: str) -> bytes:
    """
    Send the client to C{url} for a file's bytes (a backend's
    L{IBody.redirect}, such as a presigned URL of an object store): a 307
    (the same method again: a HEAD stays a HEAD) that no cache keeps,
    since such URLs expire.
    """
    request.setHeader(b"location", url.encode("ascii"))
    request.setHeader(b"cache-control", b"no-store")
    return text_response(request, http.TEMPORARY_REDIRECT, "Temporary Redirect")


class Packages(PlainResource):
    """C{/packages/...}: looked up in the index, so only listed files are served."""

    isLeaf = True

    def __init__(self, store: IPackageStore, pages: PageCache, cache_control: Optional[bytes]) -> None:
        super().__init__()
        self.store = store
        self.pages = pages
        self.cache_control = cache_control

    def render_GET(self, request):
        segments = request.postpath
        if not segments:
            return redirect(request, "packages/")
        if segments == [b""]:
            return self._listing(request)
        try:
            path = b"/".join(segments).decode("utf-8")
        except UnicodeDecodeError:
            return self._missing(request)
        snapshot = self.store.snapshot
        files = snapshot.files
        f = files.get(path)
        if f is not None and snapshot.shadowed and not snapshot.listed(f):
            # Another spelling of a listed file's name: not served.
            return self._missing(request)
        if f is not None:
            return self._file(request, f)
        base, _, suffix = path.rpartition(".")
        f = files.get(base)
        if f is not None and snapshot.shadowed and not snapshot.listed(f):
            return self._missing(request)
        if f is not None and suffix == "metadata" and f.metadata_sha256:
            return self._metadata(request, f)
        if f is not None and suffix == "asc" and f.has_sig:
            return self._file(request, f, ".asc")
        return self._missing(request)

    @staticmethod
    def _missing(request) -> bytes:
        return error_page(request, not_found())

    def _listing(self, request):
        """
        C{/packages/}: every file, streamed as it is rendered (at a million
        files it is some 180 MB): the reactor renders one chunk per turn,
        as the client takes them, and never holds the whole page.
        """
        keys = self.pages.project_keys()
        if isinstance(keys, Deferred):
            return keys.addCallback(lambda keys: self._stream_listing(request, keys))
        return self._stream_listing(request, keys)

    def _stream_listing(self, request, keys: list[str]):
        snapshot = self.pages.snapshot
        gz = accepts_gzip((request.getHeader(b"accept-encoding") or b"").decode("latin-1"))
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"vary", b"Accept-Encoding")
        request.setHeader(b"cache-control", REVALIDATE)
        if gz:
            request.setHeader(b"content-encoding", b"gzip")
        # Weak: the same listing is not byte for byte the same across
        # processes; the generation changes with every change of the index.
        etag = b'W/"%s-%d%s"' % (_PROCESS, snapshot.generation, b"-gz" if gz else b"")
        if request.setETag(etag) is http.CACHED or request.method == b"HEAD":
            return b""
        chunks = render.files_html_chunks(snapshot, keys, self.pages.hash_algo)
        ChunkSender(request, gzip_chunks(chunks) if gz else chunks).start()
        return NOT_DONE_YET

    def _file(self, request, f: DistFile, sidecar: str = ""):
        body = self.store.open(f, sidecar)
        if body is None:
            return self._missing(request)
        if body.redirect is not None:
            body.close()
            return redirect_elsewhere(request, body.redirect)
        if sidecar:
            etag = None
        elif body.size != f.size:
            # Not the file that was indexed (rewritten, or being written):
            # gone until the index has looked at it again.
            body.close()
            return self._missing(request)
        elif body.mtime_ns != f.mtime_ns:
            # Same size, but touched since: its digest may no longer hold.
            etag = etag_for(None, body.size, body.mtime_ns)
        else:
            etag = file_etag(f)
        served = send_file(request, body, content_type_for(f.filename + sidecar), etag, self.cache_control)
        return self._missing(request) if served is None else served

    def _metadata(self, request, f: DistFile):
        etag = f'"{f.metadata_sha256}"'.encode("ascii")
        if self.cache_control is not None:
            request.setHeader(b"cache-control", self.cache_control)
        if request.setETag(etag) is http.CACHED:
            return b""

        def send(raw: bytes) -> bytes:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"content-length", b"%d" % len(raw))
            return raw

        def missing(failure):
            failure.trap(MetadataError)
            return None

        d = self.store.readMetadata(f).addErrback(missing)
        return d.addCallback(lambda raw: send(raw) if raw is not None else self._missing(request))
