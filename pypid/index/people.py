"""
Pages for people: every project (C{/project/}), one project
(C{/project/<name>/}) and search results (C{/search?q=}). Plain HTML with
an inline style sheet: no scripts, no external assets, every link relative.
Pure.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Iterable, Mapping, Optional
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

from pypid import __version__
from pypid.counts import counted, human_size
from pypid.index.model import NO_YANKS, DistFile, Project
from pypid.index.pypijson import latest_version, release_files, release_yank
from pypid.index.search import Entry, release_summary

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;
line-height:1.45;color:#1d1d1f}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;border-bottom:1px solid #ddd;
padding-bottom:.6rem}
header a.home{font-weight:600;text-decoration:none;color:#1d1d1f}
form.search{margin-left:auto}input[type=search]{padding:.3rem .5rem;width:16rem;font-size:1rem}
button{padding:.3rem .8rem;font-size:1rem}
h1{margin:.9rem 0 .2rem}h1 .version{color:#666;font-weight:400}
h2{margin-top:1.6rem;font-size:1.15rem}h3{margin:1.2rem 0 .3rem;font-size:1rem}
.summary{font-size:1.1rem;margin:.2rem 0 .8rem}.muted{color:#666}
pre{background:#f4f4f6;border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f4f4f6}td.num,th.num{text-align:right;white-space:nowrap}
table.files{table-layout:fixed}table.files td{overflow-wrap:anywhere}
table.files th:nth-child(1){width:44%}table.files th:nth-child(2){width:9%}
table.files th:nth-child(3){width:11%}table.files th:nth-child(4){width:20%}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}
dt{color:#666}dd{margin:0}a{color:#0a58ca}code{font-size:.95em}
tr.yanked td:first-child a{text-decoration:line-through}.yank{color:#a1260d}
form.yank{margin:.3rem 0}form.yank input[type=text]{padding:.2rem .4rem;width:22rem;max-width:60%}
form.yank button{padding:.2rem .6rem;font-size:.9rem}
"""

#: Longest yank reason (characters): the API's limit, told to the form too.
MAX_REASON = 500


def when(mtime_ns: int) -> str:
    """A file's upload time, to the minute, in UTC."""
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def layout(title: str, up: str, query: str, body: Iterable[str]) -> bytes:
    """
    A whole page with the header bar every page for people has (home,
    all projects, search). C{up} leads from the page to the index root
    (C{""}, C{"../"}, C{"../../"}).
    """
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n",
        f'<a class="home" href="{up or "./"}">pypid package index</a>\n',
        f'<a href="{up}project/">All projects</a>\n',
        f'<form class="search" action="{up}search" method="get" role="search">'
        f'<input type="search" name="q" value="{escape(query)}" placeholder="Search projects" '
        'aria-label="Search projects"> <button type="submit">Search</button></form>\n</header>\n<main>\n',
    ]
    parts.extend(body)
    parts.append(f'</main>\n<p class="muted">pypid {escape(__version__)}</p>\n</body>\n</html>\n')
    return "".join(parts).encode("utf-8")


def _rows(entries: Iterable[Entry], up: str) -> list[str]:
    rows = [
        "<table>\n<thead><tr><th>Project</th><th>Version</th><th>Summary</th>"
        '<th class="num">Last upload</th></tr></thead>\n<tbody>\n'
    ]
    for e in entries:
        rows.append(
            f'<tr><td><a href="{up}project/{e.key}/">{escape(e.name)}</a></td>'
            f"<td>{escape(e.version)}</td><td>{escape(e.summary)}</td>"
            f'<td class="num">{when(e.newest_mtime_ns)}</td></tr>\n'
        )
    rows.append("</tbody>\n</table>\n")
    return rows


