"""
The replicas' catalog in PostgreSQL: which files the index lists, and the
changes that made it so, numbered by the serial.

One row per file (L{FileRecord}); a unique index on the lower-cased
filename and one on the release identity (L{release_key}) arbitrate when
two replicas publish the same file at once: one transaction wins, the
other gets L{FileExists} with the winner's row. Every change takes the next
serial (a monotonically increasing change number, the index's serial as
bandersnatch reads it), is recorded in C{pypid_changes} and announced with
C{NOTIFY}. A L{ChangeFollower} LISTENs on a connection of its own, watched
by the reactor (its socket is a reader: no polling), and applies changes in
serial order from the last one it applied, so a replica that missed
notifications (reconnect, restart) catches up exactly.

Threads: queries run in the catalog's own bounded thread pool, one
connection per thread (blocking psycopg2 calls never run on the reactor
thread). Public methods are called on the reactor thread and return
L{Deferred}s; functions named C{_q_*} run in the pool. The follower's
connection is made in the pool and then read on the reactor thread with
C{poll()}, which never blocks (libpq's socket is non-blocking).

The catalog's address is a libpq URL (C{postgresql://user@host:port/db});
the password comes from PGPASSFILE (~/.pgpass) or PGPASSWORD, and is never
logged: messages name the catalog by L{describe_url}.

The driver is psycopg2 (see docs/replicas.md: its C{poll()}/C{notifies}
pair is the documented way to watch LISTEN from an event loop, the same
from Debian 12's 2.9.5 to today's 2.9.x).
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pypid.index import filenames
from pypid.store.objectstore import migrations

if TYPE_CHECKING:
    from pypid.index.changes import Change as LogChange

log = Logger()

_T = TypeVar("_T")

#: The NOTIFY channel; its payload is the serial of the change.
CHANNEL = "pypid_changes"
#: Changes read per catch-up query.
CATCH_UP_BATCH = 1000

_RUNS = re.compile(r"[-_.]+")


class CatalogError(Exception):
    """A catalog failure; C{str()} is one line."""


class CatalogConfigError(CatalogError, ValueError):
    """The C{--catalog} URL cannot be used."""


class CatalogUnavailable(CatalogError):
    """PostgreSQL cannot be reached (or went away mid-query)."""


class FileExists(CatalogError):
    """The filename (in any case) or its release identity is already listed: C{existing} is that row."""

    def __init__(self, existing: "FileRecord") -> None:
        super().__init__(f"{existing.filename} is already listed")
        self.existing = existing


class NotOwner(CatalogError):
    """The project belongs to another first uploader: C{owner}."""

    def __init__(self, project: str, owner: str) -> None:
        super().__init__(f"project {project} belongs to {owner}")
        self.project = project
        self.owner = owner


def normalize_project(name: str) -> str:
    """PEP 503: lower-case, runs of C{-_.} as one C{-}."""
    return _RUNS.sub("-", name).lower()


def release_key(project: str, version: str, filename: str) -> str:
    """
    The identity of a release file, as the unique index compares them: the
    one rule of the index and the stores, L{pypid.index.filenames.release_key}
    (the normalised project, the canonical version, a wheel's build and tag
    set, an sdist's kind, lower-cased). Pure.
    """
    return filenames.release_key(project, version, filename)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """
    A listed file. C{id} and C{serial} (the change that last touched it)
    are the catalog's; leave them L{None} to publish.
    """

    project: str
    project_name: str
    version: str
    filename: str
    #: Where the bytes are in the object store (relative to the store's prefix).
    object_key: str
    size: int
    sha256: str
    uploaded_at: float
    md5: Optional[str] = None
    uploader: Optional[str] = None
    requires_python: Optional[str] = None
    summary: Optional[str] = None
    #: sha256 of the core metadata (PEP 658), when the file has some.
    core_metadata_sha256: Optional[str] = None
    has_signature: bool = False
    #: The size of the detached signature (C{<object_key>.asc}), when there is one.
    signature_size: Optional[int] = None
    yanked: bool = False
    yanked_reason: Optional[str] = None
    id: Optional[int] = None
    serial: Optional[int] = None

    @property
    def release_key(self) -> str:
        return release_key(self.project, self.version, self.filename)


@dataclass(frozen=True, slots=True)
class Change:
    """
    One numbered change. C{file} is the row as it is now when the change
    added or touched a file that is still listed; L{None} for a removal, or
    when a later change removed the file again.
    """

    serial: int
    at: float
    action: str
    project: str
    version: str
    filename: str
    actor: Optional[str]
    file: Optional[FileRecord]


@dataclass(frozen=True)
class Snapshot:
    """
    Every listed file, as of C{serial}: a replica starts from this alone.
    C{projects}: the serial of the last change to each project (by
    normalised name; also of projects no longer listed).
    """

    serial: int
    files: tuple[FileRecord, ...]
    projects: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """A file went in at C{serial}; C{replaced} are the rows it took the place of."""

    serial: int
    record: FileRecord
    replaced: tuple[FileRecord, ...] = ()


@dataclass(frozen=True)
class Removed:
    serial: int
    record: FileRecord


@dataclass(frozen=True)
class YanksSet:
    """
    L{Catalog.set_yanked} changed the yanks of C{records} (the rows as they
    are now), one serial each, the last of them C{serial}; C{changes} are
    those changes, as the follower reads them.
    """

    serial: int
    records: tuple[FileRecord, ...]
    changes: tuple["Change", ...]


@dataclass
class Health:
    """What /health says of the catalog: C{ok}, or degraded with a one-line C{reason}."""

    ok: bool = False
    reason: str = "not started"
    since: float = 0.0


def describe_url(url: str) -> str:
    """C{postgresql://user@host:port/dbname}, never the password."""
    from psycopg2.extensions import parse_dsn

    try:
        params = parse_dsn(url)
    except Exception:
        return "postgresql://?"
    user = params.get("user")
    host = params.get("host", "")
    port = params.get("port")
    return f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{params.get('dbname', '')}"


def check_url(url: str) -> None:
    """Raise L{CatalogConfigError} (one line, no password) unless C{url} is a libpq URL psycopg2 accepts."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    if not re.match(r"^postgres(ql)?://", url):
        raise CatalogConfigError("--catalog must be a libpq URL, postgresql://USER@HOST:PORT/DATABASE")
    try:
        parse_dsn(url)
    except ProgrammingError:
        raise CatalogConfigError(f"--catalog {describe_url(url)} is not a valid libpq URL") from None


_FIELDS = (
    "id", "project", "project_name", "version", "filename", "object_key", "size", "sha256", "uploaded_at", "md5",
    "uploader", "requires_python", "summary", "core_metadata_sha256", "has_signature", "signature_size", "yanked",
    "yanked_reason", "serial",
)


def _select(alias: str = "") -> str:
    """The columns of a L{FileRecord}, in L{_record}'s order (times as epoch seconds)."""
    p = f"{alias}." if alias else ""
    return ", ".join(f"EXTRACT(EPOCH FROM {p}{f})::float8" if f == "uploaded_at" else p + f for f in _FIELDS)


_COLUMNS = _select()


def _record(row: Sequence[Any]) -> FileRecord:
    (id_, project, project_name, version, filename, object_key, size, sha256, uploaded_at, md5, uploader,
     requires_python, summary, core_metadata_sha256, has_signature, signature_size, yanked, yanked_reason,
     serial) = row
    return FileRecord(
        project=project, project_name=project_name, version=version, filename=filename, object_key=object_key,
        size=size, sha256=sha256, uploaded_at=uploaded_at, md5=md5, uploader=uploader,
        requires_python=requires_python, summary=summary, core_metadata_sha256=core_metadata_sha256,
        has_signature=has_signature, signature_size=signature_size, yanked=yanked, yanked_reason=yanked_reason,
        id=id_, serial=serial,
    )


# -- queries (run in the catalog's threads) ---------------------------------


def _next_serial(cursor: Any) -> int:
    # Takes the catalog row's lock until commit: writers are serialised
    # here, so serials are committed in the order they are handed out.
    cursor.execute("UPDATE pypid_catalog SET last_serial = last_serial + 1 RETURNING last_serial")
    return int(cursor.fetchone()[0])


def _change(cursor: Any, serial: int, at: float, action: str, record: FileRecord, actor: Optional[str],
            file_id: Optional[int], reason: Optional[str] = None, project_removed: bool = False) -> None:
    cursor.execute(
        "INSERT INTO pypid_changes (serial, at, action, project, version, filename, file_id, actor, name, reason, "
        "project_removed) VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (serial, at, action, record.project, record.version, record.filename, file_id, actor, record.project_name,
         reason, project_removed),
    )


def _q_publish(cursor: Any, record: FileRecord, core_metadata: Optional[bytes], actor: Optional[str],
               at: float, replace_existing: bool, owner_claim: Optional[str]) -> Published:
    first_serial = _next_serial(cursor)
    key = record.release_key
    if owner_claim is not None:
        cursor.execute(
            "INSERT INTO pypid_owners (project, owner, since) VALUES (%s, %s, to_timestamp(%s)) "
            "ON CONFLICT (project) DO NOTHING", (record.project, owner_claim, at),
        )
        cursor.execute("SELECT owner FROM pypid_owners WHERE project = %s", (record.project,))
        owner = cursor.fetchone()[0]
        if owner != owner_claim:
            raise NotOwner(record.project, owner)
    replaced: list[FileRecord] = []
    if replace_existing:
        cursor.execute(
            f"DELETE FROM pypid_files WHERE lower(filename) = lower(%s) OR release_key = %s RETURNING {_COLUMNS}",
            (record.filename, key),
        )
        replaced = [_record(row) for row in cursor.fetchall()]
        # A yank is of a file name: other bytes under the name stay yanked.
        for old in replaced:
            if old.yanked and old.filename.lower() == record.filename.lower():
                record = replace(record, yanked=True, yanked_reason=old.yanked_reason)
    blob = zlib.compress(core_metadata, 6) if core_metadata is not None else None
    cursor.execute(
        "INSERT INTO pypid_files (project, project_name, version, filename, release_key, object_key, size, "
        "sha256, md5, uploaded_at, uploader, requires_python, summary, core_metadata, core_metadata_sha256, "
        "has_signature, signature_size, yanked, yanked_reason, serial) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, 0) "
        "ON CONFLICT DO NOTHING RETURNING id",
        (record.project, record.project_name, record.version, record.filename, key, record.object_key,
         record.size, record.sha256, record.md5, record.uploaded_at, record.uploader, record.requires_python,
         record.summary, blob, record.core_metadata_sha256, record.has_signature, record.signature_size,
         record.yanked, record.yanked_reason),
    )
    row = cursor.fetchone()
    if row is None:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM pypid_files WHERE lower(filename) = lower(%s) OR release_key = %s "
            "ORDER BY lower(filename) = lower(%s) DESC LIMIT 1",
            (record.filename, key, record.filename),
        )
        raise FileExists(_record(cursor.fetchone()))
    file_id = row[0]
    serial = first_serial
    for gone in replaced:
        _change(cursor, serial, at, "remove", gone, actor, None)
        serial = _next_serial(cursor)
    _change(cursor, serial, at, "add", record, actor, file_id)
    cursor.execute(f"UPDATE pypid_files SET serial = %s WHERE id = %s RETURNING {_COLUMNS}", (serial, file_id))
    stored = _record(cursor.fetchone())  # as stored (times to the microsecond)
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(serial)))
    return Published(serial, stored, tuple(replaced))


