"""
The directory store's serial on disk: the last change number, each
project's serial and fingerprint, and the latest changes, so that the serial
never goes back (restarts, rescans, git pushes) and mirrors can ask what
changed since the serial they have.

Kept in SQLite, C{serial.sqlite3} in the state directory (beside the state
cache, in a file of its own: the state cache may be thrown away at any
time, this may not). Each change is one transaction, made durable before
the snapshot that shows its serial is served. The change log keeps the
latest L{KEEP} changes; older ones are dropped and the I{horizon} (the
newest serial some of whose changes are gone) moves up: a mirror further
behind than that gets every project to check (a full sync).

A project's fingerprint (L{fingerprint}: its files' paths, sizes and
modification times, summed up) is kept with its serial, so that files that
changed while pypid was not running are found at the next start and take a
new serial then.

Every method blocks on the disk: they run in threads. When no state
directory is usable, the serial is kept in memory only (and says so): it
then starts again at every start, and mirrors do a full sync.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import zlib
from operator import itemgetter
from typing import Iterable, Mapping, NamedTuple, Optional

from pypid.index.changes import Change, ChangesSince
from pypid.index.model import Project

FILENAME = "serial.sqlite3"
#: Changes kept for C{changelog_since_serial}.
KEEP = 100_000
#: Changes returned at most by one L{SerialBook.since} (the newest are
#: left out of a longer answer, which then says it is incomplete).
MAX_ANSWER = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL,
    horizon INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    key TEXT PRIMARY KEY,
    serial INTEGER NOT NULL,
    fingerprint TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    serial INTEGER NOT NULL,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    filename TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_serial ON changes (serial);
"""

_path, _size, _mtime = itemgetter(0), itemgetter(8), itemgetter(9)


def fingerprint(project: Project) -> str:
    """
    What a project's files look like, in a few numbers: a file added,
    removed, moved or rewritten changes it. Cheap (C-level loops over the
    files, about 0.3 s a million), for the check of every project at start.
    """
    files = project.files
    paths = "\0".join(map(_path, files)).encode("utf-8", "surrogateescape")
    return f"{len(files)}:{sum(map(_size, files))}:{sum(map(_mtime, files))}:{zlib.crc32(paths):08x}"


class Stored(NamedTuple):
    """What the book held at start."""

    #: The last serial handed out.
    last: int
    #: The newest serial some of whose changes are no longer logged.
    horizon: int
    #: Each project's serial.
    projects: dict[str, int]
    #: Whether the book was empty (a first start: nothing to compare with).
    fresh: bool


class ProjectRow(NamedTuple):
    serial: int
    fingerprint: Optional[str]


