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
import hashlib
import os
import time
from collections import OrderedDict
from stat import S_ISDIR, S_ISREG
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
from pypid.store.directory import image, landing, scan
from pypid.store.directory.body import OPEN_FLAGS, FileBody, open_regular
from pypid.store.interfaces import AlreadyStored, BadName, IPackageStore, IStaged, NotListed, Placed, check_name, listed_as
from pypid.store.snapshot import SnapshotOwner
from pypid.lru import Recent
from pypid.store.metadata import read_metadata
from pypid.store.directory.serials import ProjectRow, SerialBook, Stored, differences, fingerprint
from pypid.store.directory.statecache import StateCache
from pypid.store.directory.walk import ChildWalk, WalkFailed
from pypid.store.directory.yankfile import YANKS_FILE, YankFile
from pypid.index.yanks import YankRead, by_project
from pypid.threads import Threads

#: Bytes of core metadata files to keep in memory (most are a few KiB; each
#: at most L{pypid.store.metadata.MAX_METADATA_SIZE}), whatever their sizes.
METADATA_CACHE_BYTES = 16 * 1024 * 1024

#: How many checked directories to keep open for downloads.
CHECKED_DIRECTORIES = 256

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

    Scans of one kind never overlap: a rescan asked for while one runs is
    coalesced into one more after it, and so are refreshes. Once the index
    is ready, a refresh runs beside a full rescan (see L{_next}). New files
    are staged in C{.pypid-incoming} of the first directory, and land there
    (or over the listed file of their name).

    Every change a scan finds takes the next serial, in the order the scans'
    results arrive. With a L{SerialBook}
    (C{serials}) the serial, each project's serial and the change log are
    kept on disk (each change durable before it is served), and files that
    changed while pypid was not running take a new serial once the first
    index is served; without one they are kept in memory.
    """

    log = Logger()

    def __init__(
        self, roots: list[str], hash_algo: Optional[str], threads: Threads, cache: Optional[StateCache] = None,
        serials: Optional[SerialBook] = None, clock: Optional[IReactorTime] = None, write_image: bool = True,
    ) -> None:
        """
        @param write_image: whether this process writes the index image to
            the state directory (L{save_image}); every process reads it at
            start. With several worker processes, one writes it.
        """
        super().__init__(clock)
        self.roots = [os.path.abspath(root) for root in roots]
        self.hash_algo = hash_algo
        self.cache = cache
        self.serials = serials
        #: What the serial book held at start (once read).
        self._stored: Optional[Stored] = None
        #: Changes are numbered, recorded and installed one at a time.
        self._changing = DeferredLock()
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
        self._running_full = False
        self._running_paths = False
        #: While a full scan runs: the listed paths that refreshes changed
        #: since it started (its result, from an older snapshot, leaves them
        #: alone), and the paths those refreshes were asked for.
        self._changed_during_full: set[str] = set()
        self._refreshed_during_full: set[str] = set()
        #: Full scans applied so far: a refresh that saw one applied while
        #: it ran is done again.
        self._full_applied = 0
        self._full_waiters: Optional[list[Deferred[None]]] = None
        self._paths: set[str] = set()
        self._path_waiters: list[Deferred[None]] = []
        self._warned: dict[str, set[str]] = {}
        #: How far the first scan has got (for its progress lines).
        self.progress = scan.Progress()
        self.write_image = write_image
        #: The snapshot last written to the index image (or read from it).
        self._imaged: Optional[IndexSnapshot] = None
        self._saving: Optional[Deferred[None]] = None
        #: Open descriptors of the directories checked under C{_checked_for},
        #: by (root, relative path), the most recently used last.
        self._dirs: OrderedDict[tuple[int, str], tuple[int, str, tuple[int, int]]] = OrderedDict()
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

    def metadata_now(self, distfile: DistFile) -> Optional[bytes]:
        """
        A wheel's core metadata if it can be had at once (recently served,
        or kept in the state cache), else L{None}: no thread, no archive read.
        """
        key = (distfile.path, distfile.root, distfile.size, distfile.mtime_ns)
        cached = self._metadata.get(key)
        if cached is not None:
            return cached
        sha256 = distfile.raw_metadata_sha256
        if sha256 is not None and self.cache is not None:
            raw = self.cache.read_metadata(sha256)
            if raw is not None:
                self._metadata[key] = raw
                return raw
        return None

    def readMetadata(self, distfile: DistFile) -> Deferred[bytes]:
        # Resolvers ask for the same few .metadata files over and over:
        # keep the most recent ones rather than reopen the archive each time.
        # Kept compressed in the state cache by the scan that read the
        # wheel: read at once, without a thread (a resolver's first run
        # after a start asks for hundreds).
        raw = self.metadata_now(distfile)
        if raw is not None:
            return succeed(raw)
        key = (distfile.path, distfile.root, distfile.size, distfile.mtime_ns)
        sha256 = distfile.raw_metadata_sha256
        path = os.path.join(self.roots[distfile.root], distfile.path)
        cache = self.cache

        def read() -> bytes:
            raw = read_metadata(path, distfile.kind)
            if cache is not None and sha256 is not None and hashlib.sha256(raw).digest() == sha256:
                cache.put_metadata(sha256, raw)
                cache.flush()
            return raw

        def keep(raw: bytes) -> bytes:
            self._metadata[key] = raw
            return raw

        return self._threads(read).addCallback(keep)

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
            return self.refresh(gone or list(paths)).addCallback(lambda _: self._forget_yanks(distfiles, deleted))

        return self._threads(landing.remove, list(paths)).addCallback(removed)

    def setYanked(self, distfiles: Iterable[DistFile], reason: Optional[str]) -> Deferred[list[str]]:
        changes = {f.filename: reason for f in distfiles}

        def ready(_: None) -> Deferred[list[str]]:
            return self._threads(self.yankfile.update, changes).addCallback(written)

        def written(outcome: tuple[YankRead, list[str]]) -> Deferred[list[str]]:
            read, changed = outcome
            return self._apply_yanks(read).addCallback(lambda _: changed)

        return self.whenReady().addCallback(ready)

    def _forget_yanks(self, distfiles: list[DistFile], deleted: list[str]) -> Deferred[list[str]]:
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
        d.addCallbacks(lambda outcome: self._apply_yanks(outcome[0]), failed)
        return d.addCallback(lambda _: deleted)

    def _apply_yanks(self, read: Optional[YankRead]) -> Deferred[None]:
        """
        Make the snapshot show what the yank file says (unless a later read
        was applied): the next change, numbered, logged and recorded like
        the changes scans find, in turn with them.
        """
        return _locked(self._changing.run(self._yank_change, read))

    def _yank_change(self, read: Optional[YankRead]) -> Optional[Deferred[None]]:
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
        # Every download comes here, and must open only a file inside its
        # package directory (no symlinked directory on the way out). The
        # file is opened relative to an open descriptor of its directory,
        # checked once (an lstat per path component) and kept until the
        # snapshot changes: one openat() and an fstat per download, however
        # many files there are. A symlinked file (O_NOFOLLOW refuses it)
        # takes the whole check.
        path = distfile.path + sidecar
        if self._checked_for is not self.snapshot:
            self._forget_directories()
            self._checked_for = self.snapshot
        directory, _, name = path.rpartition("/")
        known = self._directory(distfile.root, directory)
        if known is not None and name not in ("", ".", ".."):
            dirfd, where, identity = known
            try:
                fd = os.open(name, OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=dirfd)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    st = os.fstat(fd)
                    # Still the directory that was checked, at its path (not
                    # moved away, nor a directory on the way swapped for a
                    # symlink since): one lstat, not one per component.
                    there = os.stat(where) if not directory else os.lstat(where)
                    if S_ISREG(st.st_mode) and (there.st_dev, there.st_ino) == identity:
                        return fd, st
                except OSError:
                    pass
                os.close(fd)
                self._forget_directory((distfile.root, directory))
        return self._open_checked(distfile.root, path)

    def _open_checked(self, root: int, path: str) -> Optional[tuple[int, os.stat_result]]:
        """Open C{path} of root C{root} after checking every component, symlinks resolved."""
        checked = self._checked(root, path)
        if checked is None:
            return None
        opened = open_regular(checked, os.O_NOFOLLOW)
        if opened is None:
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
        return opened

    def _directory(self, root: int, directory: str) -> Optional[tuple[int, str, tuple[int, int]]]:
        """
        An open descriptor of C{directory} (relative, C{/}-separated) of root
        C{root}, checked to be a directory reached without a symlink, its
        path and its (device, inode); L{None} when it is not one.
        """
        key = (root, directory)
        dirs = self._dirs
        known = dirs.get(key)
        if known is not None:
            dirs.move_to_end(key)
            return known
        current = self.roots[root]
        st = None
        for part in directory.split("/") if directory else ():
            if part in ("", ".", ".."):
                return None
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except OSError:
                return None
            if not S_ISDIR(st.st_mode):
                return None
        try:
            fd = os.open(current, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            opened = os.fstat(fd)
        except OSError:
            opened = None
        if opened is None or (st is not None and (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino)):
            # Replaced between the check and the open: not proven inside.
            os.close(fd)
            return None
        known = dirs[key] = (fd, current, (opened.st_dev, opened.st_ino))
        if len(dirs) > CHECKED_DIRECTORIES:
            _, oldest = dirs.popitem(last=False)
            os.close(oldest[0])
        return known

    def _forget_directory(self, key: tuple[int, str]) -> None:
        known = self._dirs.pop(key, None)
        if known is not None:
            os.close(known[0])

    def _forget_directories(self) -> None:
        dirs, self._dirs = self._dirs, OrderedDict()
        for fd, _, _ in dirs.values():
            try:
                os.close(fd)
            except OSError:
                pass

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
        """
        Start the next scans. Until the index is ready, one at a time, a
        full scan covering the paths asked for meanwhile. Then a full scan
        (a periodic rescan: many seconds at a million files) and a refresh
        of paths may run together, so that a file dropped, uploaded or
        removed meanwhile is listed at once.

        Each works out a change from the snapshot it started from, and the
        other may have changed that snapshot before it ends:

          - a full scan's result leaves out the paths that refreshes changed
            while it ran (it may have seen an older state of them), and
            those refreshes are done again after it;
          - a refresh that ends after a full scan was applied is done again
            (it may have seen an older state than the full scan did).

        A refresh done again reads what is on disk after both have read it:
        the listing ends as the directory is. (Until it is done, a file
        that changed while both ran may show the refresh's older state.)
        """
        ready = self._ready is None
        if self._full_waiters is not None and not self._running_full and (ready or not self._running_paths):
            waiters = self._full_waiters
            self._full_waiters = None
            if not ready:
                # The first scan covers whatever was asked for before it.
                waiters += self._path_waiters
                self._path_waiters, self._paths = [], set()
            self._start(None, waiters)
        if self._path_waiters and not self._running_paths and (ready or not self._running_full):
            paths, waiters = sorted(self._paths), self._path_waiters
            self._path_waiters, self._paths = [], set()
            self._start(paths, waiters)

    def _again(self, paths: Optional[Iterable[str]]) -> None:
        """Refresh C{paths} once more (nobody waits for it)."""
        if paths:
            self._paths.update(paths)
            self._path_waiters.append(Deferred())

    def _start(self, paths: Optional[list[str]], waiters: list[Deferred[None]]) -> None:
        full = paths is None
        self.scans["full" if full else "paths"] += 1
        if full:
            self._running_full = True
            self._changed_during_full = set()
            self._refreshed_during_full = set()
        else:
            self._running_paths = True
        first = full and self._ready is not None
        # Snapshots are never changed in place: the thread may read this one.
        job = ScanJob(tuple(self.roots), self.hash_algo, self.snapshot.files,
                      None if paths is None else tuple(paths), self._links, first, self.cache,
                      self.progress if first else None)
        if first and self.serials is not None and self._stored is None:
            def loaded(stored: Stored) -> Deferred[tuple[scan.ScanResult, Optional[YankRead]]]:
                self._stored = stored
                self._book_messages()
                return self._threads(run_scan_and_yanks, job, self.yankfile)

            d: Deferred[tuple[scan.ScanResult, Optional[YankRead]]] = self._threads(self.serials.load).addCallback(loaded)
        else:
            d = self._threads(run_scan_and_yanks, job, self.yankfile)
        d.addCallbacks(self._scanned_with_yanks, self._scan_failed, callbackArgs=(paths, self._full_applied))
        d.addBoth(self._scan_done, waiters, full)

    def _scanned_with_yanks(self, outcome: tuple[scan.ScanResult, Optional[YankRead]],
                          paths: Optional[list[str]], full_applied: int) -> Deferred[None]:
        """The scan's files are the next change, then the yank file's (when it changed)."""
        result, yanks = outcome
        d = self._scanned(result, paths, full_applied)
        if yanks is None:
            return d
        return d.addCallback(lambda _: self._apply_yanks(yanks))

    def _scanned(
        self, result: scan.ScanResult, paths: Optional[list[str]] = None, full_applied: int = 0
    ) -> Deferred[None]:
        full = paths is None
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
        if full:
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
        self._note_links(result.links or {}, full=full)
        if result.base is not None:
            # A first scan: the whole index, built in the scan's thread.
            self._full_applied += 1
            imaged = bool(result.imaged and not result.added and not result.removed)
            return _locked(self._changing.run(self._first, result.base, imaged))
        added, removed = result.added, result.removed
        if paths is None:
            self._full_applied += 1
            changed = self._changed_during_full
            if changed:
                added = [f for f in added if f.path not in changed]
                removed = [p for p in removed if p not in changed]
        else:
            if self._running_full:
                self._changed_during_full.update(f.path for f in added)
                self._changed_during_full.update(removed)
                self._refreshed_during_full.update(paths)
            if full_applied != self._full_applied:
                self._again(paths)
        return _locked(self._changing.run(self._change, added, removed))


    def _install(self, snapshot: IndexSnapshot, changed: frozenset[str]) -> None:
        super()._install(snapshot, changed)
        self._note_shadowed(changed)

    def _note_shadowed(self, changed: frozenset[str]) -> None:
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

    def _book_messages(self) -> None:
        if self.serials is not None:
            for level, text in self.serials.messages():
                getattr(self.log, level)("{text}", text=text)

    def _change(self, added: Iterable[DistFile], removed: Iterable[str]) -> Optional[Deferred[None]]:
        """
        Apply what a scan found as the next change: numbered, logged and
        recorded (durably, with a serial book) before it is installed.
        """
        old = self.snapshot
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

    def _first(self, base: IndexSnapshot, imaged: bool) -> Optional[Deferred[None]]:
        """
        The first scan's index (built whole in its thread, every project at
        serial 1), numbered as the book left it (a first start takes serial
        1); changes while pypid was not running are found later
        (L{_reconcile}), not to hold up the first index. C{imaged}: the
        index image holds these very files.
        """
        stored = self._stored
        if stored is not None and not stored.fresh:
            last = stored.last
            base = base.with_serials({key: stored.projects.get(key, last) for key in base.projects}, last)
        else:
            # What is listed at start is not logged file by file.
            self.changes.horizon = base.serial
        if imaged:
            self._imaged = base
        if not base.files and not self.snapshot.files:
            return None
        changed = frozenset(base.projects) | frozenset(self.snapshot.projects)
        if stored is None or not stored.fresh:
            self._install(base, changed)
            return None
        return self._record(base, changed, (), {}, horizon=base.serial)

    def _record(
        self, new: IndexSnapshot, changed: frozenset[str], changes: Iterable[Change],
        rows: Mapping[str, Optional[ProjectRow]], horizon: Optional[int] = None,
    ) -> Deferred[None]:
        """Record a change in the serial book, then install its snapshot."""
        assert self.serials is not None
        d = self._threads(self.serials.record, new.serial, changes, rows, horizon)

        def recorded(_: None) -> None:
            self._book_messages()
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

    # The index image.

    def save_image(self) -> Deferred[None]:
        """
        Write the index to the index image (in a thread), unless it holds
        this very index already; fires when done (never fails: a failure is
        logged).
        """
        if not self.write_image or self.cache is None or self._ready is not None:
            return succeed(None)
        if self._saving is not None:
            # One at a time: the next one covers what changed meanwhile.
            return self._saving.addCallback(lambda _: self.save_image())
        snapshot = self.snapshot
        if self._imaged is not None and snapshot.files is self._imaged.files:
            # Only serials or yanks changed (the image holds neither).
            return succeed(None)
        started = time.monotonic()
        cache = self.cache

        def write() -> Optional[tuple[str, int]]:
            directory = cache.directory()
            if directory is None:
                return None
            path = os.path.join(directory, image.FILENAME)
            return path, image.save(path, snapshot, self.roots, self.hash_algo)

        def saved(written: Optional[tuple[str, int]]) -> None:
            self._imaged = snapshot
            if written is not None:
                self.log.info("index image {path} written: {files} files, {mib:.1f} MiB in {seconds:.1f} s",
                              path=written[0], files=snapshot.file_count, mib=written[1] / 2**20,
                              seconds=time.monotonic() - started)

        def failed(failure: Failure) -> None:
            self.log.warn("could not write the index image: {error}", error=failure.getErrorMessage())

        def done(_: None) -> None:
            self._saving = None

        saving = self._saving = self._threads(write).addCallbacks(saved, failed)
        saving.addBoth(done)
        return saving

    def _note_links(self, links: dict[str, str], full: bool) -> None:
        if not links and not full:
            return
        merged = {} if full else dict(self._links)
        for source, target in links.items():
            merged[target] = merged.get(target, frozenset()) | {source}
        self._links = merged

    def _scan_failed(self, failure: Failure) -> None:
        self.log.failure("scanning the package directories failed", failure)

    def _scan_done(self, _: object, waiters: list[Deferred[None]], full: bool) -> None:
        if full:
            self._running_full = False
            again = self._refreshed_during_full
            self._changed_during_full, self._refreshed_during_full = set(), set()
            self._again(again)
        else:
            self._running_paths = False
        if full and self._ready is not None:
            ready, self._ready = self._ready, None
            result = self.last_result
            self.log.info(
                "index ready: {projects}, {files}"
                " ({read} read, {cached} from the state cache, {imaged} from the index image)",
                projects=counted(len(self.snapshot.projects), "project"),
                files=counted(self.snapshot.file_count, "file"),
                read=counted(result.read if result else 0, "file"),
                cached=result.cached if result else 0,
                imaged=result.imaged if result else 0,
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
    #: Whether this is the first full scan: it starts from the index image
    #: when there is one, builds the whole index in its thread, and prunes
    #: the state cache when there was no image.
    first: bool
    cache: Optional[StateCache]
    #: Where a first scan says how far it has got.
    progress: Optional[scan.Progress] = None


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


def first_scan(job: ScanJob) -> scan.ScanResult:
    """
    The first full scan: read the index image (when there is one, written
    for these directories), check every file against it and read those
    that changed (from the state cache, or the files), and build the whole
    index (L{scan.ScanResult.base}). In a thread.
    """
    roots = list(job.roots)
    cache = job.cache
    progress = job.progress if job.progress is not None else scan.Progress()
    base: Optional[IndexSnapshot] = None
    notes: list[scan.Note] = []
    directory = cache.directory() if cache is not None else None
    walker: Optional[ChildWalk] = None
    if directory is not None:
        path = os.path.join(directory, image.FILENAME)
        size = _size(path)
        if len(roots) == 1 and size and size >= CHILD_WALK_FROM:
            # A large tree: walked on another core while the image is read.
            try:
                walker = ChildWalk(roots[0])
            except OSError:
                walker = None

        def loaded(files: int) -> None:
            progress.loaded = files

        try:
            base = image.load(path, roots, job.hash_algo, loaded)
        except FileNotFoundError:
            pass
        except (image.ImageError, OSError, ValueError, MemoryError) as e:
            notes.append(scan.Note(path, f"index image not used ({e}); every file is looked up instead"))
    progress.total = base.file_count if base is not None else scan.count_files(roots)
    if walker is not None and base is None:
        walker.close()
        walker = None
    if cache is None:
        result = scan.scan(roots, job.hash_algo, {}, None, progress)
    else:
        if base is None:
            cache.track()
        try:
            walked: Optional[scan.ScanResult] = None
            if walker is not None and base is not None:
                try:
                    walked = scan.scan(roots, job.hash_algo, base.files, cache, progress, walked=walker)
                except WalkFailed as e:
                    notes.append(scan.Note(roots[0], f"walking in a child process failed ({e}); walked here"))
                    progress.scanned = 0
                finally:
                    walker.close()
            result = walked if walked is not None else scan.scan(
                roots, job.hash_algo, base.files if base is not None else {}, cache, progress)
        finally:
            cache.flush()
        if base is not None:
            relisted = {f.path for f in result.added}
            cache.forget(os.path.join(roots[base.files[p].root], *p.split("/"))
                         for p in result.removed if p not in relisted)
        else:
            # Every file was looked up: entries no file used are of files gone.
            cache.prune()
    if base is None:
        snapshot = IndexSnapshot.build(result.added)
        imaged = 0
    else:
        imaged = base.file_count - len(result.removed)
        snapshot = base.apply(result.added, result.removed, 1)[0] if result.added or result.removed else base
    return result._replace(base=snapshot, imaged=imaged, notes=(result.notes or []) + notes)


#: From what size of index image on a start walks the tree in a child
#: process (L{pypid.store.directory.walk}): some 20,000 files.
CHILD_WALK_FROM = 4 * 1024 * 1024


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def run_scan(job: ScanJob) -> scan.ScanResult:
    """A full scan (C{job.paths} is None) or one of C{job.paths}. In a thread."""
    if job.first:
        return first_scan(job)
    roots = list(job.roots)
    paths = None if job.paths is None else list(job.paths) + links_to(job.links, list(job.paths))
    cache = job.cache
    if cache is None:
        if paths is None:
            return scan.scan(roots, job.hash_algo, job.previous)
        return scan.scan_paths(roots, job.hash_algo, job.previous, paths)
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
    return result
