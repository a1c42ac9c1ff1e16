"""
The fallback's command-line options checked into a L{FallbackConfig}, and
the services and resources built from it (C{pypid.tap} calls both).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from twisted.python import usage

from pypid.index.names import is_valid, normalize

MODES = ("cache", "redirect")
DEFAULT_TTL = 600
_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)


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


def parse_size(text: str) -> int:
    """C{500M}, C{2G}, C{1024}: bytes (K/M/G/T are powers of 1024)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * 1024 ** "bkmgt".index((match.group(2) or "b").lower())


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


def _check_cache_dir(cache_dir: str, roots: list[str]) -> None:
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


#: Options that only mean something with a fallback, and their defaults.
_UPSTREAM_DEFAULTS = {
    "fallback-mode": "cache",
    "cache-dir": None,
    "upstream-ttl": "600",
    "cache-max-size": None,
    "upstream-allow": [],
    "upstream-deny": [],
    "list-upstream": 0,
    "upstream-timeout": "30",
    "upstream-ca": None,
}


def _upstream_options_given(options) -> list[str]:
    return [f"--{name}" for name, default in _UPSTREAM_DEFAULTS.items() if options[name] != default]


def check(options) -> Optional[FallbackConfig]:
    """
    The fallback asked for by C{options} (a L{pypid.tap.Options} after its
    package directories are checked), or L{None} when there is none.
    """
    url = options["fallback-url"]
    if url is None:
        given = _upstream_options_given(options)
        if given:
            raise usage.UsageError(
                f"{', '.join(given)} configure the upstream fallback, which needs --fallback-url URL."
            )
        return None
    if options["disable-fallback"]:
        # pypiserver's switch wins: the fallback is configured but off.
        return None
    mode = (options["fallback-mode"] or "cache").strip().lower()
    if mode not in MODES:
        raise usage.UsageError(f"--fallback-mode must be one of {', '.join(MODES)}, not {mode!r}.")
    try:
        ttl = float(options["upstream-ttl"])
        if ttl < 0:
            raise ValueError
    except ValueError:
        raise usage.UsageError(f"--upstream-ttl must be a number of seconds, not {options['upstream-ttl']!r}.")
    try:
        timeout = float(options["upstream-timeout"])
        if timeout <= 0:
            raise ValueError
    except ValueError:
        raise usage.UsageError(
            f"--upstream-timeout must be a positive number of seconds, not {options['upstream-timeout']!r}.")
    max_size = None
    if options["cache-max-size"] is not None:
        try:
            max_size = parse_size(options["cache-max-size"])
        except ValueError:
            raise usage.UsageError(
                f"--cache-max-size {options['cache-max-size']!r} is not a size such as 500M or 20G.")
    ca_file = options["upstream-ca"]
    if ca_file is not None:
        ca_file = os.path.abspath(os.path.expanduser(ca_file))
        try:
            with open(ca_file, "rb") as f:
                from twisted.internet.ssl import Certificate

                Certificate.loadPEM(f.read())
        except Exception as e:
            raise usage.UsageError(f"--upstream-ca {options['upstream-ca']!r} is not a readable PEM certificate: {e}")
    state = options.get("state-dir") or os.path.join(options["packages"][0], ".pypid")
    cache_dir = options["cache-dir"] or os.path.join(state, "upstream")
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    _check_cache_dir(cache_dir, options["packages"])
    return FallbackConfig(
        url=check_url(url),
        mode=mode,
        cache_dir=cache_dir,
        ttl=ttl,
        max_size=max_size,
        allow=read_allow(options["upstream-allow"]),
        deny=read_deny(options["upstream-deny"]),
        list_upstream=bool(options["list-upstream"]),
        ca_file=ca_file,
        timeout=timeout,
    )


def build(config: Optional[FallbackConfig], store, reactor, parent, cache_control: Optional[bytes] = None,
          *, threads):
    """
    The L{pypid.web.upstreamfiles.UpstreamWeb} for C{config} (L{None} without a
    fallback), with the upstream client's service put under C{parent}.
    Nothing touches the network or the disk until the service starts.
    C{threads} (a L{pypid.threads.Threads}) runs its blocking work.
    """
    if config is None:
        return None
    from pypid.web.upstreamfiles import UpstreamWeb

    if config.mode == "redirect":
        return UpstreamWeb(store, config.url, "redirect", deny=config.deny)
    from pypid.upstream.client import TreqUpstream
    from pypid.upstream.fallback import Fallback
    from pypid.upstream.service import UpstreamService

    client = TreqUpstream(reactor, timeout=config.timeout, ca_file=config.ca_file)

    fallback = Fallback(client, config.url, config.cache_dir, reactor, threads,
                        ttl=config.ttl, max_size=config.max_size)
    UpstreamService(client, fallback).setServiceParent(parent)
    return UpstreamWeb(store, config.url, "cache", fallback, config.allow, cache_control, config.list_upstream,
                       config.deny)
