"""
Reads with an API token (C{-a download} or C{-a list} with C{--tokens}):
the token must allow C{read}, and its project globs must cover the
project the request is about. Requests about the whole index (the project
list, C{/packages/}, search) need a token for every project (C{*}).
L{ReadScope} checks it behind the read guard.
"""

from __future__ import annotations

from typing import Optional

from twisted.web import http
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from pypid.auth.tokens import scope_refusal
from pypid.index.filenames import parse_filename
from pypid.index.names import is_valid, normalize
from pypid.web.errors import HTTPError, error_page

#: The children whose first path segment below them is a project name.
_BY_PROJECT = (b"simple", b"pypi", b"project", b"+upstream")
#: Suffixes of the files served beside a distribution.
_SIDECARS = (".metadata", ".asc")


def project_of(child: bytes, postpath: list) -> Optional[str]:
    """
    The normalised project a read of C{/<child>/<postpath>} is about, or
    L{None} for one about the whole index (or about no project at all).
    """
    segments = [s for s in postpath if s]
    if not segments:
        return None
    try:
        if child in _BY_PROJECT:
            name = segments[0].decode("utf-8")
            return normalize(name) if is_valid(name) else None
        if child == b"packages":
            filename = segments[-1].decode("utf-8")
            for suffix in _SIDECARS:
                if filename.endswith(suffix):
                    filename = filename[: -len(suffix)]
            parsed = parse_filename(filename)
            return parsed.project if parsed is not None else None
    except UnicodeDecodeError:
        return None
    return None


def read_refusal(child: bytes, request, user: str) -> Optional[HTTPError]:
    """403 when C{user} logged in with a token that may not read this (else L{None})."""
    refusal = scope_refusal(user, project_of(child, list(request.postpath)), "read")
    return None if refusal is None else HTTPError(http.FORBIDDEN, refusal)


class ReadScope(Resource):
    """
    Put between a L{pypid.web.guard.Guard} and what it guards: a request
    the guard let through with an API token (C{request.pypid_user}, a
    L{pypid.auth.tokens.TokenUser}) goes on only when the token's scope
    covers it; 403 naming the scope otherwise. Others pass untouched.
    """

    isLeaf = True

    def __init__(self, wrapped: Resource, child: bytes) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.child = child

    def render(self, request):
        user = getattr(request, "pypid_user", None)
        refusal = read_refusal(self.child, request, user) if user is not None else None
        if refusal is not None:
            return error_page(request, refusal)
        request.render(getChildForRequest(self.wrapped, request))
        return NOT_DONE_YET
