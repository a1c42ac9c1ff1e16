"""
The directory store: the index of the package directories, kept on the
reactor thread and fed by scans that run in threads; files served from open
descriptors (L{pypid.store.directory.body}), uploads landed by
L{pypid.store.directory.landing}.

Only this backend knows paths: the watcher and the rescans service speak to
its own L{DirectoryStore.refresh} and L{DirectoryStore.rescan}.
"""

from __future__ import annotations

import gc
import os
from typing import Mapping, NamedTuple, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pypid.counts import counted
from pypid.index.model import DistFile, IndexSnapshot
from pypid.store.directory import landing, scan
from pypid.store.directory.body import FileBody, open_regular
from pypid.store.interfaces import AlreadyStored, BadName, IPackageStore, IStaged, NotListed, Placed, check_name, listed_as
from pypid.store.snapshot import SnapshotOwner
from pypid.lru import Recent
from pypid.store.metadata import read_metadata
from pypid.store.directory.statecache import StateCache
from pypid.threads import Threads

#: Bytes of core metadata files to keep in memory (most are a few KiB; each
#: at most L{pypid.store.metadata.MAX_METADATA_SIZE}), whatever their sizes.
METADATA_CACHE_BYTES = 16 * 1024 * 1024

#: How many served files to remember as checked (a few hundred bytes each).
CHECKED_FILES = 16384

_STUCK = (
    "still incomplete since the previous rescan (a copy or upload that died?); "
    "write it again, or delete it"
)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


