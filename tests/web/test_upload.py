"""The upload resource as glue over the publisher and the memory store, in memory (StubTreq)."""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.audit import AuditLog
from pypid.feed.publish import Publisher
from pypid.index.pages import PageCache
from pypid.store.memory import MemoryStore
from pypid.testing import wheel_bytes
from pypid.threads import immediate
from pypid.web.root import Root, WebConfig
from pypid.web.upload import LegacyUpload, UploadPolicy
from tests.uploadhelp import form_fields, multipart


class UploadGlueTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.lines = []
        audit = AuditLog(Logger(namespace="pypid.audit", observer=lambda e: self.lines.append(formatEvent(e))))
        self.publisher = Publisher(self.store, None, audit, immediate)
        pages = PageCache(self.store.snapshot, "sha256")
        self.store.subscribe(pages.update)
        upload = LegacyUpload(self.publisher, UploadPolicy(enabled=True), immediate)
        self.client = StubTreq(Root(self.store, pages, WebConfig(uploads=True), upload=upload))

    def post(self, fields):
        body, ctype = multipart(fields)
        response = self.successResultOf(self.client.post(
            "http://index.test/legacy/", data=body, headers={"content-type": ctype}))
        return response.code, self.successResultOf(response.text())

    def test_upload_then_listed_then_identical(self):
        name, data = wheel_bytes("glue", "1.0")
        self.assertEqual(self.post(form_fields(name, data)), (200, f"{name} created.\n"))
        self.assertIn(name, self.store.snapshot.files)
        self.assertEqual(self.post(form_fields(name, data)),
                         (200, f"{name} is already stored with the same content.\n"))
        self.assertEqual(len(self.lines), 2, "one audit line per request")
        self.assertTrue(self.lines[0].startswith("file_upload ok user=anonymous client="), self.lines[0])

    def test_refusals_are_one_line_each(self):
        """Refused by the form's checks (here), by the pipeline, or for an unknown action: one line each."""
        name, data = wheel_bytes("glue", "1.0")
        code, text = self.post(form_fields(name, data, name="other"))
        self.assertEqual(code, 400)
        code, text = self.post(form_fields(name, b"not a zip"))
        self.assertEqual(code, 400)
        self.assertIn("Invalid distribution file", text)
        code, text = self.post([(":action", None, b"doc_upload")])
        self.assertEqual(code, 410)
        self.assertEqual([line.split(" status=")[1][:3] for line in self.lines], ["400", "400", "410"])
        self.assertEqual(self.store.snapshot.file_count, 0)

    def test_remove(self):
        name, data = wheel_bytes("glue", "1.0")
        self.post(form_fields(name, data))
        code, text = self.post([(":action", None, b"remove_pkg"), ("name", None, b"glue"), ("version", None, b"1.0")])
        self.assertEqual((code, text), (200, "Removed 1 file of glue 1.0.\n"))
        self.assertEqual(self.store.snapshot.file_count, 0)
        self.assertTrue(self.lines[-1].startswith("remove_pkg ok user=anonymous"), self.lines[-1])
