"""The caching fallback over a canned upstream, a Clock and the real disk."""

import hashlib
import json
import os

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pypid.upstream.interfaces import IUpstream
from pypid.upstream.client import DownloadError, TreqUpstream
from pypid.upstream.fallback import Fallback, NotOnUpstream, UpstreamUnavailable
from pypid.threads import immediate
from pypid.upstream.testing import CannedUpstream

UP = "http://up.test/simple/"


def read(body):
    """All the bytes of an opened cached file, which is then let go."""
    try:
        return body.read(0, body.size)
    finally:
        body.close()
WHEEL = b"PK\x03\x04 pretend wheel" * 100
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
WHEEL_URL = "http://up.test/packages/demo-1.0-py3-none-any.whl"


def page(sha=None, meta_sha=None):
    return json.dumps({
        "meta": {"api-version": "1.1"},
        "versions": ["1.0"],
        "files": [{
            "filename": "demo-1.0-py3-none-any.whl",
            "url": "../../packages/demo-1.0-py3-none-any.whl",
            "hashes": {"sha256": sha or hashlib.sha256(WHEEL).hexdigest()},
            "size": len(WHEEL),
            "core-metadata": {"sha256": meta_sha or hashlib.sha256(METADATA).hexdigest()},
        }],
    }).encode()


class InterfaceTests(SynchronousTestCase):
    def test_both_upstreams_provide_the_interface(self):
        verifyObject(IUpstream, CannedUpstream())
        verifyObject(IUpstream, TreqUpstream(Clock()))