@implementer(IPackageStore)
class DirectoryStore(SnapshotOwner):
    """
    An L{IPackageStore} over one or more package directories.

    Scans never overlap: a rescan asked for while one runs is coalesced into
    one more scan after it. New files are staged in C{.pypid-incoming} of
    the first directory, and land there (or over the listed file of their
    name).
    """

    log = Logger()

    def __init__(
        self, roots: list[str], hash_algo: Optional[str], threads: Threads, cache: Optional[StateCache] = None
    ) -> None:
        super().__init__()
        self.roots = [os.path.abspath(root) for root in roots]
        self.hash_algo = hash_algo
        self.cache = cache
        #: Scans run so far, full and of paths (what the watcher's bursts cost).
        self.scans = {"full": 0, "paths": 0}
        #: What the latest scan found (its counts show what it cost).
        self.last_result: Optional[scan.ScanResult] = None
        #: Symlinked files by the real path of their target: a change to the
        #: target is a change to them. Rebuilt by full scans; replaced, never
        #: changed in place (a scan's thread reads the one it was given).
        self._links: Mapping[str, frozenset[str]] = {}
        #: Files found incomplete by the latest full scan.
        self._waiting: set[str] = set()
        self._threads = threads
        self._metadata = Recent(None, max_bytes=METADATA_CACHE_BYTES)
        self._ready: Optional[list[Deferred]] = []
        self._running = False
        self._running_full = False
        self._full_waiters: Optional[list[Deferred]] = None
        self._paths: set[str] = set()
        self._path_waiters: list[Deferred] = []
        self._warned: dict[str, set[str]] = {}
        #: Files that passed the guard under C{_checked_for}, by path.
        self._checked_files: dict[str, tuple[int, int, int]] = {}
        self._checked_for: Optional[IndexSnapshot] = None
        #: Where uploads are staged (there only while one is).
        self.spool = landing.Spool(self.roots[0])

    # IPackageStore

    def whenReady(self) -> Deferred:
        if self._ready is None:
            return succeed(None)
        d: Deferred = Deferred()
        self._ready.append(d)
        return d

    @property
    def ready(self) -> bool:
        return self._ready is None

    def open(self, distfile: DistFile, sidecar: str = "") -> Optional[FileBody]:
        opened = self._open(distfile, sidecar)
        return None if opened is None else FileBody(opened[0], opened[1])

    def readMetadata(self, distfile: DistFile) -> Deferred:
        # Resolvers ask for the same few .metadata files over and over:
        # keep the most recent ones rather than reopen the archive each time.
        key = (distfile.path, distfile.root, distfile.size, distfile.mtime_ns)
        cached = self._metadata.get(key)
        if cached is not None:
            return succeed(cached)
        path = os.path.join(self.roots[distfile.root], distfile.path)

        def keep(raw: bytes) -> bytes:
            self._metadata[key] = raw
            return raw

        return self._threads(read_metadata, path, distfile.kind).addCallback(keep)

    def stage(self, size: Optional[int] = None) -> IStaged:
        return landing.Staged(self.spool, size)

    def publish(self, name: str, staged: IStaged, overwrite: bool, signature: Optional[bytes] = None) -> Deferred:
        try:
            parts = check_name(name)
        except BadName:
            return fail()

        def ready(_) -> Deferred:
            root, target, path = self._target(parts)
            d = self._threads(landing.land, staged, root, target, overwrite, signature)

            def stored(failure):
                failure.trap(AlreadyStored)
                raise AlreadyStored(parts[-1], os.path.basename(target))

            d.addErrback(stored)
            return d.addCallback(lambda landed: self.refresh(landed[1]).addCallback(
                lambda _: self._listed(landed[0], path, target)))

        return self.whenReady().addCallback(ready)

    def _listed(self, outcome: str, path: str, target: str):
        """
        The L{Placed} of a file landed at C{path}, once the index has looked
        at it: the scan that decides listing has the last word, and what it
        does not list is removed again (L{NotListed}).
        """
        f = self.snapshot.files.get(path)
        if f is not None and self.snapshot.listed(f):
            return Placed(outcome, path)
        if outcome == "identical":
            return Placed(outcome, path)
        result = self.last_result
        reasons = [item.reason for item in (result.skipped if result is not None else ()) if item.path == path]
        reason = reasons[0] if reasons else "not a file the index lists"
        self.log.warn("removed the new file {path}: {reason}", path=path, reason=reason)

        def removed(_) -> None:
            raise NotListed(reason)

        return self._threads(landing.remove, [target]).addCallback(
            lambda gone: self.refresh(gone or [target])).addCallback(removed)

    def remove(self, distfiles) -> Deferred:
        # The link itself for a symlinked file.
        paths = {os.path.join(self.roots[f.root], *f.path.split("/")): f.path for f in distfiles}

        def removed(gone: list[str]) -> Deferred:
            deleted = [paths[p] for p in paths if p in set(gone)]
            return self.refresh(gone or list(paths)).addCallback(lambda _: deleted)

        return self._threads(landing.remove, list(paths)).addCallback(removed)

    # The directory backend's own: what the watcher and the rescans service ask.

    def rescan(self) -> Deferred:
        """Walk every package directory (in a thread) and apply what changed."""
        d: Deferred = Deferred()
        if self._full_waiters is None:
            self._full_waiters = []
        self._full_waiters.append(d)
        self._next()
        return d

    def refresh(self, abspaths) -> Deferred:
        """
        Re-read just C{abspaths} (files or directories, present or gone) and
        apply what changed; cheap however large the tree is. Fires when the
        resulting snapshot is in place.
        """
        d: Deferred = Deferred()
        self._paths.update(abspaths)
        self._path_waiters.append(d)
        self._next()
        return d

    # Internals

    def _checked(self, index: int, path: str) -> Optional[str]:
        """Where C{path} is in root C{index} if it stays inside it, else L{None}."""
        root = self.roots[index]
        # The cheap check first; symlinks are resolved in full.
        plain = scan.inside_without_links(root, path)
        if plain is not None:
            return plain
        return scan.resolve_inside(os.path.join(root, path), root)

    def _open(self, distfile: DistFile, sidecar: str):
        # Every download comes here. The guard (L{_checked}) costs an lstat
        # per path component, so a file that passed it is remembered by its
        # identity (device, inode, ctime) until the snapshot changes: the
        # file opened by its plain path is then served only if it is that
        # very file, whatever happened to the directories on the way.
        # Symlinked files (O_NOFOLLOW fails on them) always take the guard.
        path = distfile.path + sidecar
        abspath = os.path.join(self.roots[distfile.root], path)
        if self._checked_for is not self.snapshot or len(self._checked_files) >= CHECKED_FILES:
            self._checked_for = self.snapshot
            self._checked_files = {}
        opened = open_regular(abspath, os.O_NOFOLLOW)
        if opened is not None and self._checked_files.get(path) == _identity(opened[1]):
            return opened
        checked = self._checked(distfile.root, path)
        if checked is not None and opened is None:
            opened = open_regular(checked, os.O_NOFOLLOW)
        if checked is None or opened is None:
            if opened is not None:
                os.close(opened[0])
            return None
        fd, st = opened
        try:
            same = _identity(os.stat(checked)) == _identity(st)
        except OSError:
            same = False
        if not same:
            # Changed between the open and the check: not proven inside.
            os.close(fd)
            return None
        if checked == abspath:
            self._checked_files[path] = _identity(st)
        return opened

    def _target(self, parts: list[str]) -> tuple[str, str, str]:
        """
        Where a new file C{parts} goes: its root, its path on disk, and its
        path as listed. Over the listed file it would be (of its file name,
        or the same release file spelled otherwise: L{listed_as}; the link
        itself for a symlink), else at C{parts} in the first directory.
        """
        f = listed_as(self.snapshot, parts[-1])
        if f is not None:
            root = self.roots[f.root]
            return root, os.path.join(root, *f.path.split("/")), f.path
        root = self.roots[0]
        return root, os.path.join(root, *parts), "/".join(parts)

    def _next(self) -> None:
        """Start the next scan, one at a time; a full scan covers pending paths."""
        if self._running:
            return
        # Snapshots are never changed in place: the thread may read this one.
        previous = self.snapshot.files
        if self._full_waiters is not None:
            waiters = self._full_waiters + self._path_waiters
            self._full_waiters, self._path_waiters, self._paths = None, [], set()
            paths = None
        elif self._path_waiters:
            paths, waiters = sorted(self._paths), self._path_waiters
            self._path_waiters, self._paths = [], set()
        else:
            return
        full = paths is None
        self.scans["full" if full else "paths"] += 1
        self._running = True
        self._running_full = full
        first = full and self._ready is not None
        job = ScanJob(tuple(self.roots), self.hash_algo, previous,
                      None if paths is None else tuple(paths), self._links, first, self.cache)
        d = self._threads(run_scan, job)
        d.addCallbacks(self._scanned, self._scanFailed)
        d.addBoth(self._scanDone, waiters, full)

    def _scanned(self, result: scan.ScanResult) -> None:
        if self.cache is not None:
            for level, text in self.cache.messages():
                getattr(self.log, level)("{text}", text=text)
        for item in result.skipped:
            reasons = self._warned.setdefault(item.path, set())
            if item.reason not in reasons:
                reasons.add(item.reason)
                if item.transient:
                    self.log.info("not listing {path} yet: {reason}", path=item.path, reason=item.reason)
                else:
                    self.log.warn("not listing {path}: {reason}", path=item.path, reason=item.reason)
        if self._running_full:
            # Still incomplete a whole rescan interval later: a copy that died.
            waiting = {item.path for item in result.skipped if item.transient}
            for path in sorted(waiting & self._waiting):
                reasons = self._warned.setdefault(path, set())
                if _STUCK not in reasons:
                    reasons.add(_STUCK)
                    self.log.warn("not listing {path}: {stuck}", path=path, stuck=_STUCK)
            self._waiting = waiting
        for f in result.added:
            # Listed now: a later problem with it is worth saying again.
            self._warned.pop(f.path, None)
        for note in result.notes or ():
            reasons = self._warned.setdefault(note.path, set())
            if note.reason not in reasons:
                reasons.add(note.reason)
                self.log.warn("{path}: {reason}", path=note.path, reason=note.reason)
        self.last_result = result
        self._noteLinks(result.links or {}, full=self._running_full)
        changed = self.apply(result.added, result.removed)
        self._noteShadowed(changed)

    def _noteShadowed(self, changed: frozenset) -> None:
        """Say once of each file that is another spelling of a listed one's name that it is not listed."""
        snapshot = self.snapshot
        for key in changed:
            project = snapshot.get(key)
            for f in project.shadowed if project is not None else ():
                twin = listed_as(snapshot, f.filename)
                if twin is None:
                    continue
                reason = (f"the same release file as {twin.path} (their names differ only in case or "
                          f"spelling), which is listed; delete one of them")
                reasons = self._warned.setdefault(f.path, set())
                if reason not in reasons:
                    reasons.add(reason)
                    self.log.warn("not listing {path}: {reason}", path=f.path, reason=reason)

    def _noteLinks(self, links: dict[str, str], full: bool) -> None:
        if not links and not full:
            return
        merged = {} if full else dict(self._links)
        for source, target in links.items():
            merged[target] = merged.get(target, frozenset()) | {source}
        self._links = merged

    def _scanFailed(self, failure) -> None:
        self.log.failure("scanning the package directories failed", failure)

    def _scanDone(self, _, waiters: list[Deferred], full: bool) -> None:
        self._running = False
        if full and self._ready is not None:
            ready, self._ready = self._ready, None
            result = self.last_result
            self.log.info(
                "index ready: {projects}, {files} ({read} read, {cached} from the state cache)",
                projects=counted(len(self.snapshot.projects), "project"),
                files=counted(self.snapshot.file_count, "file"),
                read=counted(result.read if result else 0, "file"),
                cached=result.cached if result else 0,
            )
            # The first index is hundreds of thousands of long-lived objects:
            # out of the collector's sight, they no longer make every full
            # collection (a pause of tens of milliseconds) walk them all.
            gc.freeze()
            for d in ready:
                d.callback(None)
        for d in waiters:
            d.callback(None)
        self._next()


