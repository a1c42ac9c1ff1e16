"""
C{pypid update [-x] [--pre] [-d DIR] PACKAGE_DIR ... --fallback-url URL}:
for each local project, report newer versions on the upstream index; with
C{-x}, download them (a pure-Python wheel, else the sdist, else every
wheel of the version) into the package directory, hash-checked.

pypiserver's C{update} without its bugs: pre-releases are proposed only
with C{--pre} (its C{-u} works the other way round), and the index is the
one the user names.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import NamedTuple, Optional

from packaging.version import Version

from pypid.atomic import replacing
from pypid import __version__
from pypid.index.filenames import parse_filename
from pypid.upstream.cache import INCOMING
from pypid.upstream.fallback import CHECK_HASHES
from pypid.upstream.records import ACCEPT, UpstreamError, UpstreamFile, UpstreamProject, parse_page

USER_AGENT = f"pypid/{__version__} (update)"


class Local(NamedTuple):
    """The newest local version of a project, and the directory it is in."""

    name: str
    version: Version
    directory: str


# Pure parts


def newest_local(found: list[tuple[str, str]]) -> dict[str, Local]:
    """C{(directory, filename)} pairs to the newest version of each project."""
    newest: dict[str, Local] = {}
    for directory, filename in found:
        parsed = parse_filename(filename)
        if parsed is None:
            continue
        current = newest.get(parsed.project)
        if current is None or parsed.version > current.version:
            newest[parsed.project] = Local(parsed.name, parsed.version, directory)
    return newest


def newer_version(project: UpstreamProject, than: Version, pre: bool) -> Optional[Version]:
    """The newest version with an unyanked file that is newer than C{than}."""
    best = None
    for f in project.files:
        parsed = parse_filename(f.filename)
        if parsed is None or parsed.project != project.key or f.yanked is not False:
            continue
        v = parsed.version
        if v <= than or ((v.is_prerelease or v.is_devrelease) and not pre):
            continue
        if best is None or v > best:
            best = v
    return best


def files_to_fetch(project: UpstreamProject, version: Version) -> list[UpstreamFile]:
    """A pure-Python wheel if there is one, else the sdist, else every wheel."""
    wheels: list[UpstreamFile] = []
    sdists: list[UpstreamFile] = []
    for f in project.files:
        parsed = parse_filename(f.filename)
        if parsed is None or parsed.version != version or f.yanked is not False:
            continue
        (wheels if parsed.kind == "wheel" else sdists if parsed.kind == "sdist" else []).append(f)
    pure = [f for f in wheels if f.filename.endswith("-none-any.whl")]
    if pure:
        return pure[:1]
    if sdists:
        return sdists[:1]
    return wheels


# I/O


def walk(roots: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for root in roots:
        for directory, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend((directory, name) for name in names)
    return found


class Upstream:
    def __init__(self, url: str, ca_file: Optional[str] = None, timeout: float = 60) -> None:
        self.url = url.rstrip("/") + "/"
        self.context = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout

    def _open(self, url: str, accept: Optional[str] = None) -> http.client.HTTPResponse:
        headers = {"User-Agent": USER_AGENT}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(url, headers=headers)
        response: http.client.HTTPResponse = urllib.request.urlopen(
            request, timeout=self.timeout, context=self.context if url.startswith("https:") else None)
        return response

    def project(self, key: str) -> Optional[UpstreamProject]:
        try:
            with self._open(self.url + key + "/", ACCEPT) as response:
                body = response.read()
                return parse_page(key, body, response.headers.get("Content-Type", ""), response.geturl())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def download(self, f: UpstreamFile, directory: str) -> str:
        """Fetch C{f} into C{directory}, checked against its hash; its path."""
        check = next(((name, dict(f.hashes)[name]) for name in CHECK_HASHES if name in dict(f.hashes)), None)
        if check is None:
            raise UpstreamError(f"the upstream lists no hash for {f.filename}; not downloading it")
        hasher = hashlib.new(check[0])
        final = os.path.join(directory, f.filename)
        with replacing(final, prefix=INCOMING, suffix="") as out, self._open(f.url) as response:
            while True:
                chunk = response.read(65536)
                if not chunk:
                    break
                out.write(chunk)
                hasher.update(chunk)
            if hasher.hexdigest() != check[1]:
                raise UpstreamError(
                    f"{f.filename}: {check[0]} {hasher.hexdigest()} does not match the upstream's {check[1]}")
        return final


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pypid update",
        description="Report (and with -x download) newer upstream versions of the local projects.")
    parser.add_argument("directories", nargs="+", metavar="PACKAGE_DIR")
    parser.add_argument("--fallback-url", "--index-url", "-i", required=True, dest="url",
                        help="the upstream simple index")
    parser.add_argument("-x", "--execute", action="store_true", help="download the newer versions")
    parser.add_argument("--pre", action="store_true", help="consider pre-releases and dev releases too")
    parser.add_argument("-d", "--download-directory", help="where to put downloads (default: next to "
                        "the newest local file of the project)")
    parser.add_argument("--ignorelist-file", "--blacklist-file",
                        help="file of project names to skip, one a line, # comments")
    parser.add_argument("--upstream-ca", help="PEM file of the CA to verify the upstream with")
    args = parser.parse_args(argv)
    for directory in args.directories:
        if not os.path.isdir(directory):
            parser.error(f"package directory {directory!r} does not exist")
    ignored: frozenset[str] = frozenset()
    if args.ignorelist_file:
        from pypid.upstream.config import read_allow

        try:
            ignored = read_allow(["@" + args.ignorelist_file])
        except Exception as e:
            parser.error(str(e))
    upstream = Upstream(args.url, args.upstream_ca)
    status = 0
    local = newest_local(walk(args.directories))
    for key in sorted(local):
        if key in ignored:
            continue
        mine = local[key]
        try:
            project = upstream.project(key)
        except (OSError, UpstreamError) as e:
            print(f"# {key}: the upstream failed: {e}", file=sys.stderr)
            status = 1
            continue
        if project is None:
            print(f"# {key}: not on the upstream")
            continue
        version = newer_version(project, mine.version, args.pre)
        if version is None:
            print(f"# {key}: {mine.version} is up to date")
            continue
        print(f"# update {key} from {mine.version} to {version}")
        if not args.execute:
            continue
        target = args.download_directory or mine.directory
        os.makedirs(target, exist_ok=True)
        for f in files_to_fetch(project, version):
            try:
                path = upstream.download(f, target)
            except (OSError, UpstreamError) as e:
                print(f"# {key}: downloading {f.filename} failed: {e}", file=sys.stderr)
                status = 1
            else:
                print(f"downloaded {path}")
    return status
