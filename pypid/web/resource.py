"""
The base of pypid's resources: which methods each answers, and one way
out for every answer.

A resource answers the methods it has C{render_<METHOD>} methods for;
C{HEAD} wherever C{GET} is answered (with C{render_GET}, whose body the
request drops); any other method, known or not, gets 405 with an C{Allow}
header (never Twisted's 501, a 5xx anyone could raise). Whatever a render
method returns or raises goes out through L{pypid.web.errors.respond}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, TypeAlias

from twisted.python.reflect import prefixedMethodNames
from twisted.web.resource import Resource

from pypid.web.errors import method_not_allowed, not_found, respond

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: What a render method returns: the body, C{NOT_DONE_YET} when it
#: finishes the request itself, or a L{Deferred} of either (see L{respond}).
Answer: TypeAlias = "bytes | int | Deferred[bytes | int]"

#: The order methods are listed in an C{Allow} header.
_ORDER = {b"GET": 0, b"HEAD": 1, b"POST": 2}


def allowed_methods(resource: Resource, extra: tuple = ()) -> list[bytes]:
    """
    The methods C{resource} answers: its C{render_*} methods, C{HEAD} only
    with C{GET}, plus C{extra} (methods routed to it from elsewhere).
    """
    names = {name.encode("ascii") for name in prefixedMethodNames(type(resource), "render_")}
    names.update(extra)
    if b"GET" in names:
        names.add(b"HEAD")
    elif not _own_head(resource):
        names.discard(b"HEAD")
    return sorted(names, key=lambda m: (_ORDER.get(m, 9), m))


def _own_head(resource: Resource) -> bool:
    head = getattr(type(resource), "render_HEAD", None)
    return head is not None and head is not Resource.render_HEAD


class PlainResource(Resource):
    """
    A resource whose methods are checked and whose answers and failures
    leave through L{respond}.
    """

    #: Methods answered at this resource's path by another resource (the
    #: root routes C{POST /} to uploads and XML-RPC), for C{Allow}.
    also_allowed: tuple = ()

    #: Failure types answered with a status of their own (see L{respond}).
    errors: Optional[dict] = None
    #: Whether a client that leaves cancels the work it was waiting for
    #: (only for work nobody else waits on).
    cancel_on_disconnect = False

    def render(self, request):
        return respond(request, lambda: self._dispatch(request), self.errors, self.cancel_on_disconnect)

    def _dispatch(self, request):
        handler = self._handler(request.method)
        if handler is None:
            raise method_not_allowed(allowed_methods(self, self.also_allowed))
        return handler(request)

    def _handler(self, method: bytes) -> Optional[Callable]:
        if method == b"HEAD" and not _own_head(self):
            method = b"GET"
        try:
            name = "render_" + method.decode("ascii")
        except UnicodeDecodeError:
            return None
        return getattr(self, name, None) if name.isidentifier() else None


class NotFound(PlainResource):
    """404 for every method: a path that is not served at all."""

    isLeaf = True

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__()
        self.message = message

    def render(self, request):
        return respond(request, self._missing)

    def _missing(self):
        raise not_found(self.message)
