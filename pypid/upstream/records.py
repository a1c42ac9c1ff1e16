"""
Upstream simple-API pages (PEP 691 JSON or PEP 503 HTML) parsed into file
records, and the records' own JSON form for the disk cache. Pure: no I/O,
no Twisted.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any, NamedTuple, Optional, Union
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from pypid.index.filenames import parse_filename
from pypid.index.names import normalize

#: Hash names clients accept in a link fragment (uv's list), best first.
LINK_HASHES = ("sha256", "sha512", "sha384", "blake2b", "md5")

#: The upstream media types pypid asks for, JSON preferred.
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)

#: PEP 792 project status markers.
STATUSES = ("active", "archived", "quarantined", "deprecated")

_HEX = re.compile(r"^[0-9a-f]+$")
_BAD_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")

Hashes = tuple[tuple[str, str], ...]


class UpstreamError(Exception):
    """The upstream answered something pypid cannot use."""


class UpstreamFile(NamedTuple):
    """One file of an upstream project page."""

    filename: str
    #: Absolute upstream URL, without fragment.
    url: str
    #: (algorithm, lowercase hex) pairs, sorted.
    hashes: Hashes
    requires_python: Optional[str] = None
    #: C{False}, C{True}, or the reason (a non-empty string).
    yanked: Union[bool, str] = False
    upload_time: Optional[str] = None
    size: Optional[int] = None
    #: C{False}, C{True} (metadata without a hash), or its hashes.
    core_metadata: Union[bool, Hashes] = False

    @property
    def sha256(self) -> Optional[str]:
        return dict(self.hashes).get("sha256")

    @property
    def metadata_sha256(self) -> Optional[str]:
        if isinstance(self.core_metadata, tuple):
            return dict(self.core_metadata).get("sha256")
        return None


class UpstreamProject(NamedTuple):
    """An upstream project page."""

    #: PEP 503 normalised name.
    key: str
    files: tuple[UpstreamFile, ...]
    #: Every version, as the upstream listed them (or as the filenames say).
    versions: tuple[str, ...]
    #: PEP 792 project status marker and its reason, when the upstream gave one.
    status: Optional[str] = None
    status_reason: Optional[str] = None

    def file(self, filename: str) -> Optional[UpstreamFile]:
        for f in self.files:
            if f.filename == filename:
                return f
        return None


def safe_filename(filename: str) -> bool:
    """Whether C{filename} can be served as one path segment of pypid's own."""
    return bool(filename) and not filename.startswith(".") and not _BAD_FILENAME.search(filename)


def _hashes(value: Any) -> Hashes:
    if not isinstance(value, dict):
        return ()
    pairs = []
    for name, digest in value.items():
        if isinstance(name, str) and isinstance(digest, str):
            name, digest = name.lower(), digest.lower()
            if _HEX.match(digest):
                pairs.append((name, digest))
    return tuple(sorted(pairs))


def _fragment_hashes(fragment: str) -> Hashes:
    name, sep, digest = fragment.partition("=")
    if not sep:
        return ()
    return _hashes({name: digest})