def _q_remove(cursor: Any, filename: str, actor: Optional[str], at: float) -> Optional[Removed]:
    serial = _next_serial(cursor)
    cursor.execute(f"DELETE FROM pypid_files WHERE lower(filename) = lower(%s) RETURNING {_COLUMNS}", (filename,))
    row = cursor.fetchone()
    if row is None:
        raise _NothingToDo()
    record = _record(row)
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pypid_files WHERE project = %s)", (record.project,))
    _change(cursor, serial, at, "remove", record, actor, None, project_removed=not cursor.fetchone()[0])
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(serial)))
    return Removed(serial, record)


def _q_set_yanked(cursor: Any, filenames: Sequence[str], reason: Optional[str], actor: Optional[str],
                  at: float) -> YanksSet:
    # The catalog row's lock first, as every writer takes it: serials are
    # handed out and committed in order, and none is taken for a file
    # whose yank is already as asked (nothing changes, nothing is told).
    cursor.execute("SELECT last_serial FROM pypid_catalog FOR UPDATE")
    last = int(cursor.fetchone()[0])
    yanked = reason is not None
    action = "yank" if yanked else "unyank"
    records: list[FileRecord] = []
    changes: list[Change] = []
    for filename in filenames:
        cursor.execute(
            "UPDATE pypid_files SET yanked = %s, yanked_reason = %s, serial = %s "
            "WHERE lower(filename) = lower(%s) AND (yanked, yanked_reason) IS DISTINCT FROM (%s::boolean, %s::text) "
            f"RETURNING {_COLUMNS}",
            (yanked, reason, last + 1, filename, yanked, reason),
        )
        row = cursor.fetchone()
        if row is None:
            continue
        last += 1
        record = _record(row)
        _change(cursor, last, at, action, record, actor, record.id, reason=reason)
        records.append(record)
        changes.append(Change(last, at, action, record.project, record.version, record.filename, actor, record))
    if not records:
        raise _NothingToDo()
    cursor.execute("UPDATE pypid_catalog SET last_serial = %s", (last,))
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(last)))
    return YanksSet(last, tuple(records), tuple(changes))


