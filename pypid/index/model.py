"""
The in-memory index: immutable snapshots of every listed distribution file,
grouped by normalised project name.

A snapshot is never changed in place. L{IndexSnapshot.apply} returns a new
snapshot that shares every untouched project with the old one, so an update
costs in proportion to what changed, and requests in flight keep the snapshot
they started with. Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from itertools import chain
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Optional

from packaging.version import Version

from pypid.index.filenames import BuildTag, SortKey, release_key, version_order


class _Stored(NamedTuple):
    # What a DistFile holds. The filename is not stored: it is the last
    # segment of the path (one string less per file); the digests are kept
    # as bytes, half the size of their hex text (a hundred bytes a file).

    #: Path below C{/packages/}, C{/}-separated, relative to its root.
    path: str
    #: Index of the package directory (root) the file lives in.
    root: int
    #: PEP 503 normalised project name.
    project: str
    #: Display name (from the metadata when it could be read).
    name: str
    version: Version
    #: C{"wheel"}, C{"sdist"} or C{"egg"}.
    kind: str
    #: C{"source"} for sdists, the python tag otherwise.
    python_version: str
    build: BuildTag
    size: int
    mtime_ns: int
    #: Digest with the index's hash algorithm, L{None} when hashing is off.
    raw_digest: Optional[bytes]
    requires_python: Optional[str]
    #: sha256 of the core metadata file served at C{<url>.metadata}; only
    #: wheels have one.
    raw_metadata_sha256: Optional[bytes]
    summary: Optional[str]
    #: Whether a detached signature C{<path>.asc} sits next to the file.
    has_sig: bool
    #: Inode number and status-change time of the file that was read (0
    #: when unknown): with size and mtime, what tells a file rewritten in
    #: place, even with its mtime put back, from the one that was read.
    ino: int
    ctime_ns: int


def _raw(hexdigest: Optional[str]) -> Optional[bytes]:
    return None if hexdigest is None else bytes.fromhex(hexdigest)


class DistFile(_Stored):
    """
    One distribution file as the index lists it.

    An index holds one per file, so it is kept small: a tuple without the
    filename (derived from the path), with the digests as bytes (L{digest}
    and L{metadata_sha256} give their hex text), and with the strings and
    versions that files share (project, name, tags, summary, L{Version})
    shared rather than copied by whoever builds them
    (L{pypid.store.directory.scan}). C{DistFile._make} builds one from the
    stored fields, in their order, without the checks of the constructor.
    """

    __slots__ = ()

    def __new__(
        cls,
        path: str,
        root: int,
        filename: str,
        project: str,
        name: str,
        version: Version,
        kind: str,
        python_version: str,
        build: BuildTag,
        size: int,
        mtime_ns: int,
        digest: Optional[str],
        requires_python: Optional[str],
        metadata_sha256: Optional[str],
        summary: Optional[str],
        has_sig: bool = False,
        ino: int = 0,
        ctime_ns: int = 0,
    ) -> "DistFile":
        if filename != path[path.rfind("/") + 1 :]:
            raise ValueError(f"filename {filename!r} is not the last segment of path {path!r}")
        return tuple.__new__(
            cls,
            (path, root, project, name, version, kind, python_version, build, size, mtime_ns,
             _raw(digest), requires_python, _raw(metadata_sha256), summary, has_sig, ino, ctime_ns),
        )

    @property
    def filename(self) -> str:
        path = self.path
        return path[path.rfind("/") + 1 :]

    @property
    def digest(self) -> Optional[str]:
        """The hex digest with the index's hash algorithm, L{None} when hashing is off."""
        raw = self[10]
        return None if raw is None else raw.hex()

    @property
    def metadata_sha256(self) -> Optional[str]:
        """The hex sha256 of the core metadata file, for wheels that have one."""
        raw = self[12]
        return None if raw is None else raw.hex()

    def _replace(self, **changes: Any) -> "DistFile":
        # The hex digests are given as the constructor takes them.
        if "digest" in changes:
            changes["raw_digest"] = _raw(changes.pop("digest"))
        if "metadata_sha256" in changes:
            changes["raw_metadata_sha256"] = _raw(changes.pop("metadata_sha256"))
        return _Stored._replace(self, **changes)

    @property
    def sort_key(self) -> tuple[Version, BuildTag, str]:
        return (self.version, self.build, self.filename)


