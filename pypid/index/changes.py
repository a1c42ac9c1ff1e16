"""
The change log behind the index's serial: what each numbered change did to
which project, as mirroring tools ask for it (XML-RPC
C{changelog_since_serial}). Pure: no I/O, no Twisted.

Every change to the index has a serial (L{pypid.index.model.IndexSnapshot});
a change is logged as one L{Change} per file it added or removed (or one per
project when only the project is known to have changed). A log is bounded:
it keeps the latest changes and remembers its I{horizon}, the newest serial
some of whose changes it no longer holds. Asked for the changes since a
serial older than the horizon (or newer than the index's own serial: a log
that was lost), it says its answer is incomplete, and the mirror then checks
every project (a full sync) instead of the ones the log names.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, NamedTuple

from pypid.index.model import IndexSnapshot

#: What a change did. C{SYNC}: the project changed in ways not known file by
#: file (files changed while the index was not running). C{YANK}, C{UNYANK}:
#: a file was yanked or unyanked (PEP 592).
ADD, REMOVE, REMOVE_PROJECT, SYNC = "add", "remove", "remove project", "sync"
YANK, UNYANK = "yank", "unyank"


class Change(NamedTuple):
    """One logged change to one project (one file, for adds and removals)."""

    serial: int
    #: When it was applied (seconds since the epoch).
    at: float
    #: L{ADD}, L{REMOVE}, L{REMOVE_PROJECT} or L{SYNC}.
    action: str
    #: The project's normalised name.
    project: str
    #: Its display name.
    name: str
    #: The file's version (C{""} when the change is of the project as a whole).
    version: str = ""
    filename: str = ""


class ChangesSince(NamedTuple):
    """The answer to "what changed after serial N"."""

    #: The changes after N, oldest first.
    changes: tuple[Change, ...]
    #: Whether they are all of them (L{False}: N is beyond the log's horizon).
    complete: bool


def file_changes(old: IndexSnapshot, new: IndexSnapshot, changed: Iterable[str], at: float) -> list[Change]:
    """
    The changes that took C{old} to C{new} for the projects C{changed}, one
    per file added (or rewritten) and removed, numbered C{new.serial}.
    """
    serial = new.serial
    out: list[Change] = []
    for key in sorted(changed):
        before = old.projects.get(key)
        after = new.projects.get(key)
        old_files = {f.path: f for f in before.files} if before is not None else {}
        new_files = {f.path: f for f in after.files} if after is not None else {}
        name = after.name if after is not None else before.name if before is not None else key
        for path, f in old_files.items():
            if path not in new_files:
                out.append(Change(serial, at, REMOVE, key, name, str(f.version), f.filename))
        for path, f in new_files.items():
            if old_files.get(path) != f:
                out.append(Change(serial, at, ADD, key, name, str(f.version), f.filename))
        if after is None and before is not None:
            out.append(Change(serial, at, REMOVE_PROJECT, key, name))
    return out


def yank_changes(old: IndexSnapshot, new: IndexSnapshot, changed: Iterable[str], at: float) -> list[Change]:
    """
    The changes that took C{old}'s yanks to C{new}'s for the projects
    C{changed}, one per file yanked (or given another reason) or unyanked,
    numbered C{new.serial}.
    """
    serial = new.serial
    out: list[Change] = []
    for key in sorted(changed):
        before, after = old.yanked(key), new.yanked(key)
        project = new.projects.get(key)
        name = project.name if project is not None else key
        versions = {f.filename: str(f.version) for f in project.files} if project is not None else {}
        for filename in sorted(set(before) | set(after)):
            if filename in after and before.get(filename) != after[filename]:
                out.append(Change(serial, at, YANK, key, name, versions.get(filename, ""), filename))
            elif filename not in after:
                out.append(Change(serial, at, UNYANK, key, name, versions.get(filename, ""), filename))
    return out


def since(changes: Iterable[Change], serial: int, horizon: int, last: int) -> ChangesSince:
    """
    The changes (oldest first) after C{serial}, of a log whose horizon is
    C{horizon}, for an index whose serial is C{last}.
    """
    complete = horizon <= serial <= last
    return ChangesSince(tuple(c for c in changes if c.serial > serial), complete)


class ChangeLog:
    """
    The latest changes in memory (for stores without a log of their own on
    disk): at most C{limit}; the oldest go first, and the horizon moves up.

    @param horizon: the serial the log starts at (changes up to it are not
        in it: the files listed at start).
    """

    def __init__(self, limit: int = 10_000, horizon: int = 0) -> None:
        self.limit = limit
        self.horizon = horizon
        self._changes: deque[Change] = deque()

    def record(self, changes: Iterable[Change]) -> None:
        self._changes.extend(changes)
        while len(self._changes) > self.limit:
            dropped = self._changes.popleft()
            self.horizon = max(self.horizon, dropped.serial)

    def since(self, serial: int, last: int) -> ChangesSince:
        """The changes after C{serial} (see L{since}); C{last}: the index's serial."""
        if serial >= self.horizon:
            # Newest last: walk back only as far as needed.
            newer = []
            for change in reversed(self._changes):
                if change.serial <= serial:
                    break
                newer.append(change)
            newer.reverse()
            return ChangesSince(tuple(newer), serial <= last)
        return since(self._changes, serial, self.horizon, last)

    def __len__(self) -> int:
        return len(self._changes)
