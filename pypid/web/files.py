"""
Downloads under C{/packages/}: distribution files, their core metadata
(C{.metadata}) and detached signatures (C{.asc}), plus the flat list of every
file at C{/packages/} that C{pip --find-links} reads.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from twisted.web import http, static
from twisted.web.resource import Resource

from pypid.index import DistFile
from pypid.interfaces import IPackageStore
from pypid.metadata import MetadataError
from pypid.pages import PageCache
from pypid.web.util import redirect, render_later, serve_page, text_response


class DistributionFile(static.File):
    """
    A file served byte for byte: never a content-coding (an sdist's
    C{.tar.gz} must not go out as C{Content-Encoding: gzip}), never a
    directory listing.
    """

    contentEncodings: dict = {}

    def __init__(self, path: str, content_type: str) -> None:
        super().__init__(path, defaultType="application/octet-stream")
        self.type = content_type
        self.encoding = None



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


def _if_range_holds(request, etag: bytes, mtime: float) -> bool:
    """
    Whether a C{Range} may be honoured given C{If-Range}: its validator must
    match the current entity exactly (strong ETag, or the exact
    C{Last-Modified} date).
    """
    value = request.getHeader(b"if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag
    if value.startswith(b"W/"):
        return False
    try:
        return http.stringToDatetime(value) == int(mtime)
    except (ValueError, IndexError, KeyError):
        return False


def _clamp_suffix_ranges(request, size: int) -> None:
    """
    Rewrite a suffix range longer than the file (C{bytes=-N}, N > size) to
    the whole file, as RFC 9110 requires; static.File would try to seek
    before the start of the file.
    """
    header = request.getHeader(b"range")
    if header is None or not header.strip().lower().startswith(b"bytes="):
        return
    specs = header.strip()[6:].split(b",")
    changed = False
    for i, spec in enumerate(specs):
        spec = spec.strip()
        if spec.startswith(b"-") and spec[1:].isdigit() and int(spec[1:]) > size:
            specs[i] = b"0-"
            changed = True
    if changed:
        request.requestHeaders.setRawHeaders(b"range", [b"bytes=" + b",".join(specs)])


def serve_file(
    request,
    local: str,
    content_type: str,
    etag: Optional[bytes],
    mtime: Optional[float] = None,
    cache_control: Optional[bytes] = None,
):
    """
    Render the regular file at C{local} byte for byte, with C{Range}, a
    strong C{ETag} (C{If-None-Match}, and C{If-Range} against it or the
    exact C{mtime}), C{Last-Modified} and C{HEAD}. Returns what a C{render}
    method returns (bytes or C{NOT_DONE_YET}), or L{None} when there is no
    such regular file.
    """
    try:
        st = os.stat(local)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if cache_control is not None:
        request.setHeader(b"cache-control", cache_control)
    if etag is not None:
        if request.setETag(etag) is http.CACHED:
            return b""
        if request.getHeader(b"range") is not None and not _if_range_holds(
            request, etag, st.st_mtime if mtime is None else mtime
        ):
            request.requestHeaders.removeHeader(b"range")
    _clamp_suffix_ranges(request, st.st_size)
    return DistributionFile(local, content_type).render(request)


class Packages(Resource):
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
            return serve_page(request, self.pages.files_listing(), b"text/html; charset=utf-8")
        try:
            path = b"/".join(segments).decode("utf-8")
        except UnicodeDecodeError:
            return self._missing(request)
        files = self.store.snapshot.files
        f = files.get(path)
        if f is not None:
            return self._file(request, f)
        base, _, suffix = path.rpartition(".")
        f = files.get(base)
        if f is not None and suffix == "metadata" and f.metadata_sha256:
            return self._metadata(request, f)
        if f is not None and suffix == "asc" and f.has_sig:
            return self._file(request, f, ".asc")
        return self._missing(request)

    render_HEAD = render_GET

    @staticmethod
    def _missing(request) -> bytes:
        return text_response(request, http.NOT_FOUND, "Not Found")

    def _file(self, request, f: DistFile, sidecar: Optional[str] = None):
        local = self.store.localPath(f)
        if local is None:
            return self._missing(request)
        if sidecar:
            local = local + sidecar
            etag = None
        else:
            etag = file_etag(f)
        served = serve_file(request, local, content_type_for(f.filename + (sidecar or "")),
                            etag, f.mtime_ns / 1e9, self.cache_control)
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
        return render_later(
            request, d, lambda raw: send(raw) if raw is not None else self._missing(request)
        )
