"""The current snapshot of a store and the subscribers to its changes."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from pypid.index.model import DistFile, IndexSnapshot
from pypid.index.yanks import changed_yanks

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

    def apply(self, added: Iterable[DistFile], removed: Iterable[str]) -> frozenset:
        """Apply a change to the snapshot and tell the listeners."""
        snapshot, changed = self.snapshot.apply(added, removed)
        if changed:
            self.snapshot = snapshot
            for listener in self._listeners:
                listener(snapshot, changed)
        return changed

    def apply_yanks(self, changes: Mapping[str, Mapping[str, str]]) -> frozenset:
        """
        Replace the yanks of the projects in C{changes} (project key ->
        file name -> reason; see L{IndexSnapshot.with_yanks}) and tell the
        listeners, as L{apply} does for files.
        """
        # HOOK (the change serial): a yank is a change of the index like an
        # upload. Once snapshots carry serials, with_yanks numbers it (see
        # there), and this logs it as apply() does (one change per file
        # yanked or unyanked, for changelog_since_serial); a store that keeps
        # its serials (the directory store's serial book) records it before
        # installing the snapshot, through the same one-at-a-time path as
        # the changes its scans find.
        snapshot, changed = self.snapshot.with_yanks(changes)
        if changed:
            self.snapshot = snapshot
            for listener in self._listeners:
                listener(snapshot, changed)
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
