"""
HTTP Basic authentication in front of resources, over
L{pypid.auth.logins.Logins} (the password file's checks, with failed
logins limited per client address).

Missing or wrong credentials get 401 with a C{Basic} challenge: pip asks
for credentials (netrc, keyring, prompt) only after a 401, and uv after a
401, 403 or 404. 403 is kept for "logged in, but not allowed". A client
over its limit of failed logins gets 429 with C{Retry-After}, and its
password is not checked; 503 with C{Retry-After} when too many checks are
waiting.
"""

from __future__ import annotations

import binascii
from typing import Callable, Optional

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from pypid.auth.htpasswd import Busy
from pypid.auth.logins import Logins, TooManyFailures
from pypid.auth.tokens import refusal_text
from pypid.counts import counted
from pypid.web.errors import HTTPError, respond

REALM = b"pypid"


class LoginRefused(HTTPError, UnauthorizedLogin):
    """
    A login refused unchecked, answered with C{code} and C{Retry-After}:
    429 for a client over its limit of failed logins, 503 when too many
    checks are waiting. Also an L{UnauthorizedLogin}, so that a caller
    that knows only that still refuses the login.
    """

    def __init__(self, code: int, message: str, retry_after: int) -> None:
        super().__init__(code, message, ((b"Retry-After", b"%d" % retry_after),))
        self.retry_after = retry_after


class Authenticator:
    """Checks a request's C{Authorization: Basic} header with L{Logins}."""

    log = Logger()

    def __init__(self, logins: Logins, realm: bytes = REALM) -> None:
        self.logins = logins
        self.realm = realm

    @staticmethod
    def client(request) -> str:
        """The client's address (the one trusted proxies name) that failed logins count against."""
        return getattr(request.getClientAddress(), "host", None) or "-"

    def blocked(self, client: str) -> Optional[HTTPError]:
        """
        The 429 to answer at once when C{client} is over its limit of
        failed logins (before a body is read, say), else None.
        """
        retry = self.logins.retry_after(client)
        return None if retry is None else _too_many(retry)

    def credentials(self, request):
        """
        The request's username/password credentials, or None when it sent
        none; raises L{LoginFailed} when the header is malformed.
        """
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        scheme, _, value = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            raise LoginFailed("only Basic authentication is supported")
        try:
            decoded = binascii.a2b_base64(value.strip())
        except binascii.Error:
            raise LoginFailed("malformed Basic credentials")
        user, sep, password = decoded.partition(b":")
        if not sep:
            raise LoginFailed("malformed Basic credentials")
        return UsernamePassword(user, password)

    def authenticate(self, request) -> Deferred:
        """
        Fires with the user name (L{str}), or None when the request sent no
        credentials; fails with L{UnauthorizedLogin} for wrong ones, and
        with L{LoginRefused} (429 or 503, with C{Retry-After}) when they
        were not checked.
        """
        try:
            credentials = self.credentials(request)
        except LoginFailed as e:
            return fail(UnauthorizedLogin(str(e)))
        if credentials is None:
            return succeed(None)

        def unchecked(failure):
            if failure.check(TooManyFailures):
                raise _too_many(failure.value.retry_after)
            if failure.check(Busy):
                raise LoginRefused(
                    http.SERVICE_UNAVAILABLE,
                    "Service Unavailable: too many logins are being checked; try again shortly.",
                    failure.value.retry_after,
                )
            return failure

        d = self.logins.login(self.client(request), credentials.username, credentials.password, "http")
        return d.addErrback(unchecked)

    def challenge(self, message: str = "Unauthorized: log in with your user name and password.") -> HTTPError:
        """401 with a Basic challenge and C{message}."""
        return HTTPError(http.UNAUTHORIZED, message, ((b"www-authenticate", self.www_authenticate()),))

    def www_authenticate(self) -> bytes:
        """The C{WWW-Authenticate} value of this realm's Basic challenge."""
        return b'Basic realm="' + self.realm + b'", charset="UTF-8"'


class Guard(Resource):
    """
    Wraps a resource subtree: requests for which C{needs(postpath)} is true
    must carry valid credentials; the others pass straight through. The
    authenticated user name is left in C{request.pypid_user}.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, wrapped: Resource, authenticator: Authenticator,
                 needs: Callable[[list], bool] = lambda postpath: True) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.authenticator = authenticator
        self.needs = needs

    def render(self, request):
        if not self.needs(list(request.postpath)):
            return self._through(request)
        return respond(request, lambda: self.authenticator.authenticate(request).addCallbacks(
            lambda user: self._let_in(request, user), self._refused), cancel=False)

    def _let_in(self, request, user: Optional[str]):
        if getattr(request, "_disconnected", False):
            # The client left while its password was checked.
            return NOT_DONE_YET
        if user is None:
            raise self.authenticator.challenge()
        request.pypid_user = user
        return self._through(request)

    def _refused(self, failure):
        """A login refused: its own answer (429, 503), else the challenge."""
        if failure.check(HTTPError):
            return failure
        if not failure.check(UnauthorizedLogin, LoginFailed):
            self.log.failure("authentication failed", failure)
        raise self.authenticator.challenge(refusal_text(failure.value, "Unauthorized: wrong user name or password."))

    def _through(self, request):
        request.render(getChildForRequest(self.wrapped, request))
        return NOT_DONE_YET


def _too_many(retry_after: int) -> LoginRefused:
    return LoginRefused(
        429,
        f"Too Many Requests: too many failed logins from your address; try again in {counted(retry_after, 'second')}.",
        retry_after,
    )


def is_listing(postpath: list) -> bool:
    """Under C{/packages/}: the listing itself rather than a file."""
    return postpath in ([], [b""])
