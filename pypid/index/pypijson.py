"""
The index-specific JSON API (C{/pypi/<project>/json} and
C{/pypi/<project>/<version>/json}) in the shape the public index uses, built
from an index snapshot and the core metadata of the release shown. Pure.
"""

from __future__ import annotations

import email.message
from typing import Mapping, Optional

from packaging.utils import canonicalize_version

from pypid.index.model import NO_YANKS, DistFile, Project
from pypid.index.render import dumps, file_href, upload_time

_SINGLE = {
    "name": "Name",
    "version": "Version",
    "summary": "Summary",
    "description_content_type": "Description-Content-Type",
    "keywords": "Keywords",
    "license": "License",
    "license_expression": "License-Expression",
    "author": "Author",
    "author_email": "Author-email",
    "maintainer": "Maintainer",
    "maintainer_email": "Maintainer-email",
    "requires_python": "Requires-Python",
    "home_page": "Home-page",
    "download_url": "Download-URL",
}
_MULTI = {
    "classifiers": "Classifier",
    "requires_dist": "Requires-Dist",
    "provides_extra": "Provides-Extra",
    "dynamic": "Dynamic",
    "license_files": "License-File",
}


def latest_version(project: Project, yanked: Mapping[str, str] = NO_YANKS) -> str:
    """
    The release the project-level C{info} shows: a release with a file that
    is not yanked (C{yanked}: file name -> reason) before a yanked one,
    then the highest final release, or the highest pre-release when there
    is no final one.
    """
    files = project.files
    if yanked:
        files = tuple(f for f in files if f.filename not in yanked) or files
    finals = [f for f in files if not f.version.is_prerelease]
    return str(max(finals or files, key=lambda f: f.version).version)


def release_files(project: Project, version: str) -> list[DistFile]:
    """
    The files of release C{version}, matched by canonical version; an exact
    spelling wins when several releases canonicalise alike.
    """
    canonical = canonicalize_version(version)
    matching = [f for f in project.files if canonicalize_version(str(f.version)) == canonical]
    spellings = {str(f.version) for f in matching}
    if len(spellings) > 1:
        matching = [f for f in matching if str(f.version) == version]
    return matching


def metadata_source(files: list[DistFile]) -> Optional[DistFile]:
    """The file whose metadata describes a release: a wheel when there is one."""
    for kind in ("wheel", "sdist"):
        for f in reversed(files):
            if f.kind == kind:
                return f
    return None


def release_yank(files: list[DistFile], yanked: Mapping[str, str]) -> Optional[str]:
    """
    Whether a release is yanked: when every file of it is, the reason (the
    first one given, else C{""}); else L{None}.
    """
    if not files or not yanked:
        return None
    reasons = [yanked.get(f.filename) for f in files]
    if any(reason is None for reason in reasons):
        return None
    return next((reason for reason in reasons if reason), "")


def _info(
    message: Optional[email.message.Message], project: Project, version: str, base: str
) -> dict[str, object]:
    info: dict[str, object] = {key: None for key in _SINGLE}
    info.update({key: [] for key in _MULTI})
    info["requires_dist"] = None
    if message is not None:
        for key, header in _SINGLE.items():
            value = message.get(header)
            info[key] = str(value) if value is not None else None
        for key, header in _MULTI.items():
            values = [str(v) for v in message.get_all(header) or []]
            info[key] = values or ([] if key != "requires_dist" else None)
        urls = {}
        for value in message.get_all("Project-URL") or []:
            label, _, url = str(value).partition(",")
            urls[label.strip()] = url.strip()
        info["project_urls"] = urls or None
        platforms = [str(v) for v in message.get_all("Platform") or []]
        info["platform"] = ", ".join(platforms) or None
        payload = message.get_payload()
        description = message.get("Description")
        info["description"] = (payload if isinstance(payload, str) and payload.strip() else None) or (
            str(description) if description is not None else ""
        )
    else:
        info["project_urls"] = None
        info["platform"] = None
        info["description"] = ""
    info["name"] = project.name
    info["version"] = version
    info["package_url"] = f"{base}simple/{project.key}/"
    info["project_url"] = f"{base}simple/{project.key}/"
    info["release_url"] = f"{base}pypi/{project.key}/{version}/json"
    info["docs_url"] = None
    info["bugtrack_url"] = None
    info["downloads"] = {"last_day": -1, "last_week": -1, "last_month": -1}
    info["yanked"] = False
    info["yanked_reason"] = None
    return info


def _file(f: DistFile, base: str, hash_algo: Optional[str], yanked: Optional[str] = None) -> dict[str, object]:
    digests = {hash_algo: f.digest} if hash_algo and f.digest else {}
    stamp = upload_time(f)
    return {
        "filename": f.filename,
        "url": base + file_href(f, depth=0),
        "size": f.size,
        "packagetype": {"wheel": "bdist_wheel", "sdist": "sdist", "egg": "bdist_egg"}[f.kind],
        "python_version": f.python_version,
        "digests": digests,
        "md5_digest": digests.get("md5"),
        "comment_text": "",
        "has_sig": f.has_sig,
        "downloads": -1,
        "upload_time": stamp[:19],
        "upload_time_iso_8601": stamp,
        "requires_python": f.requires_python,
        "yanked": yanked is not None,
        "yanked_reason": yanked or None,
        "core-metadata": {"sha256": f.metadata_sha256} if f.metadata_sha256 else False,
    }


def project_document(
    project: Project,
    version: Optional[str],
    message: Optional[email.message.Message],
    base: str,
    hash_algo: Optional[str],
    serial: int,
    yanked: Mapping[str, str] = NO_YANKS,
) -> bytes:
    """
    Render the JSON API document.

    @param version: the release asked for, or L{None} for the project-level
        document (which adds C{releases}).
    @param message: the core metadata of the release shown, if readable.
    @param base: the absolute URL of the index root, ending in C{/}.
    @param yanked: the project's yanked files: file name -> reason.
    """
    shown = version if version is not None else latest_version(project, yanked)
    files = release_files(project, shown)
    info = _info(message, project, str(files[0].version) if files else shown, base)
    reason = release_yank(files, yanked)
    info["yanked"], info["yanked_reason"] = reason is not None, reason or None
    document: dict[str, object] = {
        "info": info,
        "last_serial": serial,
        "urls": [_file(f, base, hash_algo, yanked.get(f.filename)) for f in files],
        "vulnerabilities": [],
    }
    if version is None:
        releases: dict[str, list[dict[str, object]]] = {}
        for f in project.files:
            releases.setdefault(str(f.version), []).append(_file(f, base, hash_algo, yanked.get(f.filename)))
        document["releases"] = releases
    return dumps(document)
