"""The current snapshot of a store, the subscribers to its changes, and their log."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping, Optional

from twisted.internet.interfaces import IReactorTime

from twisted.internet.defer import Deferred, succeed

from pypid.index.changes import ChangeLog, ChangesSince, file_changes, yank_changes
from pypid.index.model import DistFile, IndexSnapshot
from pypid.index.yanks import changed_yanks

Listener = Callable[[IndexSnapshot, frozenset[str]], object]

#: Changes a store keeps in memory for XML-RPC C{changelog_since_serial}
#: (a mirror further behind does a full sync).
CHANGES_KEPT = 10_000


class SnapshotOwner:
    """
    Holds the current snapshot and tells subscribers about each change; the
    part every L{IPackageStore} shares. Changes are numbered by the
    snapshot's serial (L{IndexSnapshot.serial}) and logged in memory, the
    latest L{CHANGES_KEPT} of them (a store with a log of its own overrides
    L{_log} and L{changelog}).

    @param clock: when changes happen (C{seconds()}); the system clock by default.
    """

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        self.snapshot = IndexSnapshot.empty()
        self._listeners: list[Listener] = []
        self._clock = clock
        self.changes = ChangeLog(CHANGES_KEPT)

    def subscribe(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def apply(self, added: Iterable[DistFile], removed: Iterable[str], serial: Optional[int] = None) -> frozenset[str]:
        """
        Apply a change to the snapshot, numbered C{serial} (by default the
        snapshot's serial plus one), log it and tell the listeners.
        """
        old = self.snapshot
        snapshot, changed = old.apply(added, removed, serial)
        if changed:
            self._log(old, snapshot, changed)
            self._install(snapshot, changed)
        return changed

    def apply_yanks(self, changes: Mapping[str, Mapping[str, str]], serial: Optional[int] = None) -> frozenset[str]:
        """
        Replace the yanks of the projects in C{changes} (project key ->
        file name -> reason; see L{IndexSnapshot.with_yanks}) and tell the
        listeners, as L{apply} does for files.
        """
        # A yank is a change of the index like an upload: numbered by
        # with_yanks, logged (one change per file yanked or unyanked, for
        # changelog_since_serial), then installed.
        old = self.snapshot
        snapshot, changed = old.with_yanks(changes, serial)
        if changed:
            self.changes.record(yank_changes(old, snapshot, changed, self._change_time()))
            self._install(snapshot, changed)
        return changed

    def forget_yanks(self, distfiles: Iterable[DistFile]) -> dict[str, dict[str, str]]:
        """
        The yank changes that forget the yanks of C{distfiles} (deleted),
        unless a file of the same name is still listed in the project.
        """
        gone: list[tuple[str, str]] = []
        for f in distfiles:
            project = self.snapshot.get(f.project)
            if f.filename in self.snapshot.yanked(f.project) and not (
                project is not None and any(g.filename == f.filename for g in project.files)
            ):
                gone.append((f.project, f.filename))
        return changed_yanks(self.snapshot.yanks, gone, None)[0]

    def _change_time(self) -> float:
        return time.time() if self._clock is None else self._clock.seconds()

    def _log(self, old: IndexSnapshot, new: IndexSnapshot, changed: frozenset[str]) -> None:
        self.changes.record(file_changes(old, new, changed, self._change_time()))

    def _install(self, snapshot: IndexSnapshot, changed: frozenset[str]) -> None:
        """Make C{snapshot} the current one and tell the listeners which projects C{changed}."""
        self.snapshot = snapshot
        for listener in self._listeners:
            listener(snapshot, changed)

    def changelog(self, since: int) -> Deferred[ChangesSince]:
        """See L{pypid.store.interfaces.IPackageStore.changelog}."""
        return succeed(self.changes.since(since, self.snapshot.serial))
