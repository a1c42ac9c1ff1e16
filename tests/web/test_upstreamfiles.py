"""The fallback's resources over a MemoryStore and a canned upstream, in memory (StubTreq)."""

import json
import os

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.pages import PageCache
from pypid.testing import MemoryStore
from pypid.upstream.fallback import Fallback
from pypid.threads import immediate
from pypid.upstream.testing import CannedUpstream
from pypid.web.root import Root, WebConfig
from pypid.web.upstreamfiles import UpstreamWeb
from tests.index.test_model import dist
from tests.upstream.test_fallback import UP, page

JSON = "application/vnd.pypi.simple.v1+json"


class UpstreamWebTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore([dist("mine-1.0-py3-none-any.whl", project="mine")])
        self.upstream = CannedUpstream()
        for key in ("demo", "mine"):
            self.upstream.page(UP + key + "/", page())
        self.fallback = Fallback(self.upstream, UP, os.path.abspath(self.mktemp()), Clock(), immediate)
        self.client = self.make()

    def make(self, **kwargs):
        pages = PageCache(self.store.snapshot, "sha256")
        self.store.subscribe(pages.update)
        web = UpstreamWeb(self.store, UP, "cache", self.fallback, **kwargs)
        return StubTreq(Root(self.store, pages, WebConfig(), upstream=web))

    def get(self, path, client=None, **headers):
        response = self.successResultOf(
            (client or self.client).get("http://index.test" + path, headers=headers, allow_redirects=False))
        return response, self.successResultOf(response.content())

    def test_upstream_only_project(self):
        response, body = self.get("/simple/demo/", accept=JSON)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), [JSON])
        self.assertEqual([f["url"] for f in json.loads(body)["files"]],
                         ["../../+upstream/demo/demo-1.0-py3-none-any.whl"])
        etag = response.headers.getRawHeaders("etag")[0]
        response, _ = self.get("/simple/demo/", accept=JSON, **{"if-none-match": etag})
        self.assertEqual(response.code, 304)

    def test_local_shadows(self):
        response, body = self.get("/simple/mine/", accept=JSON)
        self.assertEqual([f["url"] for f in json.loads(body)["files"]], ["../../packages/mine-1.0-py3-none-any.whl"])
        self.assertEqual(self.upstream.page_requests, [])
        response, _ = self.get("/+upstream/mine/demo-1.0-py3-none-any.whl")
        self.assertEqual(response.code, 404)

    def test_allowed_names_merge_and_survive_an_outage(self):
        client = self.make(allow=frozenset({"mine"}))
        response, body = self.get("/simple/mine/", client, accept=JSON)
        self.assertEqual(len(json.loads(body)["files"]), 2)
        self.upstream.pages.clear()
        self.upstream.pages[UP + "other/"] = ConnectionRefusedError()
        response, body = self.get("/simple/other/", client)
        self.assertEqual(response.code, 504, "not reached at all: 504, which pip does not retry")
        self.assertIn(b"'other'", body)

    def test_unknown_everywhere(self):
        response, body = self.get("/simple/nowhere/")
        self.assertEqual(response.code, 404)
        self.assertIn(b"neither on this index nor upstream", body)

    def test_bad_file_paths(self):
        for path in ("/+upstream/demo/", "/+upstream/Demo/demo-1.0-py3-none-any.whl",
                     "/+upstream/demo/.hidden", "/+upstream/demo/a/b", "/+upstream/demo/nothing-1.0.tar.gz"):
            response, _ = self.get(path)
            self.assertEqual(response.code, 404, path)

    def test_redirect_mode(self):
        pages = PageCache(self.store.snapshot, "sha256")
        client = StubTreq(Root(self.store, pages, WebConfig(), upstream=UpstreamWeb(self.store, UP, "redirect")))
        response, _ = self.get("/simple/demo/?format=" + JSON, client)
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders("location")[0].split("?")[0], UP + "demo/")
        response, _ = self.get("/+upstream/demo/demo-1.0-py3-none-any.whl", client)
        self.assertEqual(response.code, 404)


