"""The yank rules and their audit lines, over the memory store (no server, no threads)."""

from __future__ import annotations

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pypid.feed.audit import AuditEvent, AuditLog
from pypid.feed.checks import UploadError
from pypid.feed.publish import Publisher
from pypid.feed.yank import UNYANK, YANK, Yanker, yank_request
from pypid.store.memory import MemoryStore, describe_bytes
from pypid.testing import sdist_bytes, wheel_bytes
from pypid.threads import immediate
from tests.feed.test_publish import FakeAcl

WHEEL = wheel_bytes("Demo", "1.0")
SDIST = sdist_bytes("Demo", "1.0")
NEWER = wheel_bytes("Demo", "2.0")


class RequestTests(SynchronousTestCase):
    def refused(self, action, fields) -> str:
        with self.assertRaises(UploadError) as caught:
            yank_request(action, fields)
        self.assertEqual(caught.exception.code, 400)
        return caught.exception.message

    def test_a_release_or_files(self):
        wanted = yank_request(YANK, {"project": ["Demo"], "version": ["1.0"], "reason": ["  why  "]})
        self.assertEqual((wanted.project, wanted.version, wanted.filenames, wanted.reason),
                         ("demo", "1.0", (), "why"))
        wanted = yank_request(UNYANK, {"name": ["demo"], "file": [WHEEL[0], SDIST[0]]})
        self.assertEqual((wanted.version, wanted.filenames, wanted.reason), (None, (WHEEL[0], SDIST[0]), None))
        self.assertEqual(yank_request(YANK, {"project": ["demo"], "version": ["1.0"]}).reason, "")

    def test_refusals(self):
        self.assertIn("Missing the 'project'", self.refused(YANK, {"version": ["1"]}))
        self.assertIn("not a valid project name", self.refused(YANK, {"project": ["a/b"], "version": ["1"]}))
        self.assertIn("Name either", self.refused(YANK, {"project": ["a"]}))
        self.assertIn("Name either", self.refused(YANK, {"project": ["a"], "version": ["1"], "file": ["a-1.tar.gz"]}))
        self.assertIn("more than once", self.refused(YANK, {"project": ["a", "b"], "version": ["1"]}))
        self.assertIn("at most 500", self.refused(YANK, {"project": ["a"], "version": ["1"], "reason": ["x" * 501]}))
        self.assertIn("one line", self.refused(YANK, {"project": ["a"], "version": ["1"], "reason": ["a\x1bb"]}))
        self.assertIn("takes no 'reason'", self.refused(UNYANK, {"project": ["a"], "version": ["1"], "reason": ["r"]}))
        self.assertIn("not a version", self.refused(YANK, {"project": ["a"], "version": ["1\n2"]}))


class YankerTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore([describe_bytes(name, data, 1, "sha256") for name, data in (WHEEL, SDIST, NEWER)])
        self.lines = []
        self.audit = AuditLog(Logger(namespace="pypid.audit", observer=lambda e: self.lines.append(formatEvent(e))))
        self.acl = FakeAcl({"demo": "alice"})
        self.publisher = Publisher(self.store, self.acl, self.audit, immediate)
        self.yanker = Yanker(self.store, self.publisher.authorize, self.audit)

    def ask(self, action, user="alice", **fields):
        event = AuditEvent(user=user, client="10.0.0.7")
        wanted = yank_request(action, {key: value if isinstance(value, list) else [value]
                                       for key, value in fields.items()})
        return self.yanker.request(event, wanted)

    def test_yank_a_release_and_the_audit_line(self):
        done = self.successResultOf(self.ask(YANK, project="Demo", version="1.0", reason="broken"))
        self.assertEqual(sorted(done.changed), sorted([WHEEL[0], SDIST[0]]))
        self.assertEqual(dict(self.store.snapshot.yanked("demo")), {WHEEL[0]: "broken", SDIST[0]: "broken"})
        self.assertEqual(self.lines, [
            f"yank ok user=alice client=10.0.0.7 project=demo version=1.0 file={WHEEL[0]},{SDIST[0]} "
            "status=200: Yanked demo 1.0 (2 files): broken."])
        again = self.successResultOf(self.ask(YANK, project="demo", version="1.0", reason="broken"))
        self.assertEqual((again.changed, again.message),
                         ([], "demo 1.0 was already yanked with that reason: broken."))

    def test_unyank_files(self):
        self.successResultOf(self.ask(YANK, project="demo", version="1.0"))
        done = self.successResultOf(self.ask(UNYANK, project="demo", file=SDIST[0]))
        self.assertEqual((done.changed, done.message), ([SDIST[0]], f"Unyanked {SDIST[0]} (1 file)."))
        self.assertEqual(dict(self.store.snapshot.yanked("demo")), {WHEEL[0]: ""})

    def test_refused_before_anything_changes(self):
        cases = [
            (dict(project="nope", version="1.0"), 404, "nope is not a project of this index: only local files can be yanked."),
            (dict(project="demo", version="3.0"), 404, "demo has no release 3.0."),
            (dict(project="demo", file="demo-9.0.tar.gz"), 404, "demo has no file demo-9.0.tar.gz."),
            (dict(project="demo", file="other-1.0.tar.gz"), 400, "other-1.0.tar.gz is not a file of demo."),
        ]
        for fields, code, message in cases:
            error = self.failureResultOf(self.ask(YANK, **fields), UploadError).value
            self.assertEqual((error.code, error.message), (code, message))
        error = self.failureResultOf(self.ask(YANK, user="bob", project="demo", version="1.0"), UploadError).value
        self.assertEqual(error.code, 403)
        self.assertEqual(dict(self.store.snapshot.yanks), {})
        self.assertEqual(len(self.lines), len(cases) + 1)
        self.assertTrue(all(" refused " in line for line in self.lines))
        # An unknown project never reaches the ACL: it cannot make anyone its first uploader.
        self.assertNotIn("nope", [project for _, project, _ in self.acl.asked])

    def test_changes_from_elsewhere_are_audited(self):
        """A yank the store reports that did not come through the Yanker (an edit of the yank file)."""
        self.successResultOf(self.ask(YANK, project="demo", version="2.0", reason="mine"))
        self.assertEqual(len(self.lines), 1)
        wheel = self.store.snapshot.files[WHEEL[0]]
        self.successResultOf(self.store.setYanked([wheel], "by hand"))
        self.assertEqual(self.lines[1:], [
            f"yank ok user=- client=- project=demo version=1.0 file={WHEEL[0]} status=200: "
            "changed outside pypid's API (the yank file, or another replica); reason: by hand"])
        # A yank forgotten with its removed file is the removal's business.
        self.successResultOf(self.store.remove([wheel]))
        self.assertEqual(len(self.lines), 2)

    def test_a_store_that_cannot_store_it_now_is_a_503(self):
        """The replicas' catalog away: 503 with the store's reason, audited, nothing changed."""
        from twisted.internet.defer import fail

        from pypid.store.interfaces import StoreUnavailable

        self.store.setYanked = lambda files, reason: fail(StoreUnavailable("the catalog is unavailable (down)"))
        error = self.failureResultOf(self.ask(YANK, project="demo", version="1.0"), UploadError).value
        self.assertEqual((error.code, error.message),
                         (503, "Service Unavailable: the catalog is unavailable (down)"))
        self.assertEqual(dict(self.store.snapshot.yanks), {})
        self.assertEqual(len(self.lines), 1)
        self.assertIn("yank refused user=alice", self.lines[0])
        self.assertIn("status=503", self.lines[0])