class _NothingToDo(Exception):
    """Raised inside a transaction to roll it back (and hand back its serial)."""


def _q_snapshot(cursor: Any, transform: Optional[Callable[[Any], Any]] = None) -> Snapshot:
    # One consistent view: the serial and the rows as of that serial.
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cursor.execute("SELECT last_serial FROM pypid_catalog")
    serial = int(cursor.fetchone()[0])
    named = cursor.connection.cursor(name="pypid_snapshot")
    named.itersize = 5000
    named.execute(f"SELECT {_COLUMNS} FROM pypid_files ORDER BY id")
    rows = (_record(row) for row in named)
    files = tuple(rows) if transform is None else transform(rows)
    named.close()
    cursor.execute("SELECT project, max(serial) FROM pypid_changes WHERE serial <= %s GROUP BY project", (serial,))
    projects = {project: int(number) for project, number in cursor.fetchall()}
    return Snapshot(serial, files, projects)


def _q_changes(cursor: Any, after: int, limit: int) -> list[Change]:
    cursor.execute(
        "SELECT c.serial, EXTRACT(EPOCH FROM c.at)::float8, c.action, c.project, c.version, c.filename, "
        f"c.actor, f.id IS NOT NULL, {_select('f')} "
        "FROM pypid_changes c LEFT JOIN pypid_files f ON f.id = c.file_id "
        "WHERE c.serial > %s ORDER BY c.serial LIMIT %s",
        (after, limit),
    )
    changes = []
    for row in cursor.fetchall():
        serial, at, action, project, version, filename, actor, present = row[:8]
        changes.append(Change(serial, at, action, project, version, filename, actor,
                              _record(row[8:]) if present else None))
    return changes


