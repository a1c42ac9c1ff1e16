"""
The upstream fallback on the command line: C{--fallback-url} and the
options that only mean something with it, checked into a
L{pypid.upstream.config.FallbackConfig}.
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.python import usage

from pypid.store.directory.options import DirectoryConfig
from pypid.upstream.config import MODES, FallbackConfig, check_cache_dir, check_url, read_allow, read_deny
from pypid.ops.values import parse_size

#: Options that only mean something with a fallback, and their defaults.
_UPSTREAM_DEFAULTS: dict[str, object] = {
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


class UpstreamOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_upstream} in postOptions."""

    optParameters = [
        ["fallback-url", None, None,
         "Upstream simple index (e.g. https://index.example/simple/) for projects "
         "that are not local. No default: without it there is no fallback."],
        ["fallback-mode", None, "cache",
         "cache: fetch, cache and serve upstream pages and files; "
         "redirect: answer 303 to FALLBACK_URL/<project>/ (pypiserver's behaviour)."],
        ["cache-dir", None, None,
         "Directory of the upstream cache. Default: STATE_DIR/upstream, i.e. "
         "PACKAGE_DIR/.pypid/upstream in the first package directory (never listed)."],
        ["upstream-ttl", None, "600",
         "Seconds an upstream page is served before it is revalidated."],
        ["cache-max-size", None, None,
         "Size cap of the cached upstream files, e.g. 20G; least recently used go first."],
        ["upstream-timeout", None, "30",
         "Seconds to wait for the upstream's headers, and for each pause in a body."],
        ["upstream-ca", None, None,
         "PEM file of the CAs to verify the upstream's TLS certificate with: one CA or a "
         "bundle, every certificate in it is trusted (default: the system's trust store)."],
    ]
    optFlags = [
        ["disable-fallback", None, "Never consult an upstream index, even with --fallback-url."],
        ["list-upstream", None, "List the upstream's projects on /simple/ too (off: the list can be huge)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["upstream-allow"] = []
        self["upstream-deny"] = []

    def opt_upstream_allow(self, value: str) -> None:
        """
        A local project whose upstream files are listed beside the local
        ones (repeatable; @FILE reads names, one a line). Every other local
        name hides the upstream project of that name entirely.
        """
        self["upstream-allow"].append(value)

    def opt_upstream_deny(self, value: str) -> None:
        """
        A project name or pattern (acme-*) reserved for local projects:
        never looked up upstream, 404 while there is no local file
        (repeatable; @FILE reads patterns, one a line).
        """
        self["upstream-deny"].append(value)

    def check_upstream(self, directory: DirectoryConfig) -> Optional[FallbackConfig]:
        """The fallback asked for, or L{None} when there is none."""
        url = self["fallback-url"]
        if url is None:
            given = [f"--{name}" for name, default in _UPSTREAM_DEFAULTS.items() if self[name] != default]
            if given:
                raise usage.UsageError(
                    f"{', '.join(given)} configure the upstream fallback, which needs --fallback-url URL."
                )
            return None
        if self["disable-fallback"]:
            # pypiserver's switch wins: the fallback is configured but off.
            return None
        mode = (self["fallback-mode"] or "cache").strip().lower()
        if mode not in MODES:
            raise usage.UsageError(f"--fallback-mode must be one of {', '.join(MODES)}, not {mode!r}.")
        try:
            ttl = float(self["upstream-ttl"])
            if ttl < 0:
                raise ValueError
        except ValueError:
            raise usage.UsageError(f"--upstream-ttl must be a number of seconds, not {self['upstream-ttl']!r}.")
        try:
            timeout = float(self["upstream-timeout"])
            if timeout <= 0:
                raise ValueError
        except ValueError:
            raise usage.UsageError(
                f"--upstream-timeout must be a positive number of seconds, not {self['upstream-timeout']!r}.")
        max_size = None
        if self["cache-max-size"] is not None:
            try:
                max_size = parse_size(self["cache-max-size"])
            except ValueError:
                raise usage.UsageError(
                    f"--cache-max-size {self['cache-max-size']!r} is not a size such as 500M or 20G.")
        ca_file = self["upstream-ca"]
        if ca_file is not None:
            from pypid.upstream.client import load_ca_bundle

            ca_file = os.path.abspath(os.path.expanduser(ca_file))
            try:
                load_ca_bundle(ca_file)
            except OSError as e:
                raise usage.UsageError(f"--upstream-ca {self['upstream-ca']!r} cannot be read: {e.strerror or e}.")
            except ValueError as e:
                raise usage.UsageError(f"--upstream-ca {self['upstream-ca']!r} is not a PEM CA file: {e}.")
        state = directory.state_dir or os.path.join(directory.upload_root, ".pypid")
        cache_dir = os.path.abspath(os.path.expanduser(self["cache-dir"] or os.path.join(state, "upstream")))
        check_cache_dir(cache_dir, list(directory.roots))
        return FallbackConfig(
            url=check_url(url),
            mode=mode,
            cache_dir=cache_dir,
            ttl=ttl,
            max_size=max_size,
            allow=read_allow(self["upstream-allow"]),
            deny=read_deny(self["upstream-deny"]),
            list_upstream=bool(self["list-upstream"]),
            ca_file=ca_file,
            timeout=timeout,
        )
