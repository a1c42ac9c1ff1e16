"""The audit log: one shape for every upload, removal and refusal, injected where it is written."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from pypid.feed.audit import AuditEvent, AuditLog


def recording():
    lines = []
    return AuditLog(Logger(namespace="pypid.audit", observer=lambda e: lines.append(formatEvent(e)))), lines


class AuditLogTests(SynchronousTestCase):
    def test_shape(self):
        audit, lines = recording()
        audit.record(AuditEvent("file_upload", "ok", "alice", "10.0.0.7", "demo-pkg", "1.0",
                                "demo_pkg-1.0.tar.gz", 200, "demo_pkg-1.0.tar.gz created."))
        audit.owner_claimed("alice", "demo-pkg")
        self.assertEqual(lines, [
            "file_upload ok user=alice client=10.0.0.7 project=demo-pkg version=1.0 file=demo_pkg-1.0.tar.gz "
            "status=200: demo_pkg-1.0.tar.gz created.",
            "owner alice recorded as the owner of demo-pkg"])

    def test_client_text_stays_on_one_line(self):
        audit, lines = recording()
        audit.record(AuditEvent("evil\naction", "refused", file="a\nb", status=400, message="no"))
        self.assertEqual(lines, ["evil\\naction refused user=- client=- project=- version=- file=a\\nb status=400: no"])

    def test_site_refusals(self):
        """A body the Site refuses unread is an upload refused, in the same shape."""
        from pypid.web.site import PypidSite

        site = PypidSite(Resource())
        site.audit, lines = recording()
        request = DummyRequest([])
        request.client = IPv4Address("TCP", "10.0.0.7", 40000)
        site.body_refused(request, "Unauthorized: uploads need a user name and password.", 401)
        self.assertEqual(lines, [
            "upload refused user=- client=10.0.0.7 project=- version=- file=- "
            "status=401: Unauthorized: uploads need a user name and password."])