def _q_changelog(cursor: Any, after: int, upto: int, limit: int) -> tuple[int, list[LogChange], bool]:
    """
    The catalog's last serial, the change log after serial C{after} up to
    C{upto} (L{pypid.index.changes.Change}s, a "remove project" after the
    removal of a project's last file) of at most C{limit} changes, and
    whether more changes were left out.
    """
    from pypid.index.changes import REMOVE_PROJECT
    from pypid.index.changes import Change as LogChange

    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    cursor.execute("SELECT last_serial FROM pypid_catalog")
    last = int(cursor.fetchone()[0])
    cursor.execute(
        "SELECT serial, EXTRACT(EPOCH FROM at)::float8, action, project, COALESCE(name, project), version, "
        "filename, project_removed FROM pypid_changes WHERE serial > %s AND serial <= %s ORDER BY serial LIMIT %s",
        (after, upto, limit + 1),
    )
    rows = cursor.fetchall()
    log: list[LogChange] = []
    for serial, at, action, project, name, version, filename, project_removed in rows[:limit]:
        log.append(LogChange(int(serial), at, action, project, name, version, filename))
        if project_removed:
            log.append(LogChange(int(serial), at, REMOVE_PROJECT, project, name))
    return last, log, len(rows) > limit


def _q_last_serial(cursor: Any) -> int:
    cursor.execute("SELECT last_serial FROM pypid_catalog")
    return int(cursor.fetchone()[0])


def _q_get(cursor: Any, filename: str) -> Optional[FileRecord]:
    cursor.execute(f"SELECT {_COLUMNS} FROM pypid_files WHERE lower(filename) = lower(%s)", (filename,))
    row = cursor.fetchone()
    return _record(row) if row else None


def _q_core_metadata(cursor: Any, filename: str) -> Optional[bytes]:
    cursor.execute("SELECT core_metadata FROM pypid_files WHERE lower(filename) = lower(%s)", (filename,))
    row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return zlib.decompress(bytes(row[0]))


def _q_owners(cursor: Any) -> dict[str, str]:
    cursor.execute("SELECT project, owner FROM pypid_owners")
    return dict(cursor.fetchall())


def _q_owner(cursor: Any, project: str) -> Optional[str]:
    cursor.execute("SELECT owner FROM pypid_owners WHERE project = %s", (project,))
    row = cursor.fetchone()
    return row[0] if row else None


