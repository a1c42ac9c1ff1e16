"""
Logins: the password checks of HTTP Basic and FTP (and of API tokens,
sent as the password of the user C{__token__}), with failed logins limited
per client address.

L{Logins.login} is the one way a password is checked: a client over its
limit of failed logins (L{pypid.auth.limiter}) is refused with
L{TooManyFailures} and no check at all; a user name and password that
passed a short while ago pass at once (on the reactor thread, no hash);
anything else is checked in the password checks' own small thread pool
(L{PasswordPool}), so a flood of wrong passwords neither stalls the
reactor nor takes the threads that other work needs. Every failed login
is one line of the C{pypid.audit} log, with the attempted user name.
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pypid.auth.htpasswd import Busy, FileUnreadable, HtpasswdChecker
from pypid.auth.limiter import FailureLimiter, client_key
from pypid.auth.tokens import NOT_ENABLED, USER as TOKEN_USER, TokenRefused, Tokens
from pypid.counts import counted
from pypid.threads import Threads, pool_threads

audit = Logger(namespace="pypid.audit")
log = Logger(namespace="pypid.auth.tokens")

#: Longest user name shown in a log line (after escaping), in characters.
SHOWN_USER = 64
#: Seconds before a blocked client is told so: a client that asks again as
#: soon as it is answered then costs the server a request a second per
#: connection, not thousands.
REFUSAL_DELAY = 1.0


class TooManyFailures(UnauthorizedLogin):
    """A client over its limit of failed logins: refused unchecked until C{retry_after} seconds pass."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins from this address; try again in {counted(retry_after, 'second')}")
        self.retry_after = retry_after


def shown_user(raw) -> str:
    """
    A user name as a log line shows it: printable characters as they are,
    everything else (spaces, controls, bytes that are not UTF-8, the
    backslash itself) escaped, cut at L{SHOWN_USER} characters.
    """
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, (bytes, bytearray)) else str(raw)
    if not text:
        return '""'
    out: list[str] = []
    size = 0
    for c in text:
        if "\udc80" <= c <= "\udcff":
            piece = "\\x%02x" % (ord(c) - 0xDC00)
        elif c == "\\":
            piece = "\\\\"
        elif c.isprintable() and not c.isspace() and c not in "\"'=":
            piece = c
        else:
            piece = c.encode("unicode_escape").decode("ascii")
            if piece == c:
                piece = "\\x%02x" % ord(c)
        if size + len(piece) > SHOWN_USER:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


