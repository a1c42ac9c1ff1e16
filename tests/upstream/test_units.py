"""Unit tests of the fallback's pure parts: parsing, rewriting, freshness, LRU, single flight."""

import json
from html.parser import HTMLParser

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from pypid.upstream import rewrite
from pypid.upstream.flight import SingleFlight
from pypid.lru import LRU
from pypid.upstream.policy import FAILED, GONE, NOT_MODIFIED, OK, Validators, classify, is_fresh
from pypid.upstream.records import (
    UpstreamError,
    UpstreamFile,
    parse_html,
    parse_json,
    parse_page,
    parse_project_list,
    project_from_json,
    project_to_json,
)
from tests.index.test_model import dist

BASE = "http://up.test/simple/demo/"
SHA = "a" * 64
META = "b" * 64


def json_page(**extra):
    entry = {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "../../packages/demo-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA.upper()},
        "requires-python": ">=3.8,<4",
        "size": 10,
        "upload-time": "2024-01-01T00:00:00.000000Z",
        "core-metadata": {"sha256": META},
        "yanked": "broken",
    }
    entry.update(extra)
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0", "2.0"],
                       "files": [entry]}).encode()


class ParseTests(SynchronousTestCase):
    def test_json(self):
        project = parse_json("demo", json_page(), BASE)
        self.assertEqual(project.versions, ("1.0", "2.0"))
        (f,) = project.files
        self.assertEqual(f.url, "http://up.test/packages/demo-1.0-py3-none-any.whl")
        self.assertEqual(f.sha256, SHA)
        self.assertEqual(f.metadata_sha256, META)
        self.assertEqual((f.requires_python, f.yanked, f.size, f.upload_time),
                         (">=3.8,<4", "broken", 10, "2024-01-01T00:00:00.000000Z"))

    def test_json_legacy_metadata_key_and_bad_entries(self):
        body = json.dumps({"files": [
            {"filename": "demo-1.0.tar.gz", "url": "https://files.test/x/demo-1.0.tar.gz#frag",
             "hashes": {"md5": "00ff", "bad": "not-hex"}, "dist-info-metadata": True, "yanked": False},
            {"filename": "../evil.whl", "url": "x"},
            {"filename": ".hidden.whl", "url": "x"},
            "nonsense",
        ]}).encode()
        project = parse_json("demo", body, BASE)
        (f,) = project.files
        self.assertEqual(f.url, "https://files.test/x/demo-1.0.tar.gz")
        self.assertEqual(f.hashes, (("md5", "00ff"),))
        self.assertIs(f.core_metadata, True)
        self.assertEqual(project.versions, ("1.0",))

    def test_json_refuses_unknown_major_version(self):
        body = json.dumps({"meta": {"api-version": "2.0"}, "files": []}).encode()
        self.assertRaises(UpstreamError, parse_json, "demo", body, BASE)
        self.assertRaises(UpstreamError, parse_json, "demo", b"{not json", BASE)
        self.assertRaises(UpstreamError, parse_json, "demo", b"[]", BASE)

    def test_html(self):
        body = (
            b'<html><head><base href="http://mirror.test/base/"></head><body>'
            b'<a href="../files/demo-1.0-py3-none-any.whl#sha256=' + SHA.encode() + b'" '
            b'data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=' + META.encode() + b'" '
            b'data-yanked>demo-1.0-py3-none-any.whl</a>'
            b'<a href="demo-2.0.tar.gz" data-core-metadata="true" data-yanked="old">x</a>'
            b'<a href="demo%2B1-3.0.zip">demo+1-3.0.zip</a>'
            b'</body></html>'
        )
        project = parse_html("demo", body, BASE)
        one, two, three = project.files
        self.assertEqual(one.url, "http://mirror.test/files/demo-1.0-py3-none-any.whl")
        self.assertEqual((one.sha256, one.metadata_sha256, one.requires_python, one.yanked),
                         (SHA, META, ">=3.8", True))
        self.assertEqual((two.url, two.core_metadata, two.yanked, two.hashes),
                         ("http://mirror.test/base/demo-2.0.tar.gz", True, "old", ()))
        self.assertEqual(three.filename, "demo+1-3.0.zip")
        self.assertEqual(project.versions, ("1.0", "2.0"))

    def test_by_content_type(self):
        self.assertEqual(len(parse_page("demo", json_page(), "application/vnd.pypi.simple.v1+json", BASE).files), 1)
        html = b'<a href="demo-1.0.tar.gz">demo-1.0.tar.gz</a>'
        self.assertEqual(len(parse_page("demo", html, "text/html; charset=utf-8", BASE).files), 1)
        self.assertRaises(UpstreamError, parse_page, "demo", b"{}", "application/json", BASE)

    def test_cache_form_round_trips(self):
        for body, parse in ((json_page(), parse_json), (json_page(**{"core-metadata": True, "yanked": False}), parse_json)):
            project = parse("demo", body, BASE)
            again = project_from_json(json.loads(json.dumps(project_to_json(project))))
            self.assertEqual(again, project)

    def test_project_list(self):
        body = json.dumps({"meta": {"api-version": "1.0"}, "projects": [{"name": "A"}, {"name": "b.c"}]}).encode()
        self.assertEqual(parse_project_list(body, "application/vnd.pypi.simple.v1+json"), ["A", "b.c"])
        html = b'<a href="a/">A</a><br><a href="b-c/">b.c</a>'
        self.assertEqual(parse_project_list(html, "text/html"), ["A", "b.c"])


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append(dict(attrs))


