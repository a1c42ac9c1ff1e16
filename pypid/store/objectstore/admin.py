"""
Administration of the replicas' object store and catalog:

    pypid store import DIR [--watch] [--overwrite]   put a directory's dists in
    pypid store export DIR                           write them back out
    pypid store fsck [--fix] [--min-age SECONDS]     objects without rows, rows without objects
    pypid catalog migrate                            bring the catalog's schema up to date

each with C{--store s3://BUCKET/PREFIX [--s3-endpoint URL] [--s3-region R]
--catalog postgresql://...} as C{twistd pypid} takes them (credentials
from botocore's chain and PGPASSFILE, likewise).

C{import} goes through the object store backend's own publish (objects
first, then the row), so it is what an upload is: idempotent (the same
bytes again change nothing), hash-checked, and a file that is not a
complete archive (still being written) is not imported. C{--watch} keeps
importing what appears in the directory (watchdog), so that a git-pushed
repository or an FTP drop directory on one machine feeds every replica.
C{export} writes every listed file (and its signature) to a plain
directory, each hash-checked and renamed into place: a backup, or the way
back to one node.

Each command runs a reactor of its own (they are not part of the daemon);
nothing of the C{replicas} extra is imported before one runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Coroutine, Iterable, Optional, Protocol

from zope.interface import implementer

from pypid.store.interfaces import IStaged

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from pypid.store.objectstore.catalog import FileRecord
    from pypid.store.objectstore.s3 import ObjectInfo
    from pypid.store.objectstore.store import ObjectStore
    from pypid.threads import Threads

#: Seconds an object without a row must have existed before C{fsck --fix}
#: removes it: an upload in flight has its object before its row.
MIN_AGE = 3600
#: Seconds between the passes of C{import --watch} when nothing is heard.
WATCH_PASS = 60.0
#: Seconds of quiet after a change in the directory before a pass.
WATCH_QUIET = 1.0


class Failed(Exception):
    """A command cannot go on: its message is one line."""


def _engines(parser: argparse.ArgumentParser, catalog_only: bool = False) -> None:
    if not catalog_only:
        parser.add_argument("--store", required=True, metavar="s3://BUCKET/PREFIX",
                            help="the object store the replicas keep their files in")
        parser.add_argument("--s3-endpoint", metavar="URL", help="the S3-compatible store (default: AWS S3)")
        parser.add_argument("--s3-region", metavar="REGION", help="the bucket's region")
    parser.add_argument("--catalog", required=True, metavar="postgresql://USER@HOST:PORT/DATABASE",
                        help="the replicas' catalog (password from PGPASSFILE or PGPASSWORD)")


def store_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pypid store", description="Administer the files of pypid replicas (--store and --catalog).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    imp = commands.add_parser("import", help="put the distribution files of a directory into the store",
                              description="Put the distribution files of DIR (and their .asc signatures) into "
                                          "the object store and the catalog: hash-checked, idempotent, "
                                          "incomplete files left for later.")
    imp.add_argument("directory", metavar="DIR")
    imp.add_argument("--watch", action="store_true",
                     help="keep watching DIR and import what appears (until interrupted)")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace files the store has with other bytes under the same name")
    _engines(imp)
    exp = commands.add_parser("export", help="write every listed file to a directory",
                              description="Write every file the catalog lists, and its signature, to DIR "
                                          "(hash-checked; files already there with the same bytes are kept).")
    exp.add_argument("directory", metavar="DIR")
    _engines(exp)
    fsck = commands.add_parser("fsck", help="find objects without a row and rows without an object",
                               description="Compare the object store with the catalog: objects no row names "
                                           "(left by a crash between the two) and rows whose object is "
                                           "missing or damaged. A dry run unless --fix.")
    fsck.add_argument("--fix", action="store_true",
                      help="remove the objects no row names that have been there for --min-age seconds")
    fsck.add_argument("--min-age", type=float, default=MIN_AGE, metavar="SECONDS",
                      help=f"age an orphan must have before --fix removes it (default {MIN_AGE}: an upload "
                           "in flight has its object before its row)")
    _engines(fsck)
    return parser


def catalog_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pypid catalog", description="Administer the replicas' catalog.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    migrate = commands.add_parser("migrate", help="bring the catalog's schema up to date",
                                  description="Apply the schema migrations this pypid knows to the catalog "
                                              "(in one transaction). Run it once the replicas run this version.")
    _engines(migrate, catalog_only=True)
    return parser


def store_main(argv: list[str]) -> int:
    args = store_parser().parse_args(argv)
    return _run("pypid store", args, {"import": _import, "export": _export, "fsck": _fsck}[args.command])


def catalog_main(argv: list[str]) -> int:
    args = catalog_parser().parse_args(argv)
    return _run("pypid catalog", args, _migrate)


def _run(prog: str, args: argparse.Namespace, command: Callable[[argparse.Namespace, Any], Coroutine[Any, Any, int]]) -> int:
    from twisted.python import usage

    from pypid.store.objectstore.options import require_extra

    try:
        require_extra()
    except usage.UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    from twisted.internet import defer, task

    from pypid.ops.startup import StartError

    try:
        args.engines = _connect(args)
    except (Failed, StartError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    status: list[int] = []

    def run(reactor: Any) -> defer.Deferred[None]:
        d = defer.ensureDeferred(command(args, reactor)).addCallback(status.append)

        def failed(failure: Failure) -> None:
            if failure.check(Failed):
                print(f"{prog}: {failure.value}", file=sys.stderr)
                status.append(1)
                return None
            failure.raiseException()

        return d.addErrback(failed)

    try:
        task.react(run)
    except SystemExit as e:
        if status:
            return status[-1]
        return e.code if isinstance(e.code, int) else 1
    return status[-1] if status else 1


class Engines:
    """The S3 location and credentials, and the catalog URL, checked."""

    def __init__(self, location: Any, credentials: Any, frozen: Any, catalog: str) -> None:
        self.location = location
        self.credentials = credentials
        self.frozen = frozen
        self.catalog = catalog

    def s3(self, reactor: Any) -> Any:
        from pypid.store.objectstore.s3 import CredentialSource, S3Client

        return S3Client(self.location, CredentialSource(self.credentials, self.frozen, reactor,
                                                        _threads(reactor)), reactor=reactor)


def _threads(reactor: Any) -> Threads:
    from pypid.threads import pool_threads

    return pool_threads(reactor)


def _connect(args: argparse.Namespace) -> Engines:
    """Check the engines before the reactor runs (blocking): one line on failure."""
    from twisted.python import usage

    from pypid.store.objectstore.options import check_catalog_blocking, check_engines

    store = getattr(args, "store", None)
    if store is None:
        from pypid.store.objectstore.catalog import CatalogConfigError, check_url

        try:
            check_url(args.catalog)
        except CatalogConfigError as e:
            raise Failed(str(e)) from None
        return Engines(None, None, None, args.catalog)
    try:
        location = check_engines(store, args.s3_endpoint, args.s3_region, args.catalog)
    except usage.UsageError as e:
        raise Failed(str(e)) from None
    from pypid.store.objectstore.s3 import S3Error, check_blocking

    try:
        location, credentials, frozen = check_blocking(location)
    except S3Error as e:
        raise Failed(f"object store: {e}") from None
    check_catalog_blocking(args.catalog)
    return Engines(location, credentials, frozen, args.catalog)


# -- catalog migrate ---------------------------------------------------------


async def _migrate(args: argparse.Namespace, reactor: Any) -> int:
    from pypid.store.objectstore.catalog import Catalog, CatalogError
    from pypid.store.objectstore.migrations import SchemaError

    catalog = Catalog(args.catalog, reactor=reactor)
    try:
        before, after = await catalog.migrate()
    except (CatalogError, SchemaError) as e:
        raise Failed(f"catalog {catalog.where}: {e}") from None
    finally:
        await catalog.stop()
    if before == after:
        print(f"catalog {catalog.where}: schema version {after}, up to date")
    else:
        print(f"catalog {catalog.where}: schema version {before} -> {after}")
    return 0


# -- store import ------------------------------------------------------------


@implementer(IStaged)
class FileAsStaged:
    """
    A file of the directory being imported, given to the store's publish as
    if it had been uploaded: read in place, never written or removed.
    """

    def __init__(self, path: str, size: int, digests: dict[str, str]) -> None:
        self.path = path
        self.size = size
        self._digests = digests

    def write(self, data: bytes) -> None:
        raise ValueError("an imported file is read, never written")

    def finish(self) -> dict[str, str]:
        return dict(self._digests)

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")

    def abort(self) -> None:
        pass


def read_file(path: str, filename: str) -> tuple[Optional[dict[str, str]], Optional[str], tuple[int, int, int]]:
    """
    Hash a file and check it is a complete archive, in one pass: its
    digests (or L{None}) and why it cannot be imported (or L{None}), and its
    identity before reading (size, mtime, ctime). Blocking.
    """
    from pypid.store import complete

    hashes: dict[str, _Hasher] = {"sha256": hashlib.sha256(), "blake2_256": hashlib.blake2b(digest_size=32),
              "md5": hashlib.md5(usedforsecurity=False)}

    def feed(chunk: bytes) -> None:
        for h in hashes.values():
            h.update(chunk)

    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        reason = complete.check(f, st.st_size, filename, feed)
    after = os.stat(path)
    identity = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != identity:
        return None, "changed while being read", identity
    if reason is not None:
        return None, reason, identity
    return {name: h.hexdigest() for name, h in hashes.items()}, None, identity


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _candidates(directory: str) -> list[tuple[str, str]]:
    """(path, filename) of every distribution file under C{directory}, hidden ones left out."""
    from pypid.index.filenames import is_hidden_or_temporary, parse_filename

    found = []
    for top, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if is_hidden_or_temporary(name) or parse_filename(name) is None:
                continue
            found.append((os.path.join(top, name), name))
    return found


class Importer:
    """What one C{store import} run knows: the files already dealt with, by identity."""

    def __init__(self, store: Any, directory: str, overwrite: bool, threads: Any, clock: Any) -> None:
        self.store = store
        self.directory = os.path.abspath(directory)
        self.overwrite = overwrite
        self.threads = threads
        self.clock = clock
        #: By path: the file's identity (size, mtime, ctime) and its signature's, when it has one.
        self.done: dict[str, tuple[tuple[int, int, int], Optional[tuple[int, int]]]] = {}
        self.said: dict[str, str] = {}
        self.counts = {"imported": 0, "replaced": 0, "identical": 0, "refused": 0, "waiting": 0}

    def say(self, path: str, line: str, once: bool = False) -> None:
        if once and self.said.get(path) == line:
            return
        self.said[path] = line
        print(line, flush=True)

    async def run_pass(self, final: bool) -> None:
        """Import what is new or changed; with C{final}, what is still being written is reported as such."""
        from pypid.store.directory.scan import QUIET
        from pypid.store import complete
        from pypid.store.interfaces import AlreadyStored, BadName, StoreUnavailable

        self.counts["waiting"] = 0
        for path, filename in await self.threads(_candidates, self.directory):
            relative = os.path.relpath(path, self.directory)
            try:
                st = os.stat(path)
            except OSError:
                continue
            signature_path = path + ".asc"
            try:
                sig_st = os.stat(signature_path)
                sig_identity = (sig_st.st_size, sig_st.st_mtime_ns)
            except OSError:
                sig_identity = None
            identity = ((st.st_size, st.st_mtime_ns, st.st_ctime_ns), sig_identity)
            if self.done.get(path) == identity:
                continue
            quiet_ns = QUIET * 1_000_000_000
            if st.st_ctime_ns == st.st_mtime_ns and time.time_ns() - st.st_mtime_ns < quiet_ns:
                self.counts["waiting"] += 1
                continue
            digests, reason, read_identity = await self.threads(read_file, path, filename)
            if reason is not None:
                if complete.is_incomplete(reason) or reason == "changed while being read":
                    self.counts["waiting"] += 1
                    if final:
                        self.say(path, f"not imported {relative}: {reason}", once=True)
                    continue
                self.counts["refused"] += 1
                self.say(path, f"refused {relative}: {reason}", once=True)
                self.done[path] = identity
                continue
            signature = None
            if sig_identity is not None:
                try:
                    with open(signature_path, "rb") as f:
                        signature = f.read(1024 * 1024 + 1)
                except OSError:
                    signature = None
                if signature is not None and len(signature) > 1024 * 1024:
                    signature = None
            staged = FileAsStaged(path, read_identity[0], digests)
            try:
                placed = await self.store.publish(filename, staged, self.overwrite, signature)
            except AlreadyStored as e:
                self.counts["refused"] += 1
                self.say(path, f"refused {relative}: the store has other bytes as {e.filename}"
                               + ("" if self.overwrite else " (--overwrite replaces them)"), once=True)
                self.done[path] = identity
                continue
            except BadName as e:
                self.counts["refused"] += 1
                self.say(path, f"refused {relative}: {e}", once=True)
                self.done[path] = identity
                continue
            except StoreUnavailable as e:
                self.counts["waiting"] += 1
                self.say(path, f"not imported {relative}: {e}", once=True)
                continue
            self.done[path] = identity
            if placed.outcome == "identical":
                self.counts["identical"] += 1
            else:
                self.counts["imported" if placed.outcome == "created" else "replaced"] += 1
                self.say(path, f"{placed.outcome} {filename}")

    def summary(self) -> str:
        from pypid.counts import counted

        c = self.counts
        parts = [f"imported {counted(c['imported'], 'file')}"]
        if c["replaced"]:
            parts.append(f"replaced {c['replaced']}")
        parts.append(f"{c['identical']} already in the store")
        if c["refused"]:
            parts.append(f"{c['refused']} refused")
        if c["waiting"]:
            parts.append(f"{c['waiting']} not complete yet")
        return ", ".join(parts)


async def _with_store(args: argparse.Namespace, reactor: Any) -> ObjectStore:
    from pypid.store.objectstore.catalog import Catalog
    from pypid.store.objectstore.store import ObjectStore

    work = os.path.join(os.path.abspath(args.directory), ".pypid-import")
    store = ObjectStore(args.engines.s3(reactor), Catalog(args.catalog, reactor=reactor), _threads(reactor),
                        work, reactor)
    await store.start()
    return store


async def _import(args: argparse.Namespace, reactor: Any) -> int:
    from twisted.internet import defer
    from twisted.internet.task import deferLater

    if not os.path.isdir(args.directory):
        raise Failed(f"{args.directory!r} is not a directory")
    store = await _with_store(args, reactor)
    importer = Importer(store, args.directory, args.overwrite, _threads(reactor), reactor)
    if not args.watch:
        try:
            await importer.run_pass(final=False)
            if importer.counts["waiting"]:
                # Give files being written their quiet period, once.
                await deferLater(reactor, 1.0, lambda: None)
                await importer.run_pass(final=True)
        finally:
            await store.stop()
        print(importer.summary())
        return 1 if importer.counts["refused"] or importer.counts["waiting"] else 0
    # Until interrupted: the shutdown waits for the watcher to let go.
    finished: defer.Deferred[None] = defer.Deferred()
    watcher = Watcher(importer, reactor)
    def stopping() -> Deferred[None]:
        watcher.stop()
        return finished

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    try:
        await watcher.run()
    finally:
        await store.stop()
        finished.callback(None)
    return 0


class Watcher:
    """Imports now, then whenever the directory changes (and every minute), until stopped."""

    def __init__(self, importer: Importer, reactor: Any) -> None:
        self.importer = importer
        self.reactor = reactor
        self.stopping = False
        self._wake: Any = None

    def poke(self) -> None:
        if self._wake is not None and not self._wake.called:
            self._wake.callback(None)

    def stop(self) -> None:
        self.stopping = True
        self.poke()

    async def run(self) -> None:
        from twisted.internet import defer
        from twisted.internet.threads import deferToThread
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        reactor = self.reactor
        poke = self.poke

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                reactor.callFromThread(poke)

        observer = Observer()
        observer.schedule(Handler(), self.importer.directory, recursive=True)
        observer.start()
        print(f"watching {self.importer.directory}", flush=True)
        try:
            while not self.stopping:
                await self.importer.run_pass(final=False)
                if self.stopping:
                    break
                self._wake = defer.Deferred()
                pause = WATCH_QUIET if self.importer.counts["waiting"] else WATCH_PASS
                timer = reactor.callLater(pause, self.poke)
                await self._wake
                if timer.active():
                    timer.cancel()
                if not self.stopping:
                    # Let a burst of changes settle.
                    self._wake = defer.Deferred()
                    timer = reactor.callLater(WATCH_QUIET, self.poke)
                    await self._wake
                    if timer.active():
                        timer.cancel()
        finally:
            observer.stop()
            await deferToThread(observer.join, 5)


# -- store export ------------------------------------------------------------


class _FileConsumer:
    """Writes what it is delivered to a file, hashing it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0
        self.producer: Optional[object] = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.digest.update(data)
        self.size += len(data)


