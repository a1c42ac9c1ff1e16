"""
API tokens: what twine, uv publish and poetry send as the password of the
user C{__token__}, each acting for one user of the password file, within a
scope (project globs and actions), until it expires or is revoked.

A token is C{pypid-}, a 12-character id, a 40-character secret and a
7-character checksum, all in lower-case base32 (65 characters): the prefix
lets secret scanners find leaked ones, the checksum tells a mistyped token
from a wrong one without a lookup. The tokens file (C{--tokens FILE},
written by C{pypid token}) keeps each token's id, owner, scope and dates,
and the SHA-256 of its secret, never the secret itself (200 random bits:
a fast hash is enough, as it is for the public index's tokens). Times of
last use go to a file beside it, C{FILE.last-used}, written by the server
at most once a minute.

Checks go through L{pypid.auth.logins.Logins}, like passwords: a client's
failed logins are limited the same way, a check that needs the files runs
in the password checks' thread pool, and a token checked a short while ago
passes on the reactor thread with two C{stat}s. Refusals say why
(malformed, invalid, revoked, expired) without ever telling whether a token
exists: a revoked or expired token is named so only to whoever sends its
whole secret.
"""

from __future__ import annotations

import base64
import binascii
import collections
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable, NamedTuple, Optional

from twisted.application.service import Service
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pypid.atomic import replacing
from pypid.threads import Threads, immediate

PREFIX = "pypid-"
USER = "__token__"
ID_LENGTH = 12
SECRET_LENGTH = 40
CHECK_LENGTH = 7
TOKEN_LENGTH = len(PREFIX) + ID_LENGTH + SECRET_LENGTH + CHECK_LENGTH
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TOKEN = re.compile(rf"^{PREFIX}[a-z2-7]{{{ID_LENGTH + SECRET_LENGTH + CHECK_LENGTH}}}\Z")

#: What a token may do. C{upload} is the default.
ACTIONS = ("upload", "remove", "yank", "read")
DEFAULT_ACTIONS = ("upload",)
#: Longest token name.
MAX_NAME = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")

#: Seconds a successful check is remembered (the files' changes forget it at once).
CACHE_SECONDS = 300.0
CACHE_SIZE = 1024
#: Seconds between writes of the last-used times.
USED_FLUSH = 60.0

HEADER = (
    "# pypid API tokens, one JSON object a line; written by 'pypid token'. Only the\n"
    "# SHA-256 of each token's secret is kept: a lost token cannot be shown again.\n"
)

NOT_ENABLED = "Unauthorized: this server takes no API tokens (it runs without --tokens)."
MALFORMED = f"Unauthorized: malformed API token (a pypid token is {TOKEN_LENGTH} characters starting with '{PREFIX}')."
INVALID = "Unauthorized: invalid API token."


class TokenRefused(UnauthorizedLogin):
    """A token login refused; C{client_message} says why, fit to show the client."""

    def __init__(self, client_message: str, token_id: str = "-") -> None:
        super().__init__(client_message)
        self.client_message = client_message
        self.token_id = token_id


class TokenFileError(ValueError):
    """The tokens file cannot be used."""


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _checksum(body: str) -> str:
    return _b32(binascii.crc32((PREFIX + body).encode("ascii")).to_bytes(4, "big"))[:CHECK_LENGTH]