class RewriteTests(SynchronousTestCase):
    def test_links_point_at_pypid_and_metadata_passes_through(self):
        project = parse_json("demo", json_page(), BASE)
        links = rewrite.links("demo", project)
        page = json.loads(rewrite.project_json("demo", list(project.versions), links))
        (f,) = page["files"]
        self.assertEqual(f["url"], "../../+upstream/demo/demo-1.0-py3-none-any.whl")
        self.assertEqual(f["hashes"], {"sha256": SHA})
        self.assertEqual(f["core-metadata"], {"sha256": META})
        self.assertEqual((f["yanked"], f["requires-python"], f["size"]), ("broken", ">=3.8,<4", 10))
        self.assertEqual(page["meta"]["api-version"], "1.4")
        self.assertEqual(page["versions"], ["1.0", "2.0"])
        parser = _Anchors()
        parser.feed(rewrite.project_html("demo", links).decode())
        (a,) = parser.anchors
        self.assertEqual(a["href"], f"../../+upstream/demo/demo-1.0-py3-none-any.whl#sha256={SHA}")
        self.assertEqual(a["data-requires-python"], ">=3.8,<4")
        self.assertEqual(a["data-core-metadata"], f"sha256={META}")
        self.assertEqual(a["data-dist-info-metadata"], f"sha256={META}")
        self.assertEqual(a["data-yanked"], "broken")

    def test_unknown_sizes_claim_api_1_0(self):
        project = parse_html("demo", b'<a href="demo-1.0.tar.gz">x</a>', BASE)
        page = json.loads(rewrite.project_json("demo", ["1.0"], rewrite.links("demo", project)))
        self.assertEqual(page["meta"]["api-version"], "1.0")
        self.assertNotIn("size", page["files"][0])
        self.assertNotIn("yanked", page["files"][0])

    def test_merge_keeps_local_files_first_and_wins_on_names(self):
        from pypid.index.model import make_project

        local = make_project("demo", [dist("demo-1.0-py3-none-any.whl", project="demo", name="demo")])
        upstream = parse_json("demo", json_page(), BASE)._replace(
            files=parse_json("demo", json_page(), BASE).files
            + (UpstreamFile("demo-3.0.tar.gz", "http://up.test/demo-3.0.tar.gz", ()),))
        links = rewrite.links("demo", upstream, local, "sha256")
        self.assertEqual([link.href for link in links],
                         ["../../packages/demo-1.0-py3-none-any.whl", "../../+upstream/demo/demo-3.0.tar.gz"])


