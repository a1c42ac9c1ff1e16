"""
The upstream cache on disk. Every function here blocks: call them in a
thread.

Layout under the cache directory::

    pages/<project>.json        an upstream page (parsed) with its validators
    files/<project>/<filename>  a downloaded file, hash-checked
    meta/<project>/<filename>.metadata  a file's core metadata, hash-checked
    index.json                  the upstream project list (--list-upstream)

Files are written to a C{.incoming-*} temporary file in their final
directory, flushed, then renamed into place, so a reader never sees a
partial file; leftovers from a crash are removed at start.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import NamedTuple, Optional

from pypid.atomic import fsync_dir, replacing
from pypid.upstream.policy import Validators
from pypid.upstream.records import UpstreamProject, project_from_json, project_to_json

INCOMING = ".incoming-"


class PageEntry(NamedTuple):
    """A cached upstream page."""

    project: UpstreamProject
    validators: Validators
    #: When the upstream last confirmed it (seconds, the reactor's clock).
    fetched_at: float


class CacheLayout:
    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def page_path(self, key: str) -> str:
        return os.path.join(self.directory, "pages", key + ".json")

    def file_path(self, key: str, filename: str) -> str:
        return os.path.join(self.directory, "files", key, filename)

    def metadata_path(self, key: str, filename: str) -> str:
        return os.path.join(self.directory, "meta", key, filename + ".metadata")

    @property
    def index_path(self) -> str:
        return os.path.join(self.directory, "index.json")


def write_atomically(path: str, data: bytes, sync_dir: bool = True) -> None:
    """
    Replace C{path} by C{data} all at once. The bytes are synced before the
    rename, so a file there after a crash is whole; without C{sync_dir} the
    rename itself may be lost to a crash (fine for what can be fetched
    again, and one fsync fewer on the way).
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with replacing(path, prefix=INCOMING, suffix="") as f:
        f.write(data)
    if sync_dir:
        fsync_dir(directory)


def save_page(path: str, entry: PageEntry) -> None:
    """Write a page entry (a crash may lose it: it is fetched again)."""
    data = {
        "fetched_at": entry.fetched_at,
        "etag": entry.validators.etag,
        "last_modified": entry.validators.last_modified,
        "project": project_to_json(entry.project),
    }
    write_atomically(path, json.dumps(data, separators=(",", ":")).encode("utf-8"), sync_dir=False)


def load_page(path: str) -> Optional[PageEntry]:
    """The entry saved at C{path}, or L{None} if there is none or it is unreadable."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        return PageEntry(
            project_from_json(data["project"]),
            Validators(data.get("etag"), data.get("last_modified")),
            float(data["fetched_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_index(path: str, entry: tuple) -> None:
    names, validators, fetched_at = entry
    data = {"fetched_at": fetched_at, "etag": validators.etag,
            "last_modified": validators.last_modified, "names": list(names)}
    write_atomically(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def load_index(path: str) -> Optional[tuple]:
    """(names, validators, fetched_at) saved at C{path}, or L{None}."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        return (tuple(str(n) for n in data["names"]),
                Validators(data.get("etag"), data.get("last_modified")), float(data["fetched_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_incoming(final_path: str):
    """A new temporary file (binary, write) next to C{final_path}."""
    directory = os.path.dirname(final_path)
    os.makedirs(directory, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=directory, prefix=INCOMING, delete=False)


def commit_incoming(f, final_path: str) -> int:
    """Flush, close and rename an incoming file into place; its size."""
    try:
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(f.name, final_path)
    except BaseException:
        discard_incoming(f)
        raise
    fsync_dir(os.path.dirname(final_path))
    return os.stat(final_path).st_size


def discard_incoming(f) -> None:
    try:
        f.close()
    except OSError:
        pass
    _unlink(f.name)


def scan_files(layout: CacheLayout, pages: Optional[set] = None) -> list[tuple[str, int, float]]:
    """
    Every cached file and metadata file as (path, size, last access),
    oldest first; leftover incoming files are deleted on the way. The keys
    of the cached pages are added to C{pages}, if given.
    """
    found = []
    for top in ("files", "meta", "pages"):
        root = os.path.join(layout.directory, top)
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                if name.startswith(INCOMING):
                    _unlink(path)
                    continue
                if top == "pages":
                    if pages is not None and name.endswith(".json"):
                        pages.add(name[: -len(".json")])
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                found.append((path, st.st_size, max(st.st_atime, st.st_mtime)))
    found.sort(key=lambda item: item[2])
    return found


def remove_files(paths: list[str]) -> None:
    for path in paths:
        _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass




def sha256_of(path: str) -> Optional[str]:
    """The sha256 of a (small) cached file, or L{None} if it cannot be read."""
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def metadata_hashes(layout: CacheLayout, key: str) -> dict[str, str]:
    """The sha256 of every cached metadata file of project C{key}, by the file name it describes."""
    directory = os.path.dirname(layout.metadata_path(key, "x"))
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    found = {}
    for name in names:
        if name.endswith(".metadata") and not name.startswith(INCOMING):
            digest = sha256_of(os.path.join(directory, name))
            if digest is not None:
                found[name[: -len(".metadata")]] = digest
    return found
