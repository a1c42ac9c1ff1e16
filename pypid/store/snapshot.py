"""The current snapshot of a store and the subscribers to its changes."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from pypid.index.model import DistFile, IndexSnapshot

Listener = Callable[[IndexSnapshot, frozenset], None]


class SnapshotOwner:
    """
    Holds the current snapshot and tells subscribers about each change; the
    part every L{IPackageStore} shares.
    """

    def __init__(self) -> None:
        self.snapshot = IndexSnapshot.empty()
        self._listeners: list[Listener] = []

    def subscribe(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def apply(self, added: Iterable[DistFile], removed: Iterable[str], serial: Optional[int] = None) -> frozenset:
        """
        Apply a change to the snapshot and tell the listeners. C{serial} is
        the change's number when the store numbers its changes (a catalog);
        by default the snapshot's serial goes up by one.
        """
        snapshot, changed = self.snapshot.apply(added, removed, serial)
        if changed:
            self.snapshot = snapshot
            for listener in self._listeners:
                listener(snapshot, changed)
        return changed