class PolicyTests(SynchronousTestCase):
    def test_freshness(self):
        self.assertTrue(is_fresh(100, 150, 60))
        self.assertFalse(is_fresh(100, 160, 60))
        self.assertFalse(is_fresh(100, 50, 60), "a clock gone backwards makes entries stale")
        self.assertFalse(is_fresh(100, 100, 0))

    def test_classify(self):
        self.assertEqual(classify(200, False), OK)
        self.assertEqual(classify(304, True), NOT_MODIFIED)
        self.assertEqual(classify(304, False), FAILED)
        self.assertEqual(classify(404, True), GONE)
        self.assertEqual(classify(503, True), FAILED)
        self.assertEqual(classify(403, True), FAILED)

    def test_conditional_headers(self):
        self.assertEqual(Validators('"x"', "Mon, 01 Jan 2024 00:00:00 GMT").request_headers(),
                         {"If-None-Match": '"x"', "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"})
        self.assertEqual(Validators().request_headers(), {})


class LRUTests(SynchronousTestCase):
    def test_evicts_least_recently_used_never_pinned(self):
        lru = LRU(100)
        for name in "abc":
            lru.add(name, 40)
        lru.touch("a")
        lru.pin("b")
        self.assertEqual(lru.victims(), ["c"])
        self.assertEqual(lru.total, 80)
        lru.add("d", 40)
        self.assertEqual(lru.victims(), ["a"], "b is pinned, a is the oldest unpinned")
        lru.unpin("b")
        lru.add("e", 90)
        self.assertEqual(lru.victims(), ["b", "d"])
        self.assertEqual(lru.total, 90)

    def test_no_cap(self):
        lru = LRU(None)
        lru.add("a", 10 ** 12)
        self.assertEqual(lru.victims(), [])

    def test_pins_count(self):
        lru = LRU(10)
        lru.add("a", 20)
        lru.pin("a")
        lru.pin("a")
        lru.unpin("a")
        self.assertEqual(lru.victims(), [])
        lru.unpin("a")
        self.assertEqual(lru.victims(), ["a"])


class SingleFlightTests(SynchronousTestCase):
    def test_one_operation_for_many_callers(self):
        flight = SingleFlight()
        shared = Deferred()
        calls = []

        def start():
            calls.append(1)
            return shared

        observers = [flight.run("k", start) for _ in range(50)]
        self.assertEqual(len(calls), 1)
        self.assertTrue(flight.busy("k"))
        shared.callback("done")
        self.assertEqual([self.successResultOf(d) for d in observers], ["done"] * 50)
        self.assertFalse(flight.busy("k"))
        flight.run("k", lambda: succeed("again"))
        self.assertEqual(flight.started, 2)

    def test_cancelling_one_observer_leaves_the_others(self):
        flight = SingleFlight()
        shared = Deferred()
        cancelled = []
        shared_with_canceller = Deferred(lambda d: cancelled.append(True))
        first = flight.run("k", lambda: shared_with_canceller)
        second = flight.run("k", lambda: shared)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(cancelled, [], "the shared operation goes on")
        shared_with_canceller.callback(3)
        self.assertEqual(self.successResultOf(second), 3)

    def test_failure_reaches_every_observer_and_is_consumed(self):
        flight = SingleFlight()
        shared = Deferred()
        a, b = flight.run("k", lambda: shared), flight.run("k", lambda: shared)
        shared.errback(ValueError("boom"))
        self.failureResultOf(a, ValueError)
        self.failureResultOf(b, ValueError)

    def test_synchronous_results_and_exceptions(self):
        flight = SingleFlight()
        self.assertEqual(self.successResultOf(flight.run("k", lambda: 5)), 5)

        def boom():
            raise KeyError("x")

        self.failureResultOf(flight.run("k", boom), KeyError)
        self.failureResultOf(flight.run("j", lambda: fail(OSError())), OSError)


