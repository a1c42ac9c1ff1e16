"""
The index image: the whole index of the package directories written to the
state directory, so that a start reads it back in one go instead of
looking up every file in the state cache and parsing its name again.

It is only a cache: a start checks every file against it (one C{stat}
each: size, mtime, inode and status-change time), lists what it says for
the files that did not change, and reads the others (from the state
cache, or the files themselves). A missing, damaged, foreign or outdated
image is ignored.

The file: a magic line, then chunks, each an 8-byte length and a
C{marshal} blob: first a header (the format, the package directories and
hash algorithm it was made for, how many files and projects), then the
projects in chunks of about L{CHUNK} files, column by column (C{marshal}
shares the strings a chunk repeats). C{marshal}'s format belongs to the
Python version: another Python ignores the image. The state directory is
pypid's own (mode 0700): nobody else writes the image.

Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
from functools import partial
from typing import Any, Callable, Optional, Sequence

from packaging.version import Version

from pypid.index.model import DistFile, FileMap, IndexSnapshot, Project

FILENAME = "index.image"
MAGIC = b"pypid index image\n"
#: Bump when what is written changes.
FORMAT = 1
#: Files per chunk: what reading one holds besides the index.
CHUNK = 20000

_LENGTH = struct.Struct("<Q")
#: A chunk as written: (keys, names, file counts) of its projects, and its files' fields, column by column.
_Chunk = tuple[list[tuple[object, ...]], list[Sequence[object]]]
_make_file = partial(tuple.__new__, DistFile)


class ImageError(Exception):
    """The image cannot be used (the message says why)."""


def _header(roots: list[str], hash_algo: Optional[str]) -> dict[str, object]:
    return {"format": FORMAT, "marshal": marshal.version, "python": list(sys.version_info[:2]),
            "roots": list(roots), "hash_algo": hash_algo or ""}


def save(path: str, snapshot: IndexSnapshot, roots: list[str], hash_algo: Optional[str]) -> int:
    """
    Write C{snapshot} (files of C{roots}, hashed with C{hash_algo}) to
    C{path}, atomically. Returns the bytes written.
    """
    header = _header(roots, hash_algo)
    header.update(files=snapshot.file_count, projects=len(snapshot.projects))
    temp = f"{path}.{os.getpid()}.tmp"
    written = 0
    try:
        with open(temp, "wb") as out:
            out.write(MAGIC)

            def put(value: dict[str, object] | _Chunk) -> None:
                nonlocal written
                blob = marshal.dumps(value)
                out.write(_LENGTH.pack(len(blob)))
                out.write(blob)
                written += len(blob) + _LENGTH.size

            put(header)
            projects: list[tuple[str, str, int]] = []
            files: list[DistFile] = []
            for project in snapshot.projects.values():
                projects.append((project.key, project.name, len(project.files)))
                files.extend(project.files)
                if len(files) >= CHUNK:
                    put(_columns(projects, files))
                    projects, files = [], []
            if projects:
                put(_columns(projects, files))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return written + len(MAGIC)


def _columns(
    projects: list[tuple[str, str, int]], files: list[DistFile]
) -> _Chunk:
    columns: list[Sequence[object]] = list(zip(*files))
    # Versions as their text (marshal knows no Version): one per distinct version.
    texts: dict[int, str] = {}
    columns[4] = [texts.get(id(v)) or texts.setdefault(id(v), str(v)) for v in columns[4]]
    return (list(zip(*projects)), columns)


def load(path: str, roots: list[str], hash_algo: Optional[str],
         progress: Optional[Callable[[int], None]] = None) -> IndexSnapshot:
    """
    Read the image at C{path} into a snapshot, if it was written for
    C{roots} and C{hash_algo} by this Python.

    @param progress: told the number of files read so far, chunk by chunk.
    @raise ImageError: when it cannot be used.
    @raise OSError: when it cannot be read (L{FileNotFoundError}: there is none).
    """
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ImageError("not an index image")

        # What marshal read back is checked where it is used (a wrong shape is an ImageError).
        def take() -> Any:
            raw = f.read(_LENGTH.size)
            if not raw:
                return None
            if len(raw) != _LENGTH.size:
                raise ImageError("cut short")
            (length,) = _LENGTH.unpack(raw)
            blob = f.read(length)
            if len(blob) != length:
                raise ImageError("cut short")
            try:
                return marshal.loads(blob)
            except (EOFError, ValueError, TypeError) as e:
                raise ImageError(f"damaged: {e}") from None

        header = take()
        expected = _header(roots, hash_algo)
        if not isinstance(header, dict) or any(header.get(k) != v for k, v in expected.items()):
            raise ImageError("written for other package directories, hash algorithm, or Python")
        versions: dict[str, Version] = {}
        projects: dict[str, Project] = {}
        all_files: list[DistFile] = []
        while True:
            chunk = take()
            if chunk is None:
                break
            try:
                (keys, names, counts), columns = chunk
                columns[4] = [versions.get(v) or versions.setdefault(v, Version(v)) for v in columns[4]]
                files = list(map(_make_file, zip(*columns)))
            except (ValueError, TypeError) as e:
                raise ImageError(f"damaged: {e}") from None
            start = 0
            for key, name, count in zip(keys, names, counts):
                projects[key] = Project(key, name, tuple(files[start : start + count]), serial=1)
                start += count
            if start != len(files):
                raise ImageError("damaged: the projects do not cover the files")
            all_files.extend(files)
            if progress is not None:
                progress(len(all_files))
    if len(all_files) != header.get("files") or len(projects) != header.get("projects"):
        raise ImageError("cut short")
    # As of serial 1, as a first scan's index is (the store renumbers it).
    return IndexSnapshot(projects, FileMap(all_files), 1, 1)

