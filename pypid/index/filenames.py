"""
Distribution filenames: which files an index lists, and under which project
and version.

Wheels and sdists follow the packaging library's rules; the legacy forms that
old indexes list (C{.zip}, C{.tar.bz2}, C{.tgz}, C{.egg}, ...) are parsed with
the heuristics pip and pypiserver use. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Optional

from packaging.utils import InvalidWheelFilename, canonicalize_version, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pypid.index.names import is_valid, normalize

#: Archive suffixes of source distributions, longest first.
SDIST_SUFFIXES = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tbz",
    ".txz",
    ".tar",
    ".zip",
)

#: Suffixes that editors, downloaders and FTP clients use for files that are
#: still being written. Such files are never listed.
TEMPORARY_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".filepart",
    ".swp",
    ".download",
    "~",
)

_DIGIT_AFTER_DASH = re.compile(r"-(?=\d)")
#: A wheel's name part: letters, digits, '_' and '.' (dashes are escaped).
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?$")
_BUILD_TAG = re.compile(r"^(\d+)(.*)$")
_ARCHIVE_SUFFIX = re.compile(r"(\.tar(\.[a-z0-9]+)?|\.[a-z0-9]+)$")


#: A key of ints, strings and tuples of them, compared only with keys made
#: the same way (L{version_order}).
SortKey = tuple[object, ...]

#: A wheel's build tag: C{()} when absent, else its number and the rest.
BuildTag = tuple[()] | tuple[int, str]


class ParsedName(NamedTuple):
    """What a distribution filename says about its contents."""

    #: PEP 503 normalised project name.
    project: str
    #: The project name as spelled in the filename.
    name: str
    #: The parsed version.
    version: Version
    #: C{"wheel"}, C{"sdist"} or C{"egg"}.
    kind: str
    #: For wheels and eggs, the python tag (C{"py3"}); C{"source"} for sdists.
    python_version: str
    #: The wheel build tag, C{()} when absent.
    build: BuildTag = ()

    @property
    def packagetype(self) -> str:
        """The legacy upload API's name for C{kind}."""
        return {"wheel": "bdist_wheel", "sdist": "sdist", "egg": "bdist_egg"}[
            self.kind
        ]


#: Builds a named tuple from all its fields, in order, without a Python-level call.
_new_tuple = tuple.__new__


def is_hidden_or_temporary(filename: str) -> bool:
    """
    Whether C{filename} must never be listed: hidden (leading C{.}) or named
    like a file that is still being written.
    """
    return filename.startswith(".") or filename.lower().endswith(TEMPORARY_SUFFIXES)


@functools.lru_cache(maxsize=8192)
def _version(text: str) -> Optional[Version]:
    # Remembered: the same few version strings recur across a whole tree
    # (every project's 1.0.0), and the index keeps one shared Version for
    # each instead of one per file. Versions are immutable values.
    try:
        return Version(text)
    except InvalidVersion:
        return None


_PRE_RANK = {"a": 0, "b": 1, "rc": 2}


def version_order(version: Version) -> SortKey:
    """
    A key that sorts and compares like C{version} itself (PEP 440), made of
    ints, strings and tuples only, so that sorting by it never calls back
    into Python: release with trailing zeros dropped (C{1.0 == 1}); then
    dev-only releases, pre-releases (a, b, rc), releases, post-releases;
    then a local segment, whose absence sorts first, with string parts
    before numbers.
    """
    release = version.release
    end = len(release)
    while end and release[end - 1] == 0:
        end -= 1
    pre, post, dev = version.pre, version.post, version.dev
    if pre is None:
        pre_rank, pre_n = (-1 if post is None and dev is not None else 3), 0
    else:
        pre_rank, pre_n = _PRE_RANK[pre[0]], pre[1]
    key: SortKey = (
        version.epoch,
        release[:end],
        (pre_rank, pre_n, post is not None, post or 0, dev is None, dev or 0),
    )
    local = version.local
    if local is not None:
        key += (tuple((int(part), "") if part.isdigit() else (-1, part) for part in local.split(".")),)
    return key


@functools.lru_cache(maxsize=1024)
def _project(name: str) -> str:
    # The files of a project are found together: one key string for all.
    return normalize(name)


@functools.lru_cache(maxsize=1024)
def _wheel_project(name: str) -> Optional[str]:
    # A wheel's name part, judged and normalised once per project.
    return _project(name) if _WHEEL_NAME.match(name) else None


def _split_name_version(stem: str) -> Optional[tuple[str, Version]]:
    """
    Split C{name-version} the way sdist names are split: at the last C{-}
    first (the standard form), then before the first C{-} followed by a
    digit (names such as C{foo-bar-1.0-beta}).
    """
    name, sep, version = stem.rpartition("-")
    if sep and is_valid(name):
        parsed = _version(version)
        if parsed is not None:
            return name, parsed
    match = _DIGIT_AFTER_DASH.search(stem)
    if match is not None:
        name, version = stem[: match.start()], stem[match.end() :]
        parsed = _version(version)
        if parsed is not None and is_valid(name):
            return name, parsed
    return None


