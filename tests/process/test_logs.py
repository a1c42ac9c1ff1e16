"""--log-format json and --logger pypid.logs.json_observer on a real twistd."""

from __future__ import annotations

import io
import json

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, textFileLogObserver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pypid.ops.logs import event_as_json
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


class _Stream:
    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1


def _entry(uri: str = "/simple/demo/") -> "AccessEntry":
    from pypid.ops.logs import AccessEntry

    return AccessEntry("127.0.0.1", "GET", uri, "HTTP/1.1", 200, 1234, 0.00042, "pip/24")


class StreamLogObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        from pypid.ops.logs import StreamLogObserver, text_format

        self.clock = Clock()
        self.stream = _Stream()
        self.observer = StreamLogObserver(self.stream, *text_format(), self.clock)

    def test_access_lines_wait_for_the_end_of_the_turn(self) -> None:
        self.observer.access(_entry("/a/"))
        self.observer.access(_entry("/b/"))
        self.assertEqual(self.stream.writes, [])
        self.clock.advance(0)
        self.assertEqual(len(self.stream.writes), 1, "one write for both lines")
        lines = self.stream.writes[0].splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('"GET /a/ HTTP/1.1" 200 1234 0.4ms "pip/24"', lines[0])
        self.assertEqual(self.stream.flushes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_events_keep_their_order_after_queued_lines(self) -> None:
        self.observer.access(_entry("/first/"))
        Logger(namespace="t", observer=self.observer).info("then {what}", what="this")
        text = "".join(self.stream.writes)
        self.assertLess(text.index("/first/"), text.index("then this"))
        self.clock.advance(0)
        self.assertEqual("".join(self.stream.writes), text, "nothing left to write")

    def test_a_long_queue_is_written_at_once(self) -> None:
        for i in range(self.observer.QUEUE_LIMIT):
            self.observer.access(_entry(f"/{i}/"))
        self.assertEqual(len("".join(self.stream.writes).splitlines()), self.observer.QUEUE_LIMIT)


class FormatsTests(SynchronousTestCase):
    """The cheap access path writes what the event path would have."""

    def _event(self) -> dict:
        from pypid.ops.logs import ACCESS_NAMESPACE

        events: list = []
        entry = _entry()
        Logger(namespace=ACCESS_NAMESPACE, observer=events.append).info("{line}", **entry.fields())
        return events[0]

    def test_text_matches_twistds_own_line(self) -> None:
        from pypid.ops.logs import text_format

        event = self._event()
        expected = io.StringIO()
        textFileLogObserver(expected)(event)
        self.assertEqual(text_format()[1](_entry(), event["log_time"]), expected.getvalue())

    def test_json_matches_the_event_as_json(self) -> None:
        from pypid.ops.logs import json_format

        event = self._event()
        self.assertEqual(json.loads(json_format()[1](_entry(), event["log_time"])),
                         json.loads(event_as_json(event)))


class LoggingServiceTests(SynchronousTestCase):
    """Which runs get pypid's observer; the others keep twistd's and plain events."""

    def _parent(self, log_format: str, **twistd) -> tuple:
        from twisted.application.service import Application
        from twisted.logger import ILogObserver

        from pypid.ops.logs import LoggingService, emit_access

        options = {"nodaemon": 1, "logfile": None, "syslog": 0, "logger": None}
        options.update(twistd)
        service = LoggingService(log_format, options, Clock())
        application = Application("t")
        service.setServiceParent(application)
        installed = ILogObserver(application, None)
        return installed, service._access is not emit_access

    def test_foreground_text_and_json_get_the_stream_observer(self) -> None:
        from pypid.ops.logs import StreamLogObserver

        for fmt in ("text", "json"):
            installed, cheap = self._parent(fmt)
            self.assertIsInstance(installed, StreamLogObserver)
            self.assertTrue(cheap)

    def test_twistds_own_destinations_are_left_alone(self) -> None:
        for twistd in ({"logfile": "pypid.log"}, {"syslog": 1}, {"nodaemon": 0},
                       {"logger": "pypid.logs.json_observer"}):
            installed, cheap = self._parent("text", **twistd)
            self.assertIsNone(installed, twistd)
            self.assertFalse(cheap, twistd)
        installed, cheap = self._parent("json", logger="pypid.logs.json_observer")
        self.assertFalse(cheap, "twistd uses --logger's observer, not ours")


def test_access_entry_names_the_representation():
    """An index page's line ends with the representation served; the event carries it as a field."""
    from pypid.ops.logs import ACCESS_NAMESPACE, AccessEntry

    entry = AccessEntry("127.0.0.1", "GET", "/simple/", "HTTP/1.1", 200, 10, 0.001, "uv/0.5", "json")
    assert entry.line.endswith('"uv/0.5" representation=json')
    assert entry.fields()["representation"] == "json"
    events = []
    Logger(namespace=ACCESS_NAMESPACE, observer=events.append).info("{line}", **entry.fields())
    assert events[0]["representation"] == "json"
    assert "representation" not in _entry("/packages/").fields()
