"""The serial on the web: X-PyPI-Last-Serial, last_serial, and the XML-RPC methods mirrors call."""

import json
import xmlrpc.client

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from pypid.index.pages import PageCache
from pypid.testing import MemoryStore
from pypid.web.root import Root, WebConfig
from tests.index.test_model import dist

JSON = "application/vnd.pypi.simple.v1+json"


class SerialWebTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore([dist("foo-1.0-py3-none-any.whl", name="Foo"),
                                  dist("bar-1.0.tar.gz", project="bar", kind="sdist")])
        pages = PageCache(self.store.snapshot, "sha256")
        self.store.subscribe(pages.update)
        self.client = StubTreq(Root(self.store, pages, WebConfig()))
        self.store.apply([dist("foo-2.0-py3-none-any.whl", version="2.0", name="Foo")], [])

    def get(self, path, **headers):
        response = self.successResultOf(
            self.client.get("http://index.test" + path, headers=headers, allow_redirects=False))
        return response, self.successResultOf(response.content())

    def call(self, method, *params):
        body = xmlrpc.client.dumps(params, method).encode()
        response = self.successResultOf(self.client.post(
            "http://index.test/pypi", data=body, headers={"content-type": "text/xml"}))
        self.assertEqual(response.code, 200)
        ((result,), _) = xmlrpc.client.loads(self.successResultOf(response.content()))
        return result

    def serial(self, response):
        return response.headers.getRawHeaders("x-pypi-last-serial")

    def test_headers_and_last_serial(self):
        response, _ = self.get("/simple/foo/", accept=JSON)
        self.assertEqual(self.serial(response), ["2"])
        response, _ = self.get("/simple/bar/")
        self.assertEqual(self.serial(response), ["1"])
        response, _ = self.get("/simple/")
        self.assertEqual(self.serial(response), ["2"])
        response, body = self.get("/pypi/foo/json")
        self.assertEqual((self.serial(response), json.loads(body)["last_serial"]), (["2"], 2))
        response, body = self.get("/pypi/bar/1.0/json")
        self.assertEqual((self.serial(response), json.loads(body)["last_serial"]), (["1"], 1))

    def test_json_follows_a_change(self):
        self.assertEqual(json.loads(self.get("/pypi/bar/json")[1])["last_serial"], 1)
        self.store.apply([dist("bar-2.0.tar.gz", project="bar", kind="sdist", version="2.0")], [])
        response, body = self.get("/pypi/bar/json")
        self.assertEqual((self.serial(response), json.loads(body)["last_serial"]), (["3"], 3))

    def test_xmlrpc_serial_methods(self):
        self.assertEqual(self.call("list_packages_with_serial"), {"Foo": 2, "bar": 1})
        self.assertEqual(self.call("changelog_last_serial"), 2)
        [entry] = self.call("changelog_since_serial", 1)
        name, version, at, action, serial = entry
        self.assertEqual((name, version, action, serial), ("Foo", "2.0", "add file foo-2.0-py3-none-any.whl", 2))
        self.assertIsInstance(at, int)
        self.assertEqual(self.call("changelog_since_serial", 2), [])

    def test_xmlrpc_names_yanks(self):
        """A yank and an unyank are changes a mirror fetches the project again for."""
        foo = self.store.snapshot.files["foo-2.0-py3-none-any.whl"]
        self.successResultOf(self.store.setYanked([foo], "broken"))
        self.successResultOf(self.store.setYanked([foo], None))
        entries = self.call("changelog_since_serial", 2)
        self.assertEqual([(name, version, action, serial) for name, version, _, action, serial in entries], [
            ("Foo", "2.0", "yank file foo-2.0-py3-none-any.whl", 3),
            ("Foo", "2.0", "unyank file foo-2.0-py3-none-any.whl", 4),
        ])
        self.assertEqual(self.call("list_packages_with_serial"), {"Foo": 4, "bar": 1})

    def test_beyond_the_horizon_every_project_is_listed(self):
        """A mirror further behind than the log (or ahead of the index) is sent every project: a full sync."""
        entries = self.call("changelog_since_serial", 0)
        self.assertEqual(sorted((e[0], e[4]) for e in entries), [("Foo", 2), ("bar", 1)])
        self.assertIn("does not reach back", entries[0][3])
        self.assertEqual(sorted(e[0] for e in self.call("changelog_since_serial", 99)), ["Foo", "bar"])

    def test_bad_parameter_is_a_fault(self):
        body = xmlrpc.client.dumps(("x",), "changelog_since_serial").encode()
        response = self.successResultOf(self.client.post(
            "http://index.test/RPC2", data=body, headers={"content-type": "text/xml"}))
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(self.successResultOf(response.content()))
        self.assertEqual(caught.exception.faultCode, -32602)
