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
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pypid.counts import counted
from pypid.ops.metrics import Metrics
from pypid.store.directory.body import FileBody
from pypid.store.interfaces import IBody
from pypid.store.metadata import MetadataError, read_metadata
from pypid.threads import Threads
from pypid.upstream.interfaces import IUpstream
from pypid.upstream import cache, jsondoc, lazyzip
from pypid.upstream.causes import Cause, describe
from pypid.upstream.cache import CacheLayout, PageEntry
from pypid.upstream.client import DownloadError
from pypid.upstream.flight import SingleFlight

if TYPE_CHECKING:
    from pypid.store.objectstore.upstream import SharedUpstreamFiles
from pypid.lru import LRU, Recent
from pypid.upstream.policy import FAILED, GONE, NOT_MODIFIED, OK, Validators, classify, is_fresh
from pypid.upstream.rewrite import is_wheel_name as is_wheel
from pypid.upstream.records import ACCEPT, Hashes, UpstreamError, index_problem, parse_page, parse_project_list

#: After a failed revalidation, serve the stale copy without asking the
#: upstream again for this long (at most the TTL), so an unreachable
#: upstream does not slow every request down.
RETRY_AFTER = 30.0

#: After the upstream took a timeout to fail (no connection, no answer), what
#: needs it fails at once for this long, rather than each request waiting
#: for a timeout of its own; then it is tried again. (A refused connection
#: or a TLS failure is quick to find again: those are not remembered.)
DOWN_FOR = 15.0

#: Most bytes fetched in ranges to read one wheel's metadata (a wheel whose
#: central directory is larger is fetched whole).
MAX_RANGE_BYTES = 8 * 1024 * 1024

#: Bytes of the upstream's project list read by the check at start.
PROBE_BYTES = 64 * 1024

#: Upstream pages up to this size are parsed on the reactor thread (well
#: under a millisecond); larger ones in a thread.
INLINE_PAGE = 32 * 1024

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


class UpstreamDown(UpstreamUnavailable):
    """
    The upstream could not be reached at all (refused, timed out, TLS), and
    there is no cached copy: answered 504, which pip does not retry (it
    does 502, for 8 s, and then shows neither status nor reason).
    """