def _versions(files: tuple[UpstreamFile, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    parsed = []
    for f in files:
        p = parse_filename(f.filename)
        if p is not None:
            parsed.append(p.version)
    for v in sorted(parsed):
        seen.setdefault(str(v), None)
    return tuple(seen)


def _unique(files: list[UpstreamFile]) -> tuple[UpstreamFile, ...]:
    seen: set[str] = set()
    out = []
    for f in files:
        if f.filename not in seen:
            seen.add(f.filename)
            out.append(f)
    return tuple(out)


def parse_json(key: str, body: bytes, base_url: str) -> UpstreamProject:
    """Parse a PEP 691 project page; relative URLs resolve against C{base_url}."""
    import json

    try:
        data = json.loads(body)
    except ValueError as e:
        raise UpstreamError(f"the upstream page is not JSON: {e}")
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise UpstreamError("the upstream JSON page has no 'files' list")
    _check_version(((data.get("meta") or {}).get("api-version")) if isinstance(data.get("meta"), dict) else None)
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict):
            continue
        filename, url = entry.get("filename"), entry.get("url")
        if not isinstance(filename, str) or not isinstance(url, str) or not safe_filename(filename):
            continue
        metadata = entry.get("core-metadata", entry.get("dist-info-metadata", entry.get("data-dist-info-metadata")))
        if isinstance(metadata, dict):
            core: Union[bool, Hashes] = _hashes(metadata) or True
        else:
            core = bool(metadata)
        yanked = entry.get("yanked", False)
        if isinstance(yanked, str):
            yanked = yanked or True
        size = entry.get("size")
        upload_time = entry.get("upload-time")
        requires_python = entry.get("requires-python")
        files.append(
            UpstreamFile(
                filename=filename,
                url=urldefrag(urljoin(base_url, url))[0],
                hashes=_hashes(entry.get("hashes")),
                requires_python=requires_python if isinstance(requires_python, str) and requires_python else None,
                yanked=yanked if isinstance(yanked, str) else bool(yanked),
                upload_time=upload_time if isinstance(upload_time, str) else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                core_metadata=core,
            )
        )
    unique = _unique(files)
    versions = data.get("versions")
    if isinstance(versions, list) and all(isinstance(v, str) for v in versions):
        listed = tuple(dict.fromkeys(versions))
    else:
        listed = _versions(unique)
    marker = data.get("project-status")
    status, reason = (marker.get("status"), marker.get("reason")) if isinstance(marker, dict) else (None, None)
    return UpstreamProject(key, unique, listed, *_status(status, reason))


def _status(status: Any, reason: Any) -> tuple[Optional[str], Optional[str]]:
    if status not in STATUSES:
        return None, None
    return status, reason if isinstance(reason, str) and reason else None


def _check_version(version: Any) -> None:
    if isinstance(version, str) and version.split(".")[0].strip() not in ("", "1"):
        raise UpstreamError(f"the upstream speaks simple API version {version}, which pypid cannot read")


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: Optional[str] = None
        self.links: list[dict[str, Optional[str]]] = []
        self.version: Optional[str] = None
        self.status: Optional[str] = None
        self.status_reason: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        values = dict(attrs)
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "a" and values.get("href"):
            self.links.append(values)
        elif tag == "meta" and values.get("name") == "pypi:repository-version":
            self.version = values.get("content")
        elif tag == "meta" and values.get("name") == "pypi:project-status":
            self.status = values.get("content")
        elif tag == "meta" and values.get("name") == "pypi:project-status-reason":
            self.status_reason = values.get("content")


def parse_html(key: str, body: bytes, base_url: str, charset: str = "utf-8") -> UpstreamProject:
    """Parse a PEP 503 project page; links resolve against C{<base href>} or C{base_url}."""
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    _check_version(parser.version)
    base = urljoin(base_url, parser.base) if parser.base else base_url
    files = []
    for attrs in parser.links:
        absolute, fragment = urldefrag(urljoin(base, attrs["href"] or ""))
        filename = unquote(urlsplit(absolute).path.rpartition("/")[2])
        if not safe_filename(filename):
            continue
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        if metadata is None or metadata.strip().lower() in ("", "false"):
            core: Union[bool, Hashes] = False
        else:
            core = _fragment_hashes(metadata.strip()) or True
        yanked: Union[bool, str] = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        files.append(
            UpstreamFile(
                filename=filename,
                url=absolute,
                hashes=_fragment_hashes(fragment),
                requires_python=attrs.get("data-requires-python") or None,
                yanked=yanked,
                core_metadata=core,
            )
        )
    unique = _unique(files)
    return UpstreamProject(key, unique, _versions(unique), *_status(parser.status, parser.status_reason))


def parse_page(key: str, body: bytes, content_type: str, base_url: str) -> UpstreamProject:
    """Parse an upstream project page by its media type."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    if media == "application/vnd.pypi.simple.v1+json":
        return parse_json(key, body, base_url)
    if media in ("application/vnd.pypi.simple.v1+html", "text/html", ""):
        charset = "utf-8"
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        return parse_html(key, body, base_url, charset)
    raise UpstreamError(f"the upstream answered with {media!r}, not a simple API page")


# The cache's own JSON form.


def _pairs(value: Any) -> Hashes:
    return tuple(sorted((str(a), str(b)) for a, b in value or ()))


def project_to_json(project: UpstreamProject) -> dict:
    return {
        "key": project.key,
        "versions": list(project.versions),
        "status": project.status,
        "status_reason": project.status_reason,
        "files": [
            {
                "filename": f.filename,
                "url": f.url,
                "hashes": [list(p) for p in f.hashes],
                "requires_python": f.requires_python,
                "yanked": f.yanked,
                "upload_time": f.upload_time,
                "size": f.size,
                "core_metadata": [list(p) for p in f.core_metadata]
                if isinstance(f.core_metadata, tuple) else f.core_metadata,
            }
            for f in project.files
        ],
    }


def project_from_json(data: dict) -> UpstreamProject:
    files = []
    for entry in data["files"]:
        core = entry.get("core_metadata", False)
        files.append(
            UpstreamFile(
                filename=entry["filename"],
                url=entry["url"],
                hashes=_pairs(entry.get("hashes")),
                requires_python=entry.get("requires_python"),
                yanked=entry.get("yanked", False),
                upload_time=entry.get("upload_time"),
                size=entry.get("size"),
                core_metadata=_pairs(core) if isinstance(core, list) else bool(core),
            )
        )
    return UpstreamProject(normalize(data["key"]), tuple(files), tuple(data.get("versions", ())),
                           *_status(data.get("status"), data.get("status_reason")))


def parse_project_list(body: bytes, content_type: str) -> list[str]:
    """The project names of an upstream C{/simple/} page (JSON or HTML)."""
    import json

    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "application/vnd.pypi.simple.v1+json":
        try:
            data = json.loads(body)
        except ValueError as e:
            raise UpstreamError(f"the upstream project list is not JSON: {e}")
        projects = data.get("projects") if isinstance(data, dict) else None
        if not isinstance(projects, list):
            raise UpstreamError("the upstream project list has no 'projects'")
        return [p["name"] for p in projects if isinstance(p, dict) and isinstance(p.get("name"), str)]
    parser = _NameParser()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    return parser.names


class _NameParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.names: list[str] = []
        self._in_a = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            self._in_a, self._text = True, []

    def handle_data(self, data) -> None:
        if self._in_a:
            self._text.append(data)

    def handle_endtag(self, tag) -> None:
        if tag == "a" and self._in_a:
            self._in_a = False
            name = "".join(self._text).strip()
            if name:
                self.names.append(name)


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, str]] = []
        self.version = False
        self._href: Optional[str] = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name") == "pypi:repository-version":
            self.version = True
        elif tag == "a":
            self._href, self._text = values.get("href") or "", []

    def handle_data(self, data) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append((self._href, "".join(self._text).strip()))
            self._href = None


def index_problem(code: int, content_type: str, body: bytes) -> Optional[str]:
    """
    Why what answered at an upstream's URL is not a simple index's project
    list (from its status, media type and the first bytes of its body), or
    L{None} when it looks like one. An HTML page is one when it says its
    API version, or when most of its links are C{<a href="name/">name</a>}.
    """
    from pypid.index.names import is_valid

    if code != 200:
        return f"it answers HTTP {code}"
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "application/vnd.pypi.simple.v1+json":
        return None if b'"projects"' in body or b'"meta"' in body else "its JSON has no project list"
    if media not in ("text/html", "application/vnd.pypi.simple.v1+html", ""):
        return f"it answers {media}, not a simple index page"
    parser = _AnchorParser()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
    except Exception:
        return "its page cannot be read"
    if parser.version or not parser.anchors:
        return None
    listed = 0
    for href, text in parser.anchors:
        segment = urlsplit(href).path.rstrip("/").rpartition("/")[2]
        if href.split("#", 1)[0].split("?", 1)[0].endswith("/") and is_valid(text) and \
                normalize(unquote(segment)) == normalize(text):
            listed += 1
    if listed * 2 < len(parser.anchors):
        return "its page is not a list of projects"
    return None
