"""
The operations options of C{twistd pypid}: C{--trusted-proxy},
C{--metrics}, C{--metrics-allow} and C{--log-format}, and their wiring into
the service. Kept apart from L{pypid.tap} so it changes for one reason.
"""

from __future__ import annotations

import time

from twisted.python import usage

from pypid import __version__

from pypid.ops import metrics
from pypid.ops.logs import FORMATS, LoggingService
from pypid.web.proxy import TrustedProxies


class OperationsOptions:
    """
    Mix into L{pypid.tap.Options} (usage.Options gathers C{optParameters}
    and C{optFlags} from every base class); call L{check_operations} in
    postOptions.
    """

    optParameters = [
        ["log-format", None, "text", "Log format: text (twistd's) or json (one JSON object per line)."],
    ]
    optFlags = [
        ["metrics", None, "Serve Prometheus metrics at /metrics (to everyone unless --metrics-allow)."],
    ]

    def opt_trusted_proxy(self, value: str) -> None:
        """
        A reverse proxy whose X-Forwarded-For/-Proto/-Host/-Prefix headers
        are believed: an address, a network (10.0.0.0/8), or 'unix' for peers
        on a Unix socket. Repeatable.
        """
        self.setdefault("trusted-proxy", []).append(value)  # type: ignore[attr-defined]

    def opt_metrics_allow(self, value: str) -> None:
        """
        Serve /metrics only to clients in this network (repeatable; implies
        --metrics). The client is the one a trusted proxy names.
        """
        self.setdefault("metrics-allow", []).append(value)  # type: ignore[attr-defined]

    def check_operations(self) -> None:
        opts = self  # type: ignore[assignment]
        try:
            opts["trusted-proxies"] = TrustedProxies.parse(opts.get("trusted-proxy", []))  # type: ignore[index]
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e} (give an address, a network like 10.0.0.0/8, or 'unix').")
        allow = opts.setdefault("metrics-allow", [])  # type: ignore[attr-defined]
        try:
            TrustedProxies.parse(allow)
        except ValueError as e:
            raise usage.UsageError(f"--metrics-allow: {e} (give an address or a network like 10.0.0.0/8).")
        if allow:
            opts["metrics"] = True  # type: ignore[index]
        fmt = (opts.get("log-format") or "text").strip().lower()  # type: ignore[attr-defined]
        if fmt not in FORMATS:
            raise usage.UsageError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
        opts["log-format"] = fmt  # type: ignore[index]


def top_service(options, clock=None) -> LoggingService:
    """
    pypid's top service: it also sets where logs go (JSON if asked) and
    takes the access lines (L{LoggingService.access}).
    """
    return LoggingService(options.get("log-format") or "text", getattr(options, "parent", None), clock)


def wire_metrics(store) -> None:
    """Point the index gauges at C{store}'s current snapshot and count its changes."""
    metrics.INDEX_PROJECTS.set_function(lambda: len(store.snapshot.projects))
    metrics.INDEX_FILES.set_function(lambda: store.snapshot.file_count)
    metrics.INDEX_GENERATION.set_function(lambda: store.snapshot.generation)
    metrics.BUILD_INFO.set(1, version=__version__)
    metrics.START_TIME.set(time.time())

    def changed(snapshot, keys) -> None:
        metrics.INDEX_CHANGES.inc()
        metrics.INDEX_CHANGED_PROJECTS.inc(len(keys))

    store.subscribe(changed)
