"""The opt-in release rules, through the publisher over the memory store (no server)."""

from __future__ import annotations

import os

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.audit import AuditEvent, AuditLog
from pypid.feed.checks import UploadError
from pypid.feed.publish import Publisher
from pypid.feed.rules import HEADER, ReleaseRules, removed_names
from pypid.store.memory import MemoryStore
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.threads import immediate
from tests.feed.test_checks import zip_sdist

WHEEL = wheel_bytes("demo", "1.0")
OTHER_WHEEL = wheel_bytes("demo", "1.0", summary="other bytes")
SDIST = sdist_bytes("demo", "1.0")
ZIP = zip_sdist("demo", "1.0")


class RulesTests(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.store = MemoryStore()

    def publisher(self, **rules) -> Publisher:
        self.rules = ReleaseRules(self.store, immediate, removed=removed_names(self.root), **rules)
        return Publisher(self.store, None, AuditLog(Logger(observer=lambda e: None)), immediate,
                         overwrite=True, rules=self.rules)

    def publish(self, publisher, built):
        staged = self.store.stage()
        staged.write(built[1])
        return publisher.publish(AuditEvent("file_upload", user="alice"), built[0], staged)

    def refused(self, d) -> str:
        error = self.failureResultOf(d, UploadError).value
        self.assertEqual(error.code, 400)
        return error.message

    def remove(self, filename):
        self.successResultOf(self.store.remove([self.store.snapshot.files[filename]]))

    def test_off_by_default(self):
        publisher = self.publisher()
        self.successResultOf(self.publish(publisher, WHEEL))
        self.remove(WHEEL[0])
        self.successResultOf(self.publish(publisher, OTHER_WHEEL))
        self.successResultOf(self.publish(publisher, SDIST))
        self.successResultOf(self.publish(publisher, ZIP))
        self.assertFalse(os.path.exists(os.path.join(self.root, ".pypid-removed")))

    def test_no_filename_reuse(self):
        publisher = self.publisher(no_filename_reuse=True)
        self.successResultOf(self.publish(publisher, WHEEL))
        # A listed file: the same bytes again, or other bytes with --overwrite, are for the store to decide.
        self.successResultOf(self.publish(publisher, WHEEL))
        self.successResultOf(self.publish(publisher, OTHER_WHEEL))
        self.remove(WHEEL[0])
        with open(os.path.join(self.root, ".pypid-removed")) as f:
            self.assertEqual(f.read(), HEADER + WHEEL[0] + "\n")
        message = self.refused(self.publish(publisher, WHEEL))
        self.assertIn("previously used by a file that has since been deleted", message)
        self.assertIsNone(self.store.snapshot.files.get(WHEEL[0]))
        # Another version is fine; and an administrator may allow the name again.
        self.successResultOf(self.publish(publisher, wheel_bytes("demo", "1.0.1")))
        with open(os.path.join(self.root, ".pypid-removed"), "w") as f:
            f.write(HEADER)
        self.successResultOf(self.publish(publisher, WHEEL))

    def test_the_record_survives_a_restart(self):
        publisher = self.publisher(no_filename_reuse=True)
        self.successResultOf(self.publish(publisher, SDIST))
        self.remove(SDIST[0])
        self.store = MemoryStore()
        again = self.publisher(no_filename_reuse=True)
        self.refused(self.publish(again, SDIST))

    def test_one_sdist(self):
        publisher = self.publisher(one_sdist=True)
        self.successResultOf(self.publish(publisher, SDIST))
        self.successResultOf(self.publish(publisher, WHEEL))
        self.successResultOf(self.publish(publisher, SDIST))
        message = self.refused(self.publish(publisher, ZIP))
        self.assertEqual(message, f"Only one sdist may be uploaded per release: demo 1.0 already has {SDIST[0]}.")
        self.successResultOf(self.publish(publisher, sdist_bytes("demo", "1.1")))
        # Once the first is gone, another may come.
        self.remove(SDIST[0])
        self.successResultOf(self.publish(publisher, ZIP))
