"""
Errors rendered in one place.

Every resource answers a failure the same way: a short plain-text body
with its length, the message also as the status line's reason phrase
(twine and pip show only that), and C{Cache-Control: no-store}. A resource
raises (or fails its Deferred with) L{HTTPError}; L{respond} is the one way
out of a resource whose answer comes later; anything else that goes wrong
is logged with its traceback and answered with a plain 500 that says to
look at the server log. No path answers an HTML error page or a traceback.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET

log = Logger()

#: The body of an unexpected failure (details go to the log only).
INTERNAL_ERROR = "Internal error; see the server log."

Headers = Iterable[tuple[bytes, bytes]]


class HTTPError(Exception):
    """A failure with the status, message and extra headers to answer it with."""

    def __init__(self, code: int, message: str, headers: Headers = ()) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.headers = tuple(headers)

    def __str__(self) -> str:
        return self.message


def reason_phrase(message: str) -> bytes:
    """A status line's reason phrase: one line of ISO-8859-1, at most 300 characters."""
    line = " ".join(message.split())[:300]
    return line.encode("latin-1", "replace")


def error_body(message: str) -> bytes:
    """The plain-text body of an error: the message and a newline."""
    return (message.rstrip("\n") + "\n").encode("utf-8")


def error_page(request: Any, error: HTTPError) -> bytes:
    """
    Set C{request}'s status, reason phrase and headers for C{error}; return
    the body to write (empty for C{HEAD}).
    """
    body = error_body(error.message)
    request.setResponseCode(error.code, reason_phrase(error.message))
    for name, value in error.headers:
        request.setHeader(name, value)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    request.setHeader(b"cache-control", b"no-store")
    return b"" if request.method == b"HEAD" else body


def internal_error(request: Any, failure: Optional[Failure] = None) -> bytes:
    """Log C{failure} (with the request's URI) and answer a plain 500."""
    log.failure("request {uri} failed", failure, uri=getattr(request, "uri", b"?"))
    return error_page(request, HTTPError(http.INTERNAL_SERVER_ERROR, INTERNAL_ERROR))


def respond(
    request: Any,
    work: Callable[[], Any],
    errors: Optional[dict[type, int]] = None,
) -> object:
    """
    The one way out of a resource whose answer may come later: run C{work}
    (which returns the body, C{NOT_DONE_YET} when it finishes the request
    itself, or a L{Deferred} of either), write its result and finish the
    request. An L{HTTPError} is answered with its page; a failure whose type
    is in C{errors} with that status and its message; anything else is
    logged and answered with a plain 500. When the client goes away first,
    C{work}'s Deferred is cancelled and nothing is written.

    @return: what C{render} returns: the body at once when C{work} answered
        synchronously, else C{NOT_DONE_YET}.
    """
    d = maybeDeferred(work)
    if d.called:
        # Answered at once: no bookkeeping for a request still in hand.
        box: list = []
        d.addBoth(box.append)
        result = box[0]
        if isinstance(result, Failure):
            return _failure_page(request, result, errors)
        return result
    gone: list[bool] = []

    def left(_: object) -> None:
        gone.append(True)
        d.cancel()

    request.notifyFinish().addErrback(left)

    def failed(failure: Failure) -> object:
        if gone or failure.check(CancelledError) and gone:
            return NOT_DONE_YET
        return _failure_page(request, failure, errors)

    def finish(body: object) -> None:
        if gone or body is NOT_DONE_YET:
            return
        if body and request.method != b"HEAD":
            request.write(body)
        request.finish()

    d.addErrback(failed).addCallback(finish).addErrback(
        lambda f: log.failure("finishing {uri} failed", f, uri=request.uri)
    )
    return NOT_DONE_YET


def _failure_page(request: Any, failure: Failure, errors: Optional[dict[type, int]]) -> bytes:
    if failure.check(HTTPError):
        return error_page(request, failure.value)
    for kind, code in (errors or {}).items():
        if failure.check(kind):
            return error_page(request, HTTPError(code, str(failure.value)))
    return internal_error(request, failure)


def deferred_error(error: HTTPError) -> Deferred:
    """A Deferred that has failed with C{error} (for work that answers later)."""
    d: Deferred = Deferred()
    d.errback(error)
    return d
