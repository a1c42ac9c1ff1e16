"""
Writing a file so that readers see the old content or the whole new one,
never a part: a temporary sibling, flushed and fsynced, renamed over the
target. Blocking: call from threads where the reactor would wait.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator, Optional


@contextmanager
def replacing(
    target: str,
    prefix: str = ".tmp-",
    suffix: str = ".part",
    mode: Optional[int] = None,
    text: bool = False,
    keep_owner: bool = False,
) -> Iterator[IO]:
    """
    Yield a new file next to C{target}. When the block ends normally it is
    flushed, given C{mode} (and C{target}'s owner with C{keep_owner}),
    fsynced and renamed over C{target}; when the block raises, it is removed
    and C{target} is untouched.

    @param prefix: start of the temporary name; a leading C{.} keeps it out
        of pypid's listings.
    """
    directory = os.path.dirname(os.path.abspath(target))
    fd, temp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")) as f:
            yield f
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            if keep_owner:
                try:
                    st = os.stat(target)
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                except OSError:
                    pass
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def fsync_dir(directory: str) -> None:
    """Make a rename in C{directory} durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
