"""
HTTP Basic authentication in front of resources, over a twisted.cred
checker (the L{pypid.auth.htpasswd.HtpasswdChecker}).

Missing or wrong credentials get 401 with a C{Basic} challenge: pip asks
for credentials (netrc, keyring, prompt) only after a 401, and uv after a
401, 403 or 404. 403 is kept for "logged in, but not allowed".
"""

from __future__ import annotations

import binascii
from typing import Callable, Optional

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from pypid.web.util import text_response

REALM = b"pypid"


class Authenticator:
    """Checks a request's C{Authorization: Basic} header with a checker."""

    log = Logger()

    def __init__(self, checker, realm: bytes = REALM) -> None:
        self.checker = checker
        self.realm = realm

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
        credentials; fails with L{UnauthorizedLogin} for wrong ones.
        """
        try:
            credentials = self.credentials(request)
        except LoginFailed as e:
            d: Deferred = Deferred()
            d.errback(UnauthorizedLogin(str(e)))
            return d
        if credentials is None:
            return succeed(None)
        return self.checker.requestAvatarId(credentials)

    def challenge(self, request, message: str = "Unauthorized: log in with your user name and password.") -> bytes:
        """Answer 401 with a Basic challenge."""
        request.setHeader(
            b"www-authenticate", b'Basic realm="' + self.realm + b'", charset="UTF-8"'
        )
        body = text_response(request, http.UNAUTHORIZED, message)
        request.setResponseCode(http.UNAUTHORIZED, message.split(":", 1)[0].encode("latin-1", "replace"))
        return body


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
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def ok(user: Optional[str]) -> None:
            if gone:
                return
            if user is None:
                self._finish(request, self.authenticator.challenge(request))
                return
            request.pypid_user = user
            self._through(request)

        def refused(failure) -> None:
            if gone:
                return
            if not failure.check(UnauthorizedLogin, LoginFailed):
                self.log.failure("authentication failed", failure)
            self._finish(request, self.authenticator.challenge(
                request, "Unauthorized: wrong user name or password."))

        self.authenticator.authenticate(request).addCallbacks(ok, refused)
        return NOT_DONE_YET

    def _through(self, request):
        request.render(getChildForRequest(self.wrapped, request))
        return NOT_DONE_YET

    @staticmethod
    def _finish(request, body: bytes) -> None:
        if body and request.method != b"HEAD":
            request.write(body)
        request.finish()


def is_listing(postpath: list) -> bool:
    """Under C{/packages/}: the listing itself rather than a file."""
    return postpath in ([], [b""])
