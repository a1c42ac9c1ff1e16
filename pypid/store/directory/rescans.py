"""The service that keeps the index in step with the package directories."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from pypid.store.directory.scan import Progress
    from pypid.store.directory.store import DirectoryStore

_T = TypeVar("_T")


#: Seconds between the progress lines of a long first scan.
PROGRESS_EVERY = 5.0


class IndexService(Service):
    """
    Runs the first scan of C{store} (a
    L{pypid.store.directory.store.DirectoryStore}) when the service starts
    (after twistd has forked and dropped privileges, never before), then a
    safety rescan every C{interval} seconds.

    C{first_scan_after}, when given, returns a L{Deferred} the first scan
    waits for: the watcher's, so that no change falls between the walk and
    the watches being in place.

    While the first scan runs, how far it has got is logged every
    C{progress_every} seconds; after it, after each rescan and when the
    service stops, the store writes its index image (when it changed).
    """

    log = Logger()
    progress_every = PROGRESS_EVERY

    def __init__(
        self,
        store: DirectoryStore,
        clock: IReactorTime,
        interval: Optional[float],
        first_scan_after: Optional[Callable[[], Deferred[None]]] = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.first_scan_after = first_scan_after
        self._loop: Optional[LoopingCall] = None
        self._progress: Optional[LoopingCall] = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's Service is unannotated
        if self.first_scan_after is None:
            self._first_scan()
        else:
            self.first_scan_after().addBoth(lambda _: self._first_scan())

    def _first_scan(self) -> None:
        if not self.running:
            return
        self.log.info("scanning the package directories")
        started = self.clock.seconds()
        progress = getattr(self.store, "progress", None)
        if progress is not None and self.progress_every:
            self._progress = LoopingCall(self._say_progress, progress, started)
            self._progress.clock = self.clock
            self._progress.start(self.progress_every, now=False)
        # The first scan makes a record per file, hundreds of thousands on
        # a large tree, every one of them kept: as they pile up the cyclic
        # collector walks them again and again (a tenth of a warm start)
        # and finds nothing to free. It rests until the first index is in
        # place (the store then freezes that index out of its sight).
        collecting = gc.isenabled()
        gc.disable()
        try:
            d = self.store.rescan()
        except BaseException:
            if collecting:
                gc.enable()
            raise
        if collecting:
            d.addBoth(self._collect_again)
        d.addBoth(self._first_scanned)
        if self.interval:
            self._loop = LoopingCall(self._rescan)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    @staticmethod
    def _collect_again(result: _T) -> _T:
        gc.enable()
        return result

    def _say_progress(self, progress: Progress, started: float) -> None:
        seconds = self.clock.seconds() - started
        if progress.total:
            self.log.info(
                "scanned {scanned:,} of ~{total:,} files ({read:,} read) in {seconds:.0f} s",
                scanned=progress.scanned, total=progress.total, read=progress.read, seconds=seconds)
        else:
            self.log.info("reading the index image: {loaded:,} files in {seconds:.0f} s",
                          loaded=progress.loaded, seconds=seconds)

    def _stop_progress(self) -> None:
        if self._progress is not None and self._progress.running:
            self._progress.stop()
        self._progress = None

    def _first_scanned(self, result: _T) -> _T:
        self._stop_progress()
        self._save_image()
        return result

    def _save_image(self) -> Optional[Deferred[None]]:
        save: Optional[Callable[[], Deferred[None]]] = getattr(self.store, "save_image", None)
        return save() if save is not None and self.running else None

    def _rescan(self) -> Deferred[None]:
        # Errors are logged by the store; the loop must go on. The index
        # image follows what the rescan found.
        d = self.store.rescan().addErrback(
            lambda f: self.log.failure("periodic rescan failed", f)
        )
        return d.addCallback(lambda _: self._save_image())

    def stopService(self) -> Optional[Deferred[None]]:
        self._stop_progress()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        # The index as it is now, for the next start.
        save: Optional[Callable[[], Deferred[None]]] = getattr(self.store, "save_image", None)
        saving = save() if save is not None else None
        super().stopService()  # type: ignore[no-untyped-call]  # as above
        return saving