def projects_page(entries: list[Entry], page: int = 1, per_page: Optional[int] = None) -> bytes:
    """
    C{/project/}: every project, by name; C{per_page} of them on page
    C{page} (from 1) when given, with links to the pages before and after.
    """
    body = [f"<h1>All projects</h1>\n<p>{counted(len(entries), 'project')}.</p>\n"]
    shown = entries
    if per_page is not None and len(entries) > per_page:
        pages = -(-len(entries) // per_page)
        page = min(page, pages)
        first = (page - 1) * per_page
        shown = entries[first : first + per_page]
        links = []
        if page > 1:
            links.append(f'<a href="?page={page - 1}" rel="prev">previous</a>')
        if page < pages:
            links.append(f'<a href="?page={page + 1}" rel="next">next</a>')
        nav = (f'<p class="muted">Projects {first + 1:,} to {first + len(shown):,} (page {page} of {pages}). '
               + " · ".join(links) + "</p>\n")
        body.append(nav)
    if shown:
        body.extend(_rows(shown, "../"))
    if shown is not entries:
        body.append(nav)
    return layout("All projects - pypid", "../", "", body)


def search_page(query: str, results: list[Entry], total: int) -> bytes:
    """C{/search?q=}: the projects matching C{query}, best first."""
    if not query.strip():
        body = ["<h1>Search</h1>\n<p>Type words from a project's name or summary.</p>\n"]
    elif not results:
        body = [f"<h1>Search</h1>\n<p>No project matches <strong>{escape(query)}</strong>.</p>\n"]
    else:
        shown = f"the first {len(results)} of " if len(results) < total else ""
        noun = "project matches" if total == 1 else "projects match"
        body = [f"<h1>Search</h1>\n<p>{shown}{total} {noun} <strong>{escape(query)}</strong>.</p>\n"]
        body.extend(_rows(results, ""))
    return layout(f"Search: {query} - pypid" if query.strip() else "Search - pypid", "", query, body)


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (-1, version)


def _file_row(f: DistFile, yanked: Optional[str] = None) -> str:
    href = "../../packages/" + quote(f.path)
    kind = {"wheel": "wheel", "sdist": "source", "egg": "egg"}.get(f.kind, f.kind)
    row = '<tr class="yanked">' if yanked is not None else "<tr>"
    note = ""
    if yanked is not None:
        note = '<br><span class="yank">yanked' + (f": {escape(yanked)}" if yanked else "") + "</span>"
    return (
        f'{row}<td><a href="{escape(href)}">{escape(f.filename)}</a>{note}</td><td>{kind}</td>'
        f'<td class="num">{human_size(f.size)}</td><td class="num">{when(f.mtime_ns)}</td>'
        f"<td>{escape(f.requires_python or '')}</td></tr>\n"
    )


def _yank_form(key: str, version: str, yanked: bool) -> str:
    """
    The release's yank (or unyank) form: a POST to the yank API, which asks
    the browser for a user name and password that may upload to the project.
    """
    fields = (
        f'<input type="hidden" name="project" value="{escape(key)}">'
        f'<input type="hidden" name="version" value="{escape(version)}">'
        '<input type="hidden" name="from" value="page">'
    )
    if yanked:
        return (f'<form class="yank" method="post" action="../../+api/unyank">{fields}'
                f'<button type="submit">Unyank {escape(version)}</button></form>\n')
    return (
        f'<form class="yank" method="post" action="../../+api/yank">{fields}'
        f'<input type="text" name="reason" maxlength="{MAX_REASON}" placeholder="Reason (optional)" '
        f'aria-label="Reason for yanking {escape(version)}"> '
        f'<button type="submit">Yank {escape(version)}</button></form>\n'
    )


def project_page(project: Project, entry: Entry, base: str, yanked: Mapping[str, str] = NO_YANKS,
                 forms: bool = False) -> bytes:
    """
    C{/project/<key>/}: summary, requires-python, the install commands, and
    every version (newest first) with its files, sizes and upload times;
    yanked files struck through with their reason.

    @param base: the index root URL as the visitor reached it, for the
        install commands (the page's links are relative).
    @param yanked: the project's yanked files: file name -> reason.
    @param forms: show each release's yank or unyank form (when the index
        takes uploads).
    """
    simple = f"{base}simple/"
    name = escape(project.name)
    # The latest release that is not yanked, as the JSON API's info shows.
    latest = latest_version(project, yanked) if yanked else entry.version
    body = [
        f'<h1>{name} <span class="version">{escape(latest)}</span></h1>\n',
        f'<p class="summary">{escape(entry.summary) or "<span class=muted>No summary.</span>"}</p>\n',
        "<dl>\n",
        f"<dt>Latest version</dt><dd>{escape(latest)}</dd>\n",
        f"<dt>Requires Python</dt><dd>{escape(entry.requires_python or 'any')}</dd>\n",
        f"<dt>Files</dt><dd>{entry.files}</dd>\n",
        f"<dt>Last upload</dt><dd>{when(entry.newest_mtime_ns)}</dd>\n",
        f'<dt>Index pages</dt><dd><a href="../../simple/{project.key}/">simple</a> · '
        f'<a href="../../pypi/{project.key}/json">JSON</a></dd>\n',
        "</dl>\n<h2>Install</h2>\n",
        f"<pre>pip install --index-url {escape(simple)} {escape(project.key)}</pre>\n",
        f"<pre>uv pip install --index-url {escape(simple)} {escape(project.key)}</pre>\n",
    ]
    versions = sorted(project.versions, key=_version_key, reverse=True)
    body.append(f"<h2>Versions ({len(versions)})</h2>\n")
    for version in versions:
        files = release_files(project, version)
        summary = release_summary(files)
        anchor = escape(quote(version, safe=""))
        release_yanked = release_yank(files, yanked)
        if release_yanked is None:
            body.append(f'<h3 id="v{anchor}">{escape(version)}</h3>\n')
        else:
            body.append(f'<h3 id="v{anchor}"><s>{escape(version)}</s> <span class="yank">yanked</span></h3>\n')
            body.append('<p class="yank">Yanked' + (f": {escape(release_yanked)}" if release_yanked else "")
                        + ". Installers skip it unless it is pinned with ==.</p>\n")
        if summary and summary != entry.summary:
            body.append(f'<p class="muted">{escape(summary)}</p>\n')
        body.append(
            '<table class="files">\n<thead><tr><th>File</th><th>Kind</th><th class="num">Size</th><th class="num">Uploaded</th>'
            "<th>Requires Python</th></tr></thead>\n<tbody>\n"
        )
        body.extend(_file_row(f, yanked.get(f.filename)) for f in files)
        body.append("</tbody>\n</table>\n")
        if forms:
            body.append(_yank_form(project.key, version, release_yanked is not None))
    return layout(f"{project.name} {latest} - pypid", "../../", "", body)


def not_found_page(name: str, suggestions: list[Entry]) -> bytes:
    """A project page for a name the index does not hold."""
    body = [f"<h1>Not found</h1>\n<p>This index has no project <strong>{escape(name)}</strong>.</p>\n"]
    if suggestions:
        body.append("<p>Similar names:</p>\n")
        body.extend(_rows(suggestions, "../../"))
    return layout("Not found - pypid", "../../", name, body)
