"""
When a cached upstream page may be served as it is, and what an upstream
answer means for the cache. Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, NamedTuple, Optional

#: What an upstream status means.
OK, NOT_MODIFIED, GONE, FAILED = "ok", "not-modified", "gone", "failed"


class Validators(NamedTuple):
    """An entry's HTTP validators, as the upstream sent them."""

    etag: Optional[str] = None
    last_modified: Optional[str] = None

    def request_headers(self) -> dict[str, str]:
        """The headers of a conditional GET revalidating the entry."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def is_fresh(fetched_at: float, now: float, ttl: float) -> bool:
    """
    Whether an entry fetched at C{fetched_at} may be served at C{now}
    without asking the upstream. A clock that went backwards makes every
    entry stale rather than fresh for ever.
    """
    age = now - fetched_at
    return 0 <= age < ttl


def classify(status: int, conditional: bool) -> str:
    """
    What an upstream status means for a page: L{OK} (a new body),
    L{NOT_MODIFIED} (the cached copy is current; only for a conditional
    request), L{GONE} (no such project), or L{FAILED} (serve stale if there
    is a cached copy).
    """
    if status == 200:
        return OK
    if status == 304 and conditional:
        return NOT_MODIFIED
    if status in (404, 410):
        return GONE
    return FAILED


def reserved(key: str, patterns: Iterable[str]) -> bool:
    """
    Whether the normalised name C{key} is reserved for local projects by
    one of C{patterns} (normalised names, C{*} and C{?} as wildcards): such
    names never fall back, and answer 404 while they have no local file.
    """
    return any(fnmatchcase(key, pattern) for pattern in patterns)
