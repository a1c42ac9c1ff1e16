"""
The fallback's command-line options checked into a L{FallbackConfig}, and
the services and resources built from it (C{pypid.tap} calls both).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional
from urllib.parse import urlsplit

from twisted.python import usage

from pypid.index.names import is_valid, normalize

if TYPE_CHECKING:
    from pypid.upstream.service import UpstreamService
    from pypid.web.upstreamfiles import UpstreamWeb

MODES = ("cache", "redirect")
DEFAULT_TTL = 600


@dataclass(frozen=True)
class FallbackConfig:
    url: str
    mode: str = "cache"
    cache_dir: str = ""
    ttl: float = DEFAULT_TTL
    max_size: Optional[int] = None
    allow: frozenset = frozenset()
    deny: tuple = ()
    list_upstream: bool = False
    ca_file: Optional[str] = None
    timeout: float = 30


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage.UsageError(
            f"--fallback-url {url!r} must be an http:// or https:// URL of a simple index, "
            "e.g. https://index.example/simple/"
        )
    if parts.query or parts.fragment:
        raise usage.UsageError(f"--fallback-url {url!r} must not have a query or fragment.")
    return url.strip().rstrip("/") + "/"


def read_allow(values: list[str]) -> frozenset:
    """Project names from C{--upstream-allow NAME} and C{--upstream-allow @FILE}."""
    names = set()
    for value in values:
        if value.startswith("@"):
            try:
                with open(os.path.expanduser(value[1:]), encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except OSError as e:
                raise usage.UsageError(f"cannot read --upstream-allow file {value[1:]!r}: {e.strerror}")
            items = [line.split("#", 1)[0].strip() for line in lines]
        else:
            items = [value.strip()]
        for item in items:
            if not item:
                continue
            if not is_valid(item):
                raise usage.UsageError(f"--upstream-allow: {item!r} is not a valid project name.")
            names.add(normalize(item))
    return frozenset(names)


_PATTERN = re.compile(r"^[a-z0-9*?]([a-z0-9._*?-]*[a-z0-9*?])?$", re.IGNORECASE)


def read_deny(values: list[str]) -> tuple:
    """Name patterns from C{--upstream-deny PATTERN} and C{--upstream-deny @FILE}."""
    patterns = []
    for value in values:
        if value.startswith("@"):
            try:
                with open(os.path.expanduser(value[1:]), encoding="utf-8") as f:
                    items = [line.split("#", 1)[0].strip() for line in f.read().splitlines()]
            except OSError as e:
                raise usage.UsageError(f"cannot read --upstream-deny file {value[1:]!r}: {e.strerror}")
        else:
            items = [value.strip()]
        for item in items:
            if not item:
                continue
            if not _PATTERN.match(item):
                raise usage.UsageError(
                    f"--upstream-deny: {item!r} is not a project name or pattern such as acme-*.")
            pattern = re.sub(r"[-_.]+", "-", item.lower())
            if pattern not in patterns:
                patterns.append(pattern)
    return tuple(patterns)


def check_cache_dir(cache_dir: str, roots: list[str]) -> None:
    """
    Refuse a cache directory whose files the scanner would list as local
    ones: inside a package directory, it must be under a hidden directory.
    """
    real = os.path.realpath(cache_dir)
    for root in roots:
        root = os.path.realpath(root)
        if real == root or real.startswith(root + os.sep):
            inside = os.path.relpath(real, root).split(os.sep)
            if real == root or not any(part.startswith(".") for part in inside):
                raise usage.UsageError(
                    f"--cache-dir {cache_dir!r} is inside the package directory {root!r}, where cached "
                    "upstream files would be listed as local ones; use a hidden directory "
                    "(e.g. .pypid/upstream) or one outside the package directories."
                )


class UpstreamParts(NamedTuple):
    """The fallback's web side, and its client's service (cache mode only)."""

    web: "UpstreamWeb"
    service: Optional["UpstreamService"]


def build(config: FallbackConfig, store, reactor, cache_control: Optional[bytes] = None, *,
          threads, metrics=None) -> UpstreamParts:
    """
    The L{pypid.web.upstreamfiles.UpstreamWeb} for C{config}, and in cache
    mode the service of the upstream client it uses (for the caller to
    attach). Nothing touches the network or the disk until the service
    starts. C{threads} (a L{pypid.threads.Threads}) runs its blocking work;
    C{metrics} (a L{pypid.ops.metrics.Metrics}) counts fetches and cache hits.
    """
    from pypid.web.upstreamfiles import UpstreamWeb

    if config.mode == "redirect":
        return UpstreamParts(UpstreamWeb(store, config.url, "redirect", deny=config.deny), None)
    from pypid.upstream.client import TreqUpstream
    from pypid.upstream.fallback import Fallback
    from pypid.upstream.service import UpstreamService

    client = TreqUpstream(reactor, timeout=config.timeout, ca_file=config.ca_file)

    fallback = Fallback(client, config.url, config.cache_dir, reactor, threads,
                        ttl=config.ttl, max_size=config.max_size, metrics=metrics)
    web = UpstreamWeb(store, config.url, "cache", fallback, config.allow, cache_control, config.list_upstream,
                      config.deny)
    return UpstreamParts(web, UpstreamService(client, fallback))
