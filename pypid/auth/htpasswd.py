"""
Passwords: a twisted.cred checker over an Apache-style htpasswd file.

The same L{HtpasswdChecker} serves HTTP Basic logins (uploads, protected
reads) and FTP logins. Hashes are checked with passlib in the reactor's
thread pool, never on the reactor thread (bcrypt costs ~0.1-0.3 s of CPU).
The file is re-read when it changes on disk: no restart is needed after
C{pypid passwd} or C{htpasswd}.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from typing import NamedTuple, Optional

# passlib 1.7.4 logs a traceback when it reads the version of bcrypt >= 4.1
# (which dropped __about__); the backend works. Keep that noise out of the log.
logging.getLogger("passlib.handlers.bcrypt").setLevel(logging.ERROR)
from passlib.apache import HtpasswdFile  # noqa: E402
from passlib.context import CryptContext
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

#: The hash formats accepted in the file: bcrypt ($2y$/$2b$/$2a$), SHA-512
#: and SHA-256 crypt ($6$, $5$), Apache's MD5 ($apr1$), MD5-crypt ($1$) and
#: {SHA}. Plain-text and DES-crypt entries are refused (Apache refuses
#: plain text on Unix too).
SCHEMES = ["bcrypt", "sha512_crypt", "sha256_crypt", "apr_md5_crypt", "md5_crypt", "ldap_sha1"]

CONTEXT = CryptContext(schemes=SCHEMES, default="bcrypt")

#: How long a successful check is remembered, so that clients sending Basic
#: credentials with every request (pip with -a download) do not pay bcrypt
#: each time. Forgotten at once when the file changes.
CACHE_SECONDS = 300.0
CACHE_SIZE = 1024

# A bcrypt hash of a random password, verified for unknown users so that
# their answer takes as long as a wrong password for a known one.
_DUMMY: Optional[str] = None


def _dummy_hash() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = CONTEXT.hash(secrets.token_hex(16))
    return _DUMMY


def _as_bytes(value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class _Loaded(NamedTuple):
    signature: Optional[tuple]
    users: Optional[HtpasswdFile]
    error: Optional[str]


class Outcome(NamedTuple):
    """What a check found, returned from the thread for logging on the reactor."""

    user: Optional[str]
    reloaded: bool
    users: int
    error: Optional[str]
    unknown_schemes: tuple


def _signature(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    An L{ICredentialsChecker} for L{IUsernamePassword} credentials over the
    htpasswd file at C{path}.

    C{requestAvatarId} fires with the user name as a L{str}, or fails with
    L{UnauthorizedLogin}. When the file cannot be read, every login fails
    (and the reason is logged) until it can.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, path: str, reactor, threadpool=None, clock=time.monotonic) -> None:
        self.path = os.path.abspath(path)
        self._reactor = reactor
        self._threadpool = threadpool
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded = _Loaded(None, None, None)
        self._logged_error: Optional[str] = None
        # Successful checks: keyed HMAC of user and password -> (user, expiry).
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[str, float, Optional[tuple]]] = {}

    # ICredentialsChecker

    def requestAvatarId(self, credentials) -> Deferred:
        username = getattr(credentials, "username", None)
        password = getattr(credentials, "password", None)
        if username is None or password is None:
            return self._fail()
        pool = self._threadpool or self._reactor.getThreadPool()
        d = deferToThreadPool(self._reactor, pool, self.check, _as_bytes(username), _as_bytes(password))
        d.addCallback(self._checked)
        return d

    # Blocking; runs in a thread.

    def check(self, username: bytes, password: bytes) -> Outcome:
        """Check one user name and password against the file (blocking)."""
        loaded, reloaded, unknown = self._load()
        count = len(loaded.users.users()) if loaded.users is not None else 0
        if loaded.users is None:
            return Outcome(None, reloaded, 0, loaded.error, unknown)
        try:
            user = username.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome(None, reloaded, count, None, unknown)
        key = hmac.new(self._key, username + b"\0" + password, hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached == (user, cached[1], loaded.signature) and cached[1] > now:
            return Outcome(user, reloaded, count, None, unknown)
        stored = loaded.users.get_hash(user) if ":" not in user and user else None
        if stored is None:
            CONTEXT.verify(password, _dummy_hash())
            return Outcome(None, reloaded, count, None, unknown)
        try:
            ok = CONTEXT.verify(password, stored)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            return Outcome(None, reloaded, count, None, unknown)
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            if self._loaded.signature == loaded.signature:
                self._cache[key] = (user, now + CACHE_SECONDS, loaded.signature)
        return Outcome(user, reloaded, count, None, unknown)

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
        unknown: list[str] = []
        try:
            if signature[0] == "error":
                raise OSError(signature[1], os.strerror(signature[1]))
            users = HtpasswdFile(self.path, context=CONTEXT)
            for user in users.users():
                stored = users.get_hash(user)
                if stored is None or CONTEXT.identify(stored, required=False) is None:
                    unknown.append(user)
            loaded = _Loaded(signature, users, None)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            loaded = _Loaded(signature, None, f"cannot read password file {self.path}: {e}")
        with self._lock:
            self._loaded = loaded
            self._cache.clear()
        return loaded, True, tuple(unknown)

    # Reactor thread

    def _checked(self, outcome: Outcome):
        if outcome.error is not None:
            if outcome.error != self._logged_error:
                self._logged_error = outcome.error
                self.log.error("{error}; every login fails until it is fixed", error=outcome.error)
        elif outcome.reloaded:
            self._logged_error = None
            self.log.info("read {count} users from {path}", count=outcome.users, path=self.path)
            for user in outcome.unknown_schemes:
                self.log.warn(
                    "user {user} in {path} has a password hash pypid does not accept "
                    "(use bcrypt: pypid passwd {path} {user})",
                    user=user,
                    path=self.path,
                )
        if outcome.user is None:
            raise UnauthorizedLogin("wrong user name or password")
        return outcome.user

    def _fail(self) -> Deferred:
        d: Deferred = Deferred()
        d.errback(UnauthorizedLogin("no user name or password"))
        return d
