"""The search index and the pages for people, without a server."""

from __future__ import annotations

from packaging.version import Version

from pypid.index import people as browse
from pypid.index.model import DistFile, IndexSnapshot
from pypid.index.search import SearchIndex, entry_of


def dist(name: str, version: str, summary: str = "", requires: str | None = None, mtime: int = 1_700_000_000) -> DistFile:
    filename = f"{name}-{version}.tar.gz"
    return DistFile(filename, 0, filename, name.lower().replace("_", "-"), name, Version(version), "sdist",
                    "source", (), 1536, mtime * 10**9, "ab", requires, None, summary)


SNAPSHOT = IndexSnapshot.build([
    dist("Demo_App", "1.0", "Old summary", ">=3.8"),
    dist("Demo_App", "1.1", "The demo <app>", ">=3.9"),
    dist("Demo_App", "2.0rc1", "A pre-release"),
    dist("demo-lib", "0.1", "Helpers"),
    dist("other", "1.0", "Uses the demo app"),
])


def test_entry_is_the_newest_final_release():
    entry = entry_of(SNAPSHOT.get("demo-app"))
    assert (entry.version, entry.summary, entry.requires_python, entry.files) == ("1.1", "The demo <app>", ">=3.9", 3)
    only_pre = IndexSnapshot.build([dist("x", "1.0a1"), dist("x", "1.0b1", "beta")])
    assert entry_of(only_pre.get("x"))[2:4] == ("1.0b1", "beta")


def test_ranking_exact_prefix_substring_summary():
    index = SearchIndex(SNAPSHOT)
    assert [e.key for e in index.search("demo-app")] == ["demo-app"]
    assert [e.key for e in index.search("demo")] == ["demo-app", "demo-lib", "other"]
    assert [e.key for e in index.search("Demo.App")] == ["demo-app"]
    assert [e.key for e in index.search("app uses")] == ["other"]
    assert index.search("   ") == []


def test_rebuild_reuses_untouched_projects():
    first = SearchIndex(SNAPSHOT)
    changed, _ = SNAPSHOT.apply([dist("demo-lib", "0.2", "Helpers, newer")], [])
    second = SearchIndex(changed, first)
    assert second.by_key["demo-app"] is first.by_key["demo-app"]
    assert second.by_key["demo-lib"].version == "0.2"


def test_spec_search_versions_and_operators():
    index = SearchIndex(SNAPSHOT)
    hits = index.spec_search({"name": "demo_app", "version": "1.0"}, "and")
    assert [(h["version"], h["summary"]) for h in hits] == [("1.0", "Old summary")]
    assert {h["name"] for h in index.spec_search({"name": ["lib", "other"]}, "or")} == {"demo-lib", "other"}
    assert index.spec_search({"author": "someone"}, "or") == []


def test_pages_escape_and_link_relatively():
    index = SearchIndex(SNAPSHOT)
    page = browse.project_page(SNAPSHOT.get("demo-app"), index.by_key["demo-app"], "https://h.example/pypi/").decode()
    assert "The demo &lt;app&gt;" in page and "<app>" not in page
    assert "pip install --index-url https://h.example/pypi/simple/ demo-app" in page
    assert 'href="../../packages/Demo_App-1.1.tar.gz"' in page
    assert "1.5 KiB" in page and "2023-11-14 22:13 UTC" in page
    listing = browse.search_page("<b>", [], 0).decode()
    assert "&lt;b&gt;" in listing and "<b>" not in listing


def test_human_size():
    assert [browse.human_size(n) for n in (0, 1, 1023, 1536, 5 * 2**20, 3 * 2**30)] == [
        "0 bytes", "1 byte", "1023 bytes", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


def test_entries_follow_yanks():
    """The newest release that is not yanked is the one lists and search show; a yank rebuilds the entry."""
    first = SearchIndex(SNAPSHOT)
    assert first.by_key["demo-app"].version == "1.1"
    yanked, _ = SNAPSHOT.with_yanks({"demo-app": {"Demo_App-1.1.tar.gz": "broken"}})
    second = SearchIndex(yanked, first)
    assert second.by_key["demo-app"].version == "1.0"
    assert second.by_key["demo-lib"] is first.by_key["demo-lib"]
    assert SearchIndex(yanked, second).by_key["demo-app"] is second.by_key["demo-app"]

def test_projects_page_in_pages():
    """Every project, a page at a time, with links to the pages around."""
    entries = SearchIndex(IndexSnapshot.build([dist(f"p{i:03}", "1.0") for i in range(25)])).entries
    whole = browse.projects_page(entries).decode()
    assert whole.count("<tr><td>") == 25 and "?page=" not in whole
    first = browse.projects_page(entries, 1, 10).decode()
    assert "<p>25 projects.</p>" in first and first.count("<tr><td>") == 10
    assert 'href="?page=2" rel="next"' in first and "rel=\"prev\"" not in first
    last = browse.projects_page(entries, 3, 10).decode()
    assert last.count("<tr><td>") == 5 and 'href="?page=2" rel="prev"' in last and 'rel="next"' not in last
    assert "p024" in last and "p019" not in last
    assert browse.projects_page(entries, 9, 10) == browse.projects_page(entries, 3, 10), "past the end: the last page"
