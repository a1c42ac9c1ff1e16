"""
The state cache: what reading each file told (its digest and core metadata
fields), kept on disk so that a restart on a large tree does not read every
file again.

An entry is used only for the very file it was made from: same absolute
path, size, mtime, inode, status-change time and hash algorithm. Any write
to the file changes its ctime, so a file rewritten in place, even with its
mtime put back, is read again.

Stored in SQLite (one transaction per batch: a crash loses at most the last
batch, never corrupts what was stored), keyed by directory and filename so
that the entries of a directory are read together, in one range of the
table, as a scan walks it; in the state directory:
C{--state-dir}, by default C{<first package directory>/.pypid/}, or
C{$XDG_CACHE_HOME/pypid/<id>/} (C{~/.cache}) when that is not writable.

Every method blocks on the disk: they are called from the scan threads,
never from the reactor thread. The cache is never required: when it cannot
be opened or written, pypid reads files as if it were empty, and says so.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import zlib
from types import TracebackType
from typing import Any, Iterable, Iterator, Optional

from pypid.store.directory.scan import Details, Found

FILENAME = "cache.sqlite3"
#: Bump when the table changes; an unknown older file is then started
#: afresh (version 1, one row per absolute path, is converted).
SCHEMA_VERSION = 2
#: Entries written per transaction during a long scan.
BATCH = 500

_COLUMNS = """
    dir TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    algo TEXT NOT NULL,
    digest TEXT,
    name TEXT,
    requires_python TEXT,
    summary TEXT,
    metadata_sha256 TEXT,
    PRIMARY KEY (dir, file)
"""
_SCHEMA = f"CREATE TABLE IF NOT EXISTS files ({_COLUMNS}) WITHOUT ROWID"
#: Core metadata files, compressed, by their sha256 (as bytes): what a
#: wheel's C{.metadata} serves, read on the reactor thread. A table of its
#: own, so that a scan's reads of the files table do not read them.
_METADATA = "CREATE TABLE IF NOT EXISTS metadata (sha256 BLOB PRIMARY KEY, data BLOB NOT NULL)"

#: Version 1 kept the absolute path in one column: split it at its last '/'
#: (everything up to the last '/' is what rtrim() leaves of it when told to
#: trim every character of the path but '/').
_FROM_V1 = f"""
CREATE TABLE files_v2 ({_COLUMNS}) WITHOUT ROWID;
INSERT OR REPLACE INTO files_v2
    SELECT substr(d, 1, length(d) - 1), substr(path, length(d) + 1), size, mtime_ns, ctime_ns, ino,
           algo, digest, name, requires_python, summary, metadata_sha256
    FROM (SELECT rtrim(path, replace(path, '/', '')) AS d, * FROM files)
    WHERE d != '';
DROP TABLE files;
ALTER TABLE files_v2 RENAME TO files;
PRAGMA user_version = {SCHEMA_VERSION};
"""

_DETAILS = "digest, name, requires_python, summary, metadata_sha256"
#: In the order of Found's size, mtime_ns, ino, ctime_ns (its fields 3 to 6).
_STAMP = "size, mtime_ns, ino, ctime_ns, algo"


def default_state_dirs(first_root: str) -> list[str]:
    """
    Where the state goes when C{--state-dir} is not given, best first: a
    hidden directory in the first package directory, then the user's cache
    directory (one subdirectory per first package directory).
    """
    root = os.path.abspath(first_root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return [os.path.join(root, ".pypid"), os.path.join(base, "pypid", key)]


#: Paths per C{IN (...)} query (SQLite allows 999 parameters on old builds).
_IN_BATCH = 500
#: From how many files of one directory on they are looked up as one range
#: of the table (the rows between the first and last name) rather than by
#: name: a scan reads whole directories.
_RANGE_MIN = 16


#: Builds a named tuple from all its fields, in order, without a Python-level call.
_new_tuple = tuple.__new__


def _split(abspath: str) -> tuple[str, str]:
    """An absolute path as (directory, filename), the table's key."""
    directory, _, name = abspath.rpartition("/")
    return directory, name


