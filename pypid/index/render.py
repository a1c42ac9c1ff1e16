"""
Rendering of the simple repository API pages (PEP 503/629/691/700/714) to
bytes. Pure functions over index snapshots; no I/O, no Twisted.

Every link is relative, so the pages stay correct whatever host, scheme or
path prefix the index is reached through.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from typing import Iterable, Iterator, Mapping, Optional
from urllib.parse import quote

from pypid.index.model import NO_YANKS, DistFile, IndexSnapshot, Project

API_VERSION = "1.4"

_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta charset="utf-8">\n'
    f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
    "<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
)
_TAIL = "</body>\n</html>\n"


def dumps(value: object) -> bytes:
    """Serialise C{value} as compact, ASCII-safe JSON."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def upload_time(f: DistFile) -> str:
    """The file's upload time in the PEP 700 format."""
    moment = datetime.fromtimestamp(f.mtime_ns / 1e9, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_href(f: DistFile, depth: int = 2) -> str:
    """
    The URL of C{f}'s download relative to a page C{depth} path segments
    below the root (C{/simple/<project>/} is at depth 2), without fragment.
    """
    return "../" * depth + "packages/" + quote(f.path)


def _fragment(f: DistFile, hash_algo: Optional[str]) -> str:
    return f"#{hash_algo}={f.digest}" if hash_algo and f.digest else ""


def index_html(snapshot: IndexSnapshot) -> bytes:
    """The HTML project list at C{/simple/}."""
    parts = [_HEAD.format(title="Simple index")]
    for key in sorted(snapshot.projects):
        project = snapshot.projects[key]
        parts.append(f'<a href="{key}/">{escape(project.name)}</a><br>\n')
    parts.append(_TAIL)
    return "".join(parts).encode("utf-8")


def index_json(snapshot: IndexSnapshot) -> bytes:
    """The JSON project list at C{/simple/} (PEP 691)."""
    return dumps(
        {
            "meta": {"api-version": API_VERSION},
            "projects": [
                {"name": snapshot.projects[key].name} for key in sorted(snapshot.projects)
            ],
        }
    )


def yanked_attribute(reason: Optional[str]) -> str:
    """
    PEP 592's C{data-yanked}, always with a value (pip reads a bare
    attribute as not yanked); C{""} when the file is not yanked.
    """
    return "" if reason is None else f' data-yanked="{escape(reason)}"'


def project_html(project: Project, hash_algo: Optional[str], yanked: Mapping[str, str] = NO_YANKS) -> bytes:
    """
    The HTML page of one project at C{/simple/<project>/}; C{yanked} maps
    the file names of its yanked files to their reasons.
    """
    title = escape(f"Links for {project.name}")
    parts = [_HEAD.format(title=title)]
    signed = any(f.has_sig for f in project.files)
    for f in project.files:
        attrs = [f'href="{escape(file_href(f) + _fragment(f, hash_algo))}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        if yanked:
            reason = yanked.get(f.filename)
            if reason is not None:
                attrs.append(f'data-yanked="{escape(reason)}"')
        if f.metadata_sha256:
            value = f"sha256={f.metadata_sha256}"
            attrs.append(f'data-core-metadata="{value}"')
            attrs.append(f'data-dist-info-metadata="{value}"')
        if signed:
            attrs.append(f'data-gpg-sig="{"true" if f.has_sig else "false"}"')
        parts.append(f"<a {' '.join(attrs)}>{escape(f.filename)}</a><br>\n")
    parts.append(_TAIL)
    return "".join(parts).encode("utf-8")


def file_json(f: DistFile, hash_algo: Optional[str], yanked: Optional[str] = None) -> dict[str, object]:
    """
    One entry of a PEP 691 project page's C{files} list; C{yanked} is the
    file's yank reason (C{""} for none), L{None} when it is not yanked.
    """
    entry: dict[str, object] = {
        "filename": f.filename,
        "url": file_href(f),
        "hashes": {hash_algo: f.digest} if hash_algo and f.digest else {},
        "size": f.size,
        "upload-time": upload_time(f),
    }
    if f.requires_python:
        entry["requires-python"] = f.requires_python
    if f.metadata_sha256:
        entry["core-metadata"] = {"sha256": f.metadata_sha256}
    if f.has_sig:
        entry["gpg-sig"] = True
    if yanked is not None:
        # A reason, or true: never an empty string.
        entry["yanked"] = yanked or True
    return entry


def project_json(project: Project, hash_algo: Optional[str], yanked: Mapping[str, str] = NO_YANKS) -> bytes:
    """The JSON page of one project (PEP 691 with PEP 700 fields)."""
    return dumps(
        {
            "meta": {"api-version": API_VERSION},
            "name": project.key,
            "versions": project.versions,
            "files": [file_json(f, hash_algo, yanked.get(f.filename) if yanked else None)
                      for f in project.files],
        }
    )


#: Bytes of the C{/packages/} listing rendered at a time.
LISTING_CHUNK = 64 * 1024


def files_html_chunks(
    snapshot: IndexSnapshot, keys: Iterable[str], hash_algo: Optional[str], size: int = LISTING_CHUNK
) -> Iterator[bytes]:
    """
    The flat list of every file at C{/packages/}, for C{pip --find-links},
    rendered as it is read, about C{size} bytes at a time: the files of the
    projects C{keys} (sorted) of C{snapshot}, each project's in version
    order.
    """
    parts = [_HEAD.format(title="Index of packages")]
    length = 0
    projects = snapshot.projects
    yanks = snapshot.yanks
    for key in keys:
        project = projects.get(key)
        if project is None:
            continue
        # One lookup a project, and one a file only in projects with yanks.
        yanked = yanks.get(key) if yanks else None
        # A project's files are its listed ones (shadowed ones apart).
        for f in project.files:
            path = f.path
            line = f'<a href="{escape(quote(path) + _fragment(f, hash_algo))}"'
            if f.requires_python:
                line += f' data-requires-python="{escape(f.requires_python)}"'
            if yanked:
                line += yanked_attribute(yanked.get(f.filename))
            line += f">{escape(path)}</a><br>\n"
            parts.append(line)
            length += len(line)
        if length >= size:
            yield "".join(parts).encode("utf-8")
            parts, length = [], 0
    parts.append(_TAIL)
    yield "".join(parts).encode("utf-8")


def files_html(snapshot: IndexSnapshot, hash_algo: Optional[str]) -> bytes:
    """The whole of L{files_html_chunks}, at once."""
    return b"".join(files_html_chunks(snapshot, sorted(snapshot.projects), hash_algo))
