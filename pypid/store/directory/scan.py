"""
Reading the package directories: walking them, hashing files and reading
their metadata into L{DistFile} records.

Everything here blocks on the filesystem and must run in a thread, never on
the reactor thread. Nothing here logs: problems are returned to the caller,
which logs them on the reactor thread.
"""

from __future__ import annotations

import hashlib
import operator
import os
import stat
import time
from stat import S_ISREG
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Protocol

from pypid.store import complete
from pypid.index.filenames import TEMPORARY_SUFFIXES, ParsedName, parse_filename, is_hidden_or_temporary
from pypid.index.model import _MASK as _SHARD_MASK, DistFile
from pypid.store.metadata import CorruptArchive, MetadataError, MetadataTooLarge, parse_fields, read_metadata
from pypid.index.names import normalize
from pypid.index.filenames import SDIST_SUFFIXES

if TYPE_CHECKING:
    from pypid.index.model import IndexSnapshot

_DIST_SUFFIXES = (".whl", ".egg") + SDIST_SUFFIXES

#: Hash algorithms whose names both pip and uv accept in URL fragments.
HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "md5")


class Found(NamedTuple):
    """
    A regular file found under a package directory. (The state cache reads
    C{abspath} to C{ctime_ns} by position: keep their order.)
    """

    root: int
    #: Path relative to the root, C{/}-separated.
    path: str
    abspath: str
    size: int
    mtime_ns: int
    #: Inode number and status-change time: with size and mtime, what tells
    #: a file rewritten in place (even with its mtime put back) from the one
    #: that was read before.
    ino: int = 0
    ctime_ns: int = 0
    #: For a symlink, the real path of the file it points to.
    link: str = ""


#: A L{Found}'s fields as a plain tuple (what a child walk sends, L{pypid.store.directory.walk}).
FoundFields = tuple[int, str, str, int, int, int, int, str]


def found_from_stat(root: int, path: str, abspath: str, st: os.stat_result, link: str = "") -> Found:
    return _new_tuple(Found, (root, path, abspath, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, link))


#: Builds a named tuple from its fields in order, without a Python-level call.
_new_tuple = tuple.__new__
#: A Found's path.
_PATH = operator.itemgetter(1)


class Skipped(NamedTuple):
    """A file that is not listed, and why."""

    path: str
    reason: str
    #: Whether the file may become listable by itself (it was changing while
    #: being read, or is an archive that does not end yet: still being
    #: written); worth an info line, and a warning only if it stays so.
    transient: bool = False


class Note(NamedTuple):
    """Something worth a warning (once) about a file that is listed."""

    path: str
    reason: str


def _inside(realpath: str, real_root: str) -> bool:
    return realpath == real_root or realpath.startswith(real_root.rstrip(os.sep) + os.sep)


def inside_without_links(root: str, path: str) -> Optional[str]:
    """
    C{root}/C{path} (C{path} C{/}-separated, relative) when no component
    below C{root} is a symlink and it names a regular file; L{None} when it
    does not. A cheap check (one C{lstat} per component) for the common
    case; a symlinked file still needs L{resolve_inside}.
    """
    current = root
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return None
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return current if stat.S_ISREG(mode) else None


def resolve_inside(abspath: str, root: str) -> Optional[str]:
    """
    The real path of C{abspath} if it lies inside C{root} once symlinks are
    resolved, else L{None}.
    """
    real = os.path.realpath(abspath)
    return real if _inside(real, os.path.realpath(root)) else None