@functools.lru_cache(maxsize=1024)
def _valid_tags(tags: str) -> bool:
    """Whether C{python-abi-platform} is a valid (compressed) tag set."""
    try:
        parse_wheel_filename(f"x-0-{tags}.whl")
    except (InvalidWheelFilename, InvalidVersion):
        return False
    return True


def _parse_wheel(filename: str) -> Optional[ParsedName]:
    # The wheel rules of packaging's parse_wheel_filename, with the tag
    # triple judged by packaging itself and remembered: a few distinct
    # triples repeat across a whole tree, and expanding each into Tag sets
    # was most of the cost of a scan.
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6) or not _valid_tags("-".join(parts[-3:])):
        return None
    raw_name = parts[0]
    project = _wheel_project(raw_name)
    if project is None:
        return None
    version = _version(parts[1])
    if version is None:
        return None
    build: BuildTag = ()
    if len(parts) == 6:
        match = _BUILD_TAG.match(parts[2])
        if match is None:
            return None
        build = (int(match.group(1)), match.group(2))
    return _new_tuple(ParsedName, (project, raw_name, version, "wheel", parts[-3], build))


def _parse_sdist(filename: str, suffix: str) -> Optional[ParsedName]:
    # The standard form (split at the last '-', as packaging's
    # parse_sdist_filename does for .tar.gz and .zip) is the first thing
    # _split_name_version tries.
    split = _split_name_version(filename[: -len(suffix)])
    if split is None:
        return None
    name, version = split
    return _new_tuple(ParsedName, (_project(name), name, version, "sdist", "source", ()))


def _parse_egg(filename: str) -> Optional[ParsedName]:
    # {name}-{version}(-py{X.Y}(-{platform})?)?.egg, '-' escaped as '_'.
    parts = filename[: -len(".egg")].split("-")
    if len(parts) < 2 or not is_valid(parts[0]):
        return None
    version = _version(parts[1]) or _version(parts[1].replace("_", "-"))
    if version is None:
        return None
    python = parts[2] if len(parts) > 2 else ""
    return _new_tuple(ParsedName, (_project(parts[0]), parts[0], version, "egg", python, ()))


def parse_filename(filename: str) -> Optional[ParsedName]:
    """
    Parse a distribution filename.

    @return: the project, version and kind the name stands for, or L{None}
        when the file is not a distribution an index should list (unknown
        suffix, unparseable name or version, hidden or temporary file).
    """
    lower = filename.lower()
    # is_hidden_or_temporary, with the lower-cased name at hand.
    if filename.startswith(".") or lower.endswith(TEMPORARY_SUFFIXES) or "/" in filename or "\\" in filename:
        return None
    if lower.endswith(".whl"):
        return _parse_wheel(filename)
    if lower.endswith(".egg"):
        return _parse_egg(filename)
    for suffix in SDIST_SUFFIXES:
        if lower.endswith(suffix):
            return _parse_sdist(filename, filename[-len(suffix) :])
    return None


def _sorted_tag(tag: str) -> str:
    return ".".join(sorted(tag.split(".")))


def release_key(project: str, version: str, filename: str) -> str:
    """
    The identity of a release file: two files with the same key are one
    file of the index, however their names are spelled. It is made of the
    normalised project, the canonical version (C{1.0 == 1.0.0}), and what
    tells files of one release apart: for a wheel its build tag and its
    tag set (each compressed tag set in sorted order), for an egg its
    python and platform, for an sdist its archive kind. Lower-cased
    throughout, so C{Demo-1.0-PY3-NONE-ANY.WHL} and
    C{demo-1.0.0-py3-none-any.whl} are one file. C{project} and C{version}
    are the ones the index lists the file under (L{parse_filename}'s);
    C{filename} supplies the rest.

    The stores refuse a second file of a listed file's key, the index lists
    one file per key (L{pypid.index.model.make_project}), and the replicas'
    catalog keeps the key unique. Pure.
    """
    try:
        canonical = canonicalize_version(version)
    except Exception:  # an unparseable version is compared as written
        canonical = version
    lower = filename.lower()
    if lower.endswith(".whl"):
        parts = lower[: -len(".whl")].split("-")
        tags = "-".join(_sorted_tag(tag) for tag in parts[-3:])
        build = parts[2] if len(parts) == 6 else ""
        detail = f"wheel:{build}:{tags}"
    elif lower.endswith(".egg"):
        parts = lower[: -len(".egg")].split("-")
        detail = "egg:" + "-".join(parts[2:])
    else:
        match = _ARCHIVE_SUFFIX.search(lower)
        detail = "sdist:" + (match.group(1) if match else "")
    return f"{normalize(project)}|{str(canonical).lower()}|{detail}"
