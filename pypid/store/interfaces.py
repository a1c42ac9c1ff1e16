"""
The store seam: what the index, the web and the feeds ask of wherever the
distribution files live. It speaks files and names, never paths: a backend
opens a file as an L{IBody} for a response, takes a new file through an
L{IStaged} object that it publishes atomically (it decides where the bytes
go and when the file is listed), removes files, yanks and unyanks them
(PEP 592), and tells subscribers about every change to its snapshot.

Backends: L{pypid.store.directory.store.DirectoryStore} (the package
directories; scanning, watching and the state cache are its own business),
L{pypid.store.objectstore.store.ObjectStore} (files in an S3-compatible
object store, the listing in a PostgreSQL catalog shared by replicas) and
L{pypid.store.memory.MemoryStore} (bytes in memory, for tests). All pass
the same contract tests (C{tests/store/contract.py}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, NamedTuple, Optional

from zope.interface import Attribute, Interface

from pypid.index.filenames import parse_filename, release_key

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.web.server import Request

    from pypid.index.changes import ChangesSince
    from pypid.index.model import DistFile, IndexSnapshot


class Placed(NamedTuple):
    """What L{IPackageStore.publish} did."""

    #: C{"created"}, C{"replaced"} or C{"identical"} (the same bytes were
    #: already stored under that name: nothing changed).
    outcome: str
    #: The C{/}-separated path the snapshot lists the file under.
    path: str


class AlreadyStored(Exception):
    """
    L{IPackageStore.publish} without C{overwrite}: the same release file
    (see L{pypid.index.filenames.release_key}: a file of that name, or of a
    name that differs only in case or spelling) is stored with other bytes.
    """

    def __init__(self, filename: str, listed: Optional[str] = None) -> None:
        super().__init__(f"{listed or filename} is already stored with other content")
        self.filename = filename
        #: The file name it is stored under.
        self.listed = listed or filename


class NotListed(ValueError):
    """
    L{IPackageStore.publish}: the bytes are not a file the index would list
    (the rule that decides listing says why, in C{str()}); nothing is stored.
    """


class StoreFull(Exception):
    """
    There is no room for a new file (a full disk, a quota): C{str()} says so
    in one line a client can be shown. Nothing of the file is kept.
    """


class StoreUnavailable(Exception):
    """
    What a store depends on is out of reach (an object store, a catalog):
    the operation cannot be done now, and may be tried again later. The
    message is one line saying what and why; the web answers 503.
    """


class BadName(ValueError):
    """
    L{IPackageStore.publish}: the name is not one the store can hold (an
    empty, hidden or relative part, or a folder that is not there).
    """


def check_name(name: str) -> list[str]:
    """
    The parts of a name given to L{IPackageStore.publish} (C{a/b/x.whl}), or
    L{BadName}: no part may be empty, hidden (C{.x}) or hold a backslash or
    a NUL.
    """
    parts = name.split("/")
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\0" in part:
            raise BadName(f"{name!r} is not a file name this index can store")
    return parts


def listed_as(snapshot: IndexSnapshot, filename: str) -> Optional[DistFile]:
    """
    The file of C{snapshot} (an L{pypid.index.model.IndexSnapshot}) that a
    new file named C{filename} would be: the listed file of that name, or
    of the same release file spelled otherwise
    (L{pypid.index.filenames.release_key}); L{None} when there is none.
    Every store places a new file by this rule.
    """
    parsed = parse_filename(filename)
    if parsed is None:
        return None
    project = snapshot.get(parsed.project)
    if project is None:
        return None
    key = None
    for f in project.files:
        if f.filename == filename:
            return f
        if f.version == parsed.version:
            if key is None:
                key = release_key(parsed.project, str(parsed.version), filename)
            if release_key(f.project, str(f.version), f.filename) == key:
                return f
    return None


class IBody(Interface):
    """
    A stored file opened for one response. Whoever gets a body closes it,
    or hands it to L{stream}, which does.
    """

    size = Attribute("The file's size in bytes, as opened.")
    mtime_ns = Attribute("Its modification time, in nanoseconds.")
    redirect = Attribute(
        "L{None}, or an absolute URL that serves the same bytes (a backend"
        " that would rather the client fetched them from there)."
    )

    def read(offset: int, count: int) -> bytes | Deferred[bytes]:
        """
        Up to C{count} bytes from C{offset}, for answers small enough to hold
        in memory: the bytes, or a L{Deferred} firing with them. Fewer bytes
        than asked for mean the file shrank: the answer must not be sent.
        """

    def stream(request: Request, offset: int, count: int) -> None:
        """
        Write C{count} bytes from C{offset} into the request (a
        L{twisted.web.server.Request}) as fast as its connection takes them,
        with flow control, then finish it; drop the connection if the file
        turns out shorter. Takes the body over: it is closed when the
        request ends, however it ends.
        """

    def close() -> None:
        """Let the file go (again: nothing)."""


class IStaged(Interface):
    """
    A new file on its way into the store (L{IPackageStore.stage}): written,
    finished, checked through L{reader}, then given to
    L{IPackageStore.publish} or thrown away with L{abort}. Nothing of it is
    listed or served before it is published.
    """

    size = Attribute("Bytes written so far.")

    def write(data: bytes) -> None:
        """Append C{data}. Blocking, but cheap (a buffered write)."""

    def finish() -> dict[str, str]:
        """
        No more writes: make the bytes durable. Returns their digests, a
        dict of hex strings under C{sha256}, C{blake2_256} and C{md5}.
        Blocking; again, the same digests.
        """

    def reader() -> BinaryIO:
        """
        A seekable binary file of the bytes written (after L{finish}), for the
        archive checks; the caller closes it. Blocking.
        """

    def abort() -> None:
        """
        Throw the bytes away. Blocking; harmless again, or after the file
        was published.
        """


class IStoreHealth(Interface):
    """A store that depends on other services, and says how they are."""

    def problems() -> list[str]:
        """
        What keeps the store from working fully right now: a list of
        one-line reasons, empty when all is well.
        """


class IPackageStore(Interface):
    """
    Where the index comes from, and where uploads go. Every method is called
    on the reactor thread, and none blocks it, but L{stage}.
    """

    snapshot = Attribute(
        "The current L{pypid.index.model.IndexSnapshot}; replaced, never mutated."
        " Its serial (and each project's) numbers the store's changes: it only"
        " ever goes up, also across restarts where the store persists it."
    )
    ready = Attribute("True once the first complete snapshot is in place.")
    hash_algo = Attribute("The hash algorithm of file digests, or None when off.")

    def changelog(since: int) -> Deferred[ChangesSince]:
        """
        A L{Deferred} firing with a L{pypid.index.changes.ChangesSince}: the
        changes numbered after serial C{since}, oldest first, and whether
        they are all of them (not when C{since} is older than what the
        store's change log keeps, or newer than its serial). The snapshot's
        serial and its projects' serials number the same changes.
        """

    def whenReady() -> Deferred[None]:
        """
        A L{Deferred} that fires (with L{None}) once the first complete
        snapshot is in place; fires at once when it already is.
        """

    def subscribe(callback: Callable[[IndexSnapshot, frozenset[str]], object]) -> None:
        """
        Call C{callback(snapshot, changed)} after every change, where
        C{changed} is the frozenset of project keys whose listing changed.
        """

    def open(distfile: DistFile, sidecar: str = "") -> Optional[IBody]:
        """
        Open C{distfile} (a L{pypid.index.model.DistFile} of the snapshot),
        or its sidecar C{<path><sidecar>} (C{".asc"}), for one response: an
        L{IBody}, or L{None} when there is no such file that may be served.
        Cheap: called on the reactor thread for every download.
        """

    def readMetadata(distfile: DistFile) -> Deferred[bytes]:
        """
        A L{Deferred} firing with the bytes of C{distfile}'s core metadata
        file, or failing with L{pypid.store.metadata.MetadataError}.
        """

    def stage(size: Optional[int] = None) -> IStaged:
        """
        A new, empty L{IStaged} to write an upload into. Blocking (it may
        create a temporary file): call it through L{pypid.threads.Threads}.
        With C{size} (the bytes expected, when known), L{StoreFull} at once
        when there is no room for them; writes that find no room raise
        L{StoreFull} too.
        """

    def publish(
        name: str,
        staged: IStaged,
        overwrite: bool,
        signature: Optional[bytes] = None,
        uploader: Optional[str] = None,
    ) -> Deferred[Placed]:
        """
        Store the bytes of C{staged} (from this store's L{stage}, finished)
        as the file C{name}: a file name, perhaps below folders
        (C{sub/x.whl}), which says where a new file goes; a file of that
        file name already listed is replaced where it is. With C{signature}
        (bytes), its detached signature C{<name>.asc} is stored too. The
        file appears whole or not at all. C{uploader} (the user's name) is
        recorded by a store that keeps such records (the replicas' catalog).

        Two files are the same release file when their identity
        (L{pypid.index.filenames.release_key}: the normalised project and
        version, a wheel's tags and build, an sdist's kind) is the same,
        whatever the case or spelling of their names: a new file of a
        listed file's identity is that file (C{casep-1.0-PY3-NONE-ANY.WHL}
        over C{Casep-1.0-py3-none-any.whl}), never a second one.

        @return: a L{Deferred} firing with a L{Placed} once the snapshot
            lists the file (C{"identical"}, and nothing changed, when the
            same bytes were already stored as that release file). It fails
            with L{AlreadyStored} when other bytes are, unless C{overwrite};
            with L{BadName} for a name the store cannot hold; with
            L{NotListed} for bytes the index would not list (an archive
            that is not complete), and nothing is stored; with
            L{StoreFull} when there is no room.
        """

    def remove(distfiles: Iterable[DistFile]) -> Deferred[list[str]]:
        """
        Delete the files C{distfiles} (of the snapshot) and their signatures,
        and forget their yanks (L{setYanked}; a file of the same name that
        comes later starts unyanked).

        @return: a L{Deferred} firing, once the snapshot no longer lists
            them, with the paths of those that were deleted.
        """

    def setYanked(distfiles: Iterable[DistFile], reason: Optional[str]) -> Deferred[list[str]]:
        """
        Yank the files C{distfiles} (of the snapshot) with C{reason}, or
        unyank them when C{reason} is L{None} (PEP 592).

        The contract every backend keeps (C{tests/store/contract.py}):

          - C{reason} is a L{str}: C{""} for no reason, else one line of
            printable text of at most
            L{pypid.index.yanks.MAX_REASON} characters, already checked by
            the caller (L{pypid.index.yanks.check_reason}); the store keeps
            it exactly.
          - A yank is of a file name within its project: the snapshot shows
            it in C{IndexSnapshot.yanks[project][filename]} (and
            L{IndexSnapshot.yank_reason}), for every listed file of that
            name wherever it lies. It lasts until unyanked or until the
            file is deleted through L{remove}: across restarts, rescans,
            and the file going and coming back by other means (a
            C{git push} that rewrites the directory).
          - Durable before it shows: when the returned L{Deferred} fires,
            the yank is stored (a restart keeps it) and the current
            snapshot shows it; subscribers were told, with the project's
            key in C{changed}, as for any change to the listing (the
            pages are rendered again; it is one change of the index, and
            counts in its serial).
          - Idempotent: a file yanked again with the same reason, or
            unyanked while not yanked, changes nothing (no snapshot, no
            notification).
          - Waits for the first snapshot (L{whenReady}), as L{publish}
            does.

        The directory store keeps yanks in a text file in the first package
        directory (L{pypid.store.directory.yankfile}), which people may
        edit; the object store in its catalog's C{yanked}/C{yanked_reason}
        columns of the file rows. Yanks changed behind the store's back (an
        edit of that file, another replica) reach the snapshot the way
        other changes do, and subscribers are told likewise.

        @return: a L{Deferred} firing with the file names whose yank
            changed (possibly none).
        """