def _sha256_of(path: str) -> Optional[str]:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


async def _download(s3: Any, key: str, target: str, sha256: Optional[str], size: Optional[int]) -> None:
    """The object C{key} into C{target}, whole and checked, or L{Failed}."""
    from pypid.atomic import fsync_dir
    from pypid.store.objectstore.s3 import S3Error

    directory = os.path.dirname(target)
    temp = os.path.join(directory, f".{os.path.basename(target)}.pypid-export")
    with open(temp, "wb") as f:
        consumer = _FileConsumer(f)
        try:
            body = await s3.open(key)
            await body.deliver(consumer)
            f.flush()
            os.fsync(f.fileno())
        except S3Error as e:
            f.close()
            os.unlink(temp)
            raise Failed(f"cannot export {os.path.basename(target)}: {e}") from None
    if (sha256 is not None and consumer.digest.hexdigest() != sha256) or (size is not None and consumer.size != size):
        os.unlink(temp)
        raise Failed(f"cannot export {os.path.basename(target)}: the object store's bytes are not the ones "
                     "the catalog lists (run 'pypid store fsck')")
    os.replace(temp, target)
    fsync_dir(directory)


async def _export(args: argparse.Namespace, reactor: Any) -> int:
    from pypid.counts import counted
    from pypid.store.objectstore.catalog import Catalog

    directory = os.path.abspath(args.directory)
    os.makedirs(directory, exist_ok=True)
    catalog = Catalog(args.catalog, reactor=reactor)
    s3 = args.engines.s3(reactor)
    threads = _threads(reactor)
    written = kept = 0
    try:
        await catalog.start()
        snapshot = await catalog.snapshot()
        for record in sorted(snapshot.files, key=lambda r: r.filename):
            target = os.path.join(directory, record.filename)
            same = await threads(_sha256_of, target) == record.sha256
            if not same:
                await _download(s3, record.object_key, target, record.sha256, record.size)
                os.utime(target, (record.uploaded_at, record.uploaded_at))
                written += 1
            else:
                kept += 1
            if record.has_signature:
                await _download(s3, record.object_key + ".asc", target + ".asc", None, record.signature_size)
    finally:
        await catalog.stop()
        await s3.close()
    print(f"exported {counted(written, 'file')} to {directory} ({kept} already there), "
          f"the catalog at serial {snapshot.serial}")
    return 0


