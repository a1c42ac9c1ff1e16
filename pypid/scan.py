"""
Reading the package directories: walking them, hashing files and reading
their metadata into L{DistFile} records.

Everything here blocks on the filesystem and must run in a thread, never on
the reactor thread. Nothing here logs: problems are returned to the caller,
which logs them on the reactor thread.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Callable, Iterable, NamedTuple, Optional

from pypid.filenames import parse_filename, is_hidden_or_temporary
from pypid.index import DistFile
from pypid.metadata import CorruptArchive, MetadataError, parse_fields, read_metadata
from pypid.names import normalize

#: Hash algorithms whose names both pip and uv accept in URL fragments.
HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "md5")

_CHUNK = 1024 * 1024


class Found(NamedTuple):
    """A regular file found under a package directory."""

    root: int
    #: Path relative to the root, C{/}-separated.
    path: str
    abspath: str
    size: int
    mtime_ns: int


class Skipped(NamedTuple):
    """A file that is not listed, and why."""

    path: str
    reason: str


def _inside(realpath: str, real_root: str) -> bool:
    return realpath == real_root or realpath.startswith(real_root.rstrip(os.sep) + os.sep)


def resolve_inside(abspath: str, root: str) -> Optional[str]:
    """
    The real path of C{abspath} if it lies inside C{root} once symlinks are
    resolved, else L{None}.
    """
    real = os.path.realpath(abspath)
    return real if _inside(real, os.path.realpath(root)) else None


def _walk_dir(
    index: int,
    real_root: str,
    prefix: str,
    directory: str,
    found: dict[str, Found],
    signatures: set[str],
    skipped: list[Skipped],
) -> None:
    """Walk C{directory} (at C{prefix} below root number C{index}) into C{found}."""
    stack = [(prefix, directory)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            skipped.append(Skipped(prefix or ".", f"unreadable directory: {e.strerror}"))
            continue
        for entry in entries:
            if is_hidden_or_temporary(entry.name):
                continue
            path = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((path + "/", entry.path))
                    continue
                if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
                    skipped.append(Skipped(path, "symlink points outside the package directory"))
                    continue
                st = entry.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or path in found:
                continue
            if entry.name.lower().endswith(".asc"):
                signatures.add(path[:-4])
                continue
            found[path] = Found(index, path, entry.path, st.st_size, st.st_mtime_ns)


def walk(roots: list[str]) -> tuple[dict[str, Found], set[str], list[Skipped]]:
    """
    Walk the package directories.

    Hidden files and directories and temporary files are ignored; symlinked
    directories are not followed; a symlinked file is taken only when it
    points inside its root. When two roots hold the same relative path, the
    first root wins.

    @return: the candidate files by path, the paths of files that have a
        detached signature (C{<path>.asc}), and the files left out.
    """
    found: dict[str, Found] = {}
    signatures: set[str] = set()
    skipped: list[Skipped] = []
    for index, root in enumerate(roots):
        _walk_dir(index, os.path.realpath(root), "", root, found, signatures, skipped)
    return found, signatures, skipped


def hash_file(abspath: str, algorithm: str) -> str:
    """The hex digest of the file at C{abspath}."""
    digest = hashlib.new(algorithm)
    with open(abspath, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(
    found: Found, hash_algo: Optional[str], has_sig: bool = False
) -> DistFile | Skipped:
    """
    Read one file into a L{DistFile}: parse its name, hash it and read the
    fields the index shows from its core metadata.
    """
    parsed = parse_filename(os.path.basename(found.path))
    if parsed is None:
        return Skipped(found.path, "not a distribution filename pypid can parse")
    name = parsed.name
    requires_python = summary = metadata_sha256 = None
    if parsed.kind in ("wheel", "sdist"):
        try:
            raw = read_metadata(found.abspath, parsed.kind)
        except CorruptArchive as e:
            return Skipped(found.path, f"corrupt or incomplete archive: {e}")
        except MetadataError:
            raw = None
        if raw is not None:
            fields = parse_fields(raw)
            if fields.name and normalize(fields.name) == parsed.project:
                name = fields.name
            requires_python = fields.requires_python
            summary = fields.summary
            if parsed.kind == "wheel":
                metadata_sha256 = hashlib.sha256(raw).hexdigest()
    try:
        digest = hash_file(found.abspath, hash_algo) if hash_algo else None
    except OSError as e:
        return Skipped(found.path, f"unreadable: {e.strerror}")
    return DistFile(
        path=found.path,
        root=found.root,
        filename=os.path.basename(found.path),
        project=parsed.project,
        name=name,
        version=parsed.version,
        kind=parsed.kind,
        python_version=parsed.python_version,
        build=parsed.build,
        size=found.size,
        mtime_ns=found.mtime_ns,
        digest=digest,
        requires_python=requires_python,
        metadata_sha256=metadata_sha256,
        summary=summary,
        has_sig=has_sig,
    )


def unchanged(previous: DistFile, found: Found) -> bool:
    """Whether C{found} is the same file content C{previous} describes."""
    return (
        previous.root == found.root
        and previous.size == found.size
        and previous.mtime_ns == found.mtime_ns
    )


class ScanResult(NamedTuple):
    """What a scan found, as a change to apply to the current snapshot."""

    added: list[DistFile]
    removed: list[str]
    skipped: list[Skipped]


def _diff(
    found: dict[str, Found],
    signatures: set[str],
    skipped: list[Skipped],
    hash_algo: Optional[str],
    previous: dict[str, DistFile],
    covered: Callable[[str], bool],
) -> ScanResult:
    """
    Compare what a walk C{found} with the C{previous} files of the paths the
    walk C{covered}: new or changed files are described (hashed, metadata
    read), vanished ones removed.
    """
    added: list[DistFile] = []
    for path, item in found.items():
        has_sig = path in signatures
        old = previous.get(path)
        if old is not None and unchanged(old, item):
            if old.has_sig != has_sig:
                added.append(old._replace(has_sig=has_sig))
            continue
        described = describe(item, hash_algo, has_sig)
        if isinstance(described, Skipped):
            skipped.append(described)
        else:
            added.append(described)
    # Gone from disk, or changed into something that is no longer listed.
    removed = [
        path
        for path, old in previous.items()
        if covered(path) and (path not in found or not unchanged(old, found[path]))
    ]
    return ScanResult(added, removed, skipped)


def scan(
    roots: list[str], hash_algo: Optional[str], previous: dict[str, DistFile]
) -> ScanResult:
    """
    Walk the roots and work out what changed since C{previous} (the files of
    the current snapshot). Only new or changed files are hashed and read.
    """
    found, signatures, skipped = walk(roots)
    return _diff(found, signatures, skipped, hash_algo, previous, lambda path: True)


def locate(roots: list[str], abspath: str) -> Optional[tuple[int, str]]:
    """
    The root number and C{/}-separated relative path of C{abspath}, or
    L{None} when it is outside every root or inside a hidden directory.
    """
    abspath = os.path.abspath(abspath)
    for index, root in enumerate(roots):
        relative = os.path.relpath(abspath, root)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            continue
        parts = relative.split(os.sep)
        if any(part.startswith(".") for part in parts):
            return None
        return index, "/".join(parts)
    return None


def scan_paths(
    roots: list[str],
    hash_algo: Optional[str],
    previous: dict[str, DistFile],
    abspaths: Iterable[str],
) -> ScanResult:
    """
    Bring the listing of just C{abspaths} up to date: each may be a file
    (created, changed or deleted), a signature, or a directory (walked
    whole, or, when gone, everything listed under it removed). Costs in
    proportion to the paths given, not to the whole tree.
    """
    found: dict[str, Found] = {}
    signatures: set[str] = set()
    skipped: list[Skipped] = []
    files: set[str] = set()
    prefixes: list[str] = []
    for abspath in abspaths:
        where = locate(roots, abspath)
        if where is None:
            continue
        index, path = where
        real_root = os.path.realpath(roots[index])
        if os.path.isdir(abspath) and not os.path.islink(abspath):
            prefixes.append(path + "/")
            _walk_dir(index, real_root, path + "/", abspath, found, signatures, skipped)
            continue
        # A file, or something gone (which may have been a directory).
        prefixes.append(path + "/")
        if path.lower().endswith(".asc"):
            path = path[:-4]
            abspath = abspath[:-4]
        files.add(path)
        name = os.path.basename(path)
        if is_hidden_or_temporary(name):
            continue
        try:
            st = os.stat(abspath)
            if os.path.islink(abspath) and not _inside(os.path.realpath(abspath), real_root):
                skipped.append(Skipped(path, "symlink points outside the package directory"))
                continue
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[path] = Found(index, path, abspath, st.st_size, st.st_mtime_ns)
            if os.path.isfile(abspath + ".asc"):
                signatures.add(path)
    covered_prefixes = tuple(prefixes)

    def covered(path: str) -> bool:
        return path in files or path.startswith(covered_prefixes)

    return _diff(found, signatures, skipped, hash_algo, previous, covered)
