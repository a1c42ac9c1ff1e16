"""The publish pipeline and the audit log, over the memory store (no server, no threads)."""

from __future__ import annotations

from packaging.version import Version
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pypid.auth.acl import Decision
from pypid.feed.audit import AuditEvent, AuditLog
from pypid.feed.checks import UploadError, declared_by_name
from pypid.feed.publish import Publisher
from pypid.store.memory import MemoryStore
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.threads import immediate

WHEEL = wheel_bytes("demo", "1.0")


class FakeAcl:
    """Per-project rights: C{rights[project]} is the one user allowed; others are refused."""

    def __init__(self, rights):
        self.rights = rights
        self.asked = []

    def authorize(self, user, project, exists):
        self.asked.append((user, project, exists))
        if project not in self.rights:
            self.rights[project] = user
            return Decision(True, "first uploader, now the owner", claimed=True)
        if self.rights[project] == user:
            return Decision(True, "listed")
        return Decision(False, f"the ACL does not let {user} upload to {project}")


class PublisherTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.lines = []
        self.audit = AuditLog(Logger(namespace="pypid.audit", observer=lambda e: self.lines.append(formatEvent(e))))
        self.publisher = Publisher(self.store, None, self.audit, immediate)

    def event(self, action="file_upload"):
        return AuditEvent(action, user="alice", client="10.0.0.7")

    def staged(self, data):
        staged = self.store.stage()
        staged.write(data)
        return staged

    def publish(self, built=WHEEL, **kwargs):
        filename, data = built
        return self.publisher.publish(self.event(kwargs.pop("action", "file_upload")), kwargs.pop("name", filename),
                                      self.staged(data), **kwargs)

    def refusal(self, d, code):
        error = self.failureResultOf(d, UploadError).value
        self.assertEqual(error.code, code)
        return error.message

    def test_published_listed_and_audited(self):
        published = self.successResultOf(self.publish())
        self.assertEqual((published.outcome, published.path, published.message),
                         ("created", WHEEL[0], f"{WHEEL[0]} created."))
        self.assertIn(WHEEL[0], self.store.snapshot.files)
        self.assertEqual(self.lines, [
            f"file_upload ok user=alice client=10.0.0.7 project=demo version=1.0 file={WHEEL[0]} "
            f"status=200: {WHEEL[0]} created."])

    def test_identical_then_conflict_then_overwrite(self):
        self.successResultOf(self.publish())
        self.assertEqual(self.successResultOf(self.publish()).message,
                         f"{WHEEL[0]} is already stored with the same content.")
        other = (WHEEL[0], wheel_bytes("demo", "1.0", summary="other")[1])
        message = self.refusal(self.publish(other), 400)
        self.assertTrue(message.startswith("File already exists"), message)
        self.assertIn("--overwrite", message)
        self.publisher.overwrite = True
        self.assertEqual(self.successResultOf(self.publish(other)).outcome, "replaced")
        self.assertTrue(self.lines[2].startswith("file_upload refused user=alice"), self.lines[2])

    def test_staged_bytes_are_thrown_away_whatever_happens(self):
        for data, outcome in ((WHEEL[1], self.successResultOf), (b"not an archive", self.failureResultOf)):
            staged = self.staged(data)
            outcome(self.publisher.publish(self.event(), WHEEL[0], staged))
            self.assertRaises(ValueError, lambda: staged.data)

    def test_invalid_archive_and_digests(self):
        message = self.refusal(self.publish((WHEEL[0], b"PK not really")), 400)
        self.assertIn("Invalid distribution file", message)
        declared = declared_by_name(WHEEL[0])._replace(digests={"sha256": "0" * 64})
        message = self.refusal(self.publish(declared=declared), 400)
        self.assertIn("sha256 digest supplied does not match", message)
        self.assertEqual(self.store.snapshot.file_count, 0)

    def test_streamed_transfer_must_be_whole(self):
        """A transfer without framing (FTP) cut short is called that, not a corrupt archive."""
        name, data = sdist_bytes("demo", "1.0")
        message = self.refusal(self.publish((name, data[:-30]), streamed=True), 400)
        self.assertTrue(message.startswith("the transfer is not a complete archive"), message)

    def test_bad_names(self):
        for name in ("notes.txt", ".hidden-1.0.tar.gz", "demo-1.0-py3-none-any.whl.part"):
            self.refusal(self.publish((name, WHEEL[1])), 400)
        self.assertEqual(self.store.snapshot.file_count, 0)

    def test_folder_must_exist(self):
        self.refusal(self.publish(name="nowhere/" + WHEEL[0]), 400)
        self.store.folders.add("team")
        self.assertEqual(self.successResultOf(self.publish(name="team/" + WHEEL[0])).path, "team/" + WHEEL[0])

    def test_acl(self):
        acl = FakeAcl({"taken": "carol"})
        self.publisher.acl = acl
        self.successResultOf(self.publish())
        self.assertEqual(acl.asked, [("alice", "demo", False)])
        self.assertEqual(self.lines[0], "owner alice recorded as the owner of demo")
        message = self.refusal(self.publish(wheel_bytes("taken", "1.0")), 403)
        self.assertEqual(message, "Forbidden: alice may not upload to taken (the ACL does not let alice upload to taken).")
        self.assertTrue(self.lines[-1].startswith(
            "file_upload refused user=alice client=10.0.0.7 project=taken version=1.0 "
            "file=taken-1.0-py3-none-any.whl status=403: Forbidden"), self.lines[-1])
        self.assertNotIn("taken", self.store.snapshot.projects)

    def test_a_store_that_is_unavailable_is_503(self):
        """A store whose engines are away (StoreUnavailable) refuses uploads and removals with 503 and why."""
        from twisted.internet.defer import fail

        from pypid.store.interfaces import StoreUnavailable

        self.successResultOf(self.publish())
        away = StoreUnavailable("the catalog is unavailable (down); uploads are refused until it is back")
        self.store.publish = lambda *args, **kwargs: fail(away)
        self.store.remove = lambda files: fail(away)
        message = self.refusal(self.publish(wheel_bytes("demo", "2.0")), 503)
        self.assertEqual(message, f"Service Unavailable: {away}")
        message = self.refusal(self.publisher.remove(self.event("remove_pkg"), "demo", Version("1.0")), 503)
        self.assertEqual(message, f"Service Unavailable: {away}")
        self.assertTrue(self.lines[-1].endswith(f"status=503: Service Unavailable: {away}"), self.lines[-1])

        class AwayAcl:
            def authorize(self, user, project, exists):
                raise away

        self.publisher.acl = AwayAcl()
        self.assertEqual(self.refusal(self.publish(wheel_bytes("demo", "3.0")), 503), f"Service Unavailable: {away}")

    def test_ftp_lines_have_the_same_shape(self):
        self.successResultOf(self.publish(action="ftp_upload", streamed=True))
        self.assertEqual(self.lines[-1],
                         f"ftp_upload ok user=alice client=10.0.0.7 project=demo version=1.0 file={WHEEL[0]} "
                         f"status=200: {WHEEL[0]} created.")

    def test_remove(self):
        self.successResultOf(self.publish())
        self.successResultOf(self.publish(sdist_bytes("demo", "1.0")))
        event = self.event("remove_pkg")
        removed = self.successResultOf(self.publisher.remove(event, "Demo", Version("1.0")))
        self.assertEqual(removed.message, "Removed 2 files of Demo 1.0.")
        self.assertEqual(self.store.snapshot.file_count, 0)
        self.assertEqual(self.lines[-1],
                         "remove_pkg ok user=alice client=10.0.0.7 project=demo version=1.0 "
                         "file=demo-1.0-py3-none-any.whl,demo-1.0.tar.gz status=200: Removed 2 files of Demo 1.0.")
        self.assertEqual(self.refusal(self.publisher.remove(self.event("remove_pkg"), "Demo", Version("1.0")), 404),
                         "Demo (1.0) not found")

    def test_refusals_before_the_pipeline_are_one_line(self):
        self.publisher.refused(AuditEvent(client="10.0.0.7"), 401, "Unauthorized: wrong user name or password.")
        self.assertEqual(self.lines, [
            "- refused user=- client=10.0.0.7 project=- version=- file=- status=401: "
            "Unauthorized: wrong user name or password."])


class DeclaredTests(SynchronousTestCase):
    def test_by_name(self):
        self.assertEqual(declared_by_name("Demo_Pkg-1.0.tar.gz")[:3], ("Demo_Pkg-1.0.tar.gz", "demo-pkg", Version("1.0")))
        for name in ("x.txt", "../a-1.0.tar.gz", "a-1.0.egg"):
            self.assertRaises(UploadError, declared_by_name, name)
