import gzip
import json
from html.parser import HTMLParser

from twisted.trial.unittest import SynchronousTestCase

from pypid.index import render
from pypid.index.model import IndexSnapshot
from pypid.index.pages import PageCache
from pypid.index.negotiate import JSON_V1, TEXT_HTML
from tests.index.test_model import dist


class Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors, self.meta, self._open = [], {}, False

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append([dict(attrs), ""])
            self._open = True
        elif tag == "meta" and dict(attrs).get("name"):
            self.meta[dict(attrs)["name"]] = dict(attrs)["content"]

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = False

    def handle_data(self, data):
        if self._open:
            self.anchors[-1][1] += data

    def by_text(self, text):
        return next(attrs for attrs, t in self.anchors if t == text)


def parse(body):
    parser = Anchors()
    parser.feed(body.decode("utf-8"))
    return parser


def project(**overrides):
    f = dist("sub/foo_bar-1.0-py3-none-any.whl", project="foo-bar", name="Foo_Bar")
    f = f._replace(**overrides)
    return IndexSnapshot.build([f, dist("foo_bar-1.0.tar.gz", project="foo-bar", kind="sdist")]).get("foo-bar")


class RenderTests(SynchronousTestCase):
    def test_project_html(self):
        """Links are relative, carry sha256, escaped requires-python and both core-metadata attributes."""
        page = parse(render.project_html(project(requires_python=">=3.8,<4", metadata_sha256="e" * 64), "sha256"))
        self.assertEqual(page.meta["pypi:repository-version"], "1.4")
        attrs = page.by_text("foo_bar-1.0-py3-none-any.whl")
        self.assertEqual(attrs["href"], "../../packages/sub/foo_bar-1.0-py3-none-any.whl#sha256=" + "d" * 64)
        self.assertEqual(attrs["data-requires-python"], ">=3.8,<4")
        self.assertEqual(attrs["data-core-metadata"], "sha256=" + "e" * 64)
        self.assertEqual(attrs["data-dist-info-metadata"], attrs["data-core-metadata"])
        sdist_attrs = page.by_text("foo_bar-1.0.tar.gz")
        self.assertNotIn("data-core-metadata", sdist_attrs)

    def test_requires_python_raw_bytes(self):
        """The raw attribute uses &lt; and &gt;."""
        body = render.project_html(project(requires_python=">=3.8,<4"), "sha256")
        self.assertIn(b'data-requires-python="&gt;=3.8,&lt;4"', body)

    def test_no_hash(self):
        page = parse(render.project_html(project(), None))
        self.assertNotIn("#", page.anchors[0][0]["href"])

    def test_escaping(self):
        """User-controlled text is HTML-escaped."""
        body = render.project_html(project(requires_python='"><script>'), "sha256")
        self.assertNotIn(b"<script>", body)

    def test_project_json(self):
        """PEP 691 + 700: normalised name, versions, size, upload-time, core-metadata, never dist-info-metadata."""
        doc = json.loads(render.project_json(project(metadata_sha256="e" * 64, requires_python=">=3.8"), "sha256"))
        self.assertEqual(doc["meta"], {"api-version": "1.4"})
        self.assertEqual(doc["name"], "foo-bar")
        self.assertEqual(doc["versions"], ["1.0"])
        wheel, sdist = doc["files"]
        self.assertEqual(wheel["url"], "../../packages/sub/foo_bar-1.0-py3-none-any.whl")
        self.assertEqual(wheel["hashes"], {"sha256": "d" * 64})
        self.assertEqual(wheel["size"], 10)
        self.assertRegex(wheel["upload-time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual(wheel["core-metadata"], {"sha256": "e" * 64})
        self.assertEqual(wheel["requires-python"], ">=3.8")
        self.assertNotIn("dist-info-metadata", json.dumps(doc))
        self.assertEqual(sdist["filename"], "foo_bar-1.0.tar.gz")
        self.assertNotIn("core-metadata", sdist)

    def test_index(self):
        snap = IndexSnapshot.build([dist("a-1.whl", project="a", name="A"), dist("b-1.whl", project="b")])
        page = parse(render.index_html(snap))
        self.assertEqual([(a["href"], t) for a, t in page.anchors], [("a/", "A"), ("b/", "b")])
        doc = json.loads(render.index_json(snap))
        self.assertEqual(doc["projects"], [{"name": "A"}, {"name": "b"}])

    def test_quoting(self):
        """A '+' in a filename is percent-encoded in the URL; the text stays the filename."""
        f = dist("pkg-1.0+cpu-py3-none-any.whl", project="pkg")
        page = parse(render.project_html(IndexSnapshot.build([f]).get("pkg"), "sha256"))
        self.assertIn("pkg-1.0%2Bcpu-py3-none-any.whl", page.anchors[0][0]["href"])
        self.assertEqual(page.anchors[0][1], "pkg-1.0+cpu-py3-none-any.whl")


class PageCacheTests(SynchronousTestCase):
    def test_rendered_once_and_invalidated(self):
        """A page is rendered once; a change to its project (only) drops it."""
        snap = IndexSnapshot.build([dist("a-1.whl", project="a"), dist("b-1.whl", project="b")])
        cache = PageCache(snap, "sha256")
        a, b = cache.project("a", TEXT_HTML), cache.project("b", JSON_V1)
        index = cache.index(TEXT_HTML)
        self.assertIs(cache.project("a", TEXT_HTML), a)
        new, changed = snap.apply([dist("a-2.whl", project="a", version="2")], [])
        cache.update(new, changed)
        self.assertIsNot(cache.project("a", TEXT_HTML), a)
        self.assertIs(cache.project("b", JSON_V1), b)
        self.assertIs(cache.index(TEXT_HTML), index, "the project list did not change")
        new2, changed2 = new.apply([dist("c-1.whl", project="c")], [])
        cache.update(new2, changed2)
        self.assertIsNot(cache.index(TEXT_HTML), index)
        self.assertIsNone(cache.project("zzz", TEXT_HTML))

    def test_gzip_and_etags(self):
        snap = IndexSnapshot.build([dist(f"p{i}-1.whl", project=f"p{i}") for i in range(50)])
        cache = PageCache(snap, "sha256")
        html, js = cache.index(TEXT_HTML), cache.index(JSON_V1)
        self.assertEqual(gzip.decompress(html.gzipped), html.body)
        self.assertNotEqual(html.etag, js.etag)
        self.assertNotEqual(html.etag, html.gzip_etag)
        self.assertTrue(html.etag.startswith(b'"') and html.etag.endswith(b'"'))


class YankRenderTests(SynchronousTestCase):
    """PEP 592 on every page: data-yanked, JSON yanked, /pypi json, /packages/."""

    def snapshot(self):
        snap = IndexSnapshot.build([
            dist("sub/foo_bar-1.0-py3-none-any.whl", project="foo-bar", name="Foo_Bar"),
            dist("foo_bar-1.0.tar.gz", project="foo-bar", kind="sdist"),
            dist("foo_bar-0.9.tar.gz", project="foo-bar", kind="sdist", version="0.9"),
        ])
        snap, changed = snap.with_yanks({"foo-bar": {
            "foo_bar-1.0-py3-none-any.whl": 'broken <"&> build', "foo_bar-1.0.tar.gz": ""}})
        self.assertEqual(changed, frozenset({"foo-bar"}))
        return snap

    def test_html_always_has_a_value(self):
        snap = self.snapshot()
        body = render.project_html(snap.get("foo-bar"), "sha256", snap.yanked("foo-bar"))
        page = parse(body)
        self.assertEqual(page.by_text("foo_bar-1.0-py3-none-any.whl")["data-yanked"], 'broken <"&> build')
        self.assertIn(b'data-yanked="broken &lt;&quot;&amp;&gt; build"', body)
        self.assertEqual(page.by_text("foo_bar-1.0.tar.gz")["data-yanked"], "")
        self.assertIn(b'data-yanked=""', body)
        self.assertNotIn("data-yanked", page.by_text("foo_bar-0.9.tar.gz"))

    def test_json_reason_or_true(self):
        snap = self.snapshot()
        doc = json.loads(render.project_json(snap.get("foo-bar"), "sha256", snap.yanked("foo-bar")))
        yanked = {f["filename"]: f.get("yanked") for f in doc["files"]}
        self.assertEqual(yanked, {"foo_bar-0.9.tar.gz": None, "foo_bar-1.0-py3-none-any.whl": 'broken <"&> build',
                                  "foo_bar-1.0.tar.gz": True})

    def test_flat_listing(self):
        page = parse(render.files_html(self.snapshot(), "sha256"))
        self.assertEqual(page.by_text("sub/foo_bar-1.0-py3-none-any.whl")["data-yanked"], 'broken <"&> build')
        self.assertNotIn("data-yanked", page.by_text("foo_bar-0.9.tar.gz"))

    def test_page_cache_renders_the_yanks_and_drops_on_a_change(self):
        snap = IndexSnapshot.build([dist("a-1.whl", project="a")])
        cache = PageCache(snap, "sha256")
        before = cache.project("a", TEXT_HTML)
        new, changed = snap.with_yanks({"a": {"a-1.whl": "r"}})
        cache.update(new, changed)
        after = cache.project("a", TEXT_HTML)
        self.assertNotEqual(before.etag, after.etag)
        self.assertIn(b'data-yanked="r"', after.body)
        self.assertIn(b'"yanked":"r"', cache.project("a", JSON_V1).body)

    def test_pypi_json(self):
        from pypid.index import pypijson

        snap = self.snapshot()
        project = snap.get("foo-bar")
        yanked = snap.yanked("foo-bar")
        self.assertEqual(pypijson.latest_version(project, yanked), "0.9", "not yanked first")
        self.assertEqual(pypijson.latest_version(project), "1.0")
        doc = json.loads(pypijson.project_document(project, None, None, "http://h/", "sha256", 3, yanked))
        self.assertEqual((doc["info"]["version"], doc["info"]["yanked"], doc["info"]["yanked_reason"]),
                         ("0.9", False, None))
        files = {f["filename"]: (f["yanked"], f["yanked_reason"]) for f in doc["releases"]["1.0"]}
        self.assertEqual(files, {"foo_bar-1.0-py3-none-any.whl": (True, 'broken <"&> build'),
                                 "foo_bar-1.0.tar.gz": (True, None)})
        release = json.loads(pypijson.project_document(project, "1.0", None, "http://h/", "sha256", 3, yanked))
        self.assertEqual((release["info"]["yanked"], release["info"]["yanked_reason"]), (True, 'broken <"&> build'))
        # Every release yanked: the highest is still shown.
        everything = {f.filename: "" for f in project.files}
        self.assertEqual(pypijson.latest_version(project, everything), "1.0")

    def test_people_page(self):
        from pypid.index import people
        from pypid.index.search import entry_of

        snap = self.snapshot()
        project = snap.get("foo-bar")
        page = people.project_page(project, entry_of(project), "http://h/", snap.yanked("foo-bar"), forms=True).decode()
        self.assertIn('<h1>foo-bar <span class="version">0.9</span></h1>', page)
        self.assertIn("<s>1.0</s>", page)
        self.assertIn("Yanked: broken &lt;&quot;&amp;&gt; build.", page)
        self.assertIn('<tr class="yanked">', page)
        self.assertIn('action="../../+api/unyank"', page)
        self.assertIn('action="../../+api/yank"', page)
        self.assertNotIn("+api", people.project_page(project, entry_of(project), "http://h/").decode())

class ListsInThreadsTests(SynchronousTestCase):
    """The pages that grow with the index are rendered in threads, once per change."""

    def setUp(self):
        from tests.test_threads import FakeThreads

        self.threads = FakeThreads()
        self.snap = IndexSnapshot.build([dist(f"p{i}-1.whl", project=f"p{i}") for i in range(3)])
        self.cache = PageCache(self.snap, "sha256", self.threads)

    def test_index_waits_for_its_render(self):
        d = self.cache.index(TEXT_HTML)
        self.assertNoResult(d)
        self.assertEqual(len(self.threads.jobs), 1, "rendered in a thread")
        self.threads.run()
        page = self.successResultOf(d)
        self.assertIn(b'href="p2/"', page.body)
        self.assertIs(self.cache.index(TEXT_HTML), page, "served from memory until a change")

    def test_a_new_project_renders_again(self):
        d = self.cache.index(JSON_V1)
        self.threads.run()
        old = self.successResultOf(d)
        new, changed = self.snap.apply([dist("a-2.whl", project="p0", version="2")], [])
        self.cache.update(new, changed)
        self.assertIs(self.cache.index(JSON_V1), old, "a new file of a listed project keeps the list")
        newer, changed = new.apply([dist("q-1.whl", project="q")], [])
        self.cache.update(newer, changed)
        d = self.cache.index(JSON_V1)
        self.threads.run()
        self.assertIn("q", [p["name"] for p in json.loads(self.successResultOf(d).body)["projects"]])

    def test_project_keys(self):
        d = self.cache.project_keys()
        self.threads.run()
        self.assertEqual(self.successResultOf(d), ["p0", "p1", "p2"])

    def test_project_pages_are_bounded(self):
        """Project pages are kept up to a number of bytes, the most recent ones."""
        snap = IndexSnapshot.build([dist(f"p{i}-1.whl", project=f"p{i}") for i in range(50)])
        one = len(render.project_html(snap.get("p0"), "sha256"))
        cache = PageCache(snap, "sha256", project_bytes=10 * (one + 1000))
        first = cache.project("p0", TEXT_HTML)
        for i in range(1, 50):
            cache.project(f"p{i}", TEXT_HTML)
        self.assertIsNot(cache.project("p0", TEXT_HTML), first, "evicted, then rendered again")
        self.assertEqual(cache.project("p0", TEXT_HTML).body, first.body)


class ListingChunksTests(SynchronousTestCase):
    def test_chunks(self):
        """/packages/ is rendered a chunk at a time, every file once, projects in order."""
        snap = IndexSnapshot.build(
            [dist(f"d{i % 7}/p{i}-{v}.whl", project=f"p{i}", version=str(v)) for i in range(300) for v in (1, 2)])
        keys = sorted(snap.projects)
        chunks = list(render.files_html_chunks(snap, keys, "sha256", size=1000))
        self.assertGreater(len(chunks), 20)
        self.assertTrue(all(len(c) < 1000 + 600 for c in chunks))
        whole = b"".join(chunks)
        self.assertEqual(whole, render.files_html(snap, "sha256"))
        page = parse(whole)
        self.assertEqual(len(page.anchors), 600)
        self.assertEqual([a[1] for a in page.anchors[:2]], ["d0/p0-1.whl", "d0/p0-2.whl"])

    def test_gone_projects_are_skipped(self):
        snap = IndexSnapshot.build([dist("a-1.whl", project="a")])
        self.assertEqual(len(parse(b"".join(render.files_html_chunks(snap, ["a", "gone"], None))).anchors), 1)