class SerialBook:
    """
    The serial's records in the first usable of C{directories} (opened on
    first use, in whatever thread that is).

    @ivar path: the database in use, once opened (L{None} before, or when
        no directory was usable).
    """

    def __init__(self, directories: list[str], keep: int = KEEP) -> None:
        self.directories = directories
        self.keep = keep
        self.path: Optional[str] = None
        self._lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None
        self._opened = False
        self._messages: list[tuple[str, str]] = []
        self._rows = 0
        #: Whether the last use failed (said once until it works again).
        self._failing = False

    def messages(self) -> list[tuple[str, str]]:
        """Take the (level, text) messages collected since the last call (to log them)."""
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
        for directory in self.directories:
            path = os.path.join(directory, FILENAME)
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                db = sqlite3.connect(path, check_same_thread=False, timeout=10, isolation_level=None)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    # The serial must not go back after a crash: every change is synced.
                    db.execute("PRAGMA synchronous=FULL")
                    db.executescript(_SCHEMA)
                    self._rows = db.execute("SELECT count(*) FROM changes").fetchone()[0]
                except BaseException:
                    db.close()
                    raise
            except (OSError, sqlite3.Error) as e:
                if not self._failing:
                    self._say("warn", f"cannot keep the serial in {path}: {e}")
                continue
            if self._failing:
                self._say("info", f"the serial's records in {path} work again")
                self._failing = False
            self._db, self.path = db, path
            return db
        if not self._failing:
            self._say("warn", "no usable state directory for the serial: it starts again at every start "
                              "(mirrors then sync in full)")
        self._failing = True
        return None

    def _failed(self, e: Exception) -> None:
        if not self._failing:
            self._say("error", f"the serial's records in {self.path} failed ({e}); the serial goes on in "
                               "memory and they are tried again at the next change (until then, a restart "
                               "may number a change again, and a mirror may miss it until its next)")
        self._failing = True
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None
        # Opened again at the next use: a full disk may have room again.
        self._opened = False

    # Reading

    def load(self) -> Stored:
        """The last serial, the horizon and each project's serial."""
        with self._lock:
            db = self._connection()
            if db is None:
                return Stored(0, 0, {}, True)
            try:
                row = db.execute("SELECT last, horizon FROM state").fetchone()
                projects = dict(db.execute("SELECT key, serial FROM projects"))
            except sqlite3.Error as e:
                self._failed(e)
                return Stored(0, 0, {}, True)
            if row is None:
                return Stored(0, 0, projects, True)
            return Stored(row[0], row[1], projects, False)

    def fingerprints(self) -> dict[str, Optional[str]]:
        """Each project's fingerprint, as last recorded."""
        with self._lock:
            db = self._connection()
            if db is None:
                return {}
            try:
                return dict(db.execute("SELECT key, fingerprint FROM projects"))
            except sqlite3.Error as e:
                self._failed(e)
                return {}

    def since(self, serial: int, last: int) -> ChangesSince:
        """The changes after C{serial} (see L{pypid.index.changes.since}) of an index at serial C{last}."""
        with self._lock:
            db = self._connection()
            if db is None:
                return ChangesSince((), False)
            try:
                row = db.execute("SELECT horizon FROM state").fetchone()
                horizon = row[0] if row is not None else 0
                rows = db.execute(
                    "SELECT serial, at, action, project, name, version, filename FROM changes"
                    " WHERE serial > ? ORDER BY rowid LIMIT ?", (serial, MAX_ANSWER + 1)).fetchall()
            except sqlite3.Error as e:
                self._failed(e)
                return ChangesSince((), False)
        complete = horizon <= serial <= last and len(rows) <= MAX_ANSWER
        return ChangesSince(tuple(Change(*row) for row in rows[:MAX_ANSWER]), complete)

    # Writing

    def record(
        self,
        serial: int,
        changes: Iterable[Change],
        projects: Mapping[str, Optional[ProjectRow]],
        horizon: Optional[int] = None,
    ) -> None:
        """
        In one transaction: C{serial} becomes the last serial, C{changes}
        are logged, and C{projects} (key: its row, or L{None} when it is
        gone) recorded. C{horizon}: a new horizon (a first start).
        """
        changes = list(changes)
        with self._lock:
            db = self._connection()
            if db is None:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "INSERT INTO state (id, last, horizon) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
                        " SET last = max(last, excluded.last), horizon = max(horizon, excluded.horizon)",
                        (serial, horizon if horizon is not None else 0))
                    db.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?)", changes)
                    db.executemany("DELETE FROM projects WHERE key = ?",
                                   [(key,) for key, row in projects.items() if row is None])
                    db.executemany(
                        "INSERT OR REPLACE INTO projects (key, serial, fingerprint) VALUES (?, ?, ?)",
                        [(key, row.serial, row.fingerprint) for key, row in projects.items() if row is not None])
                    rows = self._rows + len(changes)
                    if rows > self.keep + self.keep // 10:
                        rows = self._prune(db, rows)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                self._failed(e)
                return
            self._rows = rows

    def _prune(self, db: sqlite3.Connection, rows: int) -> int:
        """Drop the oldest changes down to L{keep}; the horizon moves up to the newest dropped."""
        excess = rows - self.keep
        (cut,) = db.execute("SELECT rowid FROM changes ORDER BY rowid LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()
        (dropped,) = db.execute("SELECT max(serial) FROM changes WHERE rowid <= ?", (cut,)).fetchone()
        db.execute("DELETE FROM changes WHERE rowid <= ?", (cut,))
        db.execute("UPDATE state SET horizon = max(horizon, ?)", (dropped,))
        return rows - excess

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None


def differences(
    projects: Mapping[str, Project], stored: Mapping[str, Optional[str]]
) -> tuple[dict[str, str], list[str]]:
    """
    The projects whose files are not what the book last recorded (with
    their fingerprints now), and the recorded projects that are gone.
    Blocking only by its CPU time: run it in a thread.
    """
    changed = {}
    for key, project in projects.items():
        now = fingerprint(project)
        if stored.get(key) != now:
            changed[key] = now
    gone = [key for key in stored if key not in projects]
    return changed, gone
