"""
A small metrics registry: counters, gauges and histograms with labels,
rendered in the Prometheus text exposition format (version 0.0.4). Pure: no
I/O, no Twisted, no dependency.

The tap makes one L{Metrics} per process and hands it to the parts that
record; C{/metrics} (L{pypid.web.metricspage}) renders its registry. For
example::

    metrics = Metrics()
    metrics.uploads.inc(result="stored")
    metrics.upstream_fetches.inc(kind="page", result="ok")
    metrics.registry.render()

Label values are free text but must come from a small fixed set (never a
project name, path or client address), or the series multiply without end.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence, TypeVar

#: Latency buckets in seconds, from a cached page (well under 1 ms) to a
#: large download or upload.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)

    def _key(self, labels: dict) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} {_escape_help(self.documentation)}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def samples(self) -> list[str]:
        return [f"{self.name}{suffix}{_labels([k for k, _ in pairs], [v for _, v in pairs])} {format_value(value)}"
                for suffix, pairs, value in self.values()]

    def values(self) -> list[tuple[str, list[tuple[str, str]], float]]:
        """Every sample as (name suffix, label pairs, value)."""
        raise NotImplementedError

    def render(self) -> str:
        return "\n".join(self.header() + self.samples()) + "\n"


_M = TypeVar("_M", bound=_Metric)


class Counter(_Metric):
    """A value that only goes up. The name should end in C{_total}."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def values(self) -> list[tuple[str, list[tuple[str, str]], float]]:
        return [("", list(zip(self.labelnames, key)), value) for key, value in sorted(self._values.items())]


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a function."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._function: Optional[Callable[[], float]] = None

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def set_function(self, function: Optional[Callable[[], float]]) -> None:
        """Read the (unlabelled) value from C{function} at each scrape."""
        self._function = function

    def value(self, **labels: str) -> float:
        if self._function is not None and not labels:
            return float(self._function())
        return self._values.get(self._key(labels), 0.0)

    def values(self) -> list[tuple[str, list[tuple[str, str]], float]]:
        if self._function is not None:
            return [("", [], float(self._function()))]
        return [("", list(zip(self.labelnames, key)), value) for key, value in sorted(self._values.items())]


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        series = self._series.get(key)
        if series is None:
            # One count per bucket, then +Inf, then the sum.
            series = self._series[key] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                series[i] += 1
        series[-2] += 1
        series[-1] += value

    def count(self, **labels: str) -> float:
        series = self._series.get(self._key(labels))
        return series[-2] if series else 0.0

    def values(self) -> list[tuple[str, list[tuple[str, str]], float]]:
        out: list[tuple[str, list[tuple[str, str]], float]] = []
        for key, series in sorted(self._series.items()):
            pairs = list(zip(self.labelnames, key))
            for bound, count in zip(self.buckets + (math.inf,), series):
                out.append(("_bucket", pairs + [("le", "+Inf" if math.isinf(bound) else repr(bound))], count))
            out.append(("_sum", pairs, series[-1]))
            out.append(("_count", pairs, series[-2]))
        return out


