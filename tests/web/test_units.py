"""Resources over a MemoryStore, driven in memory through treq's StubTreq."""

import json
import os

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pypid.store.interfaces import IPackageStore
from pypid.index.pages import PageCache
from pypid.store.directory.store import DirectoryStore
from pypid.testing import MemoryStore
from pypid.threads import immediate
from pypid.web.root import Root, WebConfig
from tests.index.test_model import dist


class InterfaceTests(SynchronousTestCase):
    def test_both_stores_provide_the_interface(self):
        verifyObject(IPackageStore, MemoryStore())
        verifyObject(IPackageStore, DirectoryStore([os.getcwd()], "sha256", immediate))


class ResourceTests(SynchronousTestCase):
    def setUp(self):
        wheel = dist("foo-1.0-py3-none-any.whl")._replace(metadata_sha256="e" * 64)
        self.store = MemoryStore([wheel])
        self.store.metadata["foo-1.0-py3-none-any.whl"] = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"
        pages = PageCache(self.store.snapshot, "sha256")
        self.store.subscribe(pages.update)
        self.client = StubTreq(Root(self.store, pages, WebConfig()))

    def get(self, path, **headers):
        response = self.successResultOf(
            self.client.get("http://index.test" + path, headers=headers, allow_redirects=False)
        )
        return response, self.successResultOf(response.content())

    def test_update_shows_at_once(self):
        """A change applied to the store is on the next page served."""
        response, body = self.get("/simple/foo/", accept="application/vnd.pypi.simple.v1+json")
        self.assertEqual([f["filename"] for f in json.loads(body)["files"]], ["foo-1.0-py3-none-any.whl"])
        etag = response.headers.getRawHeaders("etag")[0]
        self.store.apply([dist("foo-2.0-py3-none-any.whl", version="2.0")], [])
        response, body = self.get("/simple/foo/", accept="application/vnd.pypi.simple.v1+json", if_none_match=etag)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(body)["versions"], ["1.0", "2.0"])

    def test_metadata_file(self):
        response, body = self.get("/packages/foo-1.0-py3-none-any.whl.metadata")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, self.store.metadata["foo-1.0-py3-none-any.whl"])
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/plain; charset=utf-8"])

    def test_waits_for_first_scan(self):
        """Before the store is ready, a page request is held, then answered."""
        self.store.ready = False
        d = self.client.get("http://index.test/simple/foo/")
        self.assertNoResult(d)
        self.store.make_ready()
        self.client.flush()
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_health_needs_no_index(self):
        self.store.ready = False
        response, body = self.get("/health")
        self.assertEqual(json.loads(body)["status"], "starting")


class GrowingPagesTests(SynchronousTestCase):
    """The pages that grow with the index wait for work done in threads, never done on the request path."""

    def setUp(self):
        from tests.test_threads import FakeThreads

        self.threads = FakeThreads()
        self.store = MemoryStore([dist(f"d/p{i}-1.0-py3-none-any.whl", project=f"p{i}") for i in range(30)])
        pages = PageCache(self.store.snapshot, "sha256", self.threads)
        self.store.subscribe(pages.update)
        self.client = StubTreq(Root(self.store, pages, WebConfig(), threads=self.threads))

    def ask(self, path, method="GET", data=None, **headers):
        headers = {name.replace("_", "-"): value for name, value in headers.items()}
        return self.client.request(method, "http://index.test" + path, data=data, headers=headers,
                                   allow_redirects=False)

    def answer(self, d):
        self.client.flush()
        response = self.successResultOf(d)
        return response, self.successResultOf(response.content())

    def work(self):
        while self.threads.jobs:
            self.threads.run()

    def test_project_list(self):
        d = self.ask("/simple/")
        self.client.flush()
        self.assertNoResult(d)
        self.work()
        response, body = self.answer(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(body.count(b"<a href="), 30)
        # Rendered once: the next one is answered at once.
        response, _ = self.answer(self.ask("/simple/"))
        self.assertEqual(response.code, 200)

    def test_packages_listing_streamed(self):
        d = self.ask("/packages/")
        self.work()
        response, body = self.answer(d)
        self.assertEqual((response.code, body.count(b"<a href="), response.headers.getRawHeaders("content-length")),
                         (200, 30, None))
        etag = response.headers.getRawHeaders("etag")[0]
        self.assertTrue(etag.startswith('W/"'))
        response, _ = self.answer(self.ask("/packages/", if_none_match=etag))
        self.assertEqual(response.code, 304)
        # (treq asks for gzip and decompresses: the process tests see the gzip.)
        response, unzipped = self.answer(self.ask("/packages/", accept_encoding="gzip"))
        self.assertEqual(unzipped, body)
        self.store.apply([dist("d/p0-2.0-py3-none-any.whl", project="p0", version="2.0")], [])
        response, body = self.answer(self.ask("/packages/", if_none_match=etag))
        self.assertEqual((response.code, body.count(b"<a href=")), (200, 31))

    def test_browse_and_xmlrpc(self):
        from pypid.web import browse

        self.patch(browse, "PROJECTS_PER_PAGE", 20)
        d = self.ask("/project/?page=2")
        self.client.flush()
        self.assertNoResult(d)
        self.work()
        response, body = self.answer(d)
        self.assertEqual((response.code, body.count(b"<tr><td>")), (200, 10))
        d = self.ask("/search?q=p1")
        self.work()
        response, body = self.answer(d)
        self.assertIn(b"p19", body)
        call = (b"<?xml version='1.0'?><methodCall><methodName>list_packages</methodName>"
                b"<params></params></methodCall>")
        d = self.ask("/RPC2", "POST", call, content_type="text/xml")
        self.client.flush()
        self.work()
        response, body = self.answer(d)
        self.assertEqual(body.count(b"<string>"), 30)