class Logins:
    """
    Checks user names and passwords for clients at given addresses. With
    a C{clock} (an L{IReactorTime}), refusals of blocked clients come
    L{REFUSAL_DELAY} seconds late; without one, at once.
    """

    def __init__(self, checker: HtpasswdChecker, limiter: FailureLimiter, clock=None,
                 refusal_delay: float = REFUSAL_DELAY, tokens: Optional[Tokens] = None) -> None:
        """@param tokens: the API tokens (C{--tokens}), checked for the user name C{__token__}."""
        self.checker = checker
        self.limiter = limiter
        self._clock = clock
        self.refusal_delay = refusal_delay
        self.tokens = tokens

    def later(self, error: Exception) -> Deferred:
        """A Deferred failing with C{error} after the refusal delay."""
        if self._clock is None or self.refusal_delay <= 0:
            return fail(error)
        d: Deferred = Deferred()
        self._clock.callLater(self.refusal_delay, d.errback, error)
        return d

    def retry_after(self, client: str) -> Optional[int]:
        """Seconds until C{client} may try to log in again, or None when it may now."""
        return self.limiter.retry_after(client_key(client))

    def login(self, client: str, username, password, service: str = "http") -> Deferred:
        """
        Fires with the user name (a L{str}); fails with L{TooManyFailures}
        for a client over its limit, L{Busy} when too many checks are
        waiting, L{UnauthorizedLogin} for a wrong user name or password.
        """
        username = username.encode("utf-8") if isinstance(username, str) else bytes(username)
        password = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        key = client_key(client)
        retry = self.limiter.retry_after(key)
        if retry is not None:
            return self.later(TooManyFailures(retry))
        token = username == TOKEN_USER.encode("ascii")
        user: Optional[str]  # (a TokenUser is a str)
        if token:
            user = self.tokens.cached(password) if self.tokens is not None else None
        else:
            user = self.checker.cached(username, password)
        if user is not None:
            return succeed(user)
        retry = self.limiter.reserve(key)
        if retry is not None:
            return self.later(TooManyFailures(retry))

        def passed(user: str) -> str:
            self.limiter.refund(key)
            return user

        def refused(failure):
            if failure.check(Busy, FileUnreadable):
                # Not the client's failure: nothing was checked (the
                # unreadable file is logged by the checker).
                self.limiter.refund(key)
                return failure
            failure.trap(UnauthorizedLogin)
            if failure.check(TokenRefused):
                audit.info(
                    "login refused user={user} token={token} client={client} service={service}: {why}",
                    user=TOKEN_USER, token=failure.value.token_id, client=client, service=service,
                    why=failure.value.client_message.split(": ", 1)[-1],
                )
            else:
                audit.info(
                    "login refused user={user} client={client} service={service}: wrong user name or password",
                    user=shown_user(username), client=client, service=service,
                )
            retry = self.limiter.retry_after(key)
            if retry is not None:
                audit.info(
                    "login blocked client={client} service={service}: {count} failed logins, "
                    "refused unchecked for {retry} s",
                    client=key, service=service, count=self.limiter.failures, retry=retry,
                )
            return failure

        if token:
            d = self._check_token(password)
        else:
            d = self.checker.verify(username, password)
        return d.addCallbacks(passed, refused)

    def _check_token(self, password: bytes) -> Deferred:
        """An API token's check (in the password checks' pool); its file's news logged here."""
        tokens = self.tokens
        if tokens is None:
            return fail(TokenRefused(NOT_ENABLED))

        def notes(result):
            while tokens.notes:
                level, text = tokens.notes.pop(0)
                getattr(log, level)("{text}", text=text)
            return result

        return tokens.verify(password).addBoth(notes)

    def checker_for(self, client: str, service: str) -> ICredentialsChecker:
        """A twisted.cred checker of this client's logins (for FTP's portal)."""
        return _ClientChecker(self, client, service)


@implementer(ICredentialsChecker)
class _ClientChecker:
    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, logins: Logins, client: str, service: str) -> None:
        self.logins = logins
        self.client = client
        self.service = service

    def requestAvatarId(self, credentials) -> Deferred:
        return self.logins.login(self.client, credentials.username, credentials.password, self.service)


def pool_size() -> int:
    """Threads of the password checks: one core is left to the reactor."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class PasswordPool(Service):
    """The password checks' own bounded thread pool, started and stopped with the daemon."""

    name = "passwords"  # type: ignore[assignment]  # Service declares name None

    def __init__(self, reactor, size: Optional[int] = None) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=size or pool_size(), name="pypid-passwords")
        self.threads: Threads = pool_threads(reactor, self.pool)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self):
        super().stopService()
        self.pool.stop()


def start_logins(path: str, reactor, tokens_path: Optional[str] = None) -> "tuple[Logins, PasswordPool]":
    """
    The logins of the password file at C{path} (and of the API tokens of
    C{tokens_path}, acting for its users), and the service owning their
    thread pool (the caller names and attaches it).
    """
    pool = PasswordPool(reactor)
    checker = HtpasswdChecker(path, pool.threads, clock=reactor.seconds)
    tokens = None
    if tokens_path is not None:
        tokens = Tokens(tokens_path, pool.threads, clock=reactor.seconds, user_exists=checker.has_user,
                        users_signature=checker.file_signature)
    return Logins(checker, FailureLimiter(reactor.seconds), clock=reactor, tokens=tokens), pool