class Project(NamedTuple):
    """A project and its files, newest last."""

    #: PEP 503 normalised name.
    key: str
    #: Display name.
    name: str
    #: The files listed: one per release file (L{release_key}).
    files: tuple[DistFile, ...]
    #: The serial of the last change to the project (what mirrors read as
    #: its C{last_serial}); see L{IndexSnapshot}.
    serial: int = 0
    #: Files on disk that are a listed file again under another spelling
    #: of its name (C{casep-1.0-py3-none-any.whl} beside
    #: C{Casep-1.0-py3-none-any.whl}): neither listed nor served.
    shadowed: tuple[DistFile, ...] = ()

    @property
    def versions(self) -> list[str]:
        """Every version with a file, oldest first, without duplicates."""
        seen: dict[str, None] = {}
        for f in self.files:
            seen.setdefault(str(f.version), None)
        return list(seen)

    @property
    def newest_mtime_ns(self) -> int:
        return max(f.mtime_ns for f in self.files)


def make_project(
    key: str, files: Iterable[DistFile], orders: Optional[dict[int, SortKey]] = None, serial: int = 0
) -> Project:
    """
    Build a L{Project} from its files, sorting them by version (then build
    tag, then filename), changed last at C{serial}.

    @param orders: L{version_order} keys by the C{id} of the L{Version}
        objects of C{files} (shared between files), already worked out or
        to be added to; the projects of one snapshot share one.
    """
    if orders is None:
        orders = {}

    # Sorted by keys of ints and strings: comparing Versions themselves
    # calls back into Python twice per comparison.
    def sort_key(f: DistFile) -> SortKey:
        # Once per file of a first scan: fields by position.
        path, version = f[0], f[4]
        order = orders.get(id(version))
        if order is None:
            order = orders[id(version)] = version_order(version)
        return (order, f[7], path[path.rfind("/") + 1 :])

    ordered = tuple(sorted(files, key=sort_key))
    listed, shadowed = _one_per_release(ordered, orders)
    # The display name follows the newest file, as uploads rename projects.
    return Project(key, listed[-1].name, listed, serial=serial, shadowed=shadowed)


def _one_per_release(
    ordered: tuple[DistFile, ...], orders: dict[int, SortKey]
) -> tuple[tuple[DistFile, ...], tuple[DistFile, ...]]:
    """
    The files of C{ordered} (sorted by L{make_project}) to list, one per
    release file (L{release_key}), and the others. Of files that are one
    release file, the one listed is the same whatever the order they were
    found in: the oldest (modification time), then the one in the first
    package directory, then the first path.
    """
    shadowed: list[DistFile] = []
    i, n = 0, len(ordered)
    while i < n:
        # A run of files of one version and build: one release file must
        # be in one run, and only two of one kind can be one file.
        f = ordered[i]
        order, build = orders[id(f[4])], f[7]
        kinds = {f[5]}
        twice = False
        j = i + 1
        while j < n and ordered[j][7] == build and orders[id(ordered[j][4])] == order:
            kind = ordered[j][5]
            twice = twice or kind in kinds
            kinds.add(kind)
            j += 1
        if twice:
            groups: dict[str, list[DistFile]] = {}
            for g in ordered[i:j]:
                groups.setdefault(release_key(g.project, str(g.version), g.filename), []).append(g)
            for group in groups.values():
                if len(group) > 1:
                    keep = min(group, key=lambda g: (g.mtime_ns, g.root, g.path))
                    shadowed.extend(g for g in group if g is not keep)
        i = j
    if not shadowed:
        return ordered, ()
    hidden = {id(g) for g in shadowed}
    return tuple(f for f in ordered if id(f) not in hidden), tuple(sorted(shadowed, key=lambda g: (g.root, g.path)))


#: Shards of a L{FileMap}: a power of two.
_SHARDS = 256
_MASK = _SHARDS - 1
#: From how many files on a L{FileMap} is built in shards.
SHARD_FROM = 65536


