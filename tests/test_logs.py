"""--log-format json and --logger pypid.logs.json_observer on a real twistd."""

from __future__ import annotations

import json

import pytest
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from pypid.logs import event_as_json
from pypid.testing import wheel_bytes, write_dist


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert not line.startswith("\x1e"), line
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("how", [["--log-format", "json"], ["--logger", "pypid.logs.json_observer"]])
def test_real_twistd_writes_one_json_object_per_line(start_server, packages, how):
    """Every line twistd writes is one JSON object; access events carry their fields."""
    write_dist(str(packages), wheel_bytes("demo", "1.0"))
    if how[0] == "--logger":
        # A twistd option: it goes before the plugin name.
        from tests.server import PypidServer

        class WithLogger(PypidServer):
            def command(self):
                cmd = super().command()
                return cmd[:3] + how + cmd[3:]

        server = WithLogger([str(packages)], log_path=packages.parent / "twistd-logger.log")
        server.start()
    else:
        server = start_server(*how, str(packages))
    try:
        assert server.get("simple/demo/")[0] == 200
        assert server.get("nope/x/y")[0] == 404
    finally:
        server.stop()
    events = json_lines(server.log())
    access = [e for e in events if e.get("namespace") == "pypid.access" or "uri" in e]
    hit = next(e for e in access if e.get("uri") == "/simple/demo/")
    assert hit["status"] == 200 and hit["client"] == "127.0.0.1" and hit["level"] == "info"
    assert hit["namespace"] == "pypid.access"
    assert hit["time"].endswith("+00:00") and '"GET /simple/demo/ HTTP/1.1" 200' in hit["message"]
    assert any("PypidSite starting on" in e["message"] for e in events)


def test_event_as_json_fields_and_failures():
    events = []
    log = Logger(namespace="t", observer=events.append)
    log.info("hello {who} {thing}", who="you", thing=object())
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("it broke", Failure())
    first = json.loads(event_as_json(events[0]))
    assert first["message"].startswith("hello you <object") and first["who"] == "you"
    assert first["namespace"] == "t" and first["level"] == LogLevel.info.name
    second = json.loads(event_as_json(events[1]))
    assert second["level"] == "critical" and "ZeroDivisionError" in second["traceback"]
    assert event_as_json(events[0]).endswith("}\n")