def _q_claim_owner(cursor: Any, project: str, user: str, at: float) -> str:
    cursor.execute(
        "INSERT INTO pypid_owners (project, owner, since) VALUES (%s, %s, to_timestamp(%s)) "
        "ON CONFLICT (project) DO NOTHING", (project, user, at),
    )
    cursor.execute("SELECT owner FROM pypid_owners WHERE project = %s", (project,))
    owner: str = cursor.fetchone()[0]
    return owner


# -- the catalog ------------------------------------------------------------


class Catalog:
    """
    The catalog's queries, over a bounded pool of connections (one per
    thread of its own thread pool). Called on the reactor thread.

    A connection that PostgreSQL dropped is replaced on next use, and a
    transaction that found it dead is run again on a new one (nothing of it
    was committed). When PostgreSQL cannot be reached, calls fail with
    L{CatalogUnavailable} (one line), and the caller answers 503.
    """

    def __init__(self, url: str, *, reactor: Any, pool_size: int = 4, connect_timeout: int = 5,
                 application_name: str = "pypid") -> None:
        check_url(url)
        self.url = url
        self.where = describe_url(url)
        self._reactor = reactor
        self._connect_kwargs = {"application_name": application_name}
        if "connect_timeout" not in url:
            self._connect_kwargs["connect_timeout"] = str(connect_timeout)
        self._pool = ThreadPool(minthreads=0, maxthreads=pool_size, name="pypid-catalog")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Any] = set()
        #: Bumped when a connection is found dead: older ones are replaced before use.
        self._generation = 0
        self.health = Health(False, "not started", reactor.seconds())
        self.schema: tuple[int, int] = (0, 0)
        self._at_shutdown: Any = None

    # -- connections (threads) --

    def connect(self, **extra: Any) -> Any:
        """A new psycopg2 connection (blocking: in a thread), or L{CatalogUnavailable} in one line."""
        import psycopg2

        try:
            return psycopg2.connect(self.url, **self._connect_kwargs, **extra)
        except psycopg2.OperationalError as e:
            raise CatalogUnavailable(f"cannot connect to the catalog at {self.where}: {_first_line(e)}") from None

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or self._local.generation != self._generation):
            self._forget(conn)
            conn = None
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            self._local.generation = self._generation
            with self._lock:
                self._connections.add(conn)
        return conn

    def _forget(self, conn: Any) -> None:
        with self._lock:
            self._connections.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except Exception:
            pass

    def connection_lost(self) -> None:
        """Some connection died (the server went away): replace every pooled one before its next use."""
        self._generation += 1

    def _interact(self, query: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """
        Run C{query(cursor, *args)} in a transaction. In a pool thread.

        When the connection turns out dead before the commit was sent (a
        pooled connection that PostgreSQL dropped meanwhile), nothing was
        committed, so the transaction is run once more on a new
        connection. A connection lost during the commit itself is
        ambiguous, and fails with L{CatalogUnavailable}.
        """
        import psycopg2

        for attempt in (1, 2):
            conn = self._connection()
            committing = False
            try:
                with conn.cursor() as cursor:
                    result = query(cursor, *args)
                committing = True
                conn.commit()
                return result
            except psycopg2.Error as e:
                if conn.closed or isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError)) \
                        and not _server_still_there(conn):
                    self._forget(conn)
                    self.connection_lost()
                    if attempt == 1 and not committing:
                        continue
                    raise CatalogUnavailable(f"the catalog at {self.where} went away: {_first_line(e)}") from None
                _rollback(conn, self)
                raise
            except BaseException:
                _rollback(conn, self)
                raise
        raise AssertionError("unreachable")

    def _run(self, query: Callable[..., _T], *args: Any) -> defer.Deferred[_T]:
        """C{query(cursor, *args)} in a pool thread, in a transaction: fires with what it returns."""
        d: defer.Deferred[_T] = deferToThreadPool(self._reactor, self._pool, self._interact, query, args)
        d.addCallbacks(self._went_well, self._went_badly)
        return d

    def _went_well(self, result: Any) -> Any:
        if not self.health.ok and self.health.reason.startswith("query: "):
            self._set_health(True, "")
        return result

    def _went_badly(self, failure: Failure) -> Failure:
        if failure.check(CatalogUnavailable):
            self._set_health(False, "query: " + failure.getErrorMessage())
        return failure

    def _set_health(self, ok: bool, reason: str) -> None:
        if ok != self.health.ok or reason != self.health.reason:
            self.health = Health(ok, reason, self._reactor.seconds())

    # -- life --

    def start(self, *, create: bool = True, upgrade: bool = False,
              known: Sequence[migrations.Migration] = migrations.MIGRATIONS) -> defer.Deferred[tuple[int, int]]:
        """
        Start the pool and check the schema: create it in an empty database,
        migrate an older one when C{upgrade}, refuse a newer one
        (L{migrations.SchemaTooNew}, one line). Fires with
        C{(version before, version after)}.
        """
        self._start_pool()
        d = self._run(migrations.check, create, upgrade, known)

        def checked(versions: tuple[int, int]) -> tuple[int, int]:
            self.schema = versions
            self._set_health(True, "")
            if versions[0] != versions[1]:
                log.info("catalog {where}: schema version {before} -> {after}", where=self.where,
                         before=versions[0], after=versions[1])
            return versions

        return d.addCallback(checked)

    def migrate(self, known: Sequence[migrations.Migration] = migrations.MIGRATIONS) -> defer.Deferred[tuple[int, int]]:
        """C{pypid catalog migrate}: bring the schema up to date. Fires with the versions before and after."""
        self._start_pool()
        return self._run(migrations.migrate, known)

    def _start_pool(self) -> None:
        if not self._pool.started:
            self._pool.start()
            # Its threads are not daemons: a reactor that stops without
            # stop() being called must not leave the process waiting on them.
            self._at_shutdown = self._reactor.addSystemEventTrigger("during", "shutdown", self._stop_at_shutdown)

    def _stop_at_shutdown(self) -> None:
        self._at_shutdown = None
        if self._pool.started:
            self._pool.stop()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.close()
            except Exception:
                pass

    def stop(self) -> defer.Deferred[None]:
        """Stop the pool (waits for running queries, in a thread) and close the connections."""
        pool = self._pool
        trigger, self._at_shutdown = self._at_shutdown, None
        if trigger is not None:
            self._reactor.removeSystemEventTrigger(trigger)

        def stopped(_: Any) -> None:
            self._close_all()
            self._set_health(False, "stopped")

        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), pool.stop)
        return d.addCallback(stopped)

    # -- queries --

    def snapshot(self, transform: Optional[Callable[[Any], Any]] = None) -> defer.Deferred[Snapshot]:
        """
        Every listed file and the serial they are as of (a L{Snapshot});
        core metadata left out. With C{transform}, the snapshot's C{files}
        are what it makes of an iterator of the rows, in the catalog's
        thread, as they arrive (so that a large catalog is never held as
        rows all at once).
        """
        return self._run(_q_snapshot, transform)

    def changes_since(self, serial: int, limit: int = CATCH_UP_BATCH) -> defer.Deferred[list[Change]]:
        """The changes after C{serial}, oldest first, at most C{limit} (L{Change}s)."""
        return self._run(_q_changes, serial, limit)

    def last_serial(self) -> defer.Deferred[int]:
        return self._run(_q_last_serial)

    def get(self, filename: str) -> defer.Deferred[Optional[FileRecord]]:
        """The listed file named C{filename} in any case, or L{None}."""
        return self._run(_q_get, filename)

    def core_metadata(self, filename: str) -> defer.Deferred[Optional[bytes]]:
        """The core metadata stored for C{filename} (decompressed in a thread), or L{None}."""
        return self._run(_q_core_metadata, filename)

    def owners(self) -> defer.Deferred[dict[str, str]]:
        """First uploaders: normalised project -> user."""
        return self._run(_q_owners)

    def owner(self, project: str) -> defer.Deferred[Optional[str]]:
        """The first uploader of C{project} (normalised), or L{None}."""
        return self._run(_q_owner, project)

    def claim_owner(self, project: str, user: str) -> defer.Deferred[str]:
        """
        Record C{user} as the first uploader of C{project} (normalised)
        unless it has one: fires with the owner, C{user} or the one who
        claimed it first (on any replica).
        """
        return self._run(_q_claim_owner, project, user, self._reactor.seconds())

    def publish(self, record: FileRecord, core_metadata: Optional[bytes] = None, *, actor: Optional[str] = None,
                replace_existing: bool = False, owner_claim: Optional[str] = None) -> defer.Deferred[Published]:
        """
        List C{record} (its object must be complete in the store already).
        Fires with L{Published}; fails with L{FileExists} (the row that has
        the filename in any case, or the same release identity) unless
        C{replace_existing}, which removes such rows in the same
        transaction (one serial each, reported in C{replaced}). With
        C{owner_claim}, the project's first uploader is recorded as that
        user if it has none, and L{NotOwner} is raised if it is another.
        Core metadata is stored zlib-compressed.
        """
        at = self._reactor.seconds()
        return self._run(_q_publish, record, core_metadata, actor, at, replace_existing, owner_claim)

    def remove(self, filename: str, *, actor: Optional[str] = None) -> defer.Deferred[Optional[Removed]]:
        """Unlist C{filename} (any case). Fires with L{Removed}, or L{None} when it was not listed."""
        d = self._run(_q_remove, filename, actor, self._reactor.seconds())

        def not_listed(failure: Failure) -> None:
            failure.trap(_NothingToDo)
            return None

        return d.addErrback(not_listed)

    def set_yanked(self, filenames: Sequence[str], reason: Optional[str], *,
                   actor: Optional[str] = None) -> defer.Deferred[Optional[YanksSet]]:
        """
        Yank the listed files C{filenames} (any case) with C{reason} (C{""}
        for none), or unyank them (L{None}): one serial per file whose yank
        changed. Fires with L{YanksSet}, or L{None} when none changed.
        """
        d = self._run(_q_set_yanked, list(filenames), reason, actor, self._reactor.seconds())

        def unchanged(failure: Failure) -> None:
            failure.trap(_NothingToDo)
            return None

        return d.addErrback(unchanged)

    def changelog(self, after: int, upto: int, limit: int) -> defer.Deferred[tuple[int, list[LogChange], bool]]:
        """
        The change log as mirrors read it: fires with the catalog's last
        serial, the changes after C{after} up to C{upto}, oldest first (at
        most C{limit} of them, and a "remove project" after the removal of
        a project's last file), and whether more were left out.
        """
        return self._run(_q_changelog, after, upto, limit)

    def follow(self, after: int, apply: Callable[[list[Change]], Any], **kwargs: Any) -> "ChangeFollower":
        """Start a L{ChangeFollower} applying every change after serial C{after}."""
        follower = ChangeFollower(self, after, apply, reactor=self._reactor, **kwargs)
        follower.start()
        return follower


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _server_still_there(conn: Any) -> bool:
    # An OperationalError on a connection psycopg2 still calls open: ask.
    try:
        conn.rollback()
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        conn.rollback()
        return True
    except Exception:
        return False