def new_token() -> tuple[str, str, str]:
    """A new token: (token, id, SHA-256 of its secret)."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    body = token_id + secret
    return PREFIX + body + _checksum(body), token_id, secret_hash(secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def split_token(token: str) -> Optional[tuple[str, str]]:
    """(id, secret) of a well-formed token, or L{None}."""
    if len(token) != TOKEN_LENGTH or not _TOKEN.match(token):
        return None
    body, check = token[len(PREFIX):-CHECK_LENGTH], token[-CHECK_LENGTH:]
    if not hmac.compare_digest(check, _checksum(body)):
        return None
    return body[:ID_LENGTH], body[ID_LENGTH:]


def _pattern(text: str) -> str:
    # Normalised like a project name, glob characters left alone (as the ACL does).
    return re.sub(r"[-_.]+", "-", text).lower()


def _stamp(seconds: Optional[float]) -> Optional[str]:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


class Token(NamedTuple):
    """One token of the file (never its secret)."""

    id: str
    name: str
    user: str
    #: Globs on normalised project names.
    projects: tuple[str, ...]
    actions: frozenset[str]
    created: float
    expires: Optional[float]
    revoked: Optional[float]
    sha256: str

    def covers(self, project: Optional[str]) -> bool:
        """Whether the scope covers C{project} (L{None}: every project, which only C{*} does)."""
        if project is None:
            return "*" in self.projects
        return any(fnmatch.fnmatchcase(project, p) for p in self.projects)

    def allows(self, action: str, project: Optional[str]) -> bool:
        return action in self.actions and self.covers(project)

    def scope(self) -> str:
        """C{upload,remove on acme-*, tools-*}."""
        actions = ",".join(a for a in ACTIONS if a in self.actions)
        return f"{actions} on {', '.join(self.projects)}"

    def shown(self) -> str:
        """How audit lines name it: C{ci:abcdefghijkl}."""
        return f"{self.name}:{self.id}"

    def to_json(self) -> str:
        return json.dumps({
            "id": self.id, "name": self.name, "user": self.user, "projects": list(self.projects),
            "actions": [a for a in ACTIONS if a in self.actions], "created": _stamp(self.created),
            "expires": _stamp(self.expires), "revoked": _stamp(self.revoked), "sha256": self.sha256,
        }, separators=(", ", ": "))


def _token_from(line: str) -> Token:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    actions = frozenset(data["actions"])
    if not actions <= set(ACTIONS):
        raise ValueError(f"unknown actions {sorted(actions - set(ACTIONS))}")
    projects = tuple(_pattern(p) for p in data["projects"])
    if not projects or not all(isinstance(p, str) and p for p in projects):
        raise ValueError("no projects")
    sha = data["sha256"]
    if not isinstance(sha, str) or not re.match(r"^[0-9a-f]{64}\Z", sha):
        raise ValueError("bad sha256")
    token_id = data["id"]
    if not isinstance(token_id, str) or len(token_id) != ID_LENGTH:
        raise ValueError("bad id")
    return Token(token_id, str(data["name"]), str(data["user"]), projects, actions,
                 _parse_stamp(data["created"]) or 0.0, _parse_stamp(data.get("expires")),
                 _parse_stamp(data.get("revoked")), sha)


class TokenFile:
    """The tokens file's lines: comments kept, one token per JSON line."""

    def __init__(self, lines: Optional[list[str]] = None) -> None:
        self.lines = list(lines if lines is not None else HEADER.splitlines())
        #: (line number, why) of the lines that are no token.
        self.problems: list[tuple[int, str]] = []
        self.tokens: list[Token] = []
        for number, line in enumerate(self.lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                self.tokens.append(_token_from(line))
            except (ValueError, KeyError, TypeError) as e:
                self.problems.append((number, str(e) or type(e).__name__))

    @classmethod
    def read(cls, path: str, missing_ok: bool = True) -> "TokenFile":
        """Blocking. A missing file holds no tokens (when C{missing_ok})."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            if missing_ok:
                return cls()
            raise
        except UnicodeDecodeError as e:
            raise TokenFileError(f"{path} is not UTF-8: {e}")

    def by_id(self) -> dict[str, Token]:
        return {t.id: t for t in self.tokens}

    def add(self, token: Token) -> None:
        self.lines.append(token.to_json())
        self.tokens.append(token)

    def replace(self, token: Token) -> None:
        """Put C{token} in place of the line of the token with its id."""
        for index, line in enumerate(self.lines):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    if json.loads(line).get("id") == token.id:
                        self.lines[index] = token.to_json()
                except (ValueError, AttributeError):
                    continue
        self.tokens = [token if t.id == token.id else t for t in self.tokens]

    def write(self, path: str) -> None:
        """Replace the file atomically (mode 0640: it names users and scopes)."""
        with replacing(path, prefix=".pypid-tokens-", suffix=".tmp", mode=0o640, text=True, keep_owner=True) as f:
            f.write("".join(line + "\n" for line in self.lines))


class TokenUser(str):
    """A user name logged in with an API token: the L{Token} rides along as C{token}."""

    token: Token

    def __new__(cls, token: Token) -> "TokenUser":
        self = super().__new__(cls, token.user)
        self.token = token
        return self


def refusal_text(error: Exception, default: str) -> str:
    """What to tell a client whose login was refused: a token's own reason, else C{default}."""
    message = getattr(error, "client_message", None)
    return message if isinstance(message, str) else default


def scope_refusal(user: str, project: Optional[str], action: str) -> Optional[str]:
    """
    Why C{user} may not do C{action} on C{project} (L{None}: every project)
    when it logged in with a token whose scope does not cover it; else L{None}.
    """
    token: Optional[Token] = getattr(user, "token", None)
    if token is None or token.allows(action, project):
        return None
    what = {"upload": "upload to", "remove": "remove from", "yank": "yank or unyank in", "read": "read"}[action]
    target = project if project is not None else "the index as a whole (only a token for every project, '*', may)"
    return f"Forbidden: API token '{token.name}' may not {what} {target} (its scope: {token.scope()})."


def parse_expiry(text: str, now: float) -> Optional[float]:
    """
    C{30d}, C{12h}, C{2w}, C{90m} from now; C{YYYY-MM-DD} (the end of that
    day, UTC); C{never}. Raises L{ValueError}.
    """
    text = text.strip().lower()
    if text in ("never", "none", ""):
        return None
    match = re.match(r"^(\d+)\s*([mhdw])\Z", text)
    if match:
        seconds = int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
        if seconds <= 0:
            raise ValueError("a token must live for some time")
        return now + seconds
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"{text!r} is not 30d, 12h, 2w, 90m, YYYY-MM-DD or never")
    end = day.timestamp() + 86400
    if end <= now:
        raise ValueError(f"{text} is in the past")
    return end