class UncachedFileTests(SynchronousTestCase):
    """HEAD and Range on an upstream file not cached: answered without fetching it whole."""

    def setUp(self):
        import hashlib

        from pypid.testing import wheel_bytes

        self.name, self.data = wheel_bytes("demo", "1.0", padding=200_000)
        self.url = "http://up.test/files/" + self.name
        self.upstream = CannedUpstream()
        self.upstream.files[self.url] = self.data
        self.sha = hashlib.sha256(self.data).hexdigest()
        self.page(size=True)
        self.store = MemoryStore([])
        self.fallback = Fallback(self.upstream, UP, os.path.abspath(self.mktemp()), Clock(), immediate)
        pages = PageCache(self.store.snapshot, "sha256")
        web = UpstreamWeb(self.store, UP, "cache", self.fallback)
        self.client = StubTreq(Root(self.store, pages, WebConfig(), upstream=web))
        self.path = f"/+upstream/demo/{self.name}"

    def page(self, size):
        entry = {"filename": self.name, "url": "../../files/" + self.name, "hashes": {"sha256": self.sha},
                 "upload-time": "2024-05-01T10:00:00.000000Z"}
        if size:
            entry["size"] = len(self.data)
        self.upstream.page(UP + "demo/", json.dumps({"meta": {"api-version": "1.1"}, "files": [entry]}).encode())

    def request(self, method, path, **headers):
        response = self.successResultOf(self.client.request(
            method, "http://index.test" + path, headers=headers, allow_redirects=False))
        return response, self.successResultOf(response.content())

    def header(self, response, name):
        return (response.headers.getRawHeaders(name) or [None])[0]

    def test_head_from_the_page(self):
        response, body = self.request("HEAD", self.path)
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(self.header(response, "content-length"), str(len(self.data)))
        self.assertEqual(self.header(response, "accept-ranges"), "bytes")
        self.assertEqual(self.header(response, "etag"), f'"{self.sha}"')
        self.assertEqual(self.header(response, "last-modified"), "Wed, 01 May 2024 10:00:00 GMT")
        self.assertEqual((self.upstream.downloads, self.upstream.heads, self.upstream.ranges), ([], [], []))

    def test_head_asks_the_upstream_when_the_page_has_no_size(self):
        self.page(size=False)
        response, _ = self.request("HEAD", self.path)
        self.assertEqual(self.header(response, "content-length"), str(len(self.data)))
        self.assertEqual((self.upstream.heads, self.upstream.downloads), ([self.url], []))

    def test_ranges_pass_through(self):
        for spec, part in (("bytes=-100", self.data[-100:]), ("bytes=10-19", self.data[10:20]),
                           ("bytes=1000-150000", self.data[1000:150001])):
            response, body = self.request("GET", self.path, range=spec)
            self.assertEqual((response.code, body), (206, part))
            first = len(self.data) - 100 if spec == "bytes=-100" else int(spec[6:].split("-")[0])
            self.assertEqual(self.header(response, "content-range"),
                             f"bytes {first}-{first + len(part) - 1}/{len(self.data)}")
        self.assertEqual(self.upstream.downloads, [])
        self.assertEqual(len(self.upstream.ranges), 3)
        self.assertIsNone(self.fallback.cached_file("demo", self.name))
        response, _ = self.request("GET", self.path, range=f"bytes={len(self.data)}-")
        self.assertEqual(response.code, 416)

    def test_if_range_that_does_not_hold_gets_the_whole_file(self):
        response, body = self.request("GET", self.path, range="bytes=0-9", **{"if-range": '"other"'})
        self.assertEqual((response.code, body), (200, self.data))
        self.assertEqual(len(self.upstream.downloads), 1)

    def test_upstream_without_ranges_caches_the_file_and_serves_the_range(self):
        self.upstream.range_support = False
        response, body = self.request("GET", self.path, range="bytes=10-19")
        self.assertEqual((response.code, body), (206, self.data[10:20]))
        self.assertEqual(len(self.upstream.downloads), 1)
        response, body = self.request("GET", self.path, range="bytes=20-29")
        self.assertEqual((response.code, body), (206, self.data[20:30]))
        self.assertEqual(len(self.upstream.downloads), 1, "from the cache now")

    def test_failures_are_answered_not_500(self):
        self.upstream.files[self.url] = ConnectionRefusedError(111, "Connection refused")
        response, body = self.request("GET", self.path, range="bytes=10-19")
        self.assertEqual(response.code, 504)
        self.assertIn(b"connection refused", body)
        response, body = self.request("GET", self.path, range="bytes=0-300000")
        self.assertEqual(response.code, 504)
        self.assertIsNone(self.header(response, "content-range"))
        del self.upstream.files[self.url]
        self.fallback._down_until = 0
        response, _ = self.request("GET", self.path, range="bytes=10-19")
        self.assertEqual(response.code, 404)

    def test_pages_advertise_metadata_for_every_wheel(self):
        from pypid.store.metadata import read_wheel_metadata
        import hashlib
        import io

        response, body = self.request("GET", "/simple/demo/", accept=JSON)
        (entry,) = json.loads(body)["files"]
        self.assertIs(entry["core-metadata"], True, "not read yet: advertised without a hash")
        response, html = self.request("GET", "/simple/demo/")
        self.assertIn(b'data-core-metadata="true"', html)
        response, metadata = self.request("GET", self.path + ".metadata")
        self.assertEqual((response.code, metadata), (200, read_wheel_metadata(io.BytesIO(self.data))))
        self.assertEqual(self.upstream.downloads, [])
        digest = hashlib.sha256(metadata).hexdigest()
        self.assertEqual(self.header(response, "etag"), f'"{digest}"')
        response, body = self.request("GET", "/simple/demo/", accept=JSON)
        self.assertEqual(json.loads(body)["files"][0]["core-metadata"], {"sha256": digest})
        response, html = self.request("GET", "/simple/demo/")
        self.assertIn(f'data-core-metadata="sha256={digest}"'.encode(), html)


