"""
Upstream projects rendered as pypid's own simple pages: every file link
points at pypid (relative, like the local pages), never at the upstream,
and the upstream's metadata (hashes, requires-python, yanked, upload-time,
size, core-metadata) is passed through unchanged. Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from html import escape
from typing import Mapping, NamedTuple, Optional
from urllib.parse import quote

from pypid.index import render
from pypid.index.filenames import parse_filename
from pypid.index.model import NO_YANKS, DistFile, Project
from pypid.upstream.records import LINK_HASHES, UpstreamFile, UpstreamProject

#: Path segment under the root where cached upstream files are served.
MOUNT = "+upstream"


class Link(NamedTuple):
    """A file as a page lists it: where pypid serves it, and what it is."""

    href: str
    file: UpstreamFile


def upstream_href(key: str, filename: str, depth: int = 2) -> str:
    """pypid's URL of a cached upstream file, relative to a page C{depth} segments deep."""
    return "../" * depth + f"{MOUNT}/{quote(key)}/{quote(filename)}"


def local_link(f: DistFile, hash_algo: Optional[str], yanked: Optional[str] = None) -> Link:
    """
    A local file in the same shape as an upstream one (for merged pages);
    C{yanked}: its yank reason (C{""} for none), L{None} when not yanked.
    """
    record = UpstreamFile(
        filename=f.filename,
        url="",
        hashes=((hash_algo, f.digest),) if hash_algo and f.digest else (),
        requires_python=f.requires_python,
        upload_time=render.upload_time(f),
        size=f.size,
        core_metadata=(("sha256", f.metadata_sha256),) if f.metadata_sha256 else False,
        yanked=False if yanked is None else (yanked or True),
    )
    return Link(render.file_href(f), record)


def with_metadata(f: UpstreamFile, known: Mapping[str, str]) -> UpstreamFile:
    """
    An upstream file as pypid offers it: its core metadata (PEP 658) as the
    upstream gave it; else, for a wheel, pypid's own (read from the wheel
    when first asked for), with its sha256 once it is cached (C{known}:
    file name to sha256), C{true} before.
    """
    if isinstance(f.core_metadata, tuple):
        return f
    digest = known.get(f.filename)
    if digest is not None:
        return f._replace(core_metadata=(("sha256", digest),))
    if f.core_metadata is False and is_wheel_name(f.filename):
        return f._replace(core_metadata=True)
    return f


def is_wheel_name(filename: str) -> bool:
    parsed = parse_filename(filename)
    return parsed is not None and parsed.kind == "wheel"


def links(
    key: str, upstream: Optional[UpstreamProject], local: Optional[Project] = None,
    hash_algo: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
    yanked: Mapping[str, str] = NO_YANKS,
) -> list[Link]:
    """
    The links of a page: the local files first, then the upstream files
    whose filenames are not local (only for names allowed to merge), with
    pypid's core metadata (L{with_metadata}; C{metadata}: the sha256 of the
    cached metadata files, by file name). C{yanked}: the local files
    yanked (file name -> reason).
    """
    out = [local_link(f, hash_algo, yanked.get(f.filename)) for f in local.files] if local is not None else []
    taken = {link.file.filename for link in out}
    known = metadata or {}
    # PEP 792: a quarantined project offers no files.
    if upstream is not None and upstream.status != "quarantined":
        out.extend(
            Link(upstream_href(key, f.filename), with_metadata(f, known))
            for f in upstream.files if f.filename not in taken
        )
    return out


def versions(upstream: Optional[UpstreamProject], local: Optional[Project] = None) -> list[str]:
    seen: dict[str, None] = {}
    if local is not None:
        for v in local.versions:
            seen.setdefault(v, None)
    if upstream is not None:
        for v in upstream.versions:
            seen.setdefault(v, None)
    return list(seen)


def _link_hash(f: UpstreamFile) -> str:
    hashes = dict(f.hashes)
    for name in LINK_HASHES:
        if name in hashes:
            return f"#{name}={hashes[name]}"
    return ""


def _metadata_value(f: UpstreamFile) -> Optional[str]:
    if f.core_metadata is False:
        return None
    if isinstance(f.core_metadata, tuple):
        hashes = dict(f.core_metadata)
        for name in LINK_HASHES:
            if name in hashes:
                return f"{name}={hashes[name]}"
    return "true"


