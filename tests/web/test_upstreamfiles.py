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
