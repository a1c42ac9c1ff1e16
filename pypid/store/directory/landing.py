"""
The directory store's landing: new files are staged in a temporary file in
a hidden directory of the first package directory (L{Staged}), landed by an
atomic rename (or hard link, which never clobbers) at the place the store
chose (L{land}), and removed (L{remove}).

Nothing half-written is ever visible under a listed name: temporary files
live in C{<first root>/.pypid-incoming/}, which the scanner never lists
(hidden), on the same filesystem as their destination, so that an upload's
bytes are written once and renamed into place. That directory (the
L{Spool}) is there only while an upload is: the first one in flight makes
it, the last one out removes it; at start, what a crash left in it is
removed (L{clean_spool}).

A full disk (or quota) is L{StoreFull}, with what there was room for.

Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from typing import BinaryIO, Callable, Optional, Protocol, TypeVar

from zope.interface import implementer

from pypid.atomic import fsync_dir, replacing
from pypid.counts import counted, mib
from pypid.store.directory.scan import resolve_inside
from pypid.store.interfaces import AlreadyStored, BadName, IStaged, StoreFull

INCOMING = ".pypid-incoming"
PREFIX = ".upload-"
SUFFIX = ".part"
_CHUNK = 1024 * 1024
#: The errors of a disk with no room left.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)

T = TypeVar("T")


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


def free_bytes(path: str) -> Optional[int]:
    """Bytes an unprivileged writer may still write on C{path}'s filesystem (None: unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def no_room(where: str, free: Optional[int] = None, needed: Optional[int] = None) -> StoreFull:
    """The L{StoreFull} of a full disk under C{where}, with what is known of the room."""
    text = f"Insufficient Storage: the disk of the package directory {where} is full"
    if needed is not None and free is not None:
        text = (f"Insufficient Storage: the upload is {mib(needed)}, and the disk of the package "
                f"directory {where} has {mib(free)} free")
    return StoreFull(text + "; the index's operator must make room.")


def room_checked(where: str, call: Callable[..., T], *args: object) -> T:
    """C{call(*args)}, with a full disk raised as L{StoreFull}."""
    try:
        return call(*args)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise no_room(where) from e
        raise


class Spool:
    """
    The directory of staged uploads, C{<root>/.pypid-incoming}: made by the
    first upload in flight, removed (when empty) by the last one out, so
    that no tool listing or tracking the package directory (C{ls}, C{git
    status}) sees it while the index is idle. Thread-safe.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, INCOMING)
        self._lock = threading.Lock()
        self._users = 0

    def create(self) -> tuple[int, str]:
        """A new temporary file in the spool (made if missing): its descriptor and path."""
        with self._lock:
            self._users += 1
            try:
                try:
                    os.mkdir(self.path, 0o700)
                except FileExistsError:
                    pass
                return tempfile.mkstemp(dir=self.path, prefix=PREFIX, suffix=SUFFIX)
            except BaseException:
                self._release()
                raise

    def release(self) -> None:
        """A temporary file of L{create} is gone: the spool goes with the last one."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0:
            try:
                os.rmdir(self.path)
            except OSError:
                # Gone already, or something else was put in it: left alone.
                pass


def clean_spool(root: str) -> tuple[int, int]:
    """
    At start (pypid is the only writer of its spool): remove what uploads
    cut short by a crash left in C{<root>/.pypid-incoming}, and the
    directory itself when nothing else is in it. The files removed and
    their bytes.
    """
    path = os.path.join(root, INCOMING)
    removed = freed = 0
    try:
        entries = list(os.scandir(path))
    except OSError:
        return 0, 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            os.unlink(entry.path)
        except OSError:
            continue
        removed += 1
        freed += st.st_blocks * 512 if st.st_blocks else st.st_size
    try:
        os.rmdir(path)
    except OSError:
        pass
    return removed, freed


def cleaned_line(removed: int, freed: int, path: str) -> str:
    """The log line of L{clean_spool}'s work."""
    return (f"removed {counted(removed, 'leftover upload file')} of uploads cut short by a crash "
            f"from {path} ({mib(freed)} freed)")


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@implementer(IStaged)
class Staged:
    """
    An upload's bytes in a temporary file of the spool directory, hashed as
    they are written (L{pypid.store.interfaces.IStaged}). With C{size}, the
    bytes expected: L{StoreFull} at once when the disk has no room for them.
    """

    def __init__(self, spool: Spool, size: Optional[int] = None) -> None:
        self._spool: Optional[Spool] = spool
        if size is not None:
            free = free_bytes(spool.root)
            if free is not None and size > free:
                self._spool = None
                raise no_room(spool.root, free, size)
        try:
            fd, self.path = room_checked(spool.root, spool.create)
        except BaseException:
            self._spool = None
            raise
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
        room_checked(self._where(), self._file.write, data)
        self.size += len(data)
        for h in self._hashes.values():
            h.update(data)

    def _where(self) -> str:
        return self._spool.root if self._spool is not None else os.path.dirname(os.path.dirname(self.path))

    def finish(self) -> dict[str, str]:
        if self._digests is None:
            if self._file is None:
                raise ValueError("finish of an aborted upload")
            f, self._file = self._file, None
            try:
                # Delayed allocation: a full disk may show only now.
                room_checked(self._where(), self._durable, f)
            finally:
                f.close()
            self._digests = {name: h.hexdigest() for name, h in self._hashes.items()}
        return dict(self._digests)

    @staticmethod
    def _durable(f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())
        os.fchmod(f.fileno(), FILE_MODE)

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")

    def abort(self) -> None:
        f, self._file = self._file, None
        try:
            if f is not None:
                try:
                    f.close()
                except OSError:
                    # The buffer's last bytes found no room: they go anyway.
                    pass
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            spool, self._spool = self._spool, None
            if spool is not None:
                spool.release()


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
    outcome = room_checked(root, place, staged.path, digests["sha256"], target, overwrite)
    changed = [target]
    if signature is not None and outcome != "identical":
        changed.append(room_checked(root, write_signature, target, signature))
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