def _walk_dir(
    index: int, real_root: str, prefix: str, directory: str, skipped: list[Skipped]
) -> Iterator[tuple[list[Found], set[str]]]:
    """
    Walk C{directory} (at C{prefix} below root number C{index}): yield, one
    directory at a time, its regular files and the paths that have a
    detached signature (C{<path>.asc}) there.
    """
    stack = [(prefix, directory)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            skipped.append(Skipped(prefix or ".", f"unreadable directory: {e.strerror}"))
            continue
        files: list[Found] = []
        signatures: set[str] = set()
        # Once per file of the whole tree: kept lean (what
        # is_hidden_or_temporary says, inline; one lower() per name).
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            lower = name.lower()
            if lower.endswith(TEMPORARY_SUFFIXES):
                continue
            link = ""
            try:
                # The common case first: a regular file (known without a
                # stat from the directory entry), stat'ed once (lstat).
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((prefix + name + "/", entry.path))
                    continue
                elif entry.is_symlink():
                    link = os.path.realpath(entry.path)
                    if not _inside(link, real_root):
                        skipped.append(Skipped(prefix + name, "symlink points outside the package directory"))
                        continue
                    st = entry.stat()
                else:
                    continue
            except OSError:
                continue
            if not S_ISREG(st.st_mode):
                continue
            if lower.endswith(".asc"):
                signatures.add(prefix + name[:-4])
                continue
            files.append(_new_tuple(
                Found,
                (index, prefix + name, entry.path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, link),
            ))
        del entries
        yield files, signatures


def _walk_against(
    index: int, real_root: str, prefix: str, directory: str, skipped: list[Skipped], shards: list[dict[str, DistFile]]
) -> Iterator[tuple[list[Found], set[str], list[DistFile], list[str]]]:
    """
    L{_walk_dir} for a tree mostly known already (a start from the index
    image): each regular file is compared with its record in C{shards}
    (the previous files, as a L{FileMap} holds them) as soon as it is
    stat'ed, and only those that changed become L{Found} records. Yields,
    one directory at a time: the files that changed or are new, the paths
    that have a detached signature, the unchanged records whose
    signature may have changed (those that had one, and those with a
    signature now), and the paths of every file found.
    """
    stack = [(prefix, directory)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            skipped.append(Skipped(prefix or ".", f"unreadable directory: {e.strerror}"))
            continue
        files: list[Found] = []
        signatures: set[str] = set()
        signed: list[DistFile] = []
        paths: list[str] = []
        kept: dict[str, DistFile] = {}
        # Once per file of the whole tree: as lean as it gets.
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            lower = name.lower()
            if lower.endswith(TEMPORARY_SUFFIXES):
                continue
            path = prefix + name
            link = ""
            try:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if lower.endswith(".asc"):
                        signatures.add(path[:-4])
                        continue
                    paths.append(path)
                    old = shards[hash(path) & _SHARD_MASK].get(path)
                    if (
                        old is not None and old[1] == index and old[8] == st.st_size
                        and old[9] == st.st_mtime_ns and old[15] == st.st_ino and old[16] == st.st_ctime_ns
                    ):
                        if old[14]:
                            signed.append(old)
                        else:
                            kept[path] = old
                        continue
                    files.append(_new_tuple(
                        Found,
                        (index, path, entry.path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, ""),
                    ))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((path + "/", entry.path))
                    continue
                if not entry.is_symlink():
                    continue
                link = os.path.realpath(entry.path)
                if not _inside(link, real_root):
                    skipped.append(Skipped(path, "symlink points outside the package directory"))
                    continue
                st = entry.stat()
            except OSError:
                continue
            if not S_ISREG(st.st_mode):
                continue
            if lower.endswith(".asc"):
                signatures.add(path[:-4])
                continue
            paths.append(path)
            files.append(_new_tuple(
                Found, (index, path, entry.path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, link),
            ))
        del entries
        # Unchanged files that gained a signature.
        signed.extend(kept[path] for path in signatures if path in kept)
        yield files, signatures, signed, paths


def _walk_into(
    index: int,
    real_root: str,
    prefix: str,
    directory: str,
    found: dict[str, Found],
    signatures: set[str],
    skipped: list[Skipped],
) -> None:
    """L{_walk_dir} into C{found} and C{signatures}; a path already found stays."""
    for files, sigs in _walk_dir(index, real_root, prefix, directory, skipped):
        signatures |= sigs
        for item in files:
            found.setdefault(item.path, item)


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
        _walk_into(index, os.path.realpath(root), "", root, found, signatures, skipped)
    return found, signatures, skipped


class Details(NamedTuple):
    """
    What reading a file's bytes tells (what the state cache keeps): its
    digest and the fields of its core metadata the index shows.
    """

    digest: Optional[str]
    #: The project name as the metadata spells it, when it matches the
    #: filename's project.
    name: Optional[str]
    requires_python: Optional[str]
    summary: Optional[str]
    metadata_sha256: Optional[str]


class DetailsCache(Protocol):
    """Where L{Details} already read are kept (L{pypid.store.directory.statecache.StateCache})."""

    def get(self, found: Found, hash_algo: Optional[str]) -> Optional[Details]: ...

    def get_many(self, found: Iterable[Found], hash_algo: Optional[str]) -> dict[str, Details]:
        """L{get} for many files at once: their details by C{abspath}."""
        ...

    def put(self, found: Found, hash_algo: Optional[str], details: Details) -> None: ...


_CHANGING = "changed while being read; read again once it stops changing"


def _changed_since(st: os.stat_result, found: Found) -> bool:
    """Whether C{st} is not the file C{found} was: another size, times (any write changes the ctime) or inode."""
    return (
        st.st_size != found.size
        or st.st_mtime_ns != found.mtime_ns
        or (found.ino != 0 and st.st_ino != found.ino)
        or (found.ctime_ns != 0 and st.st_ctime_ns != found.ctime_ns)
    )


#: Seconds a file must have been left alone since its last data write
#: before it is read for listing. A writer that rewrites a file in place
#: (C{rsync --inplace}) or fills it out of order leaves a file that can look
#: complete mid-way: it is listed only once it has not been written to for
#: this long, and did not change while it was read. Twice the watcher's
#: quiet time (L{pypid.store.directory.watch.QUIET}): a file written and
#: closed is still listed about 0.2 s after its last write. A write sets a
#: file's mtime and ctime to the same instant; a file whose ctime differs
#: from its mtime was last changed by a rename, link, chmod or utime after
#: its data (moved or linked into place, as uploads are; copied with its
#: times, as C{cp -p}, C{rsync -t} and C{tar} do at the end): its writer is
#: done, and it is read at once.
QUIET = 0.2


class Quiet(NamedTuple):
    """The quiet period, and the clocks it is measured with (injected in tests)."""

    seconds: float = QUIET
    #: The wall clock in nanoseconds, what file times are compared with.
    now: Callable[[], int] = time.time_ns
    sleep: Callable[[float], None] = time.sleep


#: What scans use unless told otherwise.
DEFAULT_QUIET = Quiet()

_WRITING = "still being written; listed once it is left alone for a moment"


def read_details(
    found: Found, parsed: ParsedName, hash_algo: Optional[str], notes: Optional[list[Note]] = None,
    keep_metadata: Optional[Callable[[bytes, bytes], None]] = None,
) -> Details | Skipped:
    """
    Read a file's bytes: check that the archive is complete (the rule of
    L{pypid.store.complete.check}) and hash it, in one pass over the file,
    then read its core metadata fields. A file that changes meanwhile is
    skipped: the event that its change causes, or the next rescan, brings
    it back.

    @param notes: where to add what is worth saying about a file listed
        all the same (its core metadata over the size limit: no
        C{.metadata} file is offered for it).
    @param keep_metadata: told a wheel's core metadata (its sha256 and
        bytes), to serve it later without reading the wheel again.
    """
    filename = os.path.basename(found.path)
    try:
        with open(found.abspath, "rb") as f:
            st = os.fstat(f.fileno())
            if _changed_since(st, found):
                return Skipped(found.path, _CHANGING, transient=True)
            digest = hashlib.new(hash_algo) if hash_algo else None
            reason = complete.check(f, st.st_size, filename, digest.update if digest is not None else None)
            if reason is not None:
                return Skipped(found.path, reason, transient=complete.is_incomplete(reason))
        name = requires_python = summary = metadata_sha256 = None
        if parsed.kind in ("wheel", "sdist"):
            try:
                raw = read_metadata(found.abspath, parsed.kind)
            except CorruptArchive as e:
                return Skipped(found.path, f"corrupt or incomplete archive: {e}")
            except MetadataTooLarge as e:
                raw = None
                if notes is not None:
                    what = "no .metadata file" if parsed.kind == "wheel" else "no summary"
                    notes.append(Note(found.path, f"listed with {what}: {e}"))
            except MetadataError:
                raw = None
            if raw is not None:
                fields = parse_fields(raw)
                if fields.name and normalize(fields.name) == parsed.project:
                    name = fields.name
                requires_python = fields.requires_python
                summary = fields.summary
                if parsed.kind == "wheel":
                    sha = hashlib.sha256(raw)
                    metadata_sha256 = sha.hexdigest()
                    if keep_metadata is not None:
                        keep_metadata(sha.digest(), raw)
        if _changed_since(os.stat(found.abspath), found):
            return Skipped(found.path, _CHANGING, transient=True)
    except OSError as e:
        return Skipped(found.path, f"unreadable: {e.strerror}")
    return Details(digest.hexdigest() if digest is not None else None, name, requires_python, summary,
                   metadata_sha256)


def describe(
    found: Found,
    hash_algo: Optional[str],
    has_sig: bool = False,
    cache: Optional[DetailsCache] = None,
    details: Optional[Details] = None,
    shared: Optional[dict[object, object]] = None,
    looked_up: bool = False,
    notes: Optional[list[Note]] = None,
) -> DistFile | Skipped:
    """
    Read one file into a L{DistFile}: parse its name, check that it is
    complete, hash it and read the fields the index shows from its core
    metadata; or take those from C{cache} when it knows this very file.

    @param shared: strings already used by other records (a dict of each
        to itself), so that files of one project, or with the same tags or
        summary, share one copy; the new record's are added.
    @param looked_up: whether C{cache} was already asked, and did not know
        the file.
    @param notes: see L{read_details}.
    """
    path = found.path
    parsed = parse_filename(path[path.rfind("/") + 1 :])
    if parsed is None:
        return Skipped(path, "not a distribution filename pypid can parse")
    if details is None and cache is not None and not looked_up:
        details = cache.get(found, hash_algo)
    if details is None:
        read = read_details(found, parsed, hash_algo, notes, getattr(cache, "put_metadata", None))
        if isinstance(read, Skipped):
            return read
        details = read
        if cache is not None:
            cache.put(found, hash_algo, details)
    share = (shared if shared is not None else {}).setdefault
    project, name, version, kind, python_version, build = parsed
    digest, read_name, requires_python, summary, metadata_sha256 = details
    name = read_name or name
    return _new_tuple(
        DistFile,
        (path, found.root, share(project, project), share(name, name), version, kind,
         share(python_version, python_version), build, found.size, found.mtime_ns,
         None if digest is None else bytes.fromhex(digest), share(requires_python, requires_python),
         None if metadata_sha256 is None else bytes.fromhex(metadata_sha256), share(summary, summary), has_sig,
         found.ino, found.ctime_ns),
    )


def unchanged(previous: DistFile, found: Found) -> bool:
    """
    Whether C{found} is the very file C{previous} describes: same root,
    size and mtime, and the same inode and status-change time when both
    are known (a file rewritten in place with its mtime put back, or
    replaced by another of the same size and times, is not).
    """
    return (
        previous[1] == found[0]
        and previous[8] == found[3]
        and previous[9] == found[4]
        and (previous[15] == found[5] or not previous[15] or not found[5])
        and (previous[16] == found[6] or not previous[16] or not found[6])
    )


class ScanResult(NamedTuple):
    """What a scan found, as a change to apply to the current snapshot."""

    added: list[DistFile]
    removed: list[str]
    skipped: list[Skipped]
    #: Files whose bytes were read (checked, hashed, metadata read).
    read: int = 0
    #: Files whose details came from the state cache instead.
    cached: int = 0
    #: The symlinked files seen: link path -> real path of its target.
    links: Optional[dict[str, str]] = None
    #: What is worth a warning about files listed all the same.
    notes: Optional[list[Note]] = None
    #: For a first scan: the whole index, built in the scan's thread (the
    #: change is then already in it).
    base: Optional["IndexSnapshot"] = None
    #: Files whose details came from the index image (L{pypid.store.directory.image}).
    imaged: int = 0


class Progress:
    """
    How far a scan has got, for the log lines of a long first scan: set by
    the scan's thread, read on the reactor thread.
    """

    def __init__(self) -> None:
        #: Files expected (an estimate), 0 while unknown.
        self.total = 0
        #: Files looked at so far.
        self.scanned = 0
        #: Files of the index image read so far (before the scan proper).
        self.loaded = 0
        #: Files whose bytes were read so far.
        self.read = 0


def count_files(roots: list[str]) -> int:
    """
    About how many files a scan of C{roots} will look at: the names with a
    distribution's suffix, found without a C{stat} (a tenth of a second
    per 100,000 files). Blocking.
    """
    count = 0
    stack = list(roots)
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
            except OSError:
                continue
            if name.lower().endswith(_DIST_SUFFIXES):
                count += 1
    return count


class _Changes:
    """
    What a scan finds, gathered as the walk goes: the files it is given are
    compared with the C{previous} files, and the new or changed ones
    described (hashed, metadata read, or taken from C{cache}).
    """

    def __init__(
        self,
        hash_algo: Optional[str],
        previous: Mapping[str, DistFile],
        cache: Optional[DetailsCache],
        quiet: Optional[Quiet] = None,
        progress: Optional[Progress] = None,
    ) -> None:
        self.hash_algo = hash_algo
        self.progress = progress
        self.quiet = quiet if quiet is not None else DEFAULT_QUIET
        #: Files changed less than the quiet period ago, to read once it has
        #: passed: (found, has a signature).
        self.young: list[tuple[Found, bool]] = []
        # (An empty mapping of any kind becomes a dict: cheapest to ask.)
        self.previous = previous if previous else {}
        self.cache = cache
        self.added: list[DistFile] = []
        self.removed: list[str] = []
        self.skipped: list[Skipped] = []
        self.read = 0
        self.cached = 0
        self.links: dict[str, str] = {}
        self.notes: list[Note] = []
        #: Strings the new records share (see L{describe}).
        self.shared: dict[object, object] = {}

    def take(self, items: Iterable[FoundFields], signatures: set[str]) -> None:
        """
        Compare C{items} (L{Found} records or plain tuples of their fields,
        found at distinct paths) with the previous files
        at their paths; C{signatures} has every one of their paths that has
        a detached signature.
        """
        if not isinstance(items, list):
            items = list(items)
        previous = self.previous
        added = self.added
        todo: list[Found] = []
        get = previous.get
        # A large index's files are in shards (FileMap): looked up inline.
        shards = getattr(previous, "_shards", None) or None
        # Once per file of a whole tree: kept lean (fields by position;
        # what unchanged() says, inline).
        for item in items:
            path = item[1]
            if item[7]:
                self.links[item[2]] = item[7]
            old = shards[hash(path) & _SHARD_MASK].get(path) if shards is not None else get(path)
            if old is not None:
                if (
                    old[1] == item[0] and old[8] == item[3] and old[9] == item[4]
                    and (old[15] == item[5] or not old[15] or not item[5])
                    and (old[16] == item[6] or not old[16] or not item[6])
                ):
                    has_sig = path in signatures
                    if old[14] != has_sig:
                        added.append(old._replace(has_sig=has_sig))
                    continue
                # Changed, perhaps into something that is no longer listed.
                self.removed.append(path)
            todo.append(item if item.__class__ is Found else _new_tuple(Found, item))
        progress = self.progress
        if progress is not None:
            progress.scanned += len(items) - len(todo)
        if not todo:
            return
        cache = self.cache
        # One query per batch rather than per file: a restart looks up every file.
        known = cache.get_many(todo, self.hash_algo) if cache is not None else {}
        # (A file known to the cache is the very file read before: not young.)
        young_since = self.quiet.now() - int(self.quiet.seconds * 1e9)
        for item in todo:
            details = known.get(item.abspath)
            if details is None:
                if item.ctime_ns > young_since and item.ctime_ns == item.mtime_ns:
                    self.young.append((item, item.path in signatures))
                    continue
                self.read += 1
            else:
                self.cached += 1
            self._describe(item, item.path in signatures, details)

    def _describe(self, item: Found, has_sig: bool, details: Optional[Details]) -> None:
        progress = self.progress
        if progress is not None:
            progress.scanned += 1
            if details is None:
                progress.read += 1
        described = describe(item, self.hash_algo, has_sig, self.cache, details, self.shared, True, self.notes)
        if isinstance(described, Skipped):
            self.skipped.append(described)
        else:
            self.added.append(described)

    def settle(self) -> None:
        """
        Read the young files (last written less than the quiet period ago,
        see L{QUIET}) once the period has passed for each: one wait (in this
        thread) for them all, at most the quiet period, then those that did
        not change meanwhile are read; those that did are left to the event
        their change causes (or the next rescan).
        """
        young, self.young = self.young, []
        if not young:
            return
        quiet = self.quiet
        period = int(quiet.seconds * 1e9)
        now = quiet.now()
        # A ctime in the future (another host's clock, over NFS) waits the
        # whole period: it is then known not to have changed for that long.
        wait = max(min(period, item.ctime_ns + period - now) for item, _ in young)
        if wait > 0:
            quiet.sleep(wait / 1e9)
        for item, has_sig in young:
            try:
                st = os.stat(item.abspath)
            except OSError:
                continue  # gone: its deletion is its own event
            if _changed_since(st, item):
                self.skipped.append(Skipped(item.path, _WRITING, transient=True))
                continue
            self.read += 1
            self._describe(item, has_sig, None)

    def result(self) -> ScanResult:
        self.settle()
        return ScanResult(self.added, self.removed, self.skipped, self.read, self.cached, self.links,
                          self.notes)


def _diff(
    found: dict[str, Found],
    signatures: set[str],
    skipped: list[Skipped],
    hash_algo: Optional[str],
    previous: Mapping[str, DistFile],
    covered: Optional[Iterable[str]],
    cache: Optional[DetailsCache] = None,
    progress: Optional[Progress] = None,
) -> ScanResult:
    """
    Compare what a walk C{found} with the C{previous} files at the paths the
    walk C{covered} (every path when L{None}): new or changed files are
    described (hashed, metadata read, or taken from C{cache}), vanished
    ones removed.
    """
    changes = _Changes(hash_algo, previous, cache, progress=progress)
    changes.skipped = skipped
    changes.take(found.values(), signatures)
    # Gone from disk (the changed ones are already among the removed).
    candidates = previous.keys() if covered is None else (p for p in covered if p in previous)
    changes.removed.extend(path for path in candidates if path not in found)
    return changes.result()


def scan(
    roots: list[str],
    hash_algo: Optional[str],
    previous: Mapping[str, DistFile],
    cache: Optional[DetailsCache] = None,
    progress: Optional[Progress] = None,
    walked: Optional[Iterable[tuple[list[FoundFields], set[str]]]] = None,
) -> ScanResult:
    """
    Walk the roots and work out what changed since C{previous} (the files of
    the current snapshot). Only new or changed files are hashed and read.

    @param walked: the walk of the one root, done elsewhere (a child
        process, L{pypid.store.directory.walk.ChildWalk}): (files as
        plain tuples of L{Found}'s fields, signatures) a directory at a time.
    """
    if walked is not None:
        changes = _Changes(hash_algo, previous, cache, progress=progress)
        gone = set(previous)
        for fields, signatures in walked:
            gone.difference_update(map(_PATH, fields))
            changes.take(fields, signatures)
        changes.skipped.extend(getattr(walked, "skipped", ()))
        changes.removed.extend(gone)
        return changes.result()
    if len(roots) != 1:
        # A signature in one root may be for a file of another: walk them all first.
        found, signatures, skipped = walk(roots)
        return _diff(found, signatures, skipped, hash_algo, previous, None, cache, progress)
    # One directory at a time: what is needed only while a directory's
    # files are compared, looked up and described (the walk's records, the
    # cache's rows) is let go before the next directory, so that a first
    # scan of a large tree does not leave a sea of freed memory between the
    # records the index keeps.
    changes = _Changes(hash_algo, previous, cache, progress=progress)
    real_root = os.path.realpath(roots[0])
    shards = getattr(previous, "_shards", None)
    if shards:
        # A large tree known already (a start from the index image): files
        # compared as they are found; what is left of the previous ones
        # at the end is gone (a set of every path, changed in C).
        gone = set(previous)
        for files, signatures, signed, paths in _walk_against(0, real_root, "", roots[0], changes.skipped, shards):
            gone.difference_update(paths)
            changes.take(files, signatures)
            for old in signed:
                has_sig = old[0] in signatures
                if old[14] != has_sig:
                    changes.added.append(old._replace(has_sig=has_sig))
            if progress is not None:
                progress.scanned += len(paths) - len(files)
        changes.removed.extend(gone)
        return changes.result()
    gone_paths: Optional[set[str]] = set(previous) if previous else None
    for files, signatures in _walk_dir(0, real_root, "", roots[0], changes.skipped):
        if gone_paths is not None:
            gone_paths.difference_update(map(_PATH, files))
        changes.take(files, signatures)
    if gone_paths:
        changes.removed.extend(gone_paths)
    return changes.result()


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


def _stat_file(
    roots: list[str], path: str, found: dict[str, Found], signatures: set[str], skipped: list[Skipped]
) -> bool:
    """
    Look at relative C{path} as a file in each root, the first root that has
    it winning. Returns whether something (a file, or a directory) is there.
    """
    if is_hidden_or_temporary(os.path.basename(path)):
        return False
    there = False
    for index, root in enumerate(roots):
        abspath = os.path.join(root, *path.split("/"))
        try:
            st = os.stat(abspath)
        except OSError:
            continue
        there = True
        if not stat.S_ISREG(st.st_mode) or path in found:
            continue
        link = os.path.realpath(abspath) if os.path.islink(abspath) else ""
        if link and not _inside(link, os.path.realpath(root)):
            skipped.append(Skipped(path, "symlink points outside the package directory"))
            continue
        found[path] = found_from_stat(index, path, abspath, st, link)
        if os.path.isfile(abspath + ".asc"):
            signatures.add(path)
    return there


def scan_paths(
    roots: list[str],
    hash_algo: Optional[str],
    previous: Mapping[str, DistFile],
    abspaths: Iterable[str],
    cache: Optional[DetailsCache] = None,
) -> ScanResult:
    """
    Bring the listing of just C{abspaths} up to date: each may be a file
    (created, changed or deleted), a signature, or a directory (walked
    whole, or, when gone, everything listed under it removed). Costs in
    proportion to the paths given, not to the whole tree: C{previous} is
    only searched as a whole for directories (present, or gone and not
    listed as a file).
    """
    found: dict[str, Found] = {}
    signatures: set[str] = set()
    skipped: list[Skipped] = []
    files: set[str] = set()
    prefixes: set[str] = set()
    for abspath in abspaths:
        where = locate(roots, abspath)
        if where is None:
            continue
        _, path = where
        if path.lower().endswith(".asc"):
            path = path[:-4]
        walked = False
        for index, root in enumerate(roots):
            directory = os.path.join(root, *path.split("/"))
            if os.path.isdir(directory) and not os.path.islink(directory):
                real_root = os.path.realpath(root)
                _walk_into(index, real_root, path + "/", directory, found, signatures, skipped)
                walked = True
        if walked:
            # Whatever was listed under it, or as it (a file that became a directory).
            prefixes.add(path + "/")
            files.add(path)
            continue
        files.add(path)
        if (not _stat_file(roots, path, found, signatures, skipped) and path not in previous
                and parse_filename(path[path.rfind("/") + 1:]) is None):
            # Gone, not a listed file, and not named as one (the files of a
            # removed copy, taken out with their directory, are not looked
            # for under themselves): perhaps a directory that was.
            prefixes.add(path + "/")
    covered: set[str] = set(files)
    covered.update(found)
    if prefixes:
        covered.update(listed_under(previous, prefixes))
    return _diff(found, signatures, skipped, hash_algo, previous, covered, cache)


#: Up to how many directory prefixes L{listed_under} tries each on every path.
FEW_PREFIXES = 8


def listed_under(paths: Iterable[str], prefixes: set[str]) -> list[str]:
    """
    The C{/}-separated C{paths} under any of the directory C{prefixes}
    (each ending in C{/}). One pass over C{paths}: a few prefixes are tried
    each on every path; many (a copied tree removed file by file before it
    was listed) by looking each path's parent directories up, so that the
    cost does not grow with their number.
    """
    if len(prefixes) <= FEW_PREFIXES:
        under = tuple(prefixes)
        return [p for p in paths if p.startswith(under)]
    found = []
    for p in paths:
        end = p.find("/")
        while end != -1:
            if p[: end + 1] in prefixes:
                found.append(p)
                break
            end = p.find("/", end + 1)
    return found