def unavailable(what: str, cause) -> UpstreamUnavailable:
    """
    The failure a client sees, C{cause} a L{Cause} or a phrase (the message
    is also the status line's reason phrase, which uv shows: the cause first).
    """
    text = cause.text if isinstance(cause, Cause) else cause
    kind = UpstreamDown if isinstance(cause, Cause) and cause.unreachable else UpstreamUnavailable
    return kind(f"Upstream index failed ({text}): {what}.")


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
        metrics: Optional[Metrics] = None,
    ) -> None:
        self.upstream = upstream
        #: Where fetches and cache hits are counted.
        self.metrics = metrics if metrics is not None else Metrics()
        self.url = url.rstrip("/") + "/"
        self.layout = CacheLayout(cache_dir)
        self.clock = clock
        self._thread = self.threads = threads
        self.ttl = ttl
        #: Pages in memory (the others are read back from disk when asked for).
        self.pages: Recent[str, PageEntry] = Recent(MEMORY_PAGES, on_evict=lambda key: self._loaded.discard(key))
        self.lru = LRU(max_size)
        self.flights = SingleFlight()
        self._loaded: set[str] = set()
        self._quiet_until: dict[str, float] = {}
        self._index: Optional[tuple] = None
        #: Until when the upstream is taken for unreachable, and why (see L{DOWN_FOR}).
        self._down_until = 0.0
        self._down: Optional[Cause] = None
        #: Completed downloads, for statistics and tests.
        self.downloads = 0
        #: The upstream's JSON API documents: (key, version) -> (fetched at, document or None).
        self._json: Recent[tuple[str, Optional[str]], tuple[float, Any]] = Recent(256)
        #: Sizes of upstream files learnt by HEAD (pages without sizes).
        self._sizes: Recent[tuple[str, str], int] = Recent(4096)
        #: Whether the upstream turned out to serve no byte ranges.
        self.no_ranges = False
        #: The sha256 of the cached metadata files of a project's files, by file name.
        self._metadata_hashes: Recent[str, dict[str, str]] = Recent(MEMORY_PAGES)
        #: The keys of the pages on disk, once the cache is taken stock of
        #: (L{None} before: then the disk is looked at). Files: L{lru}.
        self._on_disk: Optional[set[str]] = None
        #: Projects with metadata files in the cache (once taken stock of).
        self._meta_keys: set[str] = set()
        #: Metadata read from wheels, served from memory while it is written.
        self._writing: dict[str, bytes] = {}
        #: Goes up by one whenever a metadata file of a project is cached or evicted
        #: (its pages then advertise another hash).
        self.metadata_generation: dict[str, int] = {}
        #: Where replicas share the files they fetched (an object with
        #: C{download(url, hashes, write)}, firing with a
        #: L{pypid.upstream.client.Download} or L{None} when it has none,
        #: and C{keep(url, hashes, path)}), or L{None}: see
        #: L{pypid.store.objectstore.upstream.SharedUpstreamFiles}.
        self.shared: Optional[SharedUpstreamFiles] = None

    def start(self) -> Deferred:
        """Take stock of the files already cached (and clear leftovers)."""

        pages: set[str] = set()

        def found(files) -> None:
            meta = os.path.join(self.layout.directory, "meta") + os.sep
            for path, size, _ in files:
                if path not in self.lru:
                    self.lru.add(path, size)
                if path.startswith(meta):
                    self._meta_keys.add(path[len(meta):].partition(os.sep)[0])
            # From now on what is not listed is not on disk: no thread to look.
            self._on_disk = pages | (self._on_disk or set())
            self._evict()
            self.log.info("upstream cache {directory}: {files}, {bytes}",
                          directory=self.layout.directory, count=len(self.lru), size=self.lru.total,
                          files=counted(len(self.lru), "file"), bytes=counted(self.lru.total, "byte"))

        return self._thread(cache.scan_files, self.layout, pages).addCallback(found)

    def project_url(self, key: str) -> str:
        return self.url + key + "/"

    # Whether the upstream can be reached

    @property
    def host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).netloc

    def down(self) -> Optional[Cause]:
        """Why the upstream is taken for unreachable right now (L{None}: try it)."""
        if self._down is not None and self.clock.seconds() < self._down_until:
            return self._down
        return None

    def _failed(self, error: BaseException, remember: bool = True) -> Cause:
        """
        Note a failed request: the first failure without an answer of an
        outage is logged as one line saying what to do, and when it took a
        timeout, the upstream is taken for unreachable for L{DOWN_FOR}
        seconds (unless not C{remember}: the check at start, which no
        request waits for, and which may run before the upstream is up).
        """
        cause = describe(error)
        if cause.unreachable:
            first = self._down is None
            self._down = cause
            if cause.slow and remember:
                self._down_until = self.clock.seconds() + DOWN_FOR
            if first and cause.tls:
                self.log.error(
                    "TLS with the upstream {host} failed ({cause}): if its certificate is signed by a private "
                    "CA or an intercepting proxy, give that CA's PEM file (a bundle works) with --upstream-ca FILE",
                    host=self.host, cause=cause.text)
            elif first and cause.slow:
                self.log.warn("the upstream {host} cannot be reached ({cause}); after each timeout what needs "
                              "it fails at once for {seconds:g} s, until it answers", host=self.host,
                              cause=cause.text, seconds=DOWN_FOR)
            elif first:
                self.log.warn("the upstream {host} cannot be reached ({cause})", host=self.host, cause=cause.text)
        return cause

    def _answered(self) -> None:
        """Note that the upstream answered (whatever it said)."""
        if self._down is not None:
            self._down = None
            self.log.info("the upstream {host} answers again", host=self.host)

    def probe(self) -> Deferred:
        """
        Ask the upstream's URL once (at start; nothing waits for it), and log
        one line when it cannot be reached or what answers is not a simple
        index (a URL without C{/simple/} would make every project missing).
        """

        def answered(response) -> None:
            self._answered()
            problem = index_problem(response.code, response.content_type, response.body)
            if problem is None:
                self.log.info("the upstream {url} answers as a simple index", url=self.url)
            else:
                self.log.warn(
                    "--fallback-url {url} does not look like a simple index ({problem}): pypid asks it for "
                    "<URL>/<project>/, which will be missing; a simple index's URL usually ends in /simple/",
                    url=self.url, problem=problem)

        def failed(failure) -> None:
            cause = self._failed(failure.value, remember=False)
            if not cause.unreachable:
                self.log.warn("asking the upstream {url} at start failed: {cause}", url=self.url, cause=cause.text)

        return self.upstream.fetchPage(self.url, {"Accept": ACCEPT}, limit=PROBE_BYTES).addCallbacks(answered, failed)

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
            self.metrics.upstream_cache_hits.inc(kind="page")
            return succeed(entry)
        return self.flights.run(("page", key), lambda: self._refresh(key))

    def cached_project(self, key: str) -> Optional[PageEntry]:
        """The page of C{key} if it is in memory, fresh or not; no I/O."""
        return self.pages.get(key)

    @inlineCallbacks
    def _refresh(self, key: str):
        entry = self.pages.get(key)
        if entry is None and key not in self._loaded:
            if self._on_disk is None or key in self._on_disk:
                entry = yield self._thread(cache.load_page, self.layout.page_path(key))
            self._loaded.add(key)
            if entry is not None:
                self.pages[key] = entry
                if is_fresh(entry.fetched_at, self.clock.seconds(), self.ttl):
                    self.metrics.upstream_cache_hits.inc(kind="page")
                    return entry
        down = self.down()
        if down is not None:
            return self._stale(key, entry, down, quiet=True)
        headers = {"Accept": ACCEPT}
        if entry is not None:
            headers.update(entry.validators.request_headers())
        try:
            response = yield self.upstream.fetchPage(self.project_url(key), headers)
        except Exception as e:
            self.metrics.upstream_fetches.inc(kind="page", result=_result(e))
            return self._stale(key, entry, self._failed(e))
        self._answered()
        conditional = entry is not None and bool(entry.validators.request_headers())
        outcome = classify(response.code, conditional)
        self.metrics.upstream_fetches.inc(
            kind="page", result={OK: "ok", NOT_MODIFIED: "not_modified", GONE: "not_found"}.get(outcome, "error"))
        now = self.clock.seconds()
        if outcome == NOT_MODIFIED:
            assert entry is not None  # (a 304 answers a conditional request only)
            entry = entry._replace(fetched_at=now)
            self.log.debug("upstream page {key} not modified", key=key)
        elif outcome == GONE:
            self.pages.pop(key, None)
            if self._on_disk is not None:
                self._on_disk.discard(key)
            yield self._thread(cache.remove_files, [self.layout.page_path(key)])
            return None
        elif outcome == FAILED:
            return self._stale(key, entry, f"HTTP {response.code}")
        else:
            try:
                if len(response.body) <= INLINE_PAGE:
                    # (A thread hop would cost more than parsing a small page.)
                    project = parse_page(key, response.body, response.content_type, response.url)
                else:
                    project = yield self._thread(parse_page, key, response.body, response.content_type,
                                                 response.url)
            except Exception as e:
                # UpstreamError, or anything else an odd page makes the parser raise.
                return self._stale(key, entry, f"unusable page: {e}")
            if entry is not None and project == entry.project:
                # The same page again (an upstream without validators): the
                # same object, so that what was rendered from it is reused.
                project = entry.project
            entry = PageEntry(project, Validators(response.etag, response.last_modified), now)
            self.log.info("fetched upstream page {key}: {files}", key=key, count=len(project.files),
                          files=counted(len(project.files), "file"))
        self.pages[key] = entry
        self._quiet_until.pop(key, None)
        # Written while it is served (a page lost to a crash is fetched again).
        self._save_page(key, entry)
        return entry

    def _save_page(self, key: str, entry: PageEntry) -> None:
        if self._on_disk is not None:
            self._on_disk.add(key)
        d = self._thread(cache.save_page, self.layout.page_path(key), entry)
        d.addErrback(lambda f: self.log.error("cannot write the upstream cache for {key}: {error}",
                                              key=key, error=f.getErrorMessage()))

    def _stale(self, key: str, entry: Optional[PageEntry], cause, quiet: bool = False) -> PageEntry:
        """
        The cached C{entry} when the upstream could not deliver (C{cause}, a
        L{Cause} or a phrase); without one, L{UpstreamUnavailable}. C{quiet}:
        the upstream was not asked (it is known to be down, which is logged
        once already): a page never cached is not logged again.
        """
        why = cause.text if isinstance(cause, Cause) else cause
        if entry is None:
            if not quiet:
                self.log.warn("upstream page {key} unavailable and never cached: {why}", key=key, why=why)
            raise unavailable(f"{key!r} is not in this index's cache", cause)
        now = self.clock.seconds()
        self._quiet_until[key] = now + min(RETRY_AFTER, self.ttl)
        self.log.warn(
            "upstream page {key} unavailable ({why}); serving the copy cached {age:.0f}s ago",
            key=key, why=why, age=now - entry.fetched_at,
        )
        return entry

    # The upstream's JSON API (/pypi/<project>/json)

    def upstream_json(self, key: str, version: Optional[str] = None) -> Deferred:
        """
        The upstream's JSON API document of C{key} (or of its release
        C{version}), parsed: kept in memory for the TTL; L{None} when the
        upstream has none (its index is not at C{<root>/simple/}, 404, not
        JSON) or cannot be reached now (pypid then builds one from the page).
        """
        url = jsondoc.json_url(self.url, key, version)
        if url is None:
            return succeed(None)
        cached = self._json.get((key, version))
        now = self.clock.seconds()
        if cached is not None and is_fresh(cached[0], now, self.ttl):
            return succeed(cached[1])
        return self.flights.run(("json", key, version), lambda: self._fetch_json(key, version, url, cached))

    @inlineCallbacks
    def _fetch_json(self, key: str, version: Optional[str], url: str, cached):
        stale = cached[1] if cached is not None else None
        if self.down() is not None:
            return stale
        try:
            response = yield self.upstream.fetchPage(url, {"Accept": "application/json"})
        except Exception as e:
            self._failed(e)
            return stale
        self._answered()
        if response.code in (404, 410):
            document = None
        elif response.code != 200:
            return stale
        else:
            import json

            try:
                document = yield self._thread(json.loads, response.body)
            except ValueError:
                document = None
        self._json[(key, version)] = (self.clock.seconds(), document)
        return document

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
            down = self.down()
            if down is not None:
                raise UpstreamError(down.text)
            try:
                response = yield self.upstream.fetchPage(self.url, headers)
            except Exception as e:
                raise UpstreamError(self._failed(e).text)
            self._answered()
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

    def _cached(self, path: str) -> Optional[IBody]:
        if path not in self.lru:
            return None
        body = self._open(path)
        if body is not None:
            self.lru.touch(path)
            self.metrics.upstream_cache_hits.inc(kind="file")
        return body

    def _open(self, path: str) -> Optional[IBody]:
        """C{path} opened, and pinned until the body is let go; L{None} if it is not there."""
        self.lru.pin(path)
        body = FileBody.open(path, on_close=lambda: self.lru.unpin(path))
        if body is None:
            self.lru.unpin(path)
        return body

    @inlineCallbacks
    def record(self, key: str, filename: str):
        """The upstream page's record of C{filename} (L{NotOnUpstream} if it lists none)."""
        entry = yield self.project(key)
        quarantined = entry is not None and entry.project.status == "quarantined"
        record = entry.project.file(filename) if entry is not None and not quarantined else None
        if record is None:
            raise NotOnUpstream(f"{filename} is not a file of {key!r} on the upstream index.")
        return record

    def _on_disk_size(self, path: str) -> Deferred:
        """The size of a cache file the LRU does not list (L{None}: not there; no thread once taken stock)."""
        if self._on_disk is not None:
            return succeed(None)
        return self._thread(_size_if_file, path)

    @inlineCallbacks
    def _fetch(self, key: str, path: str, what, filename: str):
        size = yield self._on_disk_size(path)
        if size is not None:
            self.lru.add(path, size)
            return path
        record = yield self.record(key, filename)
        url, hashes, expected_size, listed = what(record)
        if not listed:
            raise NotOnUpstream(f"The upstream index has no metadata file for {filename}.")
        yield self._fetch_url(url, path, hashes, expected_size, filename)
        return path

    @inlineCallbacks
    def _fetch_url(self, url: str, path: str, hashes: Hashes, expected_size: Optional[int], filename: str):
        down = self.down()
        if down is not None:
            raise unavailable(f"{filename} is not in this index's cache", down)
        try:
            yield self._download(url, path, hashes, expected_size)
            self._answered()
        except Exception as e:
            self.metrics.upstream_fetches.inc(kind="file", result=_result(e))
            if isinstance(e, DownloadError) and e.code in (404, 410):
                raise NotOnUpstream(f"The upstream index has no {filename} (HTTP {e.code}).")
            cause = self._failed(e)
            self.log.error("download of {url} failed: {error}", url=url, error=cause.text)
            raise unavailable(f"fetching {filename} failed", cause)

    # Sizes and ranges of files not cached, without fetching them whole

    @inlineCallbacks
    def size(self, key: str, filename: str):
        """
        The upstream file's record and size: the size from its page (PEP
        700), or from a HEAD; L{None} for the size when neither tells it.
        """
        record = yield self.record(key, filename)
        size = record.size if record.size is not None else self._sizes.get((key, filename))
        if size is not None:
            return record, size
        down = self.down()
        if down is not None:
            raise unavailable(f"{filename} is not in this index's cache", down)
        try:
            head = yield self.upstream.head(record.url)
        except Exception as e:
            raise unavailable(f"asking for the size of {filename} failed", self._failed(e))
        self._answered()
        if head.code in (404, 410):
            raise NotOnUpstream(f"The upstream index has no {filename} (HTTP {head.code}).")
        if head.code == 200 and head.length is not None:
            self._sizes[(key, filename)] = head.length
            return record, head.length
        return record, None

    @inlineCallbacks
    def fetch_range(self, record, first: int, last: int):
        """
        Bytes C{first} to C{last} of an upstream file, from the upstream:
        L{None} when it does not serve ranges (then fetch the file whole).
        """
        if self.no_ranges:
            return None
        down = self.down()
        if down is not None:
            raise unavailable(f"{record.filename} is not in this index's cache", down)
        try:
            response = yield self.upstream.fetchRange(record.url, first, last)
        except Exception as e:
            raise unavailable(f"fetching part of {record.filename} failed", self._failed(e))
        self._answered()
        self.metrics.upstream_fetches.inc(kind="range", result="ok" if response.code == 206 else "error")
        if response.code == 206:
            return response.body
        if response.code == 200:
            self.no_ranges = True
            self.log.info("the upstream {host} serves no byte ranges: files are fetched whole", host=self.host)
            return None
        if response.code in (404, 410):
            raise NotOnUpstream(f"The upstream index has no {record.filename} (HTTP {response.code}).")
        raise unavailable(f"fetching part of {record.filename} failed", f"HTTP {response.code}")

    # Core metadata (PEP 658), for every wheel

    def metadata(self, key: str, filename: str) -> Deferred:
        """
        A file's core metadata, opened (like L{file}): the upstream's
        C{.metadata} file when it lists one; else, for a wheel, its
        C{METADATA}, read from the cached wheel or, for one not cached,
        from the few byte ranges of it on the upstream that hold it (the
        whole wheel only when the upstream serves no ranges); kept in the
        cache either way.
        """
        path = self.layout.metadata_path(key, filename)
        body = self._cached(path) or self._being_written(path)
        if body is not None:
            return succeed(body)
        return self.flights.run(
            ("metadata", key, filename), lambda: self._metadata(key, filename, path)
        ).addCallback(lambda path: self._being_written(path) or self._open(path))

    def _being_written(self, path: str) -> Optional[IBody]:
        raw = self._writing.get(path)
        return None if raw is None else BytesBody(raw, int(self.clock.seconds() * 1_000_000_000))

    @inlineCallbacks
    def _metadata(self, key: str, filename: str, path: str):
        size = yield self._on_disk_size(path)
        if size is not None:
            self.lru.add(path, size)
            return path
        record = yield self.record(key, filename)
        wheel = is_wheel(filename)
        raw = None
        if record.core_metadata is not False:
            hashes = record.core_metadata if isinstance(record.core_metadata, tuple) else ()
            try:
                raw = yield self._fetch_small(record.url + ".metadata", hashes, filename + ".metadata")
            except NotOnUpstream:
                if not wheel:
                    raise
            else:
                self.log.info("fetched {url} ({bytes})", url=record.url + ".metadata",
                              bytes=counted(len(raw), "byte"))
        if raw is None:
            if not wheel:
                raise NotOnUpstream(f"The upstream index has no metadata file for {filename}.")
            raw = yield self._extract(key, filename, record)
            self.log.info("read the core metadata of {filename} ({bytes})", filename=filename,
                          bytes=counted(len(raw), "byte"))
        self._keep_metadata(key, filename, path, raw)
        return path

    def _keep_metadata(self, key: str, filename: str, path: str, raw: bytes) -> None:
        """Serve C{raw} from memory at once, and from the cache once written; pages advertise its hash."""
        self._writing[path] = raw

        def written(_) -> None:
            self._writing.pop(path, None)
            self._stored(path, len(raw))

        def failed(failure) -> None:
            self._writing.pop(path, None)
            self.log.error("cannot write {path}: {error}", path=path, error=failure.getErrorMessage())

        # (Lost to a crash, it is read again: no fsync of the directory.)
        self._thread(cache.write_atomically, path, raw, False).addCallbacks(written, failed)
        self._meta_keys.add(key)
        known = self._metadata_hashes.get(key)
        if known is not None:
            # (Not read from disk yet: it will be, with this one.)
            known[filename] = hashlib.sha256(raw).hexdigest()
        self.metadata_generation[key] = self.metadata_generation.get(key, 0) + 1

    @inlineCallbacks
    def _fetch_small(self, url: str, hashes: Hashes, filename: str):
        """A small file (a core metadata file) from the upstream into memory, hash-checked."""
        from pypid.store.metadata import MAX_METADATA_SIZE

        down = self.down()
        if down is not None:
            raise unavailable(f"{filename} is not in this index's cache", down)
        chunks: list[bytes] = []
        got = [0]

        def write(data: bytes) -> None:
            got[0] += len(data)
            if got[0] > MAX_METADATA_SIZE:
                raise DownloadError(f"{filename} is larger than {counted(MAX_METADATA_SIZE, 'byte')}")
            chunks.append(data)

        try:
            download = yield self.upstream.download(url, write)
            raw = b"".join(chunks)
            check = _check_hash(hashes)
            if check is not None and hashlib.new(check[0], raw).hexdigest() != check[1]:
                raise HashMismatch(f"{check[0]} {hashlib.new(check[0], raw).hexdigest()} does not match "
                                   f"the upstream's {check[1]}")
            if check is None and not download.framed:
                raise DownloadError("no hash and no length to tell whether the file is complete")
        except Exception as e:
            self.metrics.upstream_fetches.inc(kind="file", result=_result(e))
            if isinstance(e, DownloadError) and e.code in (404, 410):
                raise NotOnUpstream(f"The upstream index has no {filename} (HTTP {e.code}).")
            cause = self._failed(e)
            self.log.error("download of {url} failed: {error}", url=url, error=cause.text)
            raise unavailable(f"fetching {filename} failed", cause)
        self._answered()
        self.metrics.upstream_fetches.inc(kind="file", result="ok")
        return raw

    @inlineCallbacks
    def _extract(self, key: str, filename: str, record):
        """The wheel's METADATA: from the cache, by ranges, or from the wheel fetched whole."""
        wheel = self.layout.file_path(key, filename)
        body = self._open(wheel) if wheel in self.lru else None
        if body is None:
            raw = yield self._extract_by_ranges(key, filename, record)
            if raw is not None:
                return raw
            body = yield self.file(key, filename)
            if body is None:
                raise unavailable(f"{filename} went from the cache", "evicted")
        try:
            # Read by its path: the open body pins it in the cache meanwhile.
            raw = yield self._thread(read_metadata, self.layout.file_path(key, filename), "wheel")
        except MetadataError as e:
            raise unavailable(f"the metadata of {filename} cannot be read", str(e))
        finally:
            body.close()
        return raw

    @inlineCallbacks
    def _extract_by_ranges(self, key: str, filename: str, record):
        """The wheel's METADATA from ranges of it, or L{None} when that cannot be done."""
        if self.no_ranges:
            return None
        record, size = yield self.size(key, filename)
        if size is None:
            return None
        pieces: dict[int, bytes] = {}
        first = max(0, size - lazyzip.TAIL)
        span = (first, size - 1)
        fetched = 0
        while True:
            data = yield self.fetch_range(record, *span)
            if data is None:
                return None
            lazyzip.add_piece(pieces, span[0], data)
            fetched += len(data)
            try:
                # (Archive reads never block the reactor, however small.)
                raw = yield self._thread(lazyzip.read_metadata_from, size, dict(pieces))
            except lazyzip.NeedBytes as need:
                if fetched >= MAX_RANGE_BYTES:
                    return None
                span = lazyzip.next_fetch(need, size)
                if span[0] > span[1]:
                    # A zip that points past its own end.
                    raise unavailable(f"the metadata of {filename} cannot be read", "the zip points past its end")
                continue
            except MetadataError as e:
                raise unavailable(f"the metadata of {filename} cannot be read", str(e))
            self.log.debug("{filename}: metadata from {bytes} of {size} in ranges", filename=filename,
                           bytes=fetched, size=size)
            return raw

    def metadata_sha256(self, key: str, filename: str) -> Optional[str]:
        """The sha256 of a cached metadata file, if known in memory (no I/O)."""
        known = self._metadata_hashes.get(key)
        return known.get(filename) if known is not None else None

    def known_metadata(self, key: str) -> Deferred:
        """
        The sha256 of every cached metadata file of C{key}'s files, by file
        name (what pages advertise); read from the cache the first time.
        """
        known = self._metadata_hashes.get(key)
        if known is not None:
            return succeed(known)
        if self._on_disk is not None and key not in self._meta_keys:
            # None cached (the cache was taken stock of): no thread to look.
            known = self._metadata_hashes[key] = {}
            return succeed(known)

        def found(hashes: dict) -> dict:
            known = self._metadata_hashes.get(key)
            if known is None:
                known = self._metadata_hashes[key] = hashes
            return known

        return self._thread(cache.metadata_hashes, self.layout, key).addCallback(found)


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
            assert download is not None
            if expected_size is not None and download.length != expected_size:
                raise DownloadError(f"got {download.length} bytes where the upstream lists {expected_size}")
            if hasher is not None and check is not None and hasher.hexdigest() != check[1]:
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
            self.metrics.upstream_fetches.inc(kind="file", result="ok")
            if self.shared is not None:
                self.shared.keep(url, hashes, path)
        self._stored(path, size)
        self.log.info("cached {url} ({bytes})", url=url, size=size, bytes=counted(size, "byte"))
        return path

    def _stored(self, path: str, size: int) -> None:
        """A new file is in the cache, about to be served: evict others, never it."""
        self.lru.add(path, size)
        self.lru.pin(path)
        try:
            self._evict()
        finally:
            self.lru.unpin(path)

    def _forget_metadata(self, path: str) -> None:
        """An evicted file: a metadata file is no longer advertised."""
        meta = os.path.join(self.layout.directory, "meta") + os.sep
        if not path.startswith(meta):
            return
        key, _, name = path[len(meta):].partition(os.sep)
        filename = name[: -len(".metadata")]
        known = self._metadata_hashes.get(key)
        if known is not None:
            known.pop(filename, None)
        self.metadata_generation[key] = self.metadata_generation.get(key, 0) + 1

    def _evict(self) -> None:
        # Unlinked here, on the reactor thread, so that no request can find
        # the file between being chosen and being removed.
        victims = self.lru.victims()
        if victims:
            cache.remove_files(victims)
            for path in victims:
                self._forget_metadata(path)
            self.log.info("evicted {files} from the upstream cache", count=len(victims),
                          files=counted(len(victims), "file"))


@implementer(IBody)
class BytesBody:
    """A small file held in memory (core metadata just read), as a body."""

    redirect = None

    def __init__(self, data: bytes, mtime_ns: int) -> None:
        self.data = data
        self.size = len(data)
        self.mtime_ns = mtime_ns

    def read(self, offset: int, count: int) -> bytes:
        return self.data[offset:offset + count]

    def stream(self, request, offset: int, count: int) -> None:
        from pypid.web.send import bytes_sender

        bytes_sender(request, self.data[offset:offset + count]).start()

    def close(self) -> None:
        pass


def _size_if_file(path: str) -> Optional[int]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat

    return st.st_size if stat.S_ISREG(st.st_mode) else None