class ReservedTests(SynchronousTestCase):
    def test_patterns(self):
        from pypid.upstream.policy import reserved

        self.assertTrue(reserved("acme-tool", ["acme-*"]))
        self.assertTrue(reserved("secret", ["acme-*", "secret"]))
        self.assertFalse(reserved("acmetool", ["acme-*"]))
        self.assertFalse(reserved("anything", []))


class StatusTests(SynchronousTestCase):
    def test_json_status_passes_through(self):
        body = json.dumps({"meta": {"api-version": "1.4"}, "files": [],
                           "project-status": {"status": "deprecated", "reason": "use <other>"}}).encode()
        project = parse_json("demo", body, BASE)
        self.assertEqual((project.status, project.status_reason), ("deprecated", "use <other>"))
        self.assertEqual(project_from_json(json.loads(json.dumps(project_to_json(project)))), project)
        page = json.loads(rewrite.project_page("demo", "json", project))
        self.assertEqual(page["project-status"], {"status": "deprecated", "reason": "use <other>"})
        html = rewrite.project_page("demo", "html", project).decode()
        self.assertIn('<meta name="pypi:project-status" content="deprecated">', html)
        self.assertIn('<meta name="pypi:project-status-reason" content="use &lt;other&gt;">', html)

    def test_html_status_and_unknown_markers(self):
        body = b'<meta name="pypi:project-status" content="archived"><a href="demo-1.0.tar.gz">x</a>'
        self.assertEqual(parse_html("demo", body, BASE).status, "archived")
        body = json.dumps({"files": [], "project-status": {"status": "gone-fishing"}}).encode()
        self.assertIsNone(parse_json("demo", body, BASE).status)

    def test_quarantined_offers_nothing(self):
        project = parse_json("demo", json_page(), BASE)._replace(status="quarantined")
        self.assertEqual(rewrite.links("demo", project), [])


class RecentTests(SynchronousTestCase):
    def test_keeps_the_most_recently_used(self):
        from pypid.lru import Recent

        gone = []
        recent = Recent(2, on_evict=gone.append)
        recent["a"] = 1
        recent["b"] = 2
        self.assertEqual(recent.get("a"), 1)
        recent["c"] = 3
        self.assertEqual(gone, ["b"])
        self.assertNotIn("b", recent)
        self.assertEqual((recent.get("a"), recent.get("c"), len(recent)), (1, 3, 2))
        self.assertEqual(recent.pop("a"), 1)
        self.assertIsNone(recent.get("a"))


class IndexProblemTests(SynchronousTestCase):
    """What the check at start calls a simple index, and what not."""

    def test_indexes(self):
        from pypid.upstream.records import index_problem

        json_list = b'{"meta": {"api-version": "1.1"}, "projects": [{"name": "a"}]}'
        self.assertIsNone(index_problem(200, "application/vnd.pypi.simple.v1+json", json_list))
        html = b'<html><body><a href="foo-bar/">Foo.Bar</a><a href="/simple/baz/">baz</a></body></html>'
        self.assertIsNone(index_problem(200, "text/html; charset=utf-8", html))
        self.assertIsNone(index_problem(200, "text/html", b'<meta name="pypi:repository-version" content="1.0">'))
        self.assertIsNone(index_problem(200, "text/html", b"<html><body></body></html>"), "an empty index")

    def test_not_indexes(self):
        from pypid.upstream.records import index_problem

        welcome = (b'<p>Browse <a href="project/">all projects</a>, the <a href="simple/">simple index</a> '
                   b'or the <a href="packages/">list of files</a>.</p>')
        self.assertEqual(index_problem(200, "text/html", welcome), "its page is not a list of projects")
        self.assertEqual(index_problem(404, "text/html", b""), "it answers HTTP 404")
        self.assertEqual(index_problem(200, "application/json", b"{}"),
                         "it answers application/json, not a simple index page")
        self.assertEqual(index_problem(200, "application/vnd.pypi.simple.v1+json", b'{"files": []}'),
                         "its JSON has no project list")
