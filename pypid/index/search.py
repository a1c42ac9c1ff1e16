"""
Searching the index by name and summary: for people (C{/search?q=}) and for
the XML-RPC C{search} call that C{pip search} makes. Both answer from one
L{SearchIndex} built from a snapshot. Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, NamedTuple, Optional

from pypid.index.model import NO_YANKS, DistFile, IndexSnapshot, Project
from pypid.index.pypijson import release_files

#: The fields the old XML-RPC search accepted in its spec.
SPEC_FIELDS = (
    "name", "version", "author", "author_email", "maintainer", "maintainer_email",
    "home_page", "license", "summary", "description", "keywords", "platform", "download_url",
)
#: Most results one XML-RPC search returns (as the public index did).
XMLRPC_LIMIT = 100


class SearchError(ValueError):
    """A search request that cannot be answered (bad operator or field)."""


def _fold(text: str) -> str:
    """Lower case, runs of C{-_.} as one C{-}: how names are compared."""
    return re.sub(r"[-_.]+", "-", text.lower())


def release_summary(files: Iterable[DistFile]) -> str:
    """The summary of a release: from its newest file that has one."""
    for f in reversed(list(files)):
        if f.summary:
            return f.summary
    return ""


class Entry(NamedTuple):
    """One project as search and the browse pages show it."""

    key: str
    name: str
    version: str
    summary: str
    requires_python: Optional[str]
    files: int
    newest_mtime_ns: int
    #: Lower-cased summary, for matching.
    folded_summary: str


def entry_of(project: Project, yanked: Mapping[str, str] = NO_YANKS) -> Entry:
    # What pypijson.latest_version picks (a release that is not yanked, then
    # the highest final release, else the highest pre-release), from the
    # files' sorted order.
    files = project.files
    shown = tuple(f for f in files if f.filename not in yanked) or files if yanked else files
    best = next((f for f in reversed(shown) if not f.version.is_prerelease), shown[-1]).version
    release = [f for f in files if f.version == best]
    version = str(release[-1].version)
    files = tuple(release)
    summary = release_summary(files)
    requires = next((f.requires_python for f in reversed(files) if f.requires_python), None)
    return Entry(project.key, project.name, version, summary, requires, len(project.files),
                 project.newest_mtime_ns, summary.lower())


class SearchIndex:
    """Every project's L{Entry}, sorted by key, for one snapshot."""

    def __init__(self, snapshot: IndexSnapshot, previous: Optional["SearchIndex"] = None) -> None:
        """
        @param previous: the index of an earlier snapshot; the entries of
            projects the two snapshots share (the same L{Project} object,
            as L{IndexSnapshot.apply} keeps untouched ones) are reused.
        """
        self.snapshot = snapshot
        reuse: Mapping[str, Entry] = previous.by_key if previous is not None else {}
        before = previous.snapshot.projects if previous is not None else {}
        entries: list[Entry] = []
        before_yanks = previous.snapshot.yanks if previous is not None else {}
        for key in sorted(snapshot.projects):
            project = snapshot.projects[key]
            old = reuse.get(key)
            yanked = snapshot.yanked(key)
            same = old is not None and before.get(key) is project and before_yanks.get(key, NO_YANKS) is yanked
            entries.append(old if old is not None and same else entry_of(project, yanked))
        self.entries = entries
        self.by_key: dict[str, Entry] = {entry.key: entry for entry in entries}

    def search(self, query: str, limit: Optional[int] = None) -> list[Entry]:
        """
        Projects matching every word of C{query} in their name or summary,
        best first: exact name, then name prefix, then name substring, then
        summary only.
        """
        terms = [(t, _fold(t)) for t in query.lower().split() if t]
        if not terms:
            return []
        scored = []
        for entry in self.entries:
            score = 0
            for term, folded in terms:
                if folded and folded == entry.key:
                    score += 1000
                elif folded and entry.key.startswith(folded):
                    score += 100
                elif folded and folded in entry.key:
                    score += 10
                elif term in entry.folded_summary:
                    score += 1
                else:
                    break
            else:
                scored.append((-score, entry.key, entry))
        scored.sort()
        found = [entry for _, _, entry in scored]
        return found[:limit] if limit is not None else found

    def spec_search(self, spec: object, operator: object = "and", limit: int = XMLRPC_LIMIT) -> list[dict[str, object]]:
        """
        The XML-RPC C{search(spec, operator)}: C{spec} maps fields to a string
        or a list of strings; every (field, value) is a condition, matched
        as a case-insensitive substring (names compared with C{-_.} folded);
        conditions are combined with C{operator} (C{and}/C{or}). Fields pypid
        does not index (author, license, ...) match nothing. One result per
        project with its newest version, or per matching version when
        C{version} is in the spec.

        @raise SearchError: on a bad operator, field or value.
        """
        if not isinstance(operator, str) or operator.lower() not in ("and", "or"):
            raise SearchError(f"Invalid operator {operator!r}: use 'and' or 'or'.")
        combine = all if operator.lower() == "and" else any
        conditions = _conditions(spec)
        by_version = any(field == "version" for field, _ in conditions)
        results: list[dict[str, object]] = []
        for entry in self.entries:
            project = self.snapshot.projects[entry.key]
            versions = list(reversed(project.versions)) if by_version else [entry.version]
            for ordering, version in enumerate(versions):
                summary = entry.summary if not by_version else release_summary(release_files(project, version))
                checks = (_matches(field, value, entry, version, summary) for field, value in conditions)
                if conditions and combine(checks):
                    results.append({"name": entry.name, "summary": summary, "version": version,
                                    "_pypi_ordering": len(versions) - 1 - ordering})
                    if len(results) >= limit:
                        return results
        return results


def _conditions(spec: object) -> list[tuple[str, str]]:
    if not isinstance(spec, dict):
        raise SearchError("The search spec must be a struct of field names to strings.")
    conditions = []
    for field, value in spec.items():
        if field not in SPEC_FIELDS:
            raise SearchError(f"Invalid spec field {field!r}.")
        values: list[object] = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                raise SearchError(f"Spec values must be strings, not {type(v).__name__} ({field}).")
            if v.strip():
                conditions.append((field, v.strip()))
    return conditions


def _matches(field: str, value: str, entry: Entry, version: str, summary: str) -> bool:
    if field == "name":
        folded = _fold(value)
        return bool(folded) and folded in entry.key or value.lower() in entry.name.lower()
    if field == "summary":
        return value.lower() in summary.lower()
    if field == "version":
        return value == version
    return False