class UpstreamJSONTests(SynchronousTestCase):
    """/pypi/<project>/json for projects that are not local."""

    def setUp(self):
        import hashlib

        from pypid.testing import sdist_bytes, wheel_bytes

        self.upstream = CannedUpstream()
        self.wheel = wheel_bytes("Demo", "1.0", summary="The demo", requires=["other>=2"])
        self.newer = sdist_bytes("Demo", "2.0a1")
        entries = []
        for name, data in (self.wheel, self.newer):
            self.upstream.files["http://up.test/files/" + name] = data
            entries.append({"filename": name, "url": "../../files/" + name, "size": len(data),
                            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
                            "upload-time": "2024-05-01T10:00:00.000000Z"})
        self.upstream.page(UP + "demo/", json.dumps({"meta": {"api-version": "1.1"}, "files": entries}).encode())
        self.store = MemoryStore([])
        self.fallback = Fallback(self.upstream, UP, os.path.abspath(self.mktemp()), Clock(), immediate)
        pages = PageCache(self.store.snapshot, "sha256")
        web = UpstreamWeb(self.store, UP, "cache", self.fallback, deny=("secret-*",))
        self.client = StubTreq(Root(self.store, pages, WebConfig(), upstream=web))

    def get(self, path):
        response = self.successResultOf(self.client.get("http://index.test" + path, allow_redirects=False))
        return response, self.successResultOf(response.content())

    def test_built_from_the_page_and_the_metadata(self):
        response, body = self.get("/pypi/demo/json")
        self.assertEqual(response.code, 200)
        document = json.loads(body)
        info = document["info"]
        self.assertEqual((info["name"], info["version"], info["summary"]), ("Demo", "1.0", "The demo"))
        self.assertEqual(info["requires_dist"], ["other>=2"])
        self.assertEqual(info["release_url"], "http://index.test/pypi/demo/1.0/json")
        self.assertEqual(sorted(document["releases"]), ["1.0", "2.0a1"])
        (url,) = document["urls"]
        self.assertEqual(url["url"], f"http://index.test/+upstream/demo/{self.wheel[0]}")
        self.assertEqual(url["packagetype"], "bdist_wheel")
        self.assertEqual(url["upload_time_iso_8601"], "2024-05-01T10:00:00.000000Z")
        self.assertIsInstance(url["core-metadata"], dict, "read for the info: its hash is known")
        self.assertEqual(self.upstream.downloads, [], "the metadata came from ranges")
        response, body = self.get("/pypi/demo/2.0a1/json")
        self.assertEqual((response.code, json.loads(body)["info"]["version"]), (200, "2.0a1"))
        self.assertNotIn("releases", json.loads(body))
        self.assertEqual(self.get("/pypi/demo/3.0/json")[0].code, 404)

    def test_the_upstreams_own_document_with_pypids_urls(self):
        own = {"info": {"name": "Demo", "version": "1.0", "summary": "From upstream",
                        "project_url": "http://up.test/project/demo/",
                        "release_url": "http://up.test/project/demo/1.0/"},
               "last_serial": 1234,
               "urls": [{"filename": self.wheel[0], "url": "http://files.up.test/x/" + self.wheel[0]}],
               "releases": {"1.0": [{"filename": self.wheel[0], "url": "http://files.up.test/x/" + self.wheel[0]},
                                    {"filename": "not-on-the-page.tar.gz", "url": "http://files.up.test/y"}]}}
        self.upstream.page("http://up.test/pypi/demo/json", json.dumps(own).encode(), "application/json")
        response, body = self.get("/pypi/demo/json")
        document = json.loads(body)
        self.assertEqual(document["info"]["summary"], "From upstream")
        self.assertEqual(document["info"]["project_url"], "http://index.test/simple/demo/")
        self.assertEqual(document["last_serial"], 1234)
        self.assertEqual([f["url"] for f in document["releases"]["1.0"]],
                         [f"http://index.test/+upstream/demo/{self.wheel[0]}"])
        self.assertNotIn("up.test", body.decode())

    def test_upstream_down_builds_from_the_cached_page(self):
        self.assertEqual(self.get("/simple/demo/")[0].code, 200)
        self.assertEqual(self.get(f"/+upstream/demo/{self.wheel[0]}.metadata")[0].code, 200)
        self.upstream.pages["http://up.test/pypi/demo/json"] = ConnectionRefusedError(111, "refused")
        response, body = self.get("/pypi/demo/json")
        self.assertEqual((response.code, json.loads(body)["info"]["name"]), (200, "Demo"))
        # Without the metadata cached, the files are still listed.
        self.fallback.clock.advance(700)
        response, body = self.get("/pypi/demo/2.0a1/json")
        self.assertEqual((response.code, json.loads(body)["info"]["name"]), (200, "demo"))

    def test_missing_and_reserved(self):
        self.assertEqual(self.get("/pypi/nothing/json")[0].code, 404)
        self.assertEqual(self.get("/pypi/secret-thing/json")[0].code, 404)
        self.assertNotIn("http://up.test/simple/secret-thing/", [url for url, _ in self.upstream.page_requests])


