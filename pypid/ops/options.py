"""
Logging on the command line: C{--log-format} and C{--no-access-log}; the
process model, C{--workers}; and pypid's top service, which decides where
logs go, and the index gauges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twisted.python import usage

from pypid import __version__
from pypid.ops.metrics import Metrics
from pypid.ops.logs import FORMATS, LoggingService


@dataclass(frozen=True)
class OpsConfig:
    """The checked logging options."""

    #: C{text} (twistd's lines) or C{json}.
    log_format: str = "text"
    #: A line per request (C{--no-access-log} turns it off).
    access_log: bool = True
    #: Processes serving (C{--workers}; 1: this one).
    workers: int = 1


class OpsOptions(usage.Options):
    """Mixed into L{pypid.tap.Options}; L{check_ops} in postOptions."""

    optParameters = [
        ["log-format", None, "text", "Log format: text (twistd's) or json (one JSON object per line)."],
        ["workers", None, "1",
         "Serve with N worker processes (or auto: one per CPU) on the same sockets, each with its "
         "own index of the same package directories; a worker that exits is started again."],
    ]
    optFlags = [
        ["no-access-log", None,
         "Do not log a line per request (when a proxy in front logs them): "
         "about a fifth more small requests per second from a core."],
    ]

    def check_ops(self) -> OpsConfig:
        fmt = (self["log-format"] or "text").strip().lower()
        if fmt not in FORMATS:
            raise usage.UsageError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
        from pypid.ops.workers import parse_workers

        return OpsConfig(log_format=fmt, access_log=not self["no-access-log"], workers=parse_workers(self["workers"]))


def top_service(config: OpsConfig, twistd=None, clock=None) -> LoggingService:
    """
    pypid's top service: it also sets where logs go (JSON if asked) and
    takes the access lines (L{LoggingService.access}). C{twistd} is twistd's
    own options, when it runs pypid.
    """
    return LoggingService(config.log_format, twistd, clock)


def wire_metrics(metrics: Metrics, store) -> None:
    """Point C{metrics}' index gauges at C{store}'s current snapshot and count its changes."""
    metrics.index_projects.set_function(lambda: len(store.snapshot.projects))
    metrics.index_files.set_function(lambda: store.snapshot.file_count)
    metrics.index_generation.set_function(lambda: store.snapshot.generation)
    metrics.build_info.set(1, version=__version__)
    metrics.start_time.set(time.time())

    def changed(snapshot, keys) -> None:
        metrics.index_changes.inc()
        metrics.index_changed_projects.inc(len(keys))

    store.subscribe(changed)