def api_version(page_links: list[Link]) -> str:
    """1.4 when every file has a size (PEP 700), else 1.0, as the spec asks."""
    return render.API_VERSION if all(link.file.size is not None for link in page_links) else "1.0"


def project_html(name: str, page_links: list[Link], status: Optional[str] = None,
                 status_reason: Optional[str] = None) -> bytes:
    title = escape(f"Links for {name}")
    marker = ""
    if status and status != "active":
        marker = f'<meta name="pypi:project-status" content="{escape(status)}">\n'
        if status_reason:
            marker += f'<meta name="pypi:project-status-reason" content="{escape(status_reason)}">\n'
    parts = [
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="pypi:repository-version" content="{api_version(page_links)}">\n'
        f"{marker}<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
    ]
    for link in page_links:
        f = link.file
        attrs = [f'href="{escape(link.href + _link_hash(f))}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        metadata = _metadata_value(f)
        if metadata is not None:
            attrs.append(f'data-core-metadata="{escape(metadata)}"')
            attrs.append(f'data-dist-info-metadata="{escape(metadata)}"')
        if f.yanked is not False:
            reason = f.yanked if isinstance(f.yanked, str) else ""
            attrs.append(f'data-yanked="{escape(reason)}"')
        parts.append(f"<a {' '.join(attrs)}>{escape(f.filename)}</a><br>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode("utf-8")


def file_json(link: Link) -> dict:
    f = link.file
    entry: dict = {"filename": f.filename, "url": link.href, "hashes": dict(f.hashes)}
    if f.requires_python:
        entry["requires-python"] = f.requires_python
    if f.size is not None:
        entry["size"] = f.size
    if f.upload_time:
        entry["upload-time"] = f.upload_time
    if isinstance(f.core_metadata, tuple):
        entry["core-metadata"] = dict(f.core_metadata)
    elif f.core_metadata:
        entry["core-metadata"] = True
    if f.yanked is not False:
        entry["yanked"] = f.yanked
    return entry


def project_json(key: str, page_versions: list[str], page_links: list[Link], status: Optional[str] = None,
                 status_reason: Optional[str] = None) -> bytes:
    page: dict = {
        "meta": {"api-version": api_version(page_links)},
        "name": key,
        "versions": page_versions,
        "files": [file_json(link) for link in page_links],
    }
    if status:
        page["project-status"] = {"status": status, **({"reason": status_reason} if status_reason else {})}
    return render.dumps(page)


def merged_names(local: dict, upstream_names) -> list[tuple[str, str]]:
    """
    (key, display name) of every local project (C{local} maps keys to
    projects) and every upstream name not local, sorted by key.
    """
    from pypid.index.names import is_valid, normalize

    names = {key: project.name for key, project in local.items()}
    for name in upstream_names:
        if is_valid(name):
            names.setdefault(normalize(name), name)
    return sorted(names.items())


def index_html(names: list[tuple[str, str]]) -> bytes:
    parts = [
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="pypi:repository-version" content="{render.API_VERSION}">\n'
        "<title>Simple index</title>\n</head>\n<body>\n<h1>Simple index</h1>\n"
    ]
    parts.extend(f'<a href="{key}/">{escape(name)}</a><br>\n' for key, name in names)
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode("utf-8")


def index_json(names: list[tuple[str, str]]) -> bytes:
    return render.dumps({"meta": {"api-version": render.API_VERSION},
                         "projects": [{"name": name} for _, name in names]})


def project_page(key: str, fmt: str, upstream: Optional[UpstreamProject], local: Optional[Project] = None,
                 hash_algo: Optional[str] = None, metadata: Optional[Mapping[str, str]] = None,
                 yanked: Mapping[str, str] = NO_YANKS) -> bytes:
    """The body of C{/simple/<key>/} in C{fmt} (C{"json"} or C{"html"})."""
    page_links = links(key, upstream, local, hash_algo, metadata, yanked)
    # The upstream's status marker describes the upstream project only.
    status = (upstream.status, upstream.status_reason) if upstream is not None and local is None else (None, None)
    if fmt == "json":
        return project_json(key, versions(upstream, local), page_links, *status)
    return project_html(local.name if local is not None else key, page_links, *status)