class Registry:
    """Instruments by name, rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, documentation, labelnames))

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, documentation, labelnames))

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self.register(Histogram(name, documentation, labelnames, buckets))

    def get(self, name: str) -> Optional[_Metric]:
        return self._metrics.get(name)

    def render(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return "".join(m.render() for _, m in sorted(self._metrics.items())).encode("utf-8")

    def snapshot(self) -> dict:
        """Every metric's kind, help and samples, as plain data (JSON can carry it)."""
        return {
            name: {"kind": m.kind, "doc": m.documentation, "values": [[s, [list(p) for p in pairs], v]
                                                                     for s, pairs, v in m.values()]}
            for name, m in sorted(self._metrics.items())
        }

    @staticmethod
    def render_merged(snapshots: Sequence[tuple[str, dict]], label: str) -> bytes:
        """
        Several processes' L{snapshot}s as one exposition: each metric once,
        with every process's samples, labelled C{label="<name>"}.
        """
        names = sorted({name for _, snapshot in snapshots for name in snapshot})
        lines: list[str] = []
        for name in names:
            first = next(snapshot[name] for _, snapshot in snapshots if name in snapshot)
            lines.append(f"# HELP {name} {_escape_help(first['doc'])}")
            lines.append(f"# TYPE {name} {first['kind']}")
            for who, snapshot in snapshots:
                for suffix, pairs, value in snapshot.get(name, {}).get("values", ()):
                    pairs = [(k, v) for k, v in pairs if k != label] + [(label, who)]
                    lines.append(f"{name}{suffix}{_labels([k for k, _ in pairs], [v for _, v in pairs])}"
                                 f" {format_value(float(value))}")
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


#: The content type of L{Registry.render}'s output.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

class Metrics:
    """
    pypid's instruments, in a registry of their own. The tap makes one per
    process and hands it to each part that records (the site, the fast path,
    the publisher, the upstream fallback, the watcher); C{/metrics} renders
    its L{registry}. A part made without one (in tests) records into one of
    its own.
    """

    def __init__(self) -> None:
        registry = self.registry = Registry()
        # HTTP, recorded by the Site for every finished request.
        self.http_requests = registry.counter(
            "pypid_http_requests_total", "HTTP requests answered, by route, method and status code.",
            ("route", "method", "code"),
        )
        self.http_duration = registry.histogram(
            "pypid_http_request_duration_seconds", "Time from request received to response finished, by route.",
            ("route",),
        )
        self.http_sent_bytes = registry.counter(
            "pypid_http_response_bytes_total", "Response body bytes sent, by route.", ("route",),
        )
        # The index, read from the current snapshot at each scrape (L{pypid.ops.options.wire_metrics}).
        self.index_projects = registry.gauge("pypid_index_projects", "Projects listed in the index.")
        self.index_files = registry.gauge("pypid_index_files", "Distribution files listed in the index.")
        self.index_generation = registry.gauge(
            "pypid_index_generation", "Snapshot generation: goes up by one with every change to the index."
        )
        self.index_changes = registry.counter(
            "pypid_index_changes_total", "Changes applied to the index (snapshots swapped in)."
        )
        self.index_changed_projects = registry.counter(
            "pypid_index_changed_projects_total", "Projects whose listing changed, summed over index changes."
        )
        # Uploads, the upstream fallback and the watcher.
        self.uploads = registry.counter(
            "pypid_uploads_total",
            "Upload attempts by result: stored, or the reason refused (exists, invalid, unauthorized, "
            "too_large, ...).",
            ("result",),
        )
        self.upload_bytes = registry.counter(
            "pypid_upload_bytes_total", "Bytes of distribution files stored by uploads."
        )
        self.upstream_fetches = registry.counter(
            "pypid_upstream_fetches_total",
            "Requests made to the upstream index, by kind (page, file) and result (ok, not_found, error, timeout).",
            ("kind", "result"),
        )
        self.upstream_cache_hits = registry.counter(
            "pypid_upstream_cache_hits_total",
            "Upstream pages or files answered from the local cache without a fetch, by kind (page, file).",
            ("kind",),
        )
        self.watcher_events = registry.counter(
            "pypid_watcher_events_total",
            "File-system events seen by the package directory watcher, by kind (created, modified, deleted, "
            "moved, overflow).",
            ("kind",),
        )
        self.watcher_refreshes = registry.counter(
            "pypid_watcher_refreshes_total", "Index refreshes triggered by the watcher (after debouncing)."
        )
        self.build_info = registry.gauge("pypid_build_info", "Always 1; the version is in the label.", ("version",))
        self.start_time = registry.gauge(
            "pypid_start_time_seconds", "When this pypid process started (Unix time)."
        )
