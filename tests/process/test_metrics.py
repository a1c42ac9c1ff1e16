"""The metrics registry and C{/metrics}, checked with prometheus_client's parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pypid.ops import metrics
from pypid.web.metricspage import route_of


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, family: str, name: str, **labels) -> float:
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, name, labels))


def test_registry_renders_parseable_text():
    """Counters, gauges and histograms round-trip through the Prometheus parser."""
    registry = metrics.Registry()
    c = registry.counter("t_requests_total", 'Requests with "quotes"\nand a newline.', ("route", "code"))
    g = registry.gauge("t_projects", "Projects.")
    h = registry.histogram("t_seconds", "Latency.", ("route",), buckets=(0.1, 1.0))
    c.inc(route="simple", code="200")
    c.inc(2, route='we"ird\\', code="404")
    g.set_function(lambda: 7)
    for value in (0.05, 0.5, 5):
        h.observe(value, route="simple")
    fams = families(registry.render().decode())
    assert fams["t_requests"].type == "counter"
    assert sample(fams, "t_requests", "t_requests_total", route="simple", code="200") == 1
    assert sample(fams, "t_requests", "t_requests_total", route='we"ird\\', code="404") == 2
    assert sample(fams, "t_projects", "t_projects") == 7
    assert sample(fams, "t_seconds", "t_seconds_bucket", le="0.1") == 1
    assert sample(fams, "t_seconds", "t_seconds_bucket", le="1.0") == 2
    assert sample(fams, "t_seconds", "t_seconds_bucket", le="+Inf") == 3
    assert sample(fams, "t_seconds", "t_seconds_count") == 3
    assert sample(fams, "t_seconds", "t_seconds_sum") == pytest.approx(5.55)


def test_labels_checked_and_counters_only_go_up():
    registry = metrics.Registry()
    c = registry.counter("t_total", "T.", ("kind",))
    with pytest.raises(ValueError):
        c.inc(other="x")
    with pytest.raises(ValueError):
        c.inc(-1, kind="x")
    with pytest.raises(ValueError):
        registry.counter("t_total", "again")


def test_default_registry_parses():
    """Every instrument pypid declares renders as valid exposition text."""
    fams = families(metrics.Metrics().registry.render().decode())
    for name in ("pypid_http_requests", "pypid_http_request_duration_seconds", "pypid_uploads",
                 "pypid_upstream_fetches", "pypid_upstream_cache_hits", "pypid_watcher_events",
                 "pypid_index_projects", "pypid_index_files"):
        assert name in fams


@pytest.mark.parametrize("method, path, route", [
    (b"GET", b"/", "welcome"),
    (b"POST", b"/", "upload"),
    (b"POST", b"/legacy/", "upload"),
    (b"GET", b"/simple/", "simple_index"),
    (b"GET", b"/simple", "simple_index"),
    (b"GET", b"/simple/foo/", "simple_project"),
    (b"GET", b"/packages/foo-1.0.tar.gz", "packages"),
    (b"GET", b"/pypi/foo/json", "pypi_json"),
    (b"POST", b"/pypi", "xmlrpc"),
    (b"POST", b"/RPC2", "xmlrpc"),
    (b"GET", b"/project/foo/", "browse"),
    (b"GET", b"/search?q=x", "search"),
    (b"GET", b"/metrics", "metrics"),
    (b"GET", b"/Foo", "shortcut"),
    (b"GET", b"/a/b/c", "other"),
])
def test_route_names_are_few(method, path, route):
    assert route_of(method, path) == route


def _scrape(server) -> dict:
    status, headers, body = server.get("metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return families(body.decode())


def test_metrics_on_a_real_server_move(start_server, packages):
    """Request counters, the latency histogram and the index gauges on a real twistd."""
    from pypid.testing import wheel_bytes, write_dist

    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    write_dist(str(packages), wheel_bytes("demo", "1.1"))
    server = start_server("--metrics", str(packages))
    before = _scrape(server)
    assert sample(before, "pypid_index_projects", "pypid_index_projects") == 1
    assert sample(before, "pypid_index_files", "pypid_index_files") == 2
    try:
        start = sample(before, "pypid_http_requests", "pypid_http_requests_total",
                       route="simple_project", method="GET", code="200")
    except KeyError:
        start = 0
    for _ in range(3):
        assert server.get("simple/demo/")[0] == 200
    assert server.get("simple/nope/")[0] == 404
    after = _scrape(server)
    assert sample(after, "pypid_http_requests", "pypid_http_requests_total",
                  route="simple_project", method="GET", code="200") == start + 3
    assert sample(after, "pypid_http_requests", "pypid_http_requests_total",
                  route="simple_project", method="GET", code="404") >= 1
    assert sample(after, "pypid_http_request_duration_seconds", "pypid_http_request_duration_seconds_count",
                  route="simple_project") >= 4
    assert sample(after, "pypid_http_requests", "pypid_http_requests_total",
                  route="metrics", method="GET", code="200") >= 1


def test_metrics_off_by_default_and_allow_list(start_server, packages):
    """Without --metrics there is no /metrics; --metrics-allow keeps other clients out."""
    plain = start_server(str(packages))
    status, headers, _ = plain.get("metrics")
    assert status != 200 or not headers["Content-Type"].startswith("text/plain; version")
    denied = start_server("--metrics-allow", "10.0.0.0/8", str(packages))
    assert denied.get("metrics")[0] == 403
    allowed = start_server("--metrics-allow", "127.0.0.0/8", str(packages))
    assert allowed.get("metrics")[0] == 200
    # Behind a trusted proxy the check applies to the client it names.
    proxied = start_server("--metrics-allow", "127.0.0.1", "--trusted-proxy", "127.0.0.1", str(packages))
    assert proxied.get("metrics", {"X-Forwarded-For": "203.0.113.5"})[0] == 403
    assert proxied.get("metrics", {"X-Forwarded-For": "127.0.0.1"})[0] == 200