class ScanJob(NamedTuple):
    """
    Everything one scan reads, fixed when it starts: the thread that runs
    it (L{run_scan}) touches nothing else of the store.
    """

    roots: tuple[str, ...]
    hash_algo: Optional[str]
    #: The files of the snapshot the scan starts from (never changed in place).
    previous: Mapping[str, DistFile]
    #: The absolute paths to look at again, or L{None} for a full scan.
    paths: Optional[tuple[str, ...]]
    #: Symlinked files by the real path of their target (never changed in place).
    links: Mapping[str, frozenset[str]]
    #: Whether this is the first full scan (the state cache is pruned after it).
    first: bool
    cache: Optional[StateCache]


def links_to(links: Mapping[str, frozenset[str]], paths: list[str]) -> list[str]:
    """The symlinks (in the tree) to any of C{paths} or below them. Blocking."""
    if not links:
        return []
    reals = {os.path.realpath(p) for p in paths}
    found = []
    for target, sources in links.items():
        parent = target
        while parent not in reals and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if parent in reals:
            found.extend(sources)
    return found


def run_scan(job: ScanJob) -> scan.ScanResult:
    """A full scan (C{job.paths} is None) or one of C{job.paths}. In a thread."""
    roots = list(job.roots)
    paths = None if job.paths is None else list(job.paths) + links_to(job.links, list(job.paths))
    cache = job.cache
    if cache is None:
        if paths is None:
            return scan.scan(roots, job.hash_algo, job.previous)
        return scan.scan_paths(roots, job.hash_algo, job.previous, paths)
    if job.first:
        cache.track()
    try:
        if paths is None:
            result = scan.scan(roots, job.hash_algo, job.previous, cache)
        else:
            result = scan.scan_paths(roots, job.hash_algo, job.previous, paths, cache)
    finally:
        cache.flush()
    relisted = {f.path for f in result.added}
    cache.forget(
        os.path.join(roots[job.previous[p].root], *p.split("/"))
        for p in result.removed
        if p not in relisted
    )
    if job.first:
        # Every file was looked up: entries no file used are of files gone.
        cache.prune()
    return result