class RenderOnceTests(SynchronousTestCase):
    """An upstream page is rendered once per fetch of it, fresh or stale, not once per request."""

    def test_rendered_once_per_fetch(self):
        from pypid.upstream import rewrite

        upstream = CannedUpstream()
        upstream.page(UP + "demo/", page(), etag='"v1"')
        clock = Clock()
        clock.advance(1000)
        fallback = Fallback(upstream, UP, os.path.abspath(self.mktemp()), clock, immediate, ttl=60)
        store = MemoryStore([])
        web = UpstreamWeb(store, UP, "cache", fallback)
        client = StubTreq(Root(store, PageCache(store.snapshot, "sha256"), WebConfig(), upstream=web))
        renders = []
        original = rewrite.project_page
        self.patch(rewrite, "project_page", lambda *args: renders.append(args[0]) or original(*args))

        def get():
            response = self.successResultOf(client.get("http://index.test/simple/demo/", headers={"accept": JSON}))
            self.assertEqual(response.code, 200)
            return self.successResultOf(response.content())

        first = get()
        get()
        self.assertEqual(len(renders), 1)
        # Stale, revalidated: 304, nothing to render.
        clock.advance(61)
        upstream.pages[UP + "demo/"] = lambda headers: (
            __import__("pypid.upstream.client", fromlist=["PageResponse"]).PageResponse(
                304, b"", JSON, '"v1"', None, UP + "demo/"))
        self.assertEqual(get(), first)
        get()
        self.assertEqual(len(renders), 1)
        # Stale, upstream down: the stale page, not rendered again for each request.
        clock.advance(61)
        upstream.pages[UP + "demo/"] = ConnectionRefusedError(111, "refused")
        for _ in range(3):
            self.assertEqual(get(), first)
            clock.advance(20)
        self.assertEqual(len(renders), 1)
        # The same page again, from an upstream without validators: nothing new to render.
        clock.advance(61)
        upstream.page(UP + "demo/", page())
        self.assertEqual(get(), first)
        self.assertEqual(len(renders), 1)
        # A new page: rendered once.
        clock.advance(61)
        upstream.page(UP + "demo/", page(sha="ab" * 32), etag='"v2"')
        get()
        get()
        self.assertEqual(len(renders), 2)
