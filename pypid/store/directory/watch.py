"""
Watching the package directories: watchdog's observer thread reports what
changed, and the store re-reads just those paths.

The one rule: watchdog's thread touches nothing but a lock-protected set of
pending paths, and hands over to the reactor with C{callFromThread} only
when that set goes from idle to busy. Everything else happens on the
reactor thread: a L{Debouncer} waits for a burst (a C{git checkout}, an
rsync) to go quiet, within a cap, and then the directory store's C{refresh}
of the paths collected is asked for, however many events came. One refresh
runs at a time, of at most L{BATCH} paths shared fairly between
directories; what is left, or came meanwhile, goes next as soon as it ends.

Events that do not change the listing are dropped in the handler: opens
and closes without a write (pypid's own reads, watchdog >= 2.3), anything
under a hidden directory (the state cache, upload temporaries) or with a
temporary name, files that are no distribution or signature, and directory
modifications (their children report themselves). Directory creations,
deletions and moves are kept: a directory moved out of the tree reports
nothing but its own deletion.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.logger import Logger
from watchdog import events
from watchdog.events import FileSystemEventHandler

from pypid.counts import counted
from pypid.ops.metrics import Metrics
from pypid.store.directory.debounce import Debouncer
from pypid.store.directory.yankfile import YANKS_FILE
from pypid.index.filenames import SDIST_SUFFIXES, is_hidden_or_temporary
from pypid.threads import Threads

if TYPE_CHECKING:
    from pypid.store.directory.store import DirectoryStore

#: Event types that may change the listing. Everything else (C{opened},
#: C{closed_no_write}, and whatever later watchdogs add) is ignored.
RELEVANT = frozenset({"created", "deleted", "modified", "moved", "closed", "attrib"})
#: Of those, the ones that matter for a directory.
DIRECTORY_RELEVANT = frozenset({"created", "deleted", "moved"})
#: File suffixes worth a refresh: distributions and their signatures.
SUFFIXES = (".whl", ".egg", ".asc") + SDIST_SUFFIXES

#: Seconds of quiet before a burst is handed to the store, and the longest
#: a change waits however long the burst goes on.
QUIET = 0.1
MAX_DELAY = 0.25
#: Most paths handed to the store in one refresh. While a big copy goes on,
#: refreshes follow each other back to back, each a fraction of a second
#: long, and a file dropped elsewhere meanwhile waits for one of them, not
#: for the whole copy (see L{take_batch}).
BATCH = 128
#: Seconds between full rescans when the directories cannot be watched.
FALLBACK_POLL = 30.0

#: By errno (an OSError's may be None, and then is none of these).
_LIMITS: dict[Optional[int], tuple[str, str, int]] = {
    errno.ENOSPC: ("inotify watch limit reached", "fs.inotify.max_user_watches", 524288),
    errno.EMFILE: ("inotify instance limit reached", "fs.inotify.max_user_instances", 1024),
}


def wanted(path: str, root: str, is_directory: bool) -> bool:
    """
    Whether a change at C{path} (below C{root}) may change the listing, or
    the yanks (the yank file at the top of a directory).
    """
    if not path.startswith(root.rstrip(os.sep) + os.sep):
        return False
    parts = path[len(root.rstrip(os.sep)) + 1 :].split(os.sep)
    if parts == [YANKS_FILE] and not is_directory:
        return True
    if any(not part or is_hidden_or_temporary(part) for part in parts):
        return False
    return is_directory or parts[-1].lower().endswith(SUFFIXES)


def classify(event: events.FileSystemEvent, root: str) -> list[tuple[str, bool]]:
    """
    The paths (and whether each is a directory) that a watchdog event asks
    to re-read; empty when the event cannot change the listing.
    """
    kind = event.event_type
    is_directory = bool(event.is_directory)
    if kind not in RELEVANT or (is_directory and kind not in DIRECTORY_RELEVANT):
        return []
    paths = [os.fsdecode(event.src_path)]
    if kind == "moved":
        paths.append(os.fsdecode(event.dest_path))
    return [(path, is_directory) for path in paths if wanted(path, root, is_directory)]


def collapse(pending: dict[str, bool]) -> list[str]:
    """
    The paths to refresh: those under a directory that is refreshed whole
    are left out.
    """
    directories = {path for path, is_directory in pending.items() if is_directory}
    kept = []
    for path in pending:
        parent = os.path.dirname(path)
        while parent not in directories and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if parent not in directories:
            kept.append(path)
    return sorted(kept)


def take_batch(pending: dict[str, bool], limit: int = BATCH) -> tuple[dict[str, bool], dict[str, bool]]:
    """
    Split C{pending} into at most C{limit} paths to refresh now and the
    rest. Paths are shared out fairly by directory: small groups go whole,
    and the big ones (a copy of thousands of files) split what is left
    evenly, so a copy in one directory cannot hold back a file dropped into
    another.
    """
    if len(pending) <= limit:
        return dict(pending), {}
    groups: dict[str, list[str]] = {}
    for path in pending:
        groups.setdefault(os.path.dirname(path), []).append(path)
    ordered = sorted(groups.values(), key=len)
    batch: dict[str, bool] = {}
    room = limit
    for i, group in enumerate(ordered):
        share = max(1, room // (len(ordered) - i))
        for path in group[:share]:
            batch[path] = pending[path]
        room = limit - len(batch)
        if room <= 0:
            break
    rest = {path: is_directory for path, is_directory in pending.items() if path not in batch}
    return batch, rest


def expand(directories: list[str], roots: list[str]) -> tuple[dict[str, bool], set[str]]:
    """
    In a thread: the files (that L{wanted} keeps) under each of
    C{directories}, so that a directory copied in goes to the store in
    batches like its files; and the directories that must be refreshed whole
    instead: gone ones (everything listed under them goes), and those
    holding symlinked directories or that cannot be read.
    """
    files: dict[str, bool] = {}
    whole: set[str] = set()
    for directory in directories:
        root = next((r for r in roots if directory.startswith(r.rstrip(os.sep) + os.sep)), None)
        if root is None or not os.path.isdir(directory) or os.path.islink(directory):
            whole.add(directory)
            continue
        found: list[str] = []
        errors: list[OSError] = []
        linked = False
        for parent, subdirs, names in os.walk(directory, onerror=errors.append):
            if any(os.path.islink(os.path.join(parent, d)) for d in subdirs):
                linked = True
                break
            subdirs[:] = [d for d in subdirs if not is_hidden_or_temporary(d)]
            found.extend(path for path in (os.path.join(parent, name) for name in names)
                         if wanted(path, root, False))
        if linked or errors:
            whole.add(directory)
        else:
            files.update(dict.fromkeys(found, False))
    return files, whole


class _Handler(FileSystemEventHandler):
    """Runs in watchdog's thread: filters, and hands over to the watcher."""

    def __init__(self, watcher: "WatchService", root: str) -> None:
        super().__init__()
        self.watcher = watcher
        self.root = root

    def dispatch(self, event: events.FileSystemEvent) -> None:
        paths = classify(event, self.root)
        if paths:
            self.watcher.note(paths, event.event_type)


