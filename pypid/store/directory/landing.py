"""
The directory store's landing: new files are staged in a temporary file in
a hidden directory of the first package directory (L{Staged}), landed by an
atomic rename (or hard link, which never clobbers) at the place the store
chose (L{land}), and removed (L{remove}).

Nothing half-written is ever visible under a listed name: temporary files
live in C{<first root>/.pypid-incoming/}, which the scanner never lists
(hidden), on the same filesystem as their destination.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from typing import BinaryIO, Optional, Protocol

from zope.interface import implementer

from pypid.atomic import fsync_dir, replacing
from pypid.store.directory.scan import resolve_inside
from pypid.store.interfaces import AlreadyStored, BadName, IStaged

INCOMING = ".pypid-incoming"
PREFIX = ".upload-"
_CHUNK = 1024 * 1024


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


#: Mode of landed files: what a plain open() would have given them.
FILE_MODE = 0o666 & ~_umask()


def incoming_dir(root: str) -> str:
    """C{<root>/.pypid-incoming}, created if missing."""
    path = os.path.join(root, INCOMING)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def clean_stale(directory: str, older_than: float = 3600.0) -> int:
    """Remove upload temp files left by a crash; how many were removed."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@implementer(IStaged)
class Staged:
    """
    An upload's bytes in a temporary file of the spool directory, hashed as
    they are written (L{pypid.store.interfaces.IStaged}).
    """

    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=directory, prefix=PREFIX, suffix=".part")
        self._file: Optional[BinaryIO] = os.fdopen(fd, "wb")
        self.size = 0
        self._hashes: dict[str, _Hasher] = {
            "sha256": hashlib.sha256(),
            "blake2_256": hashlib.blake2b(digest_size=32),
            "md5": hashlib.md5(usedforsecurity=False),
        }
        self._digests: Optional[dict[str, str]] = None

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("write to a finished or aborted upload")
        self._file.write(data)
        self.size += len(data)
        for h in self._hashes.values():
            h.update(data)

    def finish(self) -> dict[str, str]:
        if self._digests is None:
            if self._file is None:
                raise ValueError("finish of an aborted upload")
            f, self._file = self._file, None
            try:
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), FILE_MODE)
            finally:
                f.close()
            self._digests = {name: h.hexdigest() for name, h in self._hashes.items()}
        return dict(self._digests)

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")

    def abort(self) -> None:
        f, self._file = self._file, None
        try:
            if f is not None:
                f.close()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def land(
    staged: Staged, root: str, target: str, overwrite: bool, signature: Optional[bytes] = None
) -> tuple[str, list[str]]:
    """
    Land C{staged} at C{target} (see L{place}), and C{signature} beside it
    as C{<target>.asc} unless nothing changed: the outcome, and the paths
    written. The folder of C{target} must be a directory inside C{root},
    else L{BadName}.
    """
    folder = os.path.dirname(target)
    if not os.path.isdir(folder) or resolve_inside(folder, root) is None:
        raise BadName(f"no folder {os.path.relpath(folder, root)!r} in the package directory")
    digests = staged.finish()
    outcome = place(staged.path, digests["sha256"], target, overwrite)
    changed = [target]
    if signature is not None and outcome != "identical":
        changed.append(write_signature(target, signature))
    return outcome, changed


def place(temp: str, sha256: str, target: str, overwrite: bool) -> str:
    """
    Land C{temp} at C{target}: atomically, never leaving a partial file.
    An existing target with the same bytes is left alone (C{identical});
    one with other bytes is replaced only with C{overwrite}, else
    L{AlreadyStored}. The outcome: C{created}, C{replaced} or
    C{identical}. C{temp} is gone afterwards.
    """
    directory = os.path.dirname(target)
    try:
        if overwrite:
            if os.path.isfile(target) and sha256_of(target) == sha256:
                return "identical"
            existed = os.path.lexists(target)
            try:
                os.replace(temp, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                _copy_then_replace(temp, target)
            fsync_dir(directory)
            return "replaced" if existed else "created"
        try:
            # A hard link never replaces an existing file: two uploads of
            # the same name racing each other cannot clobber one another.
            os.link(temp, target)
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here: check, then rename (a tiny race remains).
            if not os.path.lexists(target):
                os.replace(temp, target)
                fsync_dir(directory)
                return "created"
        else:
            fsync_dir(directory)
            return "created"
        if os.path.isfile(target) and sha256_of(target) == sha256:
            return "identical"
        raise AlreadyStored(os.path.basename(target))
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


def _copy_then_replace(source: str, target: str) -> None:
    """Replace C{target} with a copy of C{source} from another filesystem, atomically."""
    with replacing(target, prefix=PREFIX, mode=FILE_MODE) as out, open(source, "rb") as f:
        while chunk := f.read(_CHUNK):
            out.write(chunk)


def write_signature(path: str, data: bytes) -> str:
    """Write C{path}.asc atomically; return its path."""
    target = path + ".asc"
    with replacing(target, prefix=PREFIX, mode=FILE_MODE) as f:
        f.write(data)
    return target


def remove(paths: list[str]) -> list[str]:
    """Delete files (and their C{.asc} signatures); the paths really deleted."""
    removed = []
    for path in paths:
        for candidate in (path, path + ".asc"):
            try:
                os.unlink(candidate)
                removed.append(candidate)
            except FileNotFoundError:
                pass
    for directory in {os.path.dirname(p) for p in removed}:
        fsync_dir(directory)
    return removed
