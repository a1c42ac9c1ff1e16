"""
Passwords: Apache-style htpasswd files, and a twisted.cred checker over one.

The same L{HtpasswdChecker} serves HTTP Basic logins (uploads, protected
reads) and FTP logins, through L{pypid.auth.logins.Logins}, which limits
failed logins per client. Hashes are checked in a thread (the L{Threads}
given: a small pool of their own), never on the reactor thread: bcrypt
costs about a quarter of a second of CPU. A successful check is remembered
for a while, and looked up on the reactor thread, so clients that send
their password with every request pay the hash once. The file is re-read
when it changes on disk (no restart after C{pypid passwd} or
C{htpasswd}), and that forgets every remembered check at once.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import NamedTuple, Optional

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pypid.auth import hashes
from pypid.counts import counted
from pypid.auth.hashes import PLAIN, Hashes
from pypid.threads import Threads, immediate

#: How long a successful check is remembered, so that clients sending Basic
#: credentials with every request (pip with -a download) do not pay bcrypt
#: each time. Forgotten at once when the file changes.
CACHE_SECONDS = 300.0
CACHE_SIZE = 1024
#: Checks waiting for (or in) the thread pool at most; beyond, a login is
#: refused at once with L{Busy} rather than queued.
MAX_PENDING = 32


class Busy(UnauthorizedLogin):
    """Too many password checks are under way: try again shortly."""

    retry_after = 2


class FileUnreadable(UnauthorizedLogin):
    """The password file cannot be read: no login can pass, through no fault of the client."""


class HtpasswdFile:
    """
    The lines of an htpasswd file: C{USER:HASH} entries, comments (C{#})
    and blank lines, kept in order so that a rewrite changes only the
    entries it touches. As Apache's C{mod_authn_file} reads it, the hash
    ends at the next C{:} and the first entry of a user counts. A line
    that is none of these makes the whole file invalid (L{ValueError}).
    """

    def __init__(self, lines: Optional[list[str]] = None) -> None:
        self.lines = list(lines or [])
        self._entries: dict[str, str] = {}
        self.duplicates: list[str] = []
        for number, line in enumerate(self.lines, 1):
            entry = _entry(line)
            if entry is None:
                if line.strip() and not line.lstrip().startswith("#"):
                    raise ValueError(f"line {number} is not USER:HASH")
                continue
            user, stored = entry
            if user in self._entries:
                self.duplicates.append(user)
            else:
                self._entries[user] = stored

    @classmethod
    def parse(cls, data: bytes) -> "HtpasswdFile":
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):
            text = text[1:]
        return cls([line.rstrip("\r") for line in text.split("\n")][: -1 if text.endswith("\n") else None])

    @classmethod
    def read(cls, path: str) -> "HtpasswdFile":
        with open(path, "rb") as f:
            return cls.parse(f.read())

    def users(self) -> list[str]:
        return list(self._entries)

    def get_hash(self, user: str) -> Optional[str]:
        return self._entries.get(user)

    def set_hash(self, user: str, stored: str) -> None:
        """Set C{user}'s entry, in place when it has one, else at the end."""
        line = f"{user}:{stored}"
        for index, existing in enumerate(self.lines):
            entry = _entry(existing)
            if entry is not None and entry[0] == user:
                self.lines[index] = line
                # Later duplicates would be dead entries with another password.
                self.lines[index + 1:] = [l for l in self.lines[index + 1:] if (_entry(l) or ("",))[0] != user]
                break
        else:
            self.lines.append(line)
        self._entries[user] = stored
        self.duplicates = [u for u in self.duplicates if u != user]

    def delete(self, user: str) -> bool:
        """Remove every entry of C{user}; whether there was one."""
        kept = [l for l in self.lines if (_entry(l) or ("",))[0] != user]
        found = len(kept) != len(self.lines)
        self.lines = kept
        self._entries.pop(user, None)
        return found

    def to_string(self) -> bytes:
        return "".join(line + "\n" for line in self.lines).encode("utf-8")


def _entry(line: str) -> Optional[tuple[str, str]]:
    if line.lstrip().startswith("#") or ":" not in line:
        return None
    user, _, rest = line.partition(":")
    if not user:
        return None
    return user, rest.split(":", 1)[0].strip()


class _Loaded(NamedTuple):
    signature: Optional[tuple]
    users: Optional[HtpasswdFile]
    error: Optional[str]
    #: The cost of the file's first bcrypt entry (what an unknown user's check costs too).
    cost: int = hashes.ROUNDS


class Outcome(NamedTuple):
    """What a check found, returned from the thread for logging on the reactor."""

    user: Optional[str]
    reloaded: bool
    users: int
    error: Optional[str]
    #: (user, why) for entries that can never match, and plain-text ones.
    notes: tuple


def _signature(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _as_bytes(value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    An L{ICredentialsChecker} for L{IUsernamePassword} credentials over the
    htpasswd file at C{path}.

    C{requestAvatarId} fires with the user name as a L{str}, or fails with
    L{UnauthorizedLogin} (L{Busy} when too many checks are waiting). When
    the file cannot be read, every login fails (and the reason is logged)
    until it can.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, path: str, threads: Threads = immediate, clock=time.monotonic,
                 hashes: Optional[Hashes] = None, max_pending: int = MAX_PENDING) -> None:
        self.path = os.path.abspath(path)
        self._threads = threads
        self._clock = clock
        self._hashes = hashes
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._loaded = _Loaded(None, None, None)
        self._logged_error: Optional[str] = None
        # Successful checks: keyed HMAC of user and password -> (user, expiry, file signature).
        self._key = secrets.token_bytes(32)
        self._cache: collections.OrderedDict[bytes, tuple[str, float, Optional[tuple]]] = collections.OrderedDict()
        # Checks under way, by key: the Deferreds waiting for each.
        self._pending: dict[bytes, list[Deferred]] = {}
        self._dummy: Optional[str] = None

    @property
    def hashes(self) -> Hashes:
        if self._hashes is None:
            self._hashes = hashes.default()
        return self._hashes

    # ICredentialsChecker

    def requestAvatarId(self, credentials) -> Deferred:
        username = getattr(credentials, "username", None)
        password = getattr(credentials, "password", None)
        if username is None or password is None:
            return fail(UnauthorizedLogin("no user name or password"))
        username, password = _as_bytes(username), _as_bytes(password)
        user = self.cached(username, password)
        if user is not None:
            return succeed(user)
        return self.verify(username, password)

    # Reactor thread

    def cached(self, username: bytes, password: bytes) -> Optional[str]:
        """
        The user name when this user name and password were checked
        successfully a short while ago against the file as it is now (one
        C{stat}, no hash); else None.
        """
        key = self._cache_key(username, password)
        with self._lock:
            hit = self._cache.get(key)
            signature = self._loaded.signature
        if hit is None or hit[1] <= self._clock() or hit[2] != signature:
            return None
        try:
            if _signature(self.path) != signature:
                return None
        except OSError:
            return None
        return hit[0]

    def verify(self, username: bytes, password: bytes) -> Deferred:
        """
        Check in a thread: fires with the user name, or fails with
        L{UnauthorizedLogin}. Concurrent checks of the same user name and
        password share one hash.
        """
        key = self._cache_key(username, password)
        mine: Deferred = Deferred()
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        if len(self._pending) >= self._max_pending:
            return fail(Busy("too many logins are being checked; try again shortly"))
        self._pending[key] = [mine]
        self._threads(self.check, username, password).addBoth(self._done, key)
        return mine

    def _done(self, result, key: bytes) -> None:
        waiting = self._pending.pop(key, [])
        if isinstance(result, Outcome):
            try:
                result = self._checked(result)
            except UnauthorizedLogin as e:
                for d in waiting:
                    d.errback(type(e)(str(e)))
                return
        for d in waiting:
            if isinstance(result, str):
                d.callback(result)
            else:
                d.errback(result)

    def _checked(self, outcome: Outcome) -> str:
        if outcome.error is not None:
            if outcome.error != self._logged_error:
                self._logged_error = outcome.error
                self.log.error("{error}; every login fails until it is fixed", error=outcome.error)
        elif outcome.reloaded:
            self._logged_error = None
            self.log.info("read {users} from {path}", users=counted(outcome.users, "user"), path=self.path)
            for user, why in outcome.notes:
                if why == PLAIN:
                    self.log.warn(
                        "user {user} in {path} has a plain-text password; replace it with a hash: "
                        "pypid passwd {path} {user}", user=user, path=self.path)
                else:
                    self.log.warn(
                        "user {user} in {path} cannot log in: its entry is {why} "
                        "(make a new one: pypid passwd {path} {user})", user=user, path=self.path, why=why)
        if outcome.error is not None:
            raise FileUnreadable("the password file cannot be read")
        if outcome.user is None:
            raise UnauthorizedLogin("wrong user name or password")
        return outcome.user

    def file_signature(self) -> tuple:
        """The password file's signature now (one C{stat}): it changes whenever the file does."""
        try:
            return _signature(self.path)
        except OSError as e:
            return ("error", e.errno)

    # Blocking; runs in a thread.

    def has_user(self, user: str) -> bool:
        """Whether the password file, as it is now, has an entry for C{user} (API tokens act for one)."""
        loaded, _, _ = self._load()
        return loaded.users is not None and loaded.users.get_hash(user) is not None

    def check(self, username: bytes, password: bytes) -> Outcome:
        """Check one user name and password against the file (blocking)."""
        loaded, reloaded, notes = self._load()
        if loaded.users is None:
            return Outcome(None, reloaded, 0, loaded.error, notes)
        count = len(loaded.users.users())
        try:
            user = username.decode("utf-8")
        except UnicodeDecodeError:
            user = ""
        stored = loaded.users.get_hash(user) if user and ":" not in user else None
        if stored is None:
            self._dummy_check(password, loaded.cost)
            return Outcome(None, reloaded, count, None, notes)
        try:
            ok = self.hashes.verify(password, stored)
        except hashes.NoBackend:
            ok = False
        if not ok:
            return Outcome(None, reloaded, count, None, notes)
        key = self._cache_key(username, password)
        with self._lock:
            # Remembered only under the file it was checked against, and
            # only while that is still the file in use.
            if self._loaded.signature == loaded.signature:
                self._cache[key] = (user, self._clock() + CACHE_SECONDS, loaded.signature)
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return Outcome(user, reloaded, count, None, notes)

    def _dummy_check(self, password: bytes, cost: int) -> None:
        """Spend about as long as a check of the file's bcrypt entries (for unknown users)."""
        try:
            dummy = self._dummy
            if dummy is None or dummy[4:6] != "%02d" % cost:
                dummy = self._dummy = self.hashes.hash_bcrypt(secrets.token_hex(16).encode(), cost)
            self.hashes.verify(password, dummy)
        except (hashes.NoBackend, ValueError):
            pass

    def _load(self) -> tuple[_Loaded, bool, tuple]:
        """The file's users, re-read when its signature changed."""
        try:
            signature = _signature(self.path)
        except OSError as e:
            signature = ("error", e.errno)
        with self._lock:
            loaded = self._loaded
            if signature == loaded.signature:
                return loaded, False, ()
        notes: list[tuple[str, str]] = []
        try:
            if signature[0] == "error":
                raise OSError(signature[1], os.strerror(signature[1]))
            users = HtpasswdFile.read(self.path)
            cost = None
            for user in users.users():
                stored = users.get_hash(user) or ""
                if cost is None and hashes.identify(stored)[0] == hashes.BCRYPT and stored[4:6].isdigit():
                    cost = min(max(int(stored[4:6]), 4), 31)
                why = self.hashes.problem(stored)
                if why is not None:
                    notes.append((user, why))
                elif hashes.identify(stored)[0] == PLAIN:
                    notes.append((user, PLAIN))
            loaded = _Loaded(signature, users, None, cost or hashes.ROUNDS)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            loaded = _Loaded(signature, None, f"cannot read password file {self.path}: {e}")
        with self._lock:
            self._loaded = loaded
            self._cache.clear()
        return loaded, True, tuple(notes)

    def _cache_key(self, username: bytes, password: bytes) -> bytes:
        message = len(username).to_bytes(4, "big") + username + password
        return hmac.new(self._key, message, hashlib.sha256).digest()

