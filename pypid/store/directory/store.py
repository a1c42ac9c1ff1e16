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
from typing import Iterable, Mapping, NamedTuple, NoReturn, Optional, cast

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.logger import Logger
from zope.interface import implementer

from pypid.counts import counted
from pypid.index.changes import REMOVE_PROJECT, SYNC, Change, ChangesSince, file_changes, yank_changes
from pypid.index.filenames import parse_filename
from pypid.index.model import DistFile, IndexSnapshot
from pypid.store.directory import landing, scan
from pypid.store.directory.body import FileBody, open_regular
from pypid.store.interfaces import AlreadyStored, BadName, IPackageStore, IStaged, NotListed, Placed, check_name, listed_as
from pypid.store.snapshot import SnapshotOwner
from pypid.lru import Recent
from pypid.store.metadata import read_metadata
from pypid.store.directory.serials import ProjectRow, SerialBook, Stored, differences, fingerprint
from pypid.store.directory.statecache import StateCache
from pypid.store.directory.yankfile import YANKS_FILE, YankFile
from pypid.index.yanks import YankRead, by_project
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

    Every change a scan finds takes the next serial. With a L{SerialBook}
    (C{serials}) the serial, each project's serial and the change log are
    kept on disk (each change durable before it is served), and files that
    changed while pypid was not running take a new serial once the first
    index is served; without one they are kept in memory.
    """

    log = Logger()

    def __init__(
        self, roots: list[str], hash_algo: Optional[str], threads: Threads, cache: Optional[StateCache] = None,
        serials: Optional[SerialBook] = None, clock: Optional[IReactorTime] = None,
    ) -> None:
        super().__init__(clock)
        self.roots = [os.path.abspath(root) for root in roots]
        self.hash_algo = hash_algo
        self.cache = cache
        self.serials = serials
        #: What the serial book held at start (once read).
        self._stored: Optional[Stored] = None
        #: Changes are numbered, recorded and installed one at a time.
        self._changing = DeferredLock()
        #: Whether the snapshot has taken the serial the book left (the first scan's change).
        self._numbered = False
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
        self._metadata: Recent[tuple[str, int, int, int], bytes] = Recent(None, max_bytes=METADATA_CACHE_BYTES)
        self._ready: Optional[list[Deferred[None]]] = []
        self._running = False
        self._running_full = False
        self._full_waiters: Optional[list[Deferred[None]]] = None
        self._paths: set[str] = set()
        self._path_waiters: list[Deferred[None]] = []
        self._warned: dict[str, set[str]] = {}
        #: Files that passed the guard under C{_checked_for}, by path.
        self._checked_files: dict[str, tuple[int, int, int]] = {}
        self._checked_for: Optional[IndexSnapshot] = None
        #: Where uploads are staged (there only while one is).
        self.spool = landing.Spool(self.roots[0])
        #: The yanks, in the first directory; read with the scans that
        #: cover it (every full one), written by L{setYanked} and L{remove}.
        self.yankfile = YankFile(os.path.join(self.roots[0], YANKS_FILE))
        #: The version of the last yank file read applied (older ones are stale).
        self._yanks_version = 0

    # IPackageStore

    def whenReady(self) -> Deferred[None]:
        if self._ready is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._ready.append(d)
        return d

    @property
    def ready(self) -> bool:
        return self._ready is None

    def open(self, distfile: DistFile, sidecar: str = "") -> Optional[FileBody]:
        opened = self._open(distfile, sidecar)
        return None if opened is None else FileBody(opened[0], opened[1])

    def changelog(self, since: int) -> Deferred[ChangesSince]:
        if self.serials is None:
            return super().changelog(since)
        return self._threads(self.serials.since, since, self.snapshot.serial)

    def readMetadata(self, distfile: DistFile) -> Deferred[bytes]:
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

    def publish(self, name: str, staged: IStaged, overwrite: bool, signature: Optional[bytes] = None,
                uploader: Optional[str] = None) -> Deferred[Placed]:
        try:
            parts = check_name(name)
        except BadName:
            return fail()
        # A staged file from this store's stage() (the interface's contract).
        mine = cast(landing.Staged, staged)

        def ready(_: None) -> Deferred[Placed]:
            root, target, path = self._target(parts)
            d = self._threads(landing.land, mine, root, target, overwrite, signature)

            def stored(failure: Failure) -> NoReturn:
                failure.trap(AlreadyStored)
                raise AlreadyStored(parts[-1], os.path.basename(target))

            d.addErrback(stored)
            return d.addCallback(lambda landed: self.refresh(landed[1]).addCallback(
                lambda _: self._listed(landed[0], path, target)))

        return self.whenReady().addCallback(ready)

    def _listed(self, outcome: str, path: str, target: str) -> Placed | Deferred[Placed]:
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

        def removed(_: object) -> Placed:
            raise NotListed(reason)

        return self._threads(landing.remove, [target]).addCallback(
            lambda gone: self.refresh(gone or [target])).addCallback(removed)

    def remove(self, distfiles: Iterable[DistFile]) -> Deferred[list[str]]:
        distfiles = list(distfiles)
        # The link itself for a symlinked file.
        paths = {os.path.join(self.roots[f.root], *f.path.split("/")): f.path for f in distfiles}

        def removed(gone: list[str]) -> Deferred[list[str]]:
            deleted = [paths[p] for p in paths if p in set(gone)]
            return self.refresh(gone or list(paths)).addCallback(lambda _: self._forgetYanks(distfiles, deleted))

        return self._threads(landing.remove, list(paths)).addCallback(removed)

    def setYanked(self, distfiles: Iterable[DistFile], reason: Optional[str]) -> Deferred[list[str]]:
        changes = {f.filename: reason for f in distfiles}

        def ready(_: None) -> Deferred[list[str]]:
            return self._threads(self.yankfile.update, changes).addCallback(written)

        def written(outcome: tuple[YankRead, list[str]]) -> Deferred[list[str]]:
            read, changed = outcome
            return self._applyYanks(read).addCallback(lambda _: changed)

        return self.whenReady().addCallback(ready)

    def _forgetYanks(self, distfiles: list[DistFile], deleted: list[str]) -> Deferred[list[str]]:
        """After L{remove}: the yanks of the deleted files go too; fires with C{deleted}."""
        deleted_paths = set(deleted)
        changes = self.forget_yanks([f for f in distfiles if f.path in deleted_paths])
        forget: dict[str, None] = {
            name: None for key, kept in changes.items() for name in self.snapshot.yanked(key) if name not in kept
        }
        if not forget:
            return succeed(deleted)

        def failed(failure: Failure) -> None:
            self.log.failure("could not forget the yanks of deleted files in {path}", failure,
                             path=self.yankfile.path)

        d = self._threads(self.yankfile.update, forget)
        d.addCallbacks(lambda outcome: self._applyYanks(outcome[0]), failed)
        return d.addCallback(lambda _: deleted)

    def _applyYanks(self, read: Optional[YankRead]) -> Deferred[None]:
        """
        Make the snapshot show what the yank file says (unless a later read
        was applied): the next change, numbered, logged and recorded like
        the changes scans find, in turn with them.
        """
        return _locked(self._changing.run(self._yankChange, read))

    def _yankChange(self, read: Optional[YankRead]) -> Optional[Deferred[None]]:
        if read is None or read.version <= self._yanks_version:
            return None
        # The first read, at start: yanks that were there before, no change.
        first, self._yanks_version = self._yanks_version == 0, read.version
        if read.error is not None:
            self.log.error("{error}; yanks stay as they were", error=read.error)
            return None
        for number, line in read.problems:
            self.log.warn("{path} line {number}: {line!r} names no distribution file; ignored",
                          path=self.yankfile.path, number=number, line=line)
        wanted = by_project(read.entries)
        old = self.snapshot
        current = old.yanks
        new, changed = old.with_yanks({key: wanted.get(key, {}) for key in set(current) | set(wanted)},
                                      numbered=not first)
        if not changed:
            return None
        if first:
            self._install(new, changed)
            return None
        changes = yank_changes(old, new, changed, self._change_time())
        listed = frozenset(key for key in changed if key in new.projects)
        if self.serials is None or not listed:
            self.changes.record(changes)
            self._install(new, changed)
            return None
        return self._record(new, changed, changes, {key: _row(new, key) for key in listed})

    # The directory backend's own: what the watcher and the rescans service ask.

    def rescan(self) -> Deferred[None]:
        """Walk every package directory (in a thread) and apply what changed."""
        d: Deferred[None] = Deferred()
        if self._full_waiters is None:
            self._full_waiters = []
        self._full_waiters.append(d)
        self._next()
        return d

    def refresh(self, abspaths: Iterable[str]) -> Deferred[None]:
        """
        Re-read just C{abspaths} (files or directories, present or gone) and
        apply what changed; cheap however large the tree is. Fires when the
        resulting snapshot is in place.
        """
        d: Deferred[None] = Deferred()
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

    def _open(self, distfile: DistFile, sidecar: str) -> Optional[tuple[int, os.stat_result]]:
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
        if first and self.serials is not None and self._stored is None:
            def loaded(stored: Stored) -> Deferred[tuple[scan.ScanResult, Optional[YankRead]]]:
                self._stored = stored
                self._bookMessages()
                return self._threads(run_scan_and_yanks, job, self.yankfile)

            d: Deferred[tuple[scan.ScanResult, Optional[YankRead]]] = self._threads(self.serials.load).addCallback(loaded)
        else:
            d = self._threads(run_scan_and_yanks, job, self.yankfile)
        d.addCallbacks(self._scannedWithYanks, self._scanFailed)
        d.addBoth(self._scanDone, waiters, full)

    def _scannedWithYanks(self, outcome: tuple[scan.ScanResult, Optional[YankRead]]) -> Deferred[None]:
        """The scan's files are the next change, then the yank file's (when it changed)."""
        result, yanks = outcome
        d = self._scanned(result)
        if yanks is None:
            return d
        return d.addCallback(lambda _: self._applyYanks(yanks))

    def _scanned(self, result: scan.ScanResult) -> Deferred[None]:
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
        return _locked(self._changing.run(self._change, result.added, result.removed))

    def _install(self, snapshot: IndexSnapshot, changed: frozenset[str]) -> None:
        super()._install(snapshot, changed)
        self._noteShadowed(changed)

    def _noteShadowed(self, changed: frozenset[str]) -> None:
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

    # The serial

    def _bookMessages(self) -> None:
        if self.serials is not None:
            for level, text in self.serials.messages():
                getattr(self.log, level)("{text}", text=text)

    def _change(self, added: Iterable[DistFile], removed: Iterable[str]) -> Optional[Deferred[None]]:
        """
        Apply what a scan found as the next change: numbered, logged and
        recorded (durably, with a serial book) before it is installed.
        """
        old = self.snapshot
        if not self._numbered:
            self._numbered = True
            return self._first(added, removed)
        new, changed = old.apply(added, removed)
        if not changed:
            return None
        changes = file_changes(old, new, changed, self._change_time())
        if self.serials is None:
            self.changes.record(changes)
            self._install(new, changed)
            return None
        rows = {key: _row(new, key) for key in changed}
        return self._record(new, changed, changes, rows)

    def _first(self, added: Iterable[DistFile], removed: Iterable[str]) -> Optional[Deferred[None]]:
        """
        The first scan's files: numbered as the book left them (a first
        start takes serial 1); changes while pypid was not running are
        found later (L{_reconcile}), not to hold up the first index.
        """
        old = self.snapshot
        stored = self._stored
        if stored is None or stored.fresh:
            new, changed = old.apply(added, removed)
            # What is listed at start is not logged file by file.
            self.changes.horizon = new.serial
            if not changed:
                return None
            if stored is None:
                self._install(new, changed)
                return None
            return self._record(new, changed, (), {}, horizon=new.serial)
        new, changed = old.apply(added, removed, stored.last)
        new = new.with_serials(stored.projects, stored.last)
        self._install(new, changed)
        return None

    def _record(
        self, new: IndexSnapshot, changed: frozenset[str], changes: Iterable[Change],
        rows: Mapping[str, Optional[ProjectRow]], horizon: Optional[int] = None,
    ) -> Deferred[None]:
        """Record a change in the serial book, then install its snapshot."""
        assert self.serials is not None
        d = self._threads(self.serials.record, new.serial, changes, rows, horizon)

        def recorded(_: None) -> None:
            self._bookMessages()
            self._install(new, changed)

        def failed(failure: Failure) -> None:
            # The files are there: serve them, even if the serial could not be kept.
            self.log.failure("recording serial {serial} failed", failure, serial=new.serial)
            self._install(new, changed)

        return d.addCallbacks(recorded, failed)

    def _reconcile(self) -> Deferred[None]:
        """
        Compare every project with the book's fingerprints (in a thread,
        after the first index is served): projects whose files changed while
        pypid was not running take the next serial, and projects gone are
        logged as removed.
        """
        assert self.serials is not None and self._stored is not None
        book, stored = self.serials, self._stored
        snapshot = self.snapshot

        def compare() -> tuple[dict[str, str], list[str]]:
            return differences(snapshot.projects, book.fingerprints())

        def compared(found: tuple[dict[str, str], list[str]]) -> Deferred[None]:
            return _locked(self._changing.run(self._reconciled, snapshot, found, stored.fresh))

        d: Deferred[None] = self._threads(compare).addCallback(compared)
        d.addErrback(lambda f: self.log.failure("checking the projects against the serial's records failed", f))
        return d

    def _reconciled(
        self, then: IndexSnapshot, found: tuple[dict[str, str], list[str]], fresh: bool
    ) -> Optional[Deferred[None]]:
        book = self.serials
        assert book is not None
        fingerprints, gone = found
        now = self.snapshot
        # Projects changed since the comparison have their serials and fingerprints already.
        fingerprints = {key: fp for key, fp in fingerprints.items() if now.projects.get(key) is then.projects.get(key)}
        gone = [key for key in gone if key not in now.projects]
        if not fingerprints and not gone:
            return None
        if fresh:
            # A first start: nothing to compare with; only remember what the projects look like.
            rows: dict[str, Optional[ProjectRow]] = {
                key: ProjectRow(now.projects[key].serial, fp) for key, fp in fingerprints.items()
            }
            return self._threads(book.record, now.serial, (), rows)
        serial = now.serial + 1
        at = self._change_time()
        changes = [Change(serial, at, SYNC, key, now.projects[key].name) for key in sorted(fingerprints)]
        changes += [Change(serial, at, REMOVE_PROJECT, key, key) for key in sorted(gone)]
        new = now.with_serials({key: serial for key in fingerprints}, serial)
        rows = {key: ProjectRow(serial, fp) for key, fp in fingerprints.items()}
        rows.update((key, None) for key in gone)
        self.log.info("{count} changed while pypid was not running: serial {serial}",
                      count=counted(len(fingerprints) + len(gone), "project"), serial=serial)
        return self._record(new, frozenset(fingerprints), changes, rows)

    def _noteLinks(self, links: dict[str, str], full: bool) -> None:
        if not links and not full:
            return
        merged = {} if full else dict(self._links)
        for source, target in links.items():
            merged[target] = merged.get(target, frozenset()) | {source}
        self._links = merged

    def _scanFailed(self, failure: Failure) -> None:
        self.log.failure("scanning the package directories failed", failure)

    def _scanDone(self, _: object, waiters: list[Deferred[None]], full: bool) -> None:
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
            if self.serials is not None and self._stored is not None:
                self._reconcile()
        for d in waiters:
            d.callback(None)
        self._next()


def _locked(d: Deferred[Optional[Deferred[None]]]) -> Deferred[None]:
    """
    A change run under the store's lock (L{DeferredLock.run}) fires with
    L{None}: a L{Deferred} the change returned has fired by then, which
    Twisted's annotations cannot say.
    """
    return cast("Deferred[None]", d)


def _row(snapshot: IndexSnapshot, key: str) -> Optional[ProjectRow]:
    """A project's row in the serial book (L{None}: gone)."""
    project = snapshot.projects.get(key)
    return None if project is None else ProjectRow(project.serial, fingerprint(project))


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
    found: list[str] = []
    for target, sources in links.items():
        parent = target
        while parent not in reals and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if parent in reals:
            found.extend(sources)
    return found


def run_scan_and_yanks(job: ScanJob, yankfile: YankFile) -> tuple[scan.ScanResult, Optional[YankRead]]:
    """
    L{run_scan}, then the yank file when the scan covers it (every full
    scan; a scan of paths that names it) and it changed. In a thread.
    """
    result = run_scan(job)
    if job.paths is None or yankfile.path in job.paths:
        return result, yankfile.read_if_changed()
    return result, None


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
