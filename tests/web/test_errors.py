"""pypid.web.errors: every failure answered the same way, and the one async way out."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from pypid.web.errors import HTTPError, error_page, method_not_allowed, raw_response, respond


def _request(method: bytes = b"GET") -> DummyRequest:
    request = DummyRequest([b""])
    request.method = method
    return request


class ErrorPageTests(SynchronousTestCase):
    def test_plain_text_with_reason_phrase_and_no_store(self) -> None:
        """An error page is the message as text, as the reason phrase too, never cached."""
        request = _request()
        body = error_page(request, HTTPError(400, "File already exists\n(x.whl)", [(b"x-extra", b"1")]))
        self.assertEqual(body, b"File already exists\n(x.whl)\n")
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(request.responseMessage, b"File already exists (x.whl)")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), [b"%d" % len(body)])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-extra"), [b"1"])

    def test_head_has_no_body(self) -> None:
        """HEAD gets the same status and length, without the body."""
        request = _request(b"HEAD")
        self.assertEqual(error_page(request, HTTPError(404, "Not Found")), b"")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), [b"10"])


class RespondTests(SynchronousTestCase):
    def test_synchronous_result_is_returned(self) -> None:
        """Work that answers at once is returned as the render result."""
        self.assertEqual(respond(_request(), lambda: b"ok"), b"ok")

    def test_synchronous_http_error(self) -> None:
        """An HTTPError raised at once becomes its page."""
        request = _request()

        def work() -> bytes:
            raise HTTPError(409, "Conflict: no")

        self.assertEqual(respond(request, work), b"Conflict: no\n")
        self.assertEqual(request.responseCode, 409)

    def test_unexpected_error_is_logged_plain_500(self) -> None:
        """Any other exception is logged and answered with a plain 500, no traceback."""
        request = _request()
        body = respond(request, lambda: 1 / 0)
        self.assertEqual(request.responseCode, 500)
        self.assertNotIn(b"Traceback", body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_later_result_is_written_and_finished(self) -> None:
        """A Deferred result is written and the request finished."""
        request = _request()
        d: Deferred = Deferred()
        self.assertIs(respond(request, lambda: d), NOT_DONE_YET)
        d.callback(b"later")
        self.assertEqual(b"".join(request.written), b"later")
        self.assertEqual(request.finished, 1)

    def test_mapped_error_type(self) -> None:
        """A failure of a type in errors gets that status and its message."""
        request = _request()
        d: Deferred = Deferred()
        respond(request, lambda: d, errors={KeyError: 404})
        d.errback(KeyError("nope"))
        self.assertEqual(request.responseCode, 404)

    def test_client_gone_cancels_and_writes_nothing(self) -> None:
        """When the client leaves first, the work is cancelled and nothing is written."""
        request = _request()
        cancelled: list = []
        d: Deferred = Deferred(lambda _: cancelled.append(True))
        respond(request, lambda: d)
        for waiter in list(request._finishedDeferreds):
            waiter.errback(Exception("connection lost"))
        request._finishedDeferreds = []
        self.assertEqual(cancelled, [True])
        self.assertEqual(request.written, [])
        self.assertEqual(request.finished, 0)

    def test_work_waiting_on_another_deferred(self) -> None:
        """A result that waits on a further Deferred is written when that one fires."""
        request = _request()
        inner: Deferred = Deferred()
        outer: Deferred = Deferred()
        outer.addCallback(lambda _: inner)
        outer.callback(None)
        self.assertIs(respond(request, lambda: outer), NOT_DONE_YET)
        inner.callback(b"at last")
        self.assertEqual(b"".join(request.written), b"at last")
        self.assertEqual(request.finished, 1)

    def test_later_http_error(self) -> None:
        """An HTTPError that comes later is answered with its page."""
        request = _request()
        d: Deferred = Deferred()
        respond(request, lambda: d)
        d.errback(HTTPError(404, "Project 'x' is not on this index."))
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(b"".join(request.written), b"Project 'x' is not on this index.\n")
        self.assertEqual(request.finished, 1)

    def test_not_bytes_is_a_plain_500(self) -> None:
        """A resource answering something other than bytes is a logged plain 500."""
        request = _request()
        d: Deferred = Deferred()
        respond(request, lambda: d)
        d.callback(42)
        self.assertEqual(request.responseCode, 500)
        self.assertEqual(b"".join(request.written), b"Internal error; see the server log.\n")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class RawResponseTests(SynchronousTestCase):
    def test_raw_response_is_the_error_page(self) -> None:
        """The bytes written outside a request carry the same status, headers and body."""
        raw = raw_response(HTTPError(413, "Request Entity Too Large: 5 bytes", [(b"x-extra", b"1")]))
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 413 Request Entity Too Large: 5 bytes")
        self.assertIn(b"cache-control: no-store", lines)
        self.assertIn(b"connection: close", lines)
        self.assertIn(b"x-extra: 1", lines)
        self.assertIn(b"content-length: %d" % len(body), lines)
        self.assertEqual(body, b"Request Entity Too Large: 5 bytes\n")

    def test_head_only(self) -> None:
        raw = raw_response(HTTPError(400, "Bad Request: no Host"), head_only=True)
        self.assertTrue(raw.endswith(b"\r\n\r\n"))


class MethodNotAllowedTests(SynchronousTestCase):
    def test_allow_header(self) -> None:
        error = method_not_allowed([b"GET", b"HEAD"])
        self.assertEqual(error.code, 405)
        self.assertEqual(error.headers, ((b"allow", b"GET, HEAD"),))