class _OverflowListener(logging.Handler):
    """
    watchdog (newer releases) logs when the kernel's event queue overflowed
    and events were lost: then only a full rescan can tell what changed.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.callback()


#: What a mere read raises (watchdog >= 2.3): never a change to the listing.
_READS = {"FileOpenedEvent", "FileClosedNoWriteEvent"}


def schedule_options(observer: Observer) -> dict[str, Any]:
    """
    Extra arguments for C{observer.schedule}: an C{event_filter} of every
    kind of event but those a mere read raises, where the observer takes
    one (watchdog >= 4.0). Without it, newer releases ask inotify for opens
    and closes-without-writing, so every download woke the observer's
    thread to parse two events in Python, holding the GIL the reactor
    needs: a third of what a small download cost. Older releases never ask
    for them.
    """
    try:
        if "event_filter" not in inspect.signature(observer.schedule).parameters:
            return {}
    except (TypeError, ValueError):
        return {}
    kinds = [
        kind for name, kind in vars(events).items()
        if isinstance(kind, type) and issubclass(kind, events.FileSystemEvent)
        and kind is not events.FileSystemEvent and name not in _READS
    ]
    return {"event_filter": kinds}


class Observer(Protocol):
    """What the watcher uses of a watchdog observer."""

    def start(self) -> None: ...

    def schedule(self, event_handler: FileSystemEventHandler, path: str, *, recursive: bool = False) -> object: ...

    def stop(self) -> None: ...

    def join(self, timeout: Optional[float] = None) -> None: ...


def _start_observer(
    watcher: "WatchService", factory: Callable[[], Observer], roots: tuple[str, ...]
) -> tuple[Observer, list[tuple[str, OSError]]]:
    """
    In a thread: start an observer and watch every root (its handlers hand
    events to C{watcher.note}); the observer and the roots that could not
    be watched, with why.
    """
    observer = factory()
    observer.start()
    problems: list[tuple[str, OSError]] = []
    options = schedule_options(observer)
    for root in roots:
        try:
            observer.schedule(_Handler(watcher, root), root, recursive=True, **options)
        except OSError as e:
            problems.append((root, e))
    return observer, problems


def _observer() -> Observer:
    from watchdog.observers import Observer

    return Observer()


class WatchService(Service):
    """
    Keeps C{store} (a L{pypid.store.directory.store.DirectoryStore}: its
    C{refresh} and C{rescan}) in step with changes under C{roots} as they
    happen.

    The observer's threads are started in L{startService} (after twistd has
    forked and dropped privileges) from a thread-pool thread (setting up
    recursive watches walks the tree), and stopped and joined in
    L{stopService}. When a directory cannot be watched (inotify limits, a
    filesystem without notifications) the reason is logged and the store is
    rescanned every C{fallback_poll} seconds instead.

    @ivar events: events that asked for a refresh.
    @ivar batches: refreshes asked of the store.
    """

    log = Logger()

    def __init__(
        self,
        store: DirectoryStore,
        roots: list[str],
        # The reactor: its clock, and callFromThread for watchdog's thread.
        reactor: Any,
        threads: Threads,
        quiet: float = QUIET,
        max_delay: float = MAX_DELAY,
        fallback_poll: float = FALLBACK_POLL,
        observer_factory: Callable[[], Observer] = _observer,
        batch: int = BATCH,
        metrics: Optional[Metrics] = None,
    ) -> None:
        self.store = store
        #: Where events and refreshes are counted.
        self.metrics = metrics if metrics is not None else Metrics()
        self.roots = [os.path.abspath(root) for root in roots]
        self.reactor = reactor
        self.threads = threads
        self.fallback_poll = fallback_poll
        self.observer_factory = observer_factory
        self.debouncer = Debouncer(reactor, quiet, max_delay, self._flush)
        self.batch = batch
        self._refreshing = False
        #: Directories that go to the store whole (see L{expand}).
        self._whole: set[str] = set()
        #: Events not yet named in a "refreshing" log line.
        self._unreported = 0
        self.events = 0
        self.batches = 0
        self._lock = threading.Lock()
        self._pending: dict[str, bool] = {}
        self._pending_events = 0
        self._pending_kinds: dict[str, int] = {}
        self._kicked = False
        self._observer: Optional[Observer] = None
        self._starting: Optional[Deferred[None]] = None
        self._watching: Optional[list[Deferred[None]]] = []
        self._poll: Optional[LoopingCall] = None
        self._overflow: Optional[_OverflowListener] = None

    # Called in watchdog's thread: the lock and callFromThread, nothing else.

    def note(self, paths: list[tuple[str, bool]], kind: str = "modified") -> None:
        with self._lock:
            for path, is_directory in paths:
                self._pending[path] = self._pending.get(path, False) or is_directory
            self._pending_events += 1
            self._pending_kinds[kind] = self._pending_kinds.get(kind, 0) + 1
            if self._kicked:
                return
            self._kicked = True
        self.reactor.callFromThread(self._kick)

    # Reactor thread.

    def _kick(self) -> None:
        with self._lock:
            self._kicked = False
        # While a refresh runs, what comes in waits for its end (L{_refreshed}).
        if self.running and not self._refreshing:
            self.debouncer.poke()

    def _flush(self) -> None:
        if self._refreshing:
            return
        with self._lock:
            batch, self._pending = take_batch(self._pending, self.batch)
            events, self._pending_events = self._pending_events, 0
            kinds, self._pending_kinds = self._pending_kinds, {}
        for kind, count in kinds.items():
            self.metrics.watcher_events.inc(count, kind=kind)
        self.events += events
        self._unreported += events
        directories = [path for path, is_directory in batch.items() if is_directory and path not in self._whole]
        if directories:
            # A directory copied in may hold thousands of files: list them
            # (in a thread), and let them go in batches like the rest.
            self._refreshing = True
            d = self.threads(expand, directories, self.roots)
            d.addCallback(self._expanded, batch)
            d.addErrback(self._not_expanded, batch, directories)
            return
        self._whole.difference_update(batch)
        if not batch:
            return
        self.metrics.watcher_refreshes.inc()
        paths = collapse(batch)
        self.batches += 1
        self.log.info(
            "package directory changed: refreshing {paths} paths after {events} events",
            paths=len(paths),
            events=self._unreported,
        )
        self._unreported = 0
        self._refreshing = True
        refreshing = self.store.refresh(paths)
        refreshing.addErrback(lambda f: self.log.failure("refreshing changed paths failed", f))
        refreshing.addBoth(self._refreshed)

    def _expanded(self, result: tuple[dict[str, bool], set[str]], batch: dict[str, bool]) -> None:
        files, whole = result
        self._whole.update(whole)
        with self._lock:
            for path, is_directory in batch.items():
                if not is_directory or path in self._whole:
                    self._pending[path] = self._pending.get(path, False) or is_directory
            for path in files:
                self._pending.setdefault(path, False)
        self._refreshed(None)

    def _not_expanded(self, failure: Failure, batch: dict[str, bool], directories: list[str]) -> None:
        self.log.failure("listing new directories failed; refreshing them whole", failure)
        self._expanded(({}, set(directories)), batch)

    def _refreshed(self, _: object) -> None:
        """One refresh is in place: what came meanwhile goes next, at once."""
        self._refreshing = False
        with self._lock:
            more = bool(self._pending)
        if more and self.running:
            self.debouncer.cancel()
            self._flush()

    def when_watching(self) -> Deferred[None]:
        """Fires once the watches are in place (or have failed and polling has begun)."""
        if self._watching is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._watching.append(d)
        return d

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's Service is unannotated
        self._overflow = _OverflowListener(lambda: self.reactor.callFromThread(self._overflowed))
        logging.getLogger("watchdog").addHandler(self._overflow)
        self._starting = self.threads(_start_observer, self, self.observer_factory, tuple(self.roots)).addCallback(
            self._started)
        self._starting.addErrback(self._start_failed)

    def _started(self, result: tuple[Observer, list[tuple[str, OSError]]]) -> None:
        observer, problems = result
        self._observer = observer
        for root, error in problems:
            self._warn_unwatched(root, error)
        if problems:
            self._start_polling()
        if len(problems) < len(self.roots):
            self.log.info("watching {directories} for changes",
                          directories=counted(len(self.roots) - len(problems), "package directory",
                                              "package directories"))
        self._now_watching()

    def _start_failed(self, failure: Failure) -> None:
        self.log.failure("cannot watch the package directories; polling instead", failure)
        self._start_polling()
        self._now_watching()

    def _start_polling(self) -> None:
        if self.running and self.fallback_poll and self._poll is None:
            self._poll = LoopingCall(self._rescan)
            self._poll.clock = self.reactor
            self._poll.start(self.fallback_poll, now=False)

    def _now_watching(self) -> None:
        waiting, self._watching = self._watching or [], None
        for d in waiting:
            d.callback(None)

    def _warn_unwatched(self, root: str, error: OSError) -> None:
        polling = (
            f"falling back to a full rescan every {self.fallback_poll:g} s"
            if self.fallback_poll
            else "changes show only at the periodic rescan"
        )
        limit = _LIMITS.get(error.errno)
        if limit is not None:
            what, sysctl, value = limit
            self.log.warn(
                "cannot watch {root} for changes: {what}. Raise the limit with "
                "'sysctl {sysctl}={value}' (and a line '{sysctl} = {value}' in "
                "/etc/sysctl.d/60-pypid.conf to keep it); {polling}.",
                root=root, what=what, sysctl=sysctl, value=value, polling=polling,
            )
        else:
            self.log.warn("cannot watch {root} for changes: {error}; {polling}.",
                          root=root, error=error, polling=polling)

    def _rescan(self) -> Deferred[None]:
        return self.store.rescan().addErrback(lambda f: self.log.failure("rescan failed", f))

    def _overflowed(self) -> None:
        self.metrics.watcher_events.inc(kind="overflow")
        if self.running:
            self.log.warn("filesystem events were lost (inotify queue overflow): rescanning")
            self._rescan()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # as above
        self.debouncer.cancel()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None
        if self._overflow is not None:
            logging.getLogger("watchdog").removeHandler(self._overflow)
            self._overflow = None
        starting = self._starting if self._starting is not None else succeed(None)
        return starting.addBoth(lambda _: self._stop_observer())

    def _stop_observer(self) -> Deferred[None]:
        observer, self._observer = self._observer, None
        if observer is None:
            return succeed(None)
        observer.stop()
        return self.threads(observer.join)
