"""pypid.web.site's request: what escapes a resource is answered in plain text, never Twisted's HTML."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyChannel

from pypid.web.resource import PlainResource
from pypid.web.site import PypidRequest, PypidSite


class Broken(Resource):
    isLeaf = True

    def render_GET(self, request):
        raise RuntimeError("boom")


class NotBytes(Resource):
    isLeaf = True

    def render_GET(self, request):
        return "text, not bytes"


class PostOnly(Resource):
    """A plain Twisted resource (its methods are Twisted's business)."""

    isLeaf = True

    def render_POST(self, request):
        return b"posted"


class Answers(PlainResource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


def _request(resource, method=b"GET", version=b"HTTP/1.1"):
    channel = DummyChannel()
    channel.site = PypidSite(resource)
    request = PypidRequest(channel)
    request.method = method
    request.uri = request.path = b"/"
    request.clientproto = version
    request.prepath, request.postpath = [], []
    request.site = channel.site
    return request, channel


def _response(channel) -> tuple[bytes, bytes]:
    head, _, body = channel.transport.written.getvalue().partition(b"\r\n\r\n")
    return head, body


class RenderTests(SynchronousTestCase):
    def test_exception_is_plain_500(self):
        request, channel = _request(Broken())
        request.render(Broken())
        head, body = _response(channel)
        self.assertTrue(head.startswith(b"HTTP/1.1 500 Internal error; see the server log."))
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        self.assertIn(b"Cache-Control: no-store", head)
        self.assertEqual(body, b"Internal error; see the server log.\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_not_bytes_is_plain_500(self):
        request, channel = _request(NotBytes())
        request.render(NotBytes())
        head, body = _response(channel)
        self.assertTrue(head.startswith(b"HTTP/1.1 500 "))
        self.assertNotIn(b"<html", body)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_unsupported_method_is_405_with_allow(self):
        """Twisted's own resources: 405 with Allow, never 501, for any method."""
        for method in (b"PUT", b"OPTIONS", b"BREW"):
            request, channel = _request(PostOnly(), method)
            request.render(PostOnly())
            head, body = _response(channel)
            self.assertTrue(head.startswith(b"HTTP/1.1 405 "), head)
            self.assertIn(b"Allow: POST", head)
            self.assertNotIn(b"<html", body)

    def test_head_without_get_is_405(self):
        request, channel = _request(PostOnly(), b"HEAD")
        request.render(PostOnly())
        head, body = _response(channel)
        self.assertTrue(head.startswith(b"HTTP/1.1 405 "), head)
        self.assertEqual(body, b"")

    def test_processing_failed_is_plain_500(self):
        request, channel = _request(Answers())
        try:
            raise ValueError("escaped")
        except ValueError:
            from twisted.python.failure import Failure

            request.processingFailed(Failure())
        head, body = _response(channel)
        self.assertTrue(head.startswith(b"HTTP/1.1 500 "))
        self.assertNotIn(b"Processing Failed", body)
        self.assertEqual(body, b"Internal error; see the server log.\n")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_failure_after_the_answer_began_cuts_the_connection(self):
        """A failure once the status line is out cannot become a 500: the connection is cut."""
        request, channel = _request(Answers())
        request.setHeader(b"content-length", b"100")
        request.write(b"partial")
        try:
            raise ValueError("midway")
        except ValueError:
            from twisted.python.failure import Failure

            request.processingFailed(Failure())
        self.assertNotIn(b"500", channel.transport.written.getvalue())
        self.assertTrue(channel.transport.disconnected)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
