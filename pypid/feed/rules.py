"""
Warehouse's release rules, opt-in (both off by default, as pypiserver has
neither):

  - C{--no-filename-reuse}: a file name that was removed from the index can
    never be uploaded again. Without it, whoever can upload (a compromised
    account, a CI job gone wrong) can delete a published file and upload
    other bytes under its name: everyone who installs it by name gets the
    new bytes, and lock files pinning the old hash break.
  - C{--one-sdist}: one sdist per release (PEP 527). Two sdists of one
    version (a C{.tar.gz} and a C{.zip}) are two different builds that
    installers pick between at random.

Removed file names are whatever the index stops listing, however it goes
(C{remove_pkg}, C{rm}, a C{git push}), recorded while the rule is on in
C{.pypid-removed} in the first package directory: one name a line, which
an administrator may edit (a deleted line allows the name again).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Generator, Iterable, Optional

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure

from pypid.feed.checks import Declared, bad
from pypid.index.model import IndexSnapshot
from pypid.index.pypijson import release_files
from pypid.store.interfaces import IPackageStore
from pypid.threads import Threads

REMOVED_FILE = ".pypid-removed"
HEADER = (
    "# File names removed from this index, one a line, recorded by pypid while it runs\n"
    "# with --no-filename-reuse: no upload may use them again. Delete a line to allow it.\n"
)

REUSED = (
    "This filename was previously used by a file that has since been deleted: "
    "{filename}. Use a new version number (this index runs with --no-filename-reuse)."
)
SECOND_SDIST = "Only one sdist may be uploaded per release: {project} {version} already has {other}."


class RemovedNames:
    """The removed file names of the file at C{path}. Blocking: call in a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: Optional[tuple[object, ...]] = None
        self._names: set[str] = set()

    def _signature_now(self) -> tuple[object, ...]:
        try:
            st = os.stat(self.path)
        except OSError as e:
            return ("missing", e.errno)
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def names(self) -> set[str]:
        """The names, read again when the file changed."""
        with self._lock:
            signature = self._signature_now()
            if signature != self._signature:
                names: set[str] = set()
                try:
                    with open(self.path, encoding="utf-8") as f:
                        for line in f:
                            line = line.strip()
                            if line and not line.startswith("#"):
                                names.add(line)
                except FileNotFoundError:
                    pass
                self._names, self._signature = names, signature
            return set(self._names)

    def contains(self, filename: str) -> bool:
        return filename in self.names()

    def add(self, filenames: Iterable[str]) -> None:
        """Append the names not there yet (made durable)."""
        new = sorted(set(filenames) - self.names())
        if not new:
            return
        with self._lock:
            fresh = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                data = (HEADER if fresh else "") + "".join(name + "\n" for name in new)
                os.write(fd, data.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)


class ReleaseRules:
    """
    The opt-in rules, checked by the publisher before it stores an upload
    (L{check}); with C{no_filename_reuse}, what the store stops listing is
    recorded in C{removed}.
    """

    log = Logger()

    def __init__(self, store: IPackageStore, threads: Threads, no_filename_reuse: bool = False,
                 one_sdist: bool = False, removed: Optional[RemovedNames] = None) -> None:
        if no_filename_reuse and removed is None:
            raise ValueError("--no-filename-reuse needs where to record removed names")
        self.store = store
        self.threads = threads
        self.no_filename_reuse = no_filename_reuse
        self.one_sdist = one_sdist
        self.removed = removed
        self._seen: IndexSnapshot = store.snapshot
        if no_filename_reuse:
            store.subscribe(self._changed)

    @property
    def active(self) -> bool:
        return self.no_filename_reuse or self.one_sdist

    @inlineCallbacks
    def check(self, declared: Declared) -> Generator[Deferred[Any], Any, None]:
        """Fires when the upload of C{declared} may go on; fails with L{UploadError} 400."""
        yield self.store.whenReady()
        project = self.store.snapshot.get(declared.project)
        listed = project is not None and any(f.filename == declared.filename for f in project.files)
        if listed:
            # The same name again: the rules of replacing a file decide.
            return
        if self.one_sdist and declared.parsed.kind == "sdist" and project is not None:
            others = [f for f in release_files(project, str(declared.version)) if f.kind == "sdist"]
            if others:
                raise bad(SECOND_SDIST.format(project=declared.project, version=declared.version,
                                              other=others[0].filename))
        if self.no_filename_reuse:
            assert self.removed is not None
            reused = yield self.threads(self.removed.contains, declared.filename)
            if reused:
                raise bad(REUSED.format(filename=declared.filename))

    def _changed(self, snapshot: IndexSnapshot, changed: frozenset[str]) -> None:
        """Record the file names the index no longer lists."""
        before, self._seen = self._seen, snapshot
        if before.projects is snapshot.projects:
            return
        gone: list[str] = []
        for key in changed:
            old = before.get(key)
            if old is None:
                continue
            new = snapshot.get(key)
            still = {f.filename for f in new.files} if new is not None else set()
            gone.extend(f.filename for f in old.files if f.filename not in still)
        if not gone:
            return
        removed = self.removed
        assert removed is not None

        def failed(failure: Failure) -> None:
            self.log.failure("could not record removed file names in {path}", failure, path=removed.path)

        self.threads(removed.add, gone).addErrback(failed)


def removed_names(root: str) -> RemovedNames:
    """The record of removed names in the first package directory C{root}."""
    return RemovedNames(os.path.join(root, REMOVED_FILE))
