"""
The state cache: what reading each file told (its digest and core metadata
fields), kept on disk so that a restart on a large tree does not read every
file again.

An entry is used only for the very file it was made from: same absolute
path, size, mtime, inode, status-change time and hash algorithm. Any write
to the file changes its ctime, so a file rewritten in place, even with its
mtime put back, is read again.

Stored in SQLite (one transaction per batch: a crash loses at most the last
batch, never corrupts what was stored) in the state directory:
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
from typing import Iterable, Optional

from pypid.scan import Details, Found

FILENAME = "cache.sqlite3"
#: Bump when the table changes; an older file is then started afresh.
SCHEMA_VERSION = 1
#: Entries written per transaction during a long scan.
BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    algo TEXT NOT NULL,
    digest TEXT,
    name TEXT,
    requires_python TEXT,
    summary TEXT,
    metadata_sha256 TEXT
)
"""


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
        self._pending: list[tuple] = []
        self._messages: list[tuple[str, str]] = []
        #: Paths looked up or stored since L{track} began (to prune the rest).
        self._touched: Optional[set[str]] = None

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
            if version != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS files")
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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

    # DetailsCache

    def get(self, found: Found, hash_algo: Optional[str]) -> Optional[Details]:
        with self._lock:
            db = self._connection()
            if self._touched is not None:
                self._touched.add(found.abspath)
            if db is None:
                return None
            try:
                row = db.execute(
                    "SELECT size, mtime_ns, ctime_ns, ino, algo, digest, name,"
                    " requires_python, summary, metadata_sha256 FROM files WHERE path = ?",
                    (found.abspath,),
                ).fetchone()
            except sqlite3.Error as e:
                self._failed(e)
                return None
            if row is None or tuple(row[:5]) != (
                found.size, found.mtime_ns, found.ctime_ns, found.ino, hash_algo or ""
            ):
                return None
            self.hits += 1
            return Details(*row[5:])

    def get_many(self, found: Iterable[Found], hash_algo: Optional[str]) -> dict[str, Details]:
        """The details of each of C{found} the cache knows, by C{abspath}."""
        found = list(found)
        out: dict[str, Details] = {}
        with self._lock:
            db = self._connection()
            if self._touched is not None:
                self._touched.update(item.abspath for item in found)
            if db is None:
                return out
            algo = hash_algo or ""
            for start in range(0, len(found), _IN_BATCH):
                batch = {item.abspath: item for item in found[start : start + _IN_BATCH]}
                try:
                    rows = db.execute(
                        "SELECT path, size, mtime_ns, ctime_ns, ino, algo, digest, name,"
                        " requires_python, summary, metadata_sha256 FROM files WHERE path IN"
                        f" ({','.join('?' * len(batch))})",
                        list(batch),
                    ).fetchall()
                except sqlite3.Error as e:
                    self._failed(e)
                    return out
                for row in rows:
                    item = batch[row[0]]
                    if tuple(row[1:6]) == (item.size, item.mtime_ns, item.ctime_ns, item.ino, algo):
                        out[row[0]] = Details(*row[6:])
            self.hits += len(out)
        return out

    def put(self, found: Found, hash_algo: Optional[str], details: Details) -> None:
        if found.ino == 0:
            return  # not from a stat: cannot be told apart from a rewrite
        with self._lock:
            if self._touched is not None:
                self._touched.add(found.abspath)
            if self._connection() is None:
                return
            self._pending.append(
                (found.abspath, found.size, found.mtime_ns, found.ctime_ns, found.ino,
                 hash_algo or "", *details)
            )
            self.stores += 1
            if len(self._pending) >= BATCH:
                self.flush()

    # Upkeep

    def flush(self) -> None:
        """Write the entries collected so far, in one transaction."""
        with self._lock:
            if not self._pending or self._db is None:
                return
            rows, self._pending = self._pending, []
            try:
                with _transaction(self._db):
                    self._db.executemany(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.Error as e:
                self._failed(e)

    def forget(self, abspaths: Iterable[str]) -> None:
        """Drop the entries of files gone from the index."""
        with self._lock:
            db = self._connection()
            paths = [(p,) for p in abspaths]
            if db is None or not paths:
                return
            self.flush()
            try:
                with _transaction(db):
                    db.executemany("DELETE FROM files WHERE path = ?", paths)
            except sqlite3.Error as e:
                self._failed(e)

    def track(self) -> None:
        """Start noting which entries are used (before a first full scan)."""
        with self._lock:
            self._touched = set()

    def prune(self) -> int:
        """
        Drop every entry not used since L{track} (files gone while pypid was
        not running) and stop noting; how many were dropped.
        """
        with self._lock:
            touched, self._touched = self._touched, None
            db = self._connection()
            if db is None or touched is None:
                return 0
            self.flush()
            try:
                stale = [(p,) for (p,) in db.execute("SELECT path FROM files") if p not in touched]
                if stale:
                    with _transaction(db):
                        db.executemany("DELETE FROM files WHERE path = ?", stale)
            except sqlite3.Error as e:
                self._failed(e)
                return 0
            return len(stale)

    def close(self) -> None:
        with self._lock:
            self.flush()
            if self._db is not None:
                self._db.close()
            self._db = None


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK on error (autocommit connections)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