# -- store fsck --------------------------------------------------------------


async def _fsck(args: argparse.Namespace, reactor: Any) -> int:
    from pypid.counts import counted
    from pypid.store.objectstore.catalog import Catalog
    from pypid.store.objectstore.s3 import S3Error
    from pypid.store.objectstore.store import FILES

    catalog = Catalog(args.catalog, reactor=reactor)
    s3 = args.engines.s3(reactor)
    try:
        await catalog.start()
        # Objects first: an object put after the listing began, with its
        # row, is then not taken for an orphan.
        try:
            objects = await s3.list_all(FILES)
        except S3Error as e:
            raise Failed(f"object store: {e}") from None
        snapshot = await catalog.snapshot()
        result = fsck(snapshot.files, objects, time.time(), args.min_age)
        for line in result.lines():
            print(line)
        removed = 0
        if args.fix:
            for info in result.orphans:
                if info in result.old_orphans:
                    try:
                        await s3.delete(info.key)
                    except S3Error as e:
                        raise Failed(f"cannot remove {info.key}: {e}") from None
                    print(f"removed {info.key}")
                    removed += 1
        print(f"{counted(len(snapshot.files), 'row')}, {counted(len(objects), 'object')}: "
              f"{counted(len(result.orphans), 'object')} without a row"
              + (f" ({removed} removed)" if args.fix else "")
              + f", {counted(len(result.missing), 'row')} without their object")
        if result.missing:
            print("rows without their object: upload those files again (or remove them from the index)")
        problems = len(result.missing) + len(result.orphans) - removed
        return 1 if problems else 0
    finally:
        await catalog.stop()
        await s3.close()