class FileMap(Mapping[str, DistFile]):
    """
    The files of a snapshot by path: an immutable mapping. Once changed, it
    is kept in shards (by the path's hash), so that each change copies the
    few shards it touches instead of every entry (at 100,000 files a copy
    took 4 ms per change). Built from scratch it is one dict, the quickest
    to build and to read, cut into shards by its first change; a large one
    (L{SHARD_FROM} files) is built in shards. Its order is not the order
    in which files were put in.
    """

    __slots__ = ("_whole", "_shards", "_length")

    def __init__(self, files: Iterable[DistFile] = ()) -> None:
        if not isinstance(files, (list, tuple)):
            files = list(files)
        #: One dict of every file, until the first change; then L{None}.
        self._whole: Optional[dict[str, DistFile]] = None
        self._shards: list[dict[str, DistFile]] = []
        if len(files) < SHARD_FROM:
            self._whole = {f[0]: f for f in files}
            self._length = len(self._whole)
            return
        # Cut now (in the thread that builds it), not on the reactor thread
        # at the first change (half a second at a million files).
        shards: list[dict[str, DistFile]] = [{} for _ in range(_SHARDS)]
        for f in files:
            path = f[0]
            shards[hash(path) & _MASK][path] = f
        self._shards = shards
        self._length = sum(map(len, shards))

    def __getitem__(self, path: str) -> DistFile:
        whole = self._whole
        if whole is not None:
            return whole[path]
        return self._shards[hash(path) & _MASK][path]

    # Mapping.get is overloaded (with and without a default); one signature does here.
    def get(self, path: str, default: Optional[DistFile] = None) -> Optional[DistFile]:  # type: ignore[override]
        whole = self._whole
        if whole is not None:
            return whole.get(path, default)
        return self._shards[hash(path) & _MASK].get(path, default)

    def __contains__(self, path: object) -> bool:
        whole = self._whole
        if whole is not None:
            return path in whole
        return path in self._shards[hash(path) & _MASK]

    def __iter__(self) -> Iterator[str]:
        whole = self._whole
        if whole is not None:
            return iter(whole)
        return chain.from_iterable(self._shards)

    def __len__(self) -> int:
        return self._length

    def edit(self) -> "_FileMapEdit":
        """A changeable copy, sharing every shard it does not change."""
        whole = self._whole
        if whole is None:
            return _FileMapEdit(self._shards, self._length)
        shards: list[dict[str, DistFile]] = [{} for _ in range(_SHARDS)]
        for path, f in whole.items():
            shards[hash(path) & _MASK][path] = f
        return _FileMapEdit(shards, self._length)


class _FileMapEdit:
    """What L{IndexSnapshot.apply} changes a L{FileMap} through."""

    def __init__(self, shards: list[dict[str, DistFile]], length: int) -> None:
        self._shards = list(shards)
        self._copied: set[int] = set()
        self._length = length

    def _shard(self, path: str) -> dict[str, DistFile]:
        index = hash(path) & _MASK
        shard = self._shards[index]
        if index not in self._copied:
            shard = self._shards[index] = dict(shard)
            self._copied.add(index)
        return shard

    def get(self, path: str) -> Optional[DistFile]:
        return self._shards[hash(path) & _MASK].get(path)

    def pop(self, path: str) -> Optional[DistFile]:
        if self.get(path) is None:
            return None
        self._length -= 1
        return self._shard(path).pop(path)

    def put(self, f: DistFile) -> None:
        shard = self._shard(f.path)
        if f.path not in shard:
            self._length += 1
        shard[f.path] = f

    def done(self) -> FileMap:
        result = FileMap.__new__(FileMap)
        result._whole = None
        result._shards = self._shards
        result._length = self._length
        return result


#: The yanks of a project that has none (shared).
NO_YANKS: Mapping[str, str] = MappingProxyType({})


