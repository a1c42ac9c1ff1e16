"""
The directory store's yanks: C{.pypid-yanked} in the first package
directory, a small text file that people may edit (the format is
L{pypid.index.yanks}'s), apart from the state cache (which is only a
cache) and from the files it names (so that it survives rescans, restarts
and a C{git push} that rewrites the directory).

pypid reads it when it changes (the watcher sees it; every full rescan
looks), and rewrites it, atomically and keeping its comments, when a file
is yanked or unyanked through pypid, or deleted through pypid.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import os
import threading
from typing import Mapping, Optional

from pypid.atomic import replacing
from pypid.index.yanks import YankLines, YankRead
from pypid.store.directory.landing import FILE_MODE

#: The file's name, in the first package directory. Hidden: never listed,
#: left alone by C{pypid git-init}'s checkouts unless the repository holds it.
YANKS_FILE = ".pypid-yanked"


def _signature(path: str) -> tuple[object, ...]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("missing",)
    except OSError as e:
        return ("error", e.errno)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class YankFile:
    """The yank file at C{path}: read when it changed, rewritten atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        #: The signature of the file as last read or written (None: never read).
        self._signature: Optional[tuple[object, ...]] = None
        #: Counts the answers of L{read_if_changed} and L{update}: of two, the
        #: one with the higher C{version} says what the file holds now.
        self._version = 0

    def _read(self) -> tuple[YankLines, Optional[str], tuple[object, ...]]:
        signature = _signature(self.path)
        if signature == ("missing",):
            return YankLines(), None, signature
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            return YankLines(), f"cannot read {self.path}: {e}", signature
        return YankLines.parse(text), None, signature

    def read_if_changed(self) -> Optional[YankRead]:
        """What the file says, when it changed since it was last read or written; else L{None}."""
        with self._lock:
            if _signature(self.path) == self._signature:
                return None
            lines, error, signature = self._read()
            self._signature = signature
            self._version += 1
            return YankRead(lines.entries, lines.problems, error, self._version)

    def update(self, changes: Mapping[str, Optional[str]]) -> tuple[YankRead, list[str]]:
        """
        Yank (file name -> reason) or unyank (file name -> L{None}) in the
        file as it is now, and write it back atomically when that changed
        it. Returns what the file then says, and the file names whose yank
        changed.

        @raise OSError: when it cannot be read or written (nothing changed).
        """
        with self._lock:
            lines, error, _ = self._read()
            if error is not None:
                raise OSError(error)
            if not lines.lines:
                lines = YankLines.new()
            before = lines.text()
            changed = [name for name, reason in changes.items() if lines.entries.get(name) != reason]
            for filename, reason in changes.items():
                lines.set(filename, reason)
            if lines.text() != before:
                try:
                    mode = os.stat(self.path).st_mode & 0o7777
                except FileNotFoundError:
                    mode = FILE_MODE
                with replacing(self.path, prefix=".pypid-yanked-", suffix=".tmp", mode=mode, text=True) as f:
                    f.write(lines.text())
            self._signature = _signature(self.path)
            self._version += 1
            return YankRead(dict(lines.entries), lines.problems, None, self._version), changed