class FallbackTests(SynchronousTestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.upstream = CannedUpstream()
        self.upstream.page(UP + "demo/", page(), etag='"v1"')
        self.upstream.files[WHEEL_URL] = WHEEL
        self.upstream.files[WHEEL_URL + ".metadata"] = METADATA
        self.fallback = self.make()

    def make(self, **kwargs):
        kwargs.setdefault("ttl", 600)
        fallback = Fallback(self.upstream, UP, self.dir, self.clock, immediate, **kwargs)
        self.successResultOf(fallback.start())
        return fallback

    def files_in_cache(self):
        found = []
        for top, _, names in os.walk(self.dir):
            found.extend(os.path.relpath(os.path.join(top, n), self.dir) for n in names)
        return sorted(found)

    # Pages

    def test_page_cached_for_the_ttl_then_revalidated(self):
        entry = self.successResultOf(self.fallback.project("demo"))
        self.assertEqual([f.filename for f in entry.project.files], ["demo-1.0-py3-none-any.whl"])
        self.clock.advance(599)
        self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(self.upstream.page_requests), 1)
        self.clock.advance(2)
        self.upstream.page(UP + "demo/", b"", code=304)
        again = self.successResultOf(self.fallback.project("demo"))
        url, headers = self.upstream.page_requests[-1]
        self.assertEqual(headers["If-None-Match"], '"v1"')
        self.assertIn("json", headers["Accept"])
        self.assertIs(again.project, entry.project, "a 304 keeps the cached page")
        self.assertEqual(again.fetched_at, self.clock.seconds(), "a 304 refreshes the entry")
        self.clock.advance(599)
        self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(self.upstream.page_requests), 2)

    def test_stale_if_error_and_restart(self):
        self.successResultOf(self.fallback.project("demo"))
        self.clock.advance(601)
        self.upstream.pages[UP + "demo/"] = ConnectionRefusedError("down")
        entry = self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(entry.project.files), 1)
        # For a while the stale copy is served without asking again.
        self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(self.upstream.page_requests), 2)
        self.upstream.page(UP + "demo/", b"oops", "text/plain", code=503)
        self.clock.advance(31)
        self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(self.upstream.page_requests), 3)
        # A new process finds the page on disk.
        self.successResultOf(self.make().project("demo"))

    def test_never_seen_and_unreachable(self):
        self.upstream.pages[UP + "other/"] = ConnectionRefusedError("down")
        failure = self.failureResultOf(self.fallback.project("other"), UpstreamUnavailable)
        self.assertIn("'other'", str(failure.value))

    def test_not_on_upstream(self):
        self.assertIsNone(self.successResultOf(self.fallback.project("nothing")))

    def test_concurrent_page_requests_share_one_fetch(self):
        self.upstream.pages[UP + "demo/"] = lambda headers: d
        from twisted.internet.defer import Deferred

        d = Deferred()
        results = [self.fallback.project("demo") for _ in range(10)]
        self.assertEqual(len(self.upstream.page_requests), 1)
        from pypid.upstream.client import PageResponse

        d.callback(PageResponse(200, page(), "application/vnd.pypi.simple.v1+json", None, None, UP + "demo/"))
        for r in results:
            self.successResultOf(r)

    # Files

    def test_metrics(self):
        metrics = self.fallback.metrics

        before = {
            "page_ok": metrics.upstream_fetches.value(kind="page", result="ok"),
            "page_hit": metrics.upstream_cache_hits.value(kind="page"),
            "file_ok": metrics.upstream_fetches.value(kind="file", result="ok"),
            "file_hit": metrics.upstream_cache_hits.value(kind="file"),
            "file_404": metrics.upstream_fetches.value(kind="file", result="not_found"),
        }
        self.successResultOf(self.fallback.project("demo"))
        self.successResultOf(self.fallback.project("demo"))
        read(self.successResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl")))
        read(self.fallback.cached_file("demo", "demo-1.0-py3-none-any.whl"))
        del self.upstream.files[WHEEL_URL + ".metadata"]
        self.failureResultOf(self.fallback.metadata("demo", "demo-1.0-py3-none-any.whl"))
        self.assertEqual(metrics.upstream_fetches.value(kind="page", result="ok"), before["page_ok"] + 1)
        self.assertEqual(metrics.upstream_cache_hits.value(kind="page"), before["page_hit"] + 3)
        self.assertEqual(metrics.upstream_fetches.value(kind="file", result="ok"), before["file_ok"] + 1)
        self.assertEqual(metrics.upstream_cache_hits.value(kind="file"), before["file_hit"] + 1)
        self.assertEqual(metrics.upstream_fetches.value(kind="file", result="not_found"), before["file_404"] + 1)

    def test_fifty_concurrent_requests_one_download(self):
        self.upstream.hold = True
        waiting = [self.fallback.file("demo", "demo-1.0-py3-none-any.whl") for _ in range(50)]
        waiting[0].cancel()  # one client leaves; the others still get the file
        self.failureResultOf(waiting[0], CancelledError)
        self.upstream.release()
        contents = {read(self.successResultOf(d)) for d in waiting[1:]}
        self.assertEqual(self.upstream.downloads, [WHEEL_URL])
        self.assertEqual(contents, {WHEEL})
        read(self.successResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl")))
        self.assertEqual(len(self.upstream.downloads), 1)
        self.assertEqual(self.fallback.downloads, 1)

    def test_wrong_hash_never_reaches_the_cache(self):
        self.upstream.page(UP + "demo/", page(sha="0" * 64))
        failure = self.failureResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"), UpstreamUnavailable)
        self.assertIn("does not match", str(failure.value))
        self.assertEqual(self.files_in_cache(), ["pages/demo.json"])
        self.failureResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"), UpstreamUnavailable)
        self.assertEqual(len(self.upstream.downloads), 2, "the next request fetches again")

    def test_cut_off_transfer(self):
        self.upstream.files[WHEEL_URL] = DownloadError("the upstream connection broke after 100 bytes")
        self.failureResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"), UpstreamUnavailable)
        self.assertEqual(self.files_in_cache(), ["pages/demo.json"])
        self.upstream.files[WHEEL_URL] = WHEEL
        self.successResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"))

    def test_short_body(self):
        self.upstream.files[WHEEL_URL] = WHEEL[:-1]
        self.upstream.page(UP + "demo/", page(sha=hashlib.sha256(WHEEL[:-1]).hexdigest()))
        failure = self.failureResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"), UpstreamUnavailable)
        self.assertIn("bytes where the upstream lists", str(failure.value))

    def test_quarantined_project_serves_no_file(self):
        data = json.loads(page())
        data["project-status"] = {"status": "quarantined"}
        self.upstream.page(UP + "demo/", json.dumps(data).encode())
        self.failureResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl"), NotOnUpstream)
        self.assertEqual(self.upstream.downloads, [])

    def test_unknown_file(self):
        self.failureResultOf(self.fallback.file("demo", "demo-9.0.tar.gz"), NotOnUpstream)
        self.failureResultOf(self.fallback.file("nothing", "nothing-1.0.tar.gz"), NotOnUpstream)

    def test_metadata(self):
        self.assertEqual(read(self.successResultOf(self.fallback.metadata("demo", "demo-1.0-py3-none-any.whl"))),
                         METADATA)
        self.upstream.page(UP + "demo/", page(meta_sha="0" * 64))
        os.unlink(self.fallback.layout.metadata_path("demo", "demo-1.0-py3-none-any.whl"))
        fresh = self.make(ttl=0)
        self.failureResultOf(fresh.metadata("demo", "demo-1.0-py3-none-any.whl"), UpstreamUnavailable)

    def test_cached_files_survive_a_restart_without_upstream(self):
        read(self.successResultOf(self.fallback.file("demo", "demo-1.0-py3-none-any.whl")))
        self.upstream.pages.clear()
        self.upstream.files.clear()
        again = self.make()
        self.assertEqual(read(again.cached_file("demo", "demo-1.0-py3-none-any.whl")), WHEEL)

    def test_leftover_incoming_files_are_removed_at_start(self):
        os.makedirs(os.path.join(self.dir, "files", "demo"))
        leftover = os.path.join(self.dir, "files", "demo", ".incoming-abc")
        open(leftover, "wb").close()
        self.make()
        self.assertFalse(os.path.exists(leftover))

    def test_eviction_spares_pinned_files(self):
        fallback = self.make(max_size=len(WHEEL) + 5)
        meta = fallback.layout.metadata_path("demo", "demo-1.0-py3-none-any.whl")
        wheel = fallback.layout.file_path("demo", "demo-1.0-py3-none-any.whl")
        read(self.successResultOf(fallback.metadata("demo", "demo-1.0-py3-none-any.whl")))
        being_sent = self.successResultOf(fallback.file("demo", "demo-1.0-py3-none-any.whl"))
        self.assertFalse(os.path.exists(meta), "the least recently used file goes")
        # The wheel is open (being sent): pinned until its body is let go.
        read(self.successResultOf(fallback.metadata("demo", "demo-1.0-py3-none-any.whl")))
        self.assertTrue(os.path.exists(wheel), "pinned: never evicted")
        self.assertTrue(os.path.exists(meta), "just fetched: about to be served")
        self.assertEqual(read(being_sent), WHEEL)
        fallback.lru.touch(meta)
        fallback._evict()
        self.assertFalse(os.path.exists(wheel))
        self.assertTrue(os.path.exists(meta))


class ProjectListTests(SynchronousTestCase):
    def test_names_cached_revalidated_and_stale(self):
        clock = Clock()
        upstream = CannedUpstream()
        upstream.page(UP, json.dumps({"meta": {"api-version": "1.0"},
                                      "projects": [{"name": "A.b"}, {"name": "c"}]}).encode(), etag='"l1"')
        directory = os.path.abspath(self.mktemp())
        fallback = Fallback(upstream, UP, directory, clock, immediate, ttl=60)
        self.assertEqual(self.successResultOf(fallback.project_names()), ("A.b", "c"))
        clock.advance(61)
        upstream.page(UP, b"", code=304)
        self.assertEqual(self.successResultOf(fallback.project_names()), ("A.b", "c"))
        self.assertEqual(upstream.page_requests[-1][1]["If-None-Match"], '"l1"')
        clock.advance(61)
        upstream.pages[UP] = ConnectionRefusedError()
        again = Fallback(upstream, UP, directory, clock, immediate, ttl=60)
        self.assertEqual(self.successResultOf(again.project_names()), ("A.b", "c"))
        empty = Fallback(upstream, UP, self.mktemp(), clock, immediate, ttl=60)
        self.assertEqual(self.successResultOf(empty.project_names()), ())


class OversizeTests(SynchronousTestCase):
    def test_a_file_larger_than_the_cap_is_still_served(self):
        upstream = CannedUpstream()
        upstream.page(UP + "demo/", page())
        upstream.files[WHEEL_URL] = WHEEL
        fallback = Fallback(upstream, UP, os.path.abspath(self.mktemp()), Clock(), immediate, max_size=10)
        self.assertEqual(read(self.successResultOf(fallback.file("demo", "demo-1.0-py3-none-any.whl"))), WHEEL)
        self.assertTrue(os.path.exists(fallback.layout.file_path("demo", "demo-1.0-py3-none-any.whl")))


class OddPageTests(SynchronousTestCase):
    def test_unusable_pages_are_errors_not_crashes(self):
        upstream = CannedUpstream()
        fallback = Fallback(upstream, UP, os.path.abspath(self.mktemp()), Clock(), immediate)
        for body in (b"{", b'{"files": "nope"}', b'{"meta": {"api-version": "2.0"}, "files": []}',
                     json.dumps({"files": [{"filename": "a-1.whl", "url": 5}], "versions": [1]}).encode()):
            upstream.page(UP + "odd/", body)
            d = fallback.project("odd")
            if body.startswith(b'{"files": [') or b"versions" in body:
                self.successResultOf(d)
            else:
                self.failureResultOf(d, UpstreamUnavailable)


class MemoryBoundTests(SynchronousTestCase):
    def test_pages_dropped_from_memory_are_read_back_from_disk(self):
        from pypid.upstream import fallback as module

        self.patch(module, "MEMORY_PAGES", 1)
        upstream = CannedUpstream()
        for key in ("demo", "other"):
            upstream.page(UP + key + "/", page())
        clock = Clock()
        fallback = Fallback(upstream, UP, os.path.abspath(self.mktemp()), clock, immediate)
        self.successResultOf(fallback.project("demo"))
        self.successResultOf(fallback.project("other"))
        self.assertIsNone(fallback.cached_project("demo"))
        upstream.pages.clear()
        entry = self.successResultOf(fallback.project("demo"))
        self.assertEqual(len(entry.project.files), 1)
        self.assertEqual(len(upstream.page_requests), 2, "read back from disk, fresh: no fetch")


class UnreachableTests(SynchronousTestCase):
    """An upstream that cannot be reached: one clear line in the log, and fast failures for a while."""

    def setUp(self):
        from twisted.logger import Logger

        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.upstream = CannedUpstream()
        self.upstream.page(UP + "demo/", page())
        self.upstream.files[WHEEL_URL] = WHEEL
        self.fallback = Fallback(self.upstream, UP, os.path.abspath(self.mktemp()), self.clock, immediate, ttl=60)
        self.events = []
        self.fallback.log = Logger(observer=self.events.append)

    def lines(self):
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def test_fails_fast_for_a_while_then_tries_again(self):
        """An upstream that took a timeout to fail is not asked again for a while: each request fails at once."""
        from twisted.internet.defer import CancelledError as Cancelled
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseNeverReceived

        from pypid.upstream import fallback as module

        self.successResultOf(self.fallback.project("demo"))
        for url in (UP + "other/", UP + "third/", UP + "demo/"):
            self.upstream.pages[url] = ResponseNeverReceived([Failure(Cancelled())])
        self.clock.advance(61)
        failure = self.failureResultOf(self.fallback.project("other"), UpstreamUnavailable)
        self.assertEqual(str(failure.value),
                         "Upstream index failed (no answer in time): 'other' is not in this index's cache.")
        asked = len(self.upstream.page_requests)
        failure = self.failureResultOf(self.fallback.project("third"), UpstreamUnavailable)
        self.assertIn("no answer in time", str(failure.value))
        self.failureResultOf(self.fallback.file("third", "third-1.0.tar.gz"), UpstreamUnavailable)
        # A stale page is served without asking.
        self.successResultOf(self.fallback.project("demo"))
        self.assertEqual(len(self.upstream.page_requests), asked, "not asked while known to be down")
        self.assertEqual(sum("cannot be reached" in line for line in self.lines()), 1, self.lines())
        self.clock.advance(module.DOWN_FOR + 1)
        self.upstream.page(UP + "third/", page())
        self.successResultOf(self.fallback.project("third"))
        self.assertEqual(len(self.upstream.page_requests), asked + 1)
        self.assertIn("the upstream up.test answers again", self.lines()[-2:][0] + self.lines()[-1])

    def test_refused_is_asked_again_but_logged_once(self):
        """A refused connection is quick to find again: every request asks, one line in the log."""
        for url in (UP + "other/", UP + "third/"):
            self.upstream.pages[url] = ConnectionRefusedError(111, "Connection refused")
        failure = self.failureResultOf(self.fallback.project("other"), UpstreamUnavailable)
        self.assertEqual(str(failure.value),
                         "Upstream index failed (connection refused): 'other' is not in this index's cache.")
        self.failureResultOf(self.fallback.project("third"), UpstreamUnavailable)
        self.assertEqual(len(self.upstream.page_requests), 2)
        self.assertIsNone(self.fallback.down())
        self.assertEqual(sum("cannot be reached (connection refused)" in line for line in self.lines()), 1)

    def test_the_check_at_start_makes_no_request_fail(self):
        """Before the upstream is up (a compose file starting both), the check fails; requests still ask."""
        from twisted.internet.defer import CancelledError as Cancelled
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseNeverReceived

        self.upstream.pages[UP] = ResponseNeverReceived([Failure(Cancelled())])
        self.successResultOf(self.fallback.probe())
        self.assertIsNone(self.fallback.down())
        self.successResultOf(self.fallback.project("demo"))
        self.assertTrue(any("cannot be reached (no answer in time)" in line for line in self.lines()))
        self.assertIn("answers again", self.lines()[-1] + self.lines()[-2])

    def test_tls_failure_is_one_clear_line(self):
        from OpenSSL import SSL
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseNeverReceived

        error = ResponseNeverReceived([Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))])
        self.upstream.pages[UP + "other/"] = error
        self.upstream.pages[UP + "third/"] = error
        failure = self.failureResultOf(self.fallback.project("other"), UpstreamUnavailable)
        self.assertIn("(TLS: certificate verify failed)", str(failure.value))
        self.failureResultOf(self.fallback.project("third"), UpstreamUnavailable)
        tls = [line for line in self.lines() if "TLS" in line and "--upstream-ca" in line]
        self.assertEqual(len(tls), 1, self.lines())
        self.assertIn("up.test", tls[0])
        self.assertNotIn("Failure", " ".join(self.lines()))

    def test_an_answer_is_not_an_outage(self):
        self.upstream.page(UP + "other/", b"busy", "text/plain", code=503)
        failure = self.failureResultOf(self.fallback.project("other"), UpstreamUnavailable)
        self.assertIn("HTTP 503", str(failure.value))
        self.assertIsNone(self.fallback.down())
