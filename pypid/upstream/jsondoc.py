"""
C{/pypi/<project>/json} for upstream projects: the upstream's own JSON API
document with every URL pointing at pypid, or, where the upstream has none
(or cannot be reached), one built from its simple page and the core
metadata of the release shown, in the shape of the local projects' (see
L{pypid.index.pypijson}). Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import email.message
from typing import Any, Mapping, NamedTuple, Optional
from urllib.parse import quote

from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from pypid.index.filenames import parse_filename
from pypid.index.pypijson import _info
from pypid.upstream.records import UpstreamFile, UpstreamProject
from pypid.upstream.rewrite import MOUNT, with_metadata


class _Named(NamedTuple):
    key: str
    name: str


def json_url(simple_url: str, key: str, version: Optional[str] = None) -> Optional[str]:
    """
    The upstream's JSON API URL for C{key} (and C{version}), when its simple
    index is at C{<root>/simple/} (as on the public index, devpi and pypid);
    L{None} otherwise.
    """
    if not simple_url.endswith("/simple/"):
        return None
    root = simple_url[: -len("simple/")]
    middle = f"{quote(key)}/{quote(version, safe='')}/" if version is not None else f"{quote(key)}/"
    return f"{root}pypi/{middle}json"


def file_url(base: str, key: str, filename: str) -> str:
    return f"{base}{MOUNT}/{quote(key)}/{quote(filename)}"


def _version(f: UpstreamFile) -> Optional[Version]:
    parsed = parse_filename(f.filename)
    return parsed.version if parsed is not None else None


def latest_version(project: UpstreamProject) -> Optional[str]:
    """The release the project-level C{info} shows: not yanked first, then final before pre-release, then highest."""
    best = None
    for f in project.files:
        version = _version(f)
        if version is None:
            continue
        rank = (f.yanked is False, not version.is_prerelease, version)
        if best is None or rank > best[0]:
            best = (rank, version)
    return str(best[1]) if best is not None else None


def release_files(project: UpstreamProject, version: str) -> list[UpstreamFile]:
    """The files of release C{version} (matched by canonical version)."""
    try:
        canonical = canonicalize_version(version)
    except InvalidVersion:
        return []
    return [f for f in project.files if (v := _version(f)) is not None and canonicalize_version(str(v)) == canonical]


def metadata_file(files: list[UpstreamFile]) -> Optional[UpstreamFile]:
    """The file whose core metadata describes a release: a wheel (pypid reads those of every wheel)."""
    for f in files:
        parsed = parse_filename(f.filename)
        if parsed is not None and parsed.kind == "wheel":
            return f
    return None


def _file(f: UpstreamFile, key: str, base: str, known: Mapping[str, str]) -> dict:
    parsed = parse_filename(f.filename)
    digests = dict(f.hashes)
    stamp = f.upload_time
    offered = with_metadata(f, known)
    core: Any = dict(offered.core_metadata) if isinstance(offered.core_metadata, tuple) else bool(
        offered.core_metadata)
    return {
        "filename": f.filename,
        "url": file_url(base, key, f.filename),
        "size": f.size,
        "packagetype": {"wheel": "bdist_wheel", "sdist": "sdist", "egg": "bdist_egg"}.get(
            parsed.kind if parsed is not None else "", "sdist"),
        "python_version": parsed.python_version if parsed is not None else "source",
        "digests": digests,
        "md5_digest": digests.get("md5"),
        "comment_text": "",
        "has_sig": False,
        "downloads": -1,
        "upload_time": stamp[:19] if stamp else None,
        "upload_time_iso_8601": stamp,
        "requires_python": f.requires_python,
        "yanked": f.yanked is not False,
        "yanked_reason": f.yanked if isinstance(f.yanked, str) else None,
        "core-metadata": core,
    }


def build(
    project: UpstreamProject, version: Optional[str], message: Optional[email.message.Message], base: str,
    known: Mapping[str, str],
) -> Optional[dict]:
    """
    A JSON API document from an upstream page: C{version}'s (or the
    latest's, with every release, when L{None}); L{None} when there is no
    such release. C{message}: the core metadata of the release shown.
    """
    shown = version if version is not None else latest_version(project)
    files = release_files(project, shown) if shown is not None else []
    if not files:
        return None
    name = str(message.get("Name")) if message is not None and message.get("Name") else project.key
    info = _info(message, _Named(project.key, name), str(_version(files[0])), base)  # type: ignore[arg-type]
    document: dict = {
        "info": info,
        "last_serial": 0,
        "urls": [_file(f, project.key, base, known) for f in files],
        "vulnerabilities": [],
    }
    if version is None:
        releases: dict[str, list] = {}
        for f in project.files:
            v = _version(f)
            if v is not None:
                releases.setdefault(str(v), []).append(_file(f, project.key, base, known))
        document["releases"] = releases
    return document


def rewrite(
    document: Any, project: UpstreamProject, version: Optional[str], base: str, known: Mapping[str, str],
) -> Optional[dict]:
    """
    The upstream's JSON API document with pypid's URLs: files served under
    C{+upstream/} (only those its simple page lists: the others cannot be
    fetched), the project and release URLs pypid's own. L{None} when it is
    not a JSON API document.
    """
    if not isinstance(document, dict) or not isinstance(document.get("info"), dict):
        return None
    key = project.key
    listed = {f.filename: f for f in project.files} if project.status != "quarantined" else {}

    def files(entries: Any) -> list:
        out = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("filename") not in listed:
                continue
            record = listed[entry["filename"]]
            entry = dict(entry, url=file_url(base, key, record.filename))
            offered = with_metadata(record, known)
            if isinstance(offered.core_metadata, tuple):
                entry["core-metadata"] = dict(offered.core_metadata)
            elif offered.core_metadata:
                entry["core-metadata"] = True
            entry.pop("data-dist-info-metadata", None)
            out.append(entry)
        return out

    result = dict(document)
    info = dict(document["info"])
    shown = str(info.get("version") or version or "")
    info["package_url"] = f"{base}simple/{key}/"
    info["project_url"] = f"{base}simple/{key}/"
    info["release_url"] = f"{base}pypi/{key}/{quote(shown, safe='')}/json"
    result["info"] = info
    result["urls"] = files(document.get("urls"))
    if "releases" in document and isinstance(document["releases"], dict):
        result["releases"] = {str(v): files(entries) for v, entries in document["releases"].items()}
    return result