class FsckResult:
    def __init__(self, orphans: list[ObjectInfo], old_orphans: set[ObjectInfo], missing: list[tuple[FileRecord, str]]) -> None:
        #: Objects no row names (L{ObjectInfo}), by key.
        self.orphans = orphans
        #: Those of them older than the minimum age.
        self.old_orphans = old_orphans
        #: (row, why) for rows whose object is missing or damaged.
        self.missing = missing

    def lines(self) -> list[str]:
        out: list[str] = []
        for info in self.orphans:
            recent = "" if info in self.old_orphans else ", recent: an upload in flight?"
            out.append(f"orphan: {info.key} ({info.size} bytes{recent})")
        for record, why in self.missing:
            out.append(f"missing: {record.filename}: {why} ({record.object_key})")
        return out


def fsck(records: Iterable[FileRecord], objects: list[ObjectInfo], now: float, min_age: float) -> FsckResult:
    """Compare rows and objects (pure): orphans, those old enough to remove, rows without their object."""
    by_key = {info.key: info for info in objects}
    expected: set[str] = set()
    missing: list[tuple[FileRecord, str]] = []
    for record in records:
        expected.add(record.object_key)
        expected.add(record.object_key + ".metadata")
        if record.has_signature:
            expected.add(record.object_key + ".asc")
        info = by_key.get(record.object_key)
        if info is None:
            missing.append((record, "no object"))
        elif info.size != record.size:
            missing.append((record, f"the object has {info.size} bytes, the row says {record.size}"))
        if record.has_signature and record.object_key + ".asc" not in by_key:
            missing.append((record, "no signature object"))
    orphans = [info for info in objects if info.key not in expected]
    old = {info for info in orphans if now - info.last_modified >= min_age}
    return FsckResult(orphans, old, missing)
