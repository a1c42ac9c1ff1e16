"""
The package directories on the command line: C{DIR ...}, C{--packages},
C{--hash-algo}, C{--rescan-interval}, C{--state-dir}, C{--no-watch}; and the
directory store with the services that keep it in step, built from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from twisted.python import usage

from pypid.ops.values import whole_seconds
from pypid.store.directory.scan import HASH_ALGORITHMS

if TYPE_CHECKING:
    from pypid.ops.metrics import Metrics
    from pypid.store.directory.rescans import IndexService
    from pypid.store.directory.store import DirectoryStore
    from pypid.store.directory.watch import WatchService
    from pypid.threads import Threads

#: What C{--hash-algo} takes to turn hashes off (pypiserver's words).
_FALSE = ("0", "no", "off", "false", "n", "f")


@dataclass(frozen=True)
class DirectoryConfig:
    """Where the package files are and how they are watched."""

    #: Absolute package directories; the first receives uploads.
    roots: tuple[str, ...]
    #: The hash of file links, L{None} for none (C{--hash-algo off}).
    hash_algo: Optional[str] = "sha256"
    #: Seconds between safety rescans (0: never).
    rescan_interval: int = 300
    #: Watch the directories for changes (C{--no-watch} turns it off).
    watch: bool = True
    #: C{--state-dir}, absolute, or L{None} for the default places.
    state_dir: Optional[str] = None

    @property
    def upload_root(self) -> str:
        return self.roots[0]


class DirectoryOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_directory} in postOptions."""

    optParameters = [
        ["hash-algo", None, "sha256",
         "Hash algorithm of file links: " + ", ".join(HASH_ALGORITHMS) + ", or off."],
        ["rescan-interval", None, "300",
         "Seconds between full rescans of the package directories (0: never)."],
        ["state-dir", None, None,
         "Directory of pypid's state (the cache of hashes and metadata). Default: "
         "PACKAGE_DIR/.pypid in the first package directory, or ~/.cache/pypid when "
         "that is not writable."],
    ]
    optFlags = [
        ["no-watch", None,
         "Do not watch the package directories for changes (network filesystems); "
         "changes then show at the --rescan-interval rescans."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's usage.Options is unannotated
        self["packages"] = []

    def opt_packages(self, value: str) -> None:
        """A package directory (repeatable; the first receives uploads)."""
        self["packages"].append(value)

    def parseArgs(self, *directories: str) -> None:
        for directory in directories:
            if directory.startswith("-") and len(directory) > 1:
                raise usage.UsageError(
                    f"{directory!r} comes after the package directory {directories[0]!r}: "
                    "options go before the package directories."
                )
        self["packages"].extend(directories)

    def check_directory(self) -> DirectoryConfig:
        packages = self["packages"] or [os.path.expanduser("~/packages")]
        roots: list[str] = []
        for directory in packages:
            path = os.path.abspath(os.path.expanduser(directory))
            if not os.path.isdir(path):
                raise usage.UsageError(f"package directory {directory!r} does not exist or is not a directory.")
            if not os.access(path, os.R_OK | os.X_OK):
                raise usage.UsageError(f"package directory {directory!r} is not readable.")
            if path not in roots:
                roots.append(path)
        algo = (self["hash-algo"] or "").strip().lower()
        if algo in _FALSE:
            hash_algo = None
        elif algo in HASH_ALGORITHMS:
            hash_algo = algo
        else:
            raise usage.UsageError(
                f"--hash-algo {self['hash-algo']!r} is not one of "
                + ", ".join(HASH_ALGORITHMS) + " or off (the ones both pip and uv accept)."
            )
        interval = whole_seconds("rescan-interval", self["rescan-interval"])
        state_dir = self["state-dir"]
        if state_dir is not None:
            # Created when first used, after twistd has dropped privileges.
            state_dir = os.path.abspath(os.path.expanduser(state_dir))
        return DirectoryConfig(
            roots=tuple(roots),
            hash_algo=hash_algo,
            rescan_interval=interval if interval is not None else 300,
            watch=not self["no-watch"],
            state_dir=state_dir,
        )


class DirectoryParts(NamedTuple):
    """The store and the services feeding it (L{None}: not asked for)."""

    store: "DirectoryStore"
    index: "IndexService"  # type: ignore[assignment]  # a field named like tuple.index: callers read parts.index
    watch: Optional["WatchService"]


def build(
    config: DirectoryConfig, reactor: Any, threads: Threads, write_image: bool = True, metrics: Optional[Metrics] = None
) -> DirectoryParts:
    """
    The directory store with its state cache and serial book, the rescans (C{index}) and the
    watcher (C{watch}); nothing is read or created before they start.
    C{threads} (a L{pypid.threads.Threads}) runs their blocking work;
    C{write_image}: whether this process writes the index image (one of
    several workers does); C{metrics}: where the watcher counts (the
    process's L{pypid.ops.metrics.Metrics}).
    """
    from pypid.store.directory.rescans import IndexService
    from pypid.store.directory.serials import SerialBook
    from pypid.store.directory.statecache import StateCache, default_state_dirs
    from pypid.store.directory.store import DirectoryStore
    from pypid.store.directory.watch import FALLBACK_POLL, WatchService

    roots = list(config.roots)
    state_dirs = [config.state_dir] if config.state_dir else default_state_dirs(roots[0])
    store = DirectoryStore(roots, config.hash_algo, threads, StateCache(state_dirs), SerialBook(state_dirs),
                           clock=reactor, write_image=write_image)
    interval = config.rescan_interval
    watcher = None
    if config.watch:
        poll = min(FALLBACK_POLL, interval) if interval else FALLBACK_POLL
        watcher = WatchService(store, roots, reactor, threads, fallback_poll=poll, metrics=metrics)
    index = IndexService(store, reactor, interval,
                         first_scan_after=watcher.when_watching if watcher is not None else None)
    return DirectoryParts(store, index, watcher)