def check_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise ValueError(f"token name {name!r}: letters, digits, '.', '_' and '-', at most {MAX_NAME}")
    return name


def _signature(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as e:
        return ("missing", e.errno)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_last_used(path: str) -> dict[str, float]:
    """The last-used times by token id (blocking; empty when unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    for token_id, stamp in data.items() if isinstance(data, dict) else ():
        try:
            parsed = _parse_stamp(stamp)
        except (TypeError, ValueError):
            continue
        if parsed is not None:
            out[token_id] = parsed
    return out


def last_used_path(path: str) -> str:
    return path + ".last-used"


class _Loaded(NamedTuple):
    signature: Optional[tuple]
    tokens: dict[str, Token]
    error: Optional[str]


class Tokens:
    """
    The tokens of the file at C{path}, for logins: L{cached} on the reactor
    thread, L{verify} in C{threads} (the password checks' pool).

    @param user_exists: whether a user is still in the password file
        (blocking; its signature is L{users_signature}).
    """

    def __init__(self, path: str, threads: Threads = immediate, clock: Callable[[], float] = time.time,
                 user_exists: Callable[[str], bool] = lambda user: True,
                 users_signature: Callable[[], object] = lambda: None) -> None:
        self.path = os.path.abspath(path)
        self.used_path = last_used_path(self.path)
        self._threads = threads
        self._clock = clock
        self._user_exists = user_exists
        self._users_signature = users_signature
        self._lock = threading.Lock()
        self._loaded = _Loaded(None, {}, None)
        self._key = secrets.token_bytes(32)
        #: keyed HMAC of the token -> (user, until, tokens file signature, password file signature)
        self._cache: collections.OrderedDict[bytes, tuple] = collections.OrderedDict()
        #: Last uses not yet written: id -> time.
        self._used: dict[str, float] = {}
        #: Messages for the reactor's log: (level, text).
        self.notes: list[tuple[str, str]] = []
        self._dummy = secret_hash("x" * SECRET_LENGTH)

    def _cache_key(self, token: bytes) -> bytes:
        return hmac.new(self._key, token, hashlib.sha256).digest()

    # Reactor thread

    def cached(self, token: bytes) -> Optional[TokenUser]:
        """The user of C{token} when it passed a short while ago and nothing changed since (two stats)."""
        key = self._cache_key(token)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            return None
        user, until, signature, users = hit
        now = self._clock()
        expires = user.token.expires
        if until <= now or (expires is not None and expires <= now):
            return None
        if _signature(self.path) != signature or self._users_signature() != users:
            return None
        self.used(user.token)
        return user

    def verify(self, token: bytes) -> Deferred:
        """In the pool: fires with a L{TokenUser}, or fails with L{TokenRefused}."""
        return self._threads(self.check, token)

    def used(self, token: Token) -> None:
        with self._lock:
            self._used[token.id] = self._clock()

    # Blocking

    def _load(self) -> _Loaded:
        signature = _signature(self.path)
        with self._lock:
            if signature == self._loaded.signature:
                return self._loaded
        try:
            read = TokenFile.read(self.path)
            tokens = read.by_id()
            loaded = _Loaded(signature, tokens, None)
            notes = [("warn", f"{self.path} line {n}: not a token ({why}); ignored") for n, why in read.problems]
            notes.append(("info", f"read {len(tokens)} API token{'s' if len(tokens) != 1 else ''} from {self.path}"))
        except (OSError, TokenFileError) as e:
            error = f"cannot read the tokens file {self.path}: {e}"
            loaded = _Loaded(signature, {}, error)
            notes = [("error", error + "; every token login fails until it is fixed")]
        with self._lock:
            self._loaded = loaded
            self._cache.clear()
            self.notes.extend(notes)
        return loaded

    def check(self, raw: bytes) -> TokenUser:
        """Check a token against the files (blocking)."""
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise TokenRefused(MALFORMED)
        parts = split_token(text)
        if parts is None:
            raise TokenRefused(MALFORMED)
        token_id, secret = parts
        users_signature = self._users_signature()
        loaded = self._load()
        token = loaded.tokens.get(token_id)
        digest = secret_hash(secret)
        matches = hmac.compare_digest(digest, token.sha256 if token is not None else self._dummy)
        if token is None or not matches:
            raise TokenRefused(INVALID, token_id)
        if token.revoked is not None:
            raise TokenRefused(f"Unauthorized: this API token ('{token.name}') was revoked.", token_id)
        now = self._clock()
        if token.expires is not None and token.expires <= now:
            raise TokenRefused(f"Unauthorized: this API token ('{token.name}') expired on {_stamp(token.expires)}.",
                               token_id)
        if not self._user_exists(token.user):
            raise TokenRefused(f"Unauthorized: the user of this API token ('{token.name}') can no longer log in.",
                               token_id)
        user = TokenUser(token)
        key = self._cache_key(text.encode("ascii"))
        with self._lock:
            if self._loaded.signature == loaded.signature:
                self._cache[key] = (user, now + CACHE_SECONDS, loaded.signature, users_signature)
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        self.used(token)
        return user

    def flush_used(self) -> Optional[str]:
        """
        Write the last-used times that changed (blocking): merged into
        C{FILE.last-used}. Returns why it failed, if it did.
        """
        with self._lock:
            pending, self._used = self._used, {}
        if not pending:
            return None
        times = read_last_used(self.used_path)
        times.update(pending)
        try:
            with replacing(self.used_path, prefix=".pypid-tokens-used-", suffix=".tmp", mode=0o640, text=True) as f:
                json.dump({k: _stamp(v) for k, v in sorted(times.items())}, f, indent=0)
                f.write("\n")
        except OSError as e:
            # Kept for the next try.
            with self._lock:
                for token_id, when in pending.items():
                    self._used.setdefault(token_id, when)
            return f"cannot record when API tokens were last used in {self.used_path}: {e.strerror or e}"
        return None


def describe(tokens: Iterable[Token], last_used: dict[str, float], now: float) -> list[list[str]]:
    """The rows of C{pypid token list}."""
    rows = [["ID", "NAME", "USER", "PROJECTS", "ACTIONS", "CREATED", "EXPIRES", "LAST USED", "STATUS"]]
    for t in tokens:
        if t.revoked is not None:
            status = "revoked " + (_stamp(t.revoked) or "")[:10]
        elif t.expires is not None and t.expires <= now:
            status = "expired"
        else:
            status = "active"
        rows.append([
            t.id, t.name, t.user, ",".join(t.projects), ",".join(a for a in ACTIONS if a in t.actions),
            (_stamp(t.created) or "-")[:10], (_stamp(t.expires) or "never")[:16].replace("T", " "),
            (_stamp(last_used.get(t.id)) or "never")[:16].replace("T", " "), status,
        ])
    return rows


class TokenUses(Service):
    """Writes the tokens' last-used times every L{USED_FLUSH} seconds (in C{threads}), and at stop."""

    log = Logger()

    def __init__(self, tokens: Tokens, reactor, threads: Threads, interval: float = USED_FLUSH) -> None:
        self.tokens = tokens
        self.threads = threads
        self.interval = interval
        self._loop = LoopingCall(self.flush)
        self._loop.clock = reactor
        self._complained: Optional[str] = None

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self.flush()

    def flush(self) -> Deferred:
        def done(error: Optional[str]) -> None:
            if error is not None and error != self._complained:
                self.log.warn("{error}; they are kept in memory meanwhile", error=error)
            self._complained = error

        return self.threads(self.tokens.flush_used).addCallback(done)
