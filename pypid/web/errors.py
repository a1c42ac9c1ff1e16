"""
Errors rendered in one place.

Every resource answers a failure the same way: a short plain-text body
with its length, the message also as the status line's reason phrase
(twine and pip show only that), and C{Cache-Control: no-store}. A resource
raises (or fails its Deferred with) L{HTTPError}; L{respond} is the one way
out of a resource (its answer now or later, and the "client has gone"
bookkeeping); anything else that goes wrong is logged with its traceback
and answered with a plain 500 that says to look at the server log. No path
answers an HTML error page or a traceback: the request
(L{pypid.web.site.PypidRequest}) sends what escapes a resource here too,
and answers refused bodies and bad request heads with L{raw_response}'s
bytes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Optional

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET

from pypid.store.interfaces import StoreUnavailable
from pypid.web.send import PAGE_CHUNK, bytes_sender

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


class NotAnUpload(HTTPError):
    """
    An answer due from a request's head alone, to a body that is no upload
    (the yank API's): the access log has it, the audit log and the upload
    metrics do not.
    """


class ErrorResponse(NamedTuple):
    """What an error is answered with, before it is written anywhere."""

    code: int
    phrase: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def reason_phrase(message: str) -> bytes:
    """A status line's reason phrase: one line of ISO-8859-1, at most 300 characters."""
    line = " ".join(message.split())[:300]
    return line.encode("latin-1", "replace")


def error_body(message: str) -> bytes:
    """The plain-text body of an error: the message and a newline."""
    return (message.rstrip("\n") + "\n").encode("utf-8")


def error_response(error: HTTPError) -> ErrorResponse:
    """The status, reason phrase, headers and body that answer C{error}."""
    body = error_body(error.message)
    headers = error.headers + (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
    )
    return ErrorResponse(error.code, reason_phrase(error.message), headers, body)


def error_page(request: Any, error: HTTPError) -> bytes:
    """
    Set C{request}'s status, reason phrase and headers for C{error}; return
    the body to write (empty for C{HEAD}).
    """
    answer = error_response(error)
    request.setResponseCode(answer.code, answer.phrase)
    for name, value in answer.headers:
        request.setHeader(name, value)
    return b"" if request.method == b"HEAD" else answer.body


def raw_response(error: HTTPError, head_only: bool = False) -> bytes:
    """
    The whole HTTP/1.1 message answering C{error} on a connection that is
    then closed, for answers given outside a request's normal course (a
    refused body, a bad request head, a connection over the limit).
    """
    answer = error_response(error)
    lines = [b"HTTP/1.1 %d " % answer.code + answer.phrase]
    lines.extend(name + b": " + value for name, value in answer.headers)
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else answer.body)


def method_not_allowed(allowed: Iterable[bytes]) -> HTTPError:
    """405, with the C{Allow} header listing C{allowed}."""
    names = b", ".join(allowed)
    # The same message for every method, so HEAD's length is GET's.
    return HTTPError(
        http.NOT_ALLOWED,
        f"Method Not Allowed: this URL answers {names.decode('latin-1')}.",
        [(b"allow", names)],
    )


def not_found(message: str = "Not Found") -> HTTPError:
    """404 with C{message}."""
    return HTTPError(http.NOT_FOUND, message)


def internal_error(request: Any, failure: Optional[Failure] = None) -> bytes:
    """
    Log C{failure} (with the request's URI) and answer a plain 500; when
    the answer has already begun, the connection is cut instead (the
    client must not take a partial answer for a whole one).
    """
    log.failure("request {uri} failed", failure, uri=getattr(request, "uri", b"?"))
    if getattr(request, "startedWriting", False):
        _abort(request)
        return NOT_DONE_YET  # type: ignore[return-value]
    return error_page(request, HTTPError(http.INTERNAL_SERVER_ERROR, INTERNAL_ERROR))


def _abort(request: Any) -> None:
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is not None:
        abort = getattr(transport, "abortConnection", None) or transport.loseConnection
        abort()


def respond(
    request: Any,
    work: Callable[[], Any],
    errors: Optional[dict[type, int]] = None,
    cancel: bool = True,
) -> object:
    """
    The one way out of a resource: run C{work} (which returns the body,
    C{NOT_DONE_YET} when it finishes the request itself, or a L{Deferred}
    of either), write its result and finish the request. An L{HTTPError} is
    answered with its page; a failure whose type is in C{errors} with that
    status and its message; anything else is logged and answered with a
    plain 500. When the client goes away first nothing is written, and
    C{work}'s Deferred is cancelled (unless C{cancel} is false).

    @return: what C{render} returns: the body at once when C{work} answered
        synchronously, else C{NOT_DONE_YET}.
    """
    d = maybeDeferred(work)
    now: list = []
    later: list[bool] = []
    gone: list[bool] = []

    def arrived(result: object) -> None:
        if not later:
            now.append(result)
        elif not gone:
            _deliver(request, result, errors)
        elif isinstance(result, Failure) and not result.check(CancelledError):
            log.failure("request {uri} failed after its client left", result, uri=request.uri)

    d.addBoth(arrived)
    if now:
        # Answered at once: returned to the caller, which writes it.
        result = now[0]
        if isinstance(result, Failure):
            return _failure_page(request, result, errors)
        return result
    later.append(True)

    def left(_: object) -> None:
        gone.append(True)
        if cancel:
            d.cancel()

    request.notifyFinish().addErrback(left)
    return NOT_DONE_YET


def _deliver(request: Any, result: object, errors: Optional[dict[type, int]]) -> None:
    """Write what work answered later (its body, or its failure's page) and finish."""
    try:
        body = _failure_page(request, result, errors) if isinstance(result, Failure) else result
        if body is NOT_DONE_YET:
            return
        if not isinstance(body, bytes):
            body = internal_error(request, Failure(TypeError(f"a resource answered {type(body).__name__}")))
            if body is NOT_DONE_YET:
                return
        if body and request.method != b"HEAD":
            if len(body) > PAGE_CHUNK:
                # Written as the client takes it (it finishes the request).
                bytes_sender(request, body).start()
                return
            request.write(body)
        request.finish()
    except Exception:
        log.failure("finishing {uri} failed", uri=request.uri)


def _failure_page(request: Any, failure: Failure, errors: Optional[dict[type, int]]) -> bytes:
    if failure.check(HTTPError):
        return error_page(request, failure.value)
    if failure.check(StoreUnavailable):
        # What the store depends on is away for now (its message says what).
        return error_page(request, HTTPError(http.SERVICE_UNAVAILABLE, str(failure.value),
                                             [(b"retry-after", b"5")]))
    for kind, code in (errors or {}).items():
        if failure.check(kind):
            return error_page(request, HTTPError(code, str(failure.value)))
    return internal_error(request, failure)


def deferred_error(error: HTTPError) -> Deferred:
    """A Deferred that has failed with C{error} (for work that answers later)."""
    d: Deferred = Deferred()
    d.errback(error)
    return d