def _rollback(conn: Any, catalog: Catalog) -> None:
    try:
        conn.rollback()
    except Exception:
        catalog._forget(conn)


@implementer(IReadDescriptor)
class ChangeFollower:
    """
    Follows the catalog's changes: LISTENs on a dedicated connection whose
    socket the reactor watches, and on each notification (and after each
    (re)connection) reads the changes after the last serial it applied and
    hands them, in order, to C{apply} (on the reactor thread). When
    PostgreSQL goes away it reconnects with backoff (C{min_delay} doubling
    up to C{max_delay}); the catalog's L{Health} says degraded meanwhile.
    """

    def __init__(self, catalog: Catalog, after: int, apply: Callable[[list[Change]], Any], *, reactor: Any,
                 min_delay: float = 0.1, max_delay: float = 10.0) -> None:
        self.catalog = catalog
        self.serial = after
        self._apply = apply
        self._reactor = reactor
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._delay = min_delay
        self._conn: Any = None
        self._fd = -1
        self._running = False
        self._catching_up = False
        self._again = False
        self._retry: Any = None
        self._connecting = False
        #: How many times it has (re)connected; for tests and metrics.
        self.connections = 0
        self._caught_up: list[defer.Deferred[int]] = []
        self._serial_waiters: list[tuple[int, defer.Deferred[int]]] = []

    # -- life --

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self) -> None:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._drop()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def when_caught_up(self) -> defer.Deferred[int]:
        """Fires once the follower is connected and has applied every change it was told of."""
        d: defer.Deferred[int] = defer.Deferred()
        if self.connected and not self._catching_up:
            d.callback(self.serial)
        else:
            self._caught_up.append(d)
        return d

    def wait_for(self, serial: int) -> defer.Deferred[int]:
        """
        Fires (with the serial applied) once every change up to C{serial}
        is applied; reads the changes now rather than wait for their
        notification (a replica that made the change itself).
        """
        if self.serial >= serial:
            return defer.succeed(self.serial)
        d: defer.Deferred[int] = defer.Deferred()
        self._serial_waiters.append((serial, d))
        self._catch_up()
        return d

    # -- connecting --

    def _connect(self) -> None:
        if not self._running or self._connecting:
            return
        self._connecting = True
        d = deferToThreadPool(self._reactor, self.catalog._pool, self._listen_in_thread)
        d.addCallbacks(self._listening, self._failed)

    def _listen_in_thread(self) -> Any:
        # Blocking: connect, LISTEN; the reactor reads it from now on.
        conn = self.catalog.connect(keepalives=1, keepalives_idle=20, keepalives_interval=5, keepalives_count=3)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        except Exception as e:
            conn.close()
            raise CatalogUnavailable(f"cannot listen to the catalog at {self.catalog.where}: {_first_line(e)}")
        return conn

    def _listening(self, conn: Any) -> None:
        self._connecting = False
        if not self._running:
            conn.close()
            return
        self._conn = conn
        # The reactor watches a duplicate of libpq's socket: libpq closes
        # its own descriptor as soon as it sees the connection fail, and
        # the reactor must never hold a closed (or reused) number.
        self._fd = os.dup(conn.fileno())
        self.connections += 1
        self._delay = self._min_delay
        self._reactor.addReader(self)
        if self.connections > 1:
            self.catalog.connection_lost()  # the pool's connections predate the outage
        # Whatever was missed while not listening, and anything already
        # buffered on the new connection.
        self.doRead()
        self._catch_up()

    def _failed(self, failure: Failure) -> None:
        self._connecting = False
        self._lost(failure.getErrorMessage())

    def _lost(self, why: str) -> None:
        self._drop()
        if not self._running:
            return
        if self.catalog.health.ok or not self.catalog.health.reason.startswith("listen: "):
            log.warn("catalog {where} unavailable: {why}; retrying", where=self.catalog.where, why=why)
        self.catalog._set_health(False, f"listen: {why}")
        self.catalog.connection_lost()
        delay, self._delay = self._delay, min(self._delay * 2, self._max_delay)
        self._retry = self._reactor.callLater(delay, self._connect)

    def _drop(self) -> None:
        if self._conn is not None:
            self._reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    # -- IReadDescriptor --

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "catalog-listener"

    def doRead(self) -> None:
        import psycopg2

        conn = self._conn
        if conn is None:
            return
        try:
            conn.poll()
        except psycopg2.Error as e:
            self._lost(_first_line(e))
            return
        if conn.closed:
            self._lost("connection closed")
            return
        newest = None
        while conn.notifies:
            notify = conn.notifies.pop(0)
            try:
                serial = int(notify.payload)
            except ValueError:
                continue
            newest = serial if newest is None else max(newest, serial)
        if newest is not None and newest > self.serial:
            self._catch_up()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor gave up on the descriptor (shutdown, or a bad fd).
        if self._conn is not None:
            self._lost(reason.getErrorMessage())

    # -- catching up --

    def _catch_up(self) -> None:
        if self._catching_up:
            self._again = True
            return
        self._catching_up = True
        self._again = False
        d = self.catalog.changes_since(self.serial)
        d.addCallbacks(self._got_changes, self._catch_up_failed)

    def _got_changes(self, changes: list[Change]) -> None:
        if not self._running:
            self._catching_up = False
            return
        # Still catching up while C{apply} runs: whoever asks then waits.
        if changes:
            try:
                self._apply(changes)
            except Exception:
                log.failure("applying catalog changes {first}..{last}", first=changes[0].serial,
                            last=changes[-1].serial)
            self.serial = changes[-1].serial
            if self._serial_waiters:
                waiting = self._serial_waiters
                self._serial_waiters = [(s, d) for s, d in waiting if s > self.serial]
                for s, d in waiting:
                    if s <= self.serial:
                        d.callback(self.serial)
        self._catching_up = False
        if self._again or len(changes) >= CATCH_UP_BATCH:
            self._catch_up()
            return
        if self.connected:
            if not self.catalog.health.ok:
                log.info("catalog {where} available again; caught up to serial {serial}",
                         where=self.catalog.where, serial=self.serial)
            self.catalog._set_health(True, "")
            caught, self._caught_up = self._caught_up, []
            for waiter in caught:
                waiter.callback(self.serial)

    def _catch_up_failed(self, failure: Failure) -> None:
        self._catching_up = False
        if failure.check(CatalogUnavailable):
            # The listener will see the outage too (or already has); it
            # catches up again once it is back.
            if self.connected:
                self._lost(failure.getErrorMessage())
            return
        # Anything else (a schema being changed under it?): say so, and try
        # again after a while rather than stop following.
        why = _first_line(failure.value)
        log.warn("reading catalog changes after serial {serial} failed: {why}", serial=self.serial, why=why)
        self.catalog._set_health(False, f"catch-up: {why}")
        if self._running:
            delay, self._delay = self._delay, min(self._delay * 2, self._max_delay)
            self._retry = self._reactor.callLater(delay, self._catch_up)