class StateCache:
    """
    L{Details} by file, in SQLite in the first usable of C{directories}
    (opened on first use, in whatever thread that is).

    @ivar path: the database file in use, once opened (L{None} before, or
        when no directory was usable).
    @ivar hits: entries found and used.
    @ivar stores: entries written.
    """

    def __init__(self, directories: list[str]) -> None:
        self.directories = directories
        self.path: Optional[str] = None
        self.hits = 0
        self.stores = 0
        self._lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None
        self._opened = False
        self._pending: list[tuple[object, ...]] = []
        self._pending_metadata: list[tuple[bytes, bytes]] = []
        #: The reactor thread's own read-only connection (L{read_metadata}).
        self._reader: Optional[sqlite3.Connection] = None
        self._reader_failed = False
        self._messages: list[tuple[str, str]] = []
        #: Files looked up per directory since L{track} began (to prune the
        #: entries of files gone). Counts, not names: a first scan looks up
        #: every file, and would otherwise hold a path per file meanwhile.
        self._touched: Optional[dict[str, int]] = None

    # Messages are collected here and logged by the caller on the reactor
    # thread (this code runs in threads).

    def messages(self) -> list[tuple[str, str]]:
        """Take the (level, text) messages collected since the last call."""
        with self._lock:
            taken, self._messages = self._messages, []
            return taken

    def _say(self, level: str, text: str) -> None:
        self._messages.append((level, text))

    # Opening

    def _connection(self) -> Optional[sqlite3.Connection]:
        if self._opened:
            return self._db
        self._opened = True
        for index, directory in enumerate(self.directories):
            path = os.path.join(directory, FILENAME)
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                self._db = self._open(path)
            except (OSError, sqlite3.Error) as e:
                self._say("warn", f"state directory {directory} is not usable: {e}")
                continue
            self.path = path
            if index:
                self._say("warn", f"keeping the state cache in {directory} instead")
            else:
                self._say("info", f"state cache: {path}")
            return self._db
        self._say("warn", "no usable state directory: every file is read again at each start")
        return None

    def _open(self, path: str) -> sqlite3.Connection:
        try:
            return self._setup(path)
        except sqlite3.DatabaseError as e:
            # Not a database, or a damaged one: it is only a cache.
            self._say("warn", f"state cache {path} is unreadable ({e}); starting it afresh")
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except FileNotFoundError:
                    pass
            return self._setup(path)

    def _setup(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 1:
                db.executescript("BEGIN IMMEDIATE;" + _FROM_V1 + "COMMIT;")
            elif version != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS files")
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute(_METADATA)
            db.execute("SELECT count(*) FROM files").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def _failed(self, e: Exception) -> None:
        self._say("warn", f"state cache {self.path} failed ({e}); going on without it")
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None
        self._pending = []

    def directory(self) -> Optional[str]:
        """The state directory in use (chosen and opened on first use), or L{None}."""
        with self._lock:
            self._connection()
            return os.path.dirname(self.path) if self.path is not None else None

    # DetailsCache

    def _note(self, directory: str, files: int) -> None:
        touched = self._touched
        if touched is not None:
            touched[directory] = touched.get(directory, 0) + files

    def get(self, found: Found, hash_algo: Optional[str]) -> Optional[Details]:
        with self._lock:
            db = self._connection()
            key = _split(found.abspath)
            self._note(key[0], 1)
            if db is None:
                return None
            try:
                row = db.execute(
                    f"SELECT {_STAMP}, {_DETAILS} FROM files WHERE dir = ? AND file = ?", key
                ).fetchone()
            except sqlite3.Error as e:
                self._failed(e)
                return None
            if row is None or row[:4] != found[3:7] or row[4] != (hash_algo or ""):
                return None
            self.hits += 1
            return Details(*row[5:])

    def get_many(self, found: Iterable[Found], hash_algo: Optional[str]) -> dict[str, Details]:
        """The details of each of C{found} the cache knows, by C{abspath}."""
        found = list(found)
        out: dict[str, Details] = {}
        with self._lock:
            db = self._connection()
            directories: dict[str, dict[str, Found]] = {}
            for item in found:
                directory, name = _split(item.abspath)
                wanted = directories.get(directory)
                if wanted is None:
                    directories[directory] = {name: item}
                else:
                    wanted[name] = item
            for directory, wanted in directories.items():
                self._note(directory, len(wanted))
            if db is None:
                return out
            algo = hash_algo or ""
            try:
                for directory, wanted in directories.items():
                    for rows in self._rows(db, directory, wanted):
                        # Once per file of a first scan: kept lean.
                        for row in rows:
                            known = wanted.get(row[0])
                            if known is not None and row[1:5] == known[3:7] and row[5] == algo:
                                out[known[2]] = _new_tuple(Details, row[6:])
            except sqlite3.Error as e:
                self._failed(e)
                return out
            self.hits += len(out)
        return out

    @staticmethod
    def _rows(db: sqlite3.Connection, directory: str, wanted: dict[str, Found]) -> Iterator[Iterable[tuple[Any, ...]]]:
        """Cursors over the rows of C{wanted} files of C{directory} (and perhaps others)."""
        columns = f"SELECT file, {_STAMP}, {_DETAILS} FROM files WHERE dir = ?"
        if len(wanted) >= _RANGE_MIN:
            yield db.execute(f"{columns} AND file BETWEEN ? AND ?", (directory, min(wanted), max(wanted)))
            return
        names = list(wanted)
        for start in range(0, len(names), _IN_BATCH):
            batch = names[start : start + _IN_BATCH]
            yield db.execute(f"{columns} AND file IN ({','.join('?' * len(batch))})", [directory, *batch])

    def put(self, found: Found, hash_algo: Optional[str], details: Details) -> None:
        if found.ino == 0:
            return  # not from a stat: cannot be told apart from a rewrite
        with self._lock:
            if self._connection() is None:
                return
            self._pending.append(
                (*_split(found.abspath), found.size, found.mtime_ns, found.ino, found.ctime_ns,
                 hash_algo or "", *details)
            )
            self.stores += 1
            if len(self._pending) >= BATCH:
                self.flush()

    # Core metadata

    def put_metadata(self, sha256: bytes, raw: bytes) -> None:
        """Keep the core metadata C{raw} (whose sha256 is C{sha256}), compressed."""
        with self._lock:
            if self._connection() is None:
                return
            self._pending_metadata.append((sha256, zlib.compress(raw, 6)))
            if len(self._pending_metadata) >= BATCH:
                self.flush()

    def read_metadata(self, sha256: bytes) -> Optional[bytes]:
        """
        The core metadata whose sha256 is C{sha256}, if kept; L{None} when
        not (or when the cache cannot say at once). For the reactor thread:
        its own read-only connection, which never waits for a writer (WAL),
        on a table of small rows, usually in the page cache: what a small
        download costs in reads of the disk.
        """
        reader = self._reader
        if reader is None:
            if self._reader_failed or self.path is None or self._db is None:
                return None
            try:
                reader = self._reader = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=0, isolation_level=None)
                reader.execute("PRAGMA query_only = 1")
            except sqlite3.Error:
                self._reader_failed = True
                return None
        try:
            row = reader.execute("SELECT data FROM metadata WHERE sha256 = ?", (sha256,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        try:
            raw = zlib.decompress(row[0])
        except zlib.error:
            return None
        return raw if hashlib.sha256(raw).digest() == sha256 else None

    # Upkeep

    def flush(self) -> None:
        """Write the entries collected so far, in one transaction."""
        with self._lock:
            if (not self._pending and not self._pending_metadata) or self._db is None:
                return
            rows, self._pending = self._pending, []
            blobs, self._pending_metadata = self._pending_metadata, []
            try:
                with _transaction(self._db):
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO files (dir, file, {_STAMP}, {_DETAILS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._db.executemany("INSERT OR IGNORE INTO metadata (sha256, data) VALUES (?, ?)", blobs)
            except sqlite3.Error as e:
                self._failed(e)

    def forget(self, abspaths: Iterable[str]) -> None:
        """Drop the entries of files gone from the index."""
        with self._lock:
            db = self._connection()
            paths = [_split(p) for p in abspaths]
            if db is None or not paths:
                return
            self.flush()
            try:
                with _transaction(db):
                    db.executemany("DELETE FROM files WHERE dir = ? AND file = ?", paths)
            except sqlite3.Error as e:
                self._failed(e)

    def track(self) -> None:
        """Start noting which entries are used (before a first full scan)."""
        with self._lock:
            self._touched = {}

    def prune(self) -> int:
        """
        Drop the entries of files gone while pypid was not running, and stop
        noting: every entry of a directory that nothing was looked up in
        since L{track} (gone, hidden, or no longer a package directory), and
        in a directory with more entries than files looked up there, the
        entries of files no longer in it. How many were dropped.
        """
        with self._lock:
            touched, self._touched = self._touched, None
            db = self._connection()
            if db is None or touched is None:
                return 0
            self.flush()
            try:
                # One row per directory, counted by SQLite in one pass.
                counts = db.execute("SELECT dir, count(*) FROM files GROUP BY dir").fetchall()
                gone = [(directory,) for directory, _ in counts if directory not in touched]
                stale = [
                    (directory, name)
                    for directory, entries in counts
                    if entries > touched.get(directory, entries)
                    for name in self._absent(db, directory)
                ]
                if gone or stale:
                    with _transaction(db):
                        db.executemany("DELETE FROM files WHERE dir = ?", gone)
                        db.executemany("DELETE FROM files WHERE dir = ? AND file = ?", stale)
                # The core metadata of no file (gone, or of an earlier version).
                db.execute(
                    "DELETE FROM metadata WHERE lower(hex(sha256)) NOT IN"
                    " (SELECT metadata_sha256 FROM files WHERE metadata_sha256 IS NOT NULL)")
            except sqlite3.Error as e:
                self._failed(e)
                return 0
            entries: dict[str, int] = dict(counts)
            return sum(entries[directory] for (directory,) in gone) + len(stale)

    @staticmethod
    def _absent(db: sqlite3.Connection, directory: str) -> list[str]:
        """The files of C{directory} that have an entry but are no longer there."""
        try:
            there = set(os.listdir(directory or "/"))
        except OSError:
            there = set()
        return [name for (name,) in db.execute("SELECT file FROM files WHERE dir = ?", (directory,)) if name not in there]

    def close(self) -> None:
        with self._lock:
            self.flush()
            if self._db is not None:
                self._db.close()
            self._db = None
        # (The reader belongs to the thread that opened it: closed only there.)


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK on error (autocommit connections)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, kind: Optional[type[BaseException]], value: Optional[BaseException], traceback: Optional[TracebackType]
    ) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
