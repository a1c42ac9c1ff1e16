"""
The caching fallback on the reactor thread: upstream pages with a TTL,
conditional revalidation and stale-if-error; files fetched once (single
flight), hash-checked, renamed into the cache, evicted least recently used
first. Blocking work (disk, parsing) goes through C{threads}; only
the chunks of a download are written (and hashed) on the reactor thread, as
they arrive, which costs in proportion to the network's pace.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from pypid.counts import counted
from pypid.ops import metrics
from pypid.store.directory.body import FileBody
from pypid.store.interfaces import IBody
from pypid.threads import Threads
from pypid.upstream.interfaces import IUpstream
from pypid.upstream import cache
from pypid.upstream.cache import CacheLayout, PageEntry
from pypid.upstream.client import DownloadError
from pypid.upstream.flight import SingleFlight
from pypid.lru import LRU, Recent
from pypid.upstream.policy import FAILED, GONE, NOT_MODIFIED, OK, Validators, classify, is_fresh
from pypid.upstream.records import ACCEPT, Hashes, UpstreamError, parse_page, parse_project_list

#: After a failed revalidation, serve the stale copy without asking the
#: upstream again for this long (at most the TTL), so an unreachable
#: upstream does not slow every request down.
RETRY_AFTER = 30.0

#: How many upstream pages are kept in memory.
MEMORY_PAGES = 2048

#: Hash algorithms a file may be checked with, best first.
CHECK_HASHES = ("sha256", "sha512", "sha384", "blake2b", "sha224", "sha1", "md5")


def _result(error: BaseException) -> str:
    """The C{result} label of a failed upstream request."""
    from twisted.internet.defer import CancelledError
    from twisted.internet.error import TimeoutError
    from twisted.web.client import ResponseNeverReceived

    if isinstance(error, ResponseNeverReceived):
        reasons = [getattr(r, "value", r) for r in error.reasons]
        if any(isinstance(r, (CancelledError, TimeoutError)) for r in reasons):
            return "timeout"
    if isinstance(error, (CancelledError, TimeoutError)) or getattr(error, "timed_out", False):
        return "timeout"
    if isinstance(error, DownloadError) and error.code == 404:
        return "not_found"
    return "error"


class NotOnUpstream(Exception):
    """The upstream has no such project or file."""


class UpstreamUnavailable(Exception):
    """The upstream could not deliver, and there is no cached copy."""


class HashMismatch(DownloadError):
    pass


def _check_hash(hashes: Hashes) -> Optional[tuple[str, str]]:
    known = dict(hashes)
    for name in CHECK_HASHES:
        if name in known:
            return name, known[name]
    return None


class Fallback:
    log = Logger()

    def __init__(
        self,
        upstream: IUpstream,
        url: str,
        cache_dir: str,
        clock,
        threads: Threads,
        ttl: float = 600,
        max_size: Optional[int] = None,
    ) -> None:
        self.upstream = upstream
        self.url = url.rstrip("/") + "/"
        self.layout = CacheLayout(cache_dir)
        self.clock = clock
        self._thread = self.threads = threads
        self.ttl = ttl
        #: Pages in memory (the others are read back from disk when asked for).
        self.pages = Recent(MEMORY_PAGES, on_evict=lambda key: self._loaded.discard(key))
        self.lru = LRU(max_size)
        self.flights = SingleFlight()
        self._loaded: set[str] = set()
        self._quiet_until: dict[str, float] = {}
        self._index: Optional[tuple] = None
        #: Completed downloads, for statistics and tests.
        self.downloads = 0
        #: Where replicas share the files they fetched (an object with
        #: C{download(url, hashes, write)}, firing with a
        #: L{pypid.upstream.client.Download} or L{None} when it has none,
        #: and C{keep(url, hashes, path)}), or L{None}: see
        #: L{pypid.store.objectstore.upstream.SharedUpstreamFiles}.
        self.shared = None

    def start(self) -> Deferred:
        """Take stock of the files already cached (and clear leftovers)."""

        def found(files) -> None:
            for path, size, _ in files:
                if path not in self.lru:
                    self.lru.add(path, size)
            self._evict()
            self.log.info("upstream cache {directory}: {files}, {bytes}",
                          directory=self.layout.directory, count=len(self.lru), size=self.lru.total,
                          files=counted(len(self.lru), "file"), bytes=counted(self.lru.total, "byte"))

        return self._thread(cache.scan_files, self.layout).addCallback(found)

    def project_url(self, key: str) -> str:
        return self.url + key + "/"

    # Pages

    def project(self, key: str) -> Deferred:
        """
        The upstream page of C{key} as a L{PageEntry}: fresh from memory,
        revalidated, or stale when the upstream fails. Fires with L{None}
        when the upstream has no such project; fails with
        L{UpstreamUnavailable} when it cannot be reached and nothing is
        cached.
        """
        entry = self.pages.get(key)
        now = self.clock.seconds()
        if entry is not None and (
            is_fresh(entry.fetched_at, now, self.ttl) or now < self._quiet_until.get(key, 0)
        ):
            metrics.UPSTREAM_CACHE_HITS.inc(kind="page")
            return succeed(entry)
        return self.flights.run(("page", key), lambda: self._refresh(key))

    def cached_project(self, key: str) -> Optional[PageEntry]:
        """The page of C{key} if it is in memory, fresh or not; no I/O."""
        return self.pages.get(key)

    @inlineCallbacks
    def _refresh(self, key: str):
        entry = self.pages.get(key)
        if entry is None and key not in self._loaded:
            entry = yield self._thread(cache.load_page, self.layout.page_path(key))
            self._loaded.add(key)
            if entry is not None:
                self.pages[key] = entry
                if is_fresh(entry.fetched_at, self.clock.seconds(), self.ttl):
                    metrics.UPSTREAM_CACHE_HITS.inc(kind="page")
                    return entry
        headers = {"Accept": ACCEPT}
        if entry is not None:
            headers.update(entry.validators.request_headers())
        try:
            response = yield self.upstream.fetchPage(self.project_url(key), headers)
        except Exception as e:
            metrics.UPSTREAM_FETCHES.inc(kind="page", result=_result(e))
            return self._stale(key, entry, str(e) or e.__class__.__name__)
        conditional = entry is not None and bool(entry.validators.request_headers())
        outcome = classify(response.code, conditional)
        metrics.UPSTREAM_FETCHES.inc(
            kind="page", result={OK: "ok", NOT_MODIFIED: "not_modified", GONE: "not_found"}.get(outcome, "error"))
        now = self.clock.seconds()
        if outcome == NOT_MODIFIED:
            entry = entry._replace(fetched_at=now)
            self.log.debug("upstream page {key} not modified", key=key)
        elif outcome == GONE:
            self.pages.pop(key, None)
            yield self._thread(cache.remove_files, [self.layout.page_path(key)])
            return None
        elif outcome == FAILED:
            return self._stale(key, entry, f"HTTP {response.code}")
        else:
            try:
                project = yield self._thread(parse_page, key, response.body, response.content_type, response.url)
            except Exception as e:
                # UpstreamError, or anything else an odd page makes the parser raise.
                return self._stale(key, entry, f"unusable page: {e}")
            entry = PageEntry(project, Validators(response.etag, response.last_modified), now)
            self.log.info("fetched upstream page {key}: {files}", key=key, count=len(project.files),
                          files=counted(len(project.files), "file"))
        self.pages[key] = entry
        self._quiet_until.pop(key, None)
        try:
            yield self._thread(cache.save_page, self.layout.page_path(key), entry)
        except OSError as e:
            self.log.error("cannot write the upstream cache for {key}: {error}", key=key, error=e)
        return entry

    def _stale(self, key: str, entry: Optional[PageEntry], why: str) -> PageEntry:
        if entry is None:
            self.log.warn("upstream page {key} unavailable and never cached: {why}", key=key, why=why)
            raise UpstreamUnavailable(
                f"The upstream index could not deliver {key!r} ({why}), and this index has no cached copy."
            )
        now = self.clock.seconds()
        self._quiet_until[key] = now + min(RETRY_AFTER, self.ttl)
        self.log.warn(
            "upstream page {key} unavailable ({why}); serving the copy cached {age:.0f}s ago",
            key=key, why=why, age=now - entry.fetched_at,
        )
        return entry

    # The project list (--list-upstream)

    def project_names(self) -> Deferred:
        """
        The upstream's project names (a tuple), fresh, revalidated or stale
        like project pages; an empty tuple when it cannot be had at all.
        """
        entry = self._index
        now = self.clock.seconds()
        if entry is not None and (is_fresh(entry[2], now, self.ttl) or now < self._quiet_until.get("", 0)):
            return succeed(entry[0])
        return self.flights.run("index", self._refresh_index)

    @inlineCallbacks
    def _refresh_index(self):
        entry = self._index
        if entry is None:
            entry = yield self._thread(cache.load_index, self.layout.index_path)
            self._index = entry
            if entry is not None and is_fresh(entry[2], self.clock.seconds(), self.ttl):
                return entry[0]
        headers = {"Accept": ACCEPT}
        if entry is not None:
            headers.update(entry[1].request_headers())
        try:
            response = yield self.upstream.fetchPage(self.url, headers)
            outcome = classify(response.code, entry is not None and bool(entry[1].request_headers()))
            if outcome == NOT_MODIFIED:
                names = entry[0]
                validators = entry[1]
            elif outcome == OK:
                names = tuple((yield self._thread(parse_project_list, response.body, response.content_type)))
                validators = Validators(response.etag, response.last_modified)
            else:
                raise UpstreamError(f"HTTP {response.code}")
        except Exception as e:
            self._quiet_until[""] = self.clock.seconds() + min(RETRY_AFTER, self.ttl)
            self.log.warn("upstream project list unavailable: {error}", error=e)
            return entry[0] if entry is not None else ()
        self._index = (names, validators, self.clock.seconds())
        try:
            yield self._thread(cache.save_index, self.layout.index_path, self._index)
        except OSError as e:
            self.log.error("cannot write the upstream project list: {error}", error=e)
        return names

    # Files

    # Each of these answers with the file opened for one response (an
    # L{IBody}, a descriptor read with pread, as the package directories'
    # files are): pinned, never evicted, until the body is let go.

    def cached_file(self, key: str, filename: str) -> Optional[IBody]:
        """The cached file, opened, if it is known to be on disk (one open, no thread)."""
        return self._cached(self.layout.file_path(key, filename))

    def file(self, key: str, filename: str) -> Deferred:
        """
        The cached file, opened, fetching it first if needed: a L{Deferred}
        of an L{IBody} (L{None} if it went meanwhile).
        """
        body = self.cached_file(key, filename)
        if body is not None:
            return succeed(body)
        path = self.layout.file_path(key, filename)

        def fetch():
            return self._fetch(key, path, lambda f: (f.url, f.hashes, f.size, True), filename)

        return self.flights.run(("file", key, filename), fetch).addCallback(self._open)

    def metadata(self, key: str, filename: str) -> Deferred:
        """A cached file's core metadata, opened, fetching it first if needed (like L{file})."""
        path = self.layout.metadata_path(key, filename)
        body = self._cached(path)
        if body is not None:
            return succeed(body)

        def what(f):
            hashes = f.core_metadata if isinstance(f.core_metadata, tuple) else ()
            return f.url + ".metadata", hashes, None, f.core_metadata is not False

        return self.flights.run(
            ("metadata", key, filename), lambda: self._fetch(key, path, what, filename)).addCallback(self._open)

    def _cached(self, path: str) -> Optional[IBody]:
        if path not in self.lru:
            return None
        body = self._open(path)
        if body is not None:
            self.lru.touch(path)
            metrics.UPSTREAM_CACHE_HITS.inc(kind="file")
        return body

    def _open(self, path: str) -> Optional[IBody]:
        """C{path} opened, and pinned until the body is let go; L{None} if it is not there."""
        self.lru.pin(path)
        body = FileBody.open(path, on_close=lambda: self.lru.unpin(path))
        if body is None:
            self.lru.unpin(path)
        return body

    @inlineCallbacks
    def _fetch(self, key: str, path: str, what, filename: str):
        size = yield self._thread(_size_if_file, path)
        if size is not None:
            self.lru.add(path, size)
            return path
        entry = yield self.project(key)
        quarantined = entry is not None and entry.project.status == "quarantined"
        record = entry.project.file(filename) if entry is not None and not quarantined else None
        if record is None:
            raise NotOnUpstream(f"{filename} is not a file of {key!r} on the upstream index.")
        url, hashes, expected_size, listed = what(record)
        if not listed:
            raise NotOnUpstream(f"The upstream index has no metadata file for {filename}.")
        try:
            yield self._download(url, path, hashes, expected_size)
        except Exception as e:
            metrics.UPSTREAM_FETCHES.inc(kind="file", result=_result(e))
            self.log.error("download of {url} failed: {error}", url=url, error=e)
            raise UpstreamUnavailable(f"Fetching {filename} from the upstream index failed: {e}")
        return path

    @inlineCallbacks
    def _download(self, url: str, path: str, hashes: Hashes, expected_size: Optional[int]):
        check = _check_hash(hashes)
        hasher = hashlib.new(check[0]) if check else None
        incoming = yield self._thread(cache.open_incoming, path)

        def write(chunk: bytes) -> None:
            incoming.write(chunk)
            if hasher is not None:
                hasher.update(chunk)

        try:
            # Fetched by another replica already? (A shared file is checked like any other.)
            download = None if self.shared is None else (yield self.shared.download(url, hashes, write))
            fetched = download is None
            if fetched:
                download = yield self.upstream.download(url, write)
            if expected_size is not None and download.length != expected_size:
                raise DownloadError(f"got {download.length} bytes where the upstream lists {expected_size}")
            if hasher is not None and hasher.hexdigest() != check[1]:
                raise HashMismatch(
                    f"{check[0]} {hasher.hexdigest()} does not match the upstream's {check[1]}")
            if hasher is None and not download.framed:
                raise DownloadError("no hash and no length to tell whether the file is complete")
            size = yield self._thread(cache.commit_incoming, incoming, path)
        except BaseException as e:
            yield self._thread(cache.discard_incoming, incoming)
            raise e
        self.downloads += 1
        if fetched:
            metrics.UPSTREAM_FETCHES.inc(kind="file", result="ok")
            if self.shared is not None:
                self.shared.keep(url, hashes, path)
        self.lru.add(path, size)
        # The new file is about to be served: evict others, never it.
        self.lru.pin(path)
        try:
            self._evict()
        finally:
            self.lru.unpin(path)
        self.log.info("cached {url} ({bytes})", url=url, size=size, bytes=counted(size, "byte"))
        return path

    def _evict(self) -> None:
        # Unlinked here, on the reactor thread, so that no request can find
        # the file between being chosen and being removed.
        victims = self.lru.victims()
        if victims:
            cache.remove_files(victims)
            self.log.info("evicted {files} from the upstream cache", count=len(victims),
                          files=counted(len(victims), "file"))


def _size_if_file(path: str) -> Optional[int]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat

    return st.st_size if stat.S_ISREG(st.st_mode) else None
