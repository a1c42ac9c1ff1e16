"""
Walking a package directory in a child process: what a warm start of a
large tree does on a second core while the index image is read.

A warm start compares every file with the index image: the walk (a
directory read and a C{stat} per file, half of it in the kernel) and the
image's read are each a few seconds at a million files. Done in one
process they add up; here the walk runs in a child (C{python -m
pypid.store.directory.walk ROOT}), which sends what it finds, a directory
at a time, down a pipe, while the parent reads the image, then compares
as the directories come.

The child's output: for each directory, an 8-byte length and a
C{marshal} blob of (its regular files as L{scan.Found} tuples, the paths
with a detached signature, what was left out as L{scan.Skipped} tuples);
then an empty blob: the end. Anything else (the child could not start,
died, or said something else) is a failure: the caller walks in its own
process instead.
"""

from __future__ import annotations

import marshal
import os
import struct
import subprocess
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    from pypid.store.directory.scan import FoundFields, Skipped

_LENGTH = struct.Struct("<Q")


class WalkFailed(Exception):
    """The child did not walk the whole tree."""


class ChildWalk:
    """
    A walk of C{root} (package directory number C{index}) in a child
    process, started at once; iterate over it for (files, signatures),
    directory by directory (L{skipped} has what was left out). A thread
    reads the pipe as the child writes, so the child never waits for the
    parent. Blocking: call from a thread.
    """

    def __init__(self, root: str, index: int = 0) -> None:
        import pypid

        top = os.path.dirname(os.path.dirname(os.path.abspath(pypid.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.skipped: list[Skipped] = []
        self._blobs: deque[bytes] = deque()
        self._done = False
        self._error: Optional[str] = None
        self._ready = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pypid.store.directory.walk", root, str(index)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._reader = threading.Thread(target=self._read, name="pypid-walk-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out = self.process.stdout
        assert out is not None  # (stdout=PIPE)
        ended = False
        try:
            while True:
                head = out.read(_LENGTH.size)
                if len(head) != _LENGTH.size:
                    break
                (length,) = _LENGTH.unpack(head)
                if length == 0:
                    ended = True
                    break
                blob = out.read(length)
                if len(blob) != length:
                    break
                with self._ready:
                    self._blobs.append(blob)
                    self._ready.notify()
        except Exception as e:  # (read errors: the walk failed)
            self._error = str(e)
        finally:
            code = self.process.wait()
            assert self.process.stderr is not None  # (stderr=PIPE)
            errors = self.process.stderr.read().decode("utf-8", "replace").strip()
            with self._ready:
                if not ended or code != 0:
                    self._error = self._error or f"the walker exited with {code}: {errors[-300:]}"
                self._done = True
                self._ready.notify()

    def __iter__(self) -> Iterator[tuple[list[FoundFields], set[str]]]:
        """(files, signatures) a directory at a time; the files as plain tuples of L{scan.Found}'s fields."""
        from pypid.store.directory.scan import Skipped

        while True:
            with self._ready:
                while not self._blobs and not self._done:
                    self._ready.wait()
                if self._blobs:
                    blob = self._blobs.popleft()
                else:
                    if self._error is not None:
                        raise WalkFailed(self._error)
                    return
            try:
                files, signatures, skipped = marshal.loads(blob)
            except (EOFError, ValueError, TypeError) as e:
                raise WalkFailed(f"unreadable output: {e}") from None
            self.skipped.extend(Skipped(*item) for item in skipped)
            yield files, set(signatures)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._reader.join()


def main(argv: list[str]) -> int:
    from pypid.store.directory.scan import _walk_dir

    root, index = argv[0], int(argv[1]) if len(argv) > 1 else 0
    out = sys.stdout.buffer
    skipped: list[Skipped] = []
    for files, signatures in _walk_dir(index, os.path.realpath(root), "", root, skipped):
        blob = marshal.dumps(([tuple(f) for f in files], list(signatures), [tuple(s) for s in skipped]))
        skipped = []
        out.write(_LENGTH.pack(len(blob)))
        out.write(blob)
    if skipped:
        blob = marshal.dumps(([], [], [tuple(s) for s in skipped]))
        out.write(_LENGTH.pack(len(blob)))
        out.write(blob)
    out.write(_LENGTH.pack(0))
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