class IndexSnapshot:
    """
    An immutable view of the index at one moment.

    @ivar generation: increases by one with every applied change (in this
        process: it starts again at every start).
    @ivar serial: the index's serial, the number of the last change applied:
        a change number that only ever goes up, also across restarts (the
        store that owns the snapshot says which number each change has, and
        keeps it). Every project carries the serial of the last change to it
        (L{Project.serial}); mirroring tools (bandersnatch, devpi) read them
        as C{X-PyPI-Last-Serial} and C{last_serial}.
    @ivar yanks: the yanked files (PEP 592), kept beside the files rather
        than in each L{DistFile} (an index holds a million of those, and
        yanks are few): by project key, a mapping of file name to reason
        (C{""} for none). A yank outlives the file it names (a file that
        comes back is yanked still) until the store forgets it. Changed
        only by L{with_yanks}; L{apply} carries it over untouched.
    """

    __slots__ = ("projects", "files", "generation", "file_count", "serial", "yanks", "shadowed")

    def __init__(
        self,
        projects: Mapping[str, Project],
        files: Mapping[str, DistFile],
        generation: int = 0,
        serial: int = 0,
        *,
        yanks: Optional[Mapping[str, Mapping[str, str]]] = None,
        shadowed: int = 0,
    ) -> None:
        self.projects = projects
        #: Every file by path: the listed ones and the shadowed ones
        #: (L{Project.shadowed}, which nothing serves).
        self.files: FileMap = files if isinstance(files, FileMap) else FileMap(files.values())
        self.generation = generation
        self.serial = serial
        self.yanks: Mapping[str, Mapping[str, str]] = yanks if yanks is not None else {}
        #: How many of L{files} are shadowed.
        self.shadowed = shadowed
        #: How many files are listed.
        self.file_count = len(files) - shadowed

    def listed(self, f: DistFile) -> bool:
        """Whether C{f}, a file of L{files}, is listed (not shadowed by another spelling of its name)."""
        project = self.projects.get(f[2])
        return project is not None and (not project.shadowed or f not in project.shadowed)

    @classmethod
    def empty(cls) -> "IndexSnapshot":
        return cls({}, {}, 0)

    @classmethod
    def build(cls, files: Iterable[DistFile], serial: int = 1) -> "IndexSnapshot":
        """
        Build a snapshot from scratch: what L{apply} to an empty snapshot
        gives, without its bookkeeping (a first scan lists every file), as
        of change C{serial} (that of every project too).
        """
        files = list(files)
        by_path = FileMap(files)
        if not by_path:
            return cls.empty()
        if len(by_path) < len(files):
            # A later file at the same path replaced an earlier one.
            files = [f for f in files if by_path.get(f.path) is f]
        groups: dict[str, list[DistFile]] = {}
        for f in files:
            # In the order given: files that sort alike stay in that order.
            group = groups.get(f.project)
            if group is None:
                groups[f.project] = [f]
            else:
                group.append(f)
        orders: dict[int, SortKey] = {}
        projects = {key: make_project(key, group, orders, serial) for key, group in groups.items()}
        return cls(projects, by_path, 1, serial, shadowed=sum(len(p.shadowed) for p in projects.values() if p.shadowed))

    def get(self, key: str) -> Optional[Project]:
        """The project with normalised name C{key}, if listed."""
        return self.projects.get(key)

    def yanked(self, key: str) -> Mapping[str, str]:
        """The yanked files of project C{key}: file name -> reason (C{""} for none)."""
        return self.yanks.get(key, NO_YANKS)

    def yank_reason(self, f: DistFile) -> Optional[str]:
        """C{f}'s yank reason (C{""} for none), or L{None} when it is not yanked."""
        yanked = self.yanks.get(f.project)
        return None if yanked is None else yanked.get(f.filename)

    def with_yanks(
        self, changes: Mapping[str, Mapping[str, str]], serial: Optional[int] = None, numbered: bool = True
    ) -> tuple["IndexSnapshot", frozenset[str]]:
        """
        A new snapshot whose yanks of each project key in C{changes} are the
        mapping given (file name -> reason; empty: none), and the keys
        whose yanks changed. The files and the untouched projects are
        shared; the touched projects take the change's C{serial} (by
        default the next one, C{self.serial + 1}). With C{numbered} false
        (yanks that were there before: read at start) no serial changes.
        """
        yanks = dict(self.yanks)
        changed = []
        for key, entries in changes.items():
            entries = MappingProxyType(dict(entries)) if entries else NO_YANKS
            if dict(yanks.get(key, NO_YANKS)) == dict(entries):
                continue
            changed.append(key)
            if entries:
                yanks[key] = entries
            else:
                yanks.pop(key, None)
        if not changed:
            return self, frozenset()
        if not numbered:
            return IndexSnapshot(self.projects, self.files, self.generation + 1, self.serial, yanks=yanks,
                                 shadowed=self.shadowed), \
                frozenset(changed)
        # A yank is a change of the index like an upload: it has a serial,
        # and so have the projects it touches (mirrors fetch them again).
        if serial is None:
            serial = self.serial + 1
        projects = dict(self.projects)
        for key in changed:
            project = projects.get(key)
            if project is not None:
                projects[key] = project._replace(serial=serial)
        snapshot = IndexSnapshot(projects, self.files, self.generation + 1, max(self.serial, serial), yanks=yanks,
                                 shadowed=self.shadowed)
        return snapshot, frozenset(changed)

    def apply(
        self, added: Iterable[DistFile], removed: Iterable[str], serial: Optional[int] = None
    ) -> tuple["IndexSnapshot", frozenset[str]]:
        """
        Return a new snapshot with the files at paths C{removed} taken out and
        the files C{added} put in (replacing any file at the same path), and
        the set of project keys whose listing changed.

        @param serial: the number of this change (by default the next one,
            C{self.serial + 1}): the serial of every project it touches,
            and of the new snapshot (which never goes below this one's).
        """
        added = list(added)
        if serial is None:
            serial = self.serial + 1
        if not self.files:
            # The first scan: nothing to remove or replace.
            built = IndexSnapshot.build(added, serial)
            if not built.files:
                return self, frozenset()
            built.generation = self.generation + 1
            built.serial = max(self.serial, serial)
            built.yanks = self.yanks
            return built, frozenset(f.project for f in added)
        files = self.files.edit()
        touched: dict[str, None] = {}
        for path in removed:
            old = files.pop(path)
            if old is not None:
                touched[old.project] = None
        for new in added:
            old = files.get(new.path)
            if old == new:
                continue
            if old is not None:
                touched[old.project] = None
            files.put(new)
            touched[new.project] = None
        if not touched:
            return self, frozenset()
        projects = dict(self.projects)
        by_project: dict[str, list[DistFile]] = {key: [] for key in touched}
        for key in touched:
            current = self.projects.get(key)
            if current is not None:
                by_project[key].extend(
                    f for f in chain(current.files, current.shadowed) if files.get(f.path) is f
                )
        placed = {f.path for group in by_project.values() for f in group}
        for new in added:
            if new.path not in placed and files.get(new.path) is new:
                by_project[new.project].append(new)
                placed.add(new.path)
        shadowed = self.shadowed
        for key, group in by_project.items():
            old_project = projects.get(key)
            if old_project is not None:
                shadowed -= len(old_project.shadowed)
            if group:
                projects[key] = new_project = make_project(key, group, serial=serial)
                shadowed += len(new_project.shadowed)
            else:
                projects.pop(key, None)
        snapshot = IndexSnapshot(projects, files.done(), self.generation + 1, max(self.serial, serial),
                                 yanks=self.yanks, shadowed=shadowed)
        return snapshot, frozenset(touched)

    def with_serials(self, serials: Mapping[str, int], serial: Optional[int] = None) -> "IndexSnapshot":
        """
        The same files with the projects named in C{serials} carrying those
        serials (a store that learns them after listing the files: from
        its own records at start), and the snapshot's serial raised to
        C{serial} if given. Keys that are not projects are left out.
        """
        projects = dict(self.projects)
        for key, number in serials.items():
            project = projects.get(key)
            if project is not None and project.serial != number:
                projects[key] = project._replace(serial=number)
        top = self.serial if serial is None else max(self.serial, serial)
        return IndexSnapshot(projects, self.files, self.generation + 1, top, yanks=self.yanks, shadowed=self.shadowed)
