"""
Where pypid's logs go: twistd's text lines or JSON objects, one per line,
and the access log's cheap path.

  - C{twistd -n pypid ...} (text) and C{twistd -n pypid --log-format json
    ...}: pypid's top service (L{LoggingService}) sets a
    L{StreamLogObserver} on the standard output as the application's
    L{ILogObserver} component when twistd makes it a child of the
    application (twistd asks the application for that component before it
    falls back to its own log). Text lines are twistd's own format.
  - C{twistd -n --logger pypid.logs.json_observer pypid ...}: twistd's own
    hook for an observer factory; works for any twistd plugin.
  - C{--logfile}, C{--syslog} or a daemon: twistd's own observers, with
    access lines as ordinary events.

JSON objects have C{time} (ISO 8601, UTC), C{level}, C{namespace},
C{message} (the formatted text) and the event's own fields (C{client},
C{status}, C{uri}... for the access log), plus C{traceback} for failures.
No RFC 7464 record separator.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Callable, NamedTuple, Optional

from twisted.application.service import MultiService
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    Logger,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python.components import Componentized
from zope.interface import implementer

from pypid.ops.startup import StartError, refuse_start, twistd_logs_to_stdout

#: Log formats for C{--log-format}.
FORMATS = ("text", "json")

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: object) -> object:
    """C{value} if JSON can carry it as it is, else its C{str}."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _iso_time(moment: object) -> Optional[str]:
    if not isinstance(moment, (int, float)):
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc).isoformat(timespec="milliseconds")


def event_as_json(event: dict) -> str:
    """One log event as a line of JSON (with its newline)."""
    record: dict = {
        "time": _iso_time(event.get("log_time")),
        "level": getattr(event.get("log_level"), "name", None),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in ("format", "message", "isError", "system"):
            continue
        record[key] = _plain(value)
    if event.get("log_system") not in (None, "-"):
        record["system"] = _plain(event["log_system"])
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    try:
        return json.dumps(record, ensure_ascii=False, default=str) + "\n"
    except (TypeError, ValueError):
        return json.dumps({"time": record["time"], "level": record["level"],
                           "message": str(record["message"])}) + "\n"


def json_observer(out: Optional[IO[str]] = None) -> FileLogObserver:
    """
    An observer writing L{event_as_json} lines to C{out} (the current
    standard output by default). Usable as C{twistd --logger
    pypid.logs.json_observer}.
    """
    stream = out if out is not None else sys.stdout
    return FileLogObserver(stream, event_as_json)


class AccessEntry(NamedTuple):
    """What the access log says about one finished request."""

    client: str
    method: str
    uri: str
    protocol: str
    status: int
    size: int
    seconds: float
    agent: str
    #: Which representation of an index page was served: C{"json"} (PEP
    #: 691) or C{"html"}; None for every other answer.
    representation: Optional[str] = None

    @property
    def line(self) -> str:
        line = '%s "%s %s %s" %d %d %.1fms "%s"' % (
            self.client, self.method, self.uri, self.protocol,
            self.status, self.size, self.seconds * 1000, self.agent,
        )
        return line if self.representation is None else f"{line} representation={self.representation}"

    def fields(self) -> dict:
        """The structured fields of the access event (JSON logs carry them)."""
        return {
            "line": self.line,
            "client": self.client,
            "method": self.method,
            "uri": self.uri,
            "status": self.status,
            "size": self.size,
            "duration_ms": round(self.seconds * 1000, 3),
            "agent": self.agent,
            **({} if self.representation is None else {"representation": self.representation}),
        }


ACCESS_NAMESPACE = "pypid.access"
#: The access log. Module-level: a Logger class attribute read through an
#: instance takes the class's name as its namespace instead.
access_logger = Logger(namespace=ACCESS_NAMESPACE)


def emit_access(entry: AccessEntry) -> None:
    """An access line as an ordinary twisted.logger event (any observer sees it)."""
    access_logger.info("{line}", **entry.fields())


class _SecondStamps:
    """twistd's text time stamp, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def __call__(self, moment: float) -> str:
        second = int(moment)
        if second != self._second:
            self._stamp = formatTime(second, timeFormatRFC3339)
            self._second = second
        return self._stamp


def text_format() -> tuple[Callable[[dict], Optional[str]], Callable[[AccessEntry, float], str]]:
    """
    twistd's own text lines: for events, and for access entries (the same
    line an access event gives, made without the event).
    """
    stamps = _SecondStamps()

    def event(e: dict) -> Optional[str]:
        return formatEventAsClassicLogText(e, formatTime=lambda t: formatTime(t, timeFormatRFC3339))

    def access(entry: AccessEntry, moment: float) -> str:
        return f"{stamps(moment)} [{ACCESS_NAMESPACE}#info] {entry.line}\n"

    return event, access


def json_format() -> tuple[Callable[[dict], Optional[str]], Callable[[AccessEntry, float], str]]:
    """L{event_as_json} lines, for events and access entries alike."""

    def access(entry: AccessEntry, moment: float) -> str:
        record = {"time": _iso_time(moment), "level": "info", "namespace": ACCESS_NAMESPACE,
                  "message": entry.line, **entry.fields()}
        return json.dumps(record, ensure_ascii=False) + "\n"

    return event_as_json, access


@implementer(ILogObserver)
class StreamLogObserver:
    """
    Log lines to a stream, with a cheap path for the access log.

    Events are written (and flushed) as they come, from any thread. Access
    entries, one per request and logged on the reactor thread, skip the
    event machinery and are queued: the queue is written in one go at the
    end of the reactor turn (or sooner when it is long, or before any event
    so lines stay in order). Under load that is one write for many
    requests instead of an event, a formatting pass and a flush for each.
    """

    #: Write the queue at once past this many lines.
    QUEUE_LIMIT = 512

    def __init__(self, stream: IO[str], format_event: Callable[[dict], Optional[str]],
                 format_access: Callable[[AccessEntry, float], str], clock) -> None:
        self._stream = stream
        self._format_event = format_event
        self._format_access = format_access
        self._clock = clock
        self._queue: list[str] = []
        self._pending = None
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        text = self._format_event(event)
        with self._lock:
            if text:
                self._queue.append(text)
            self._write()

    def access(self, entry: AccessEntry) -> None:
        """Queue one access line; called on the reactor thread."""
        text = self._format_access(entry, time.time())
        with self._lock:
            self._queue.append(text)
            if len(self._queue) >= self.QUEUE_LIMIT:
                self._write()
                return
        if self._pending is None:
            self._pending = self._clock.callLater(0, self.flush)

    def raw(self, text: str) -> None:
        """Write lines already made (a worker's, L{pypid.ops.workers}), in order with the rest."""
        with self._lock:
            self._queue.append(text)
            self._write()

    def flush(self) -> None:
        """Write what is queued."""
        self._pending = None
        with self._lock:
            self._write()

    def _write(self) -> None:
        if self._queue:
            text = "".join(self._queue)
            self._queue.clear()
            self._stream.write(text)
            self._stream.flush()


class LoggingService(MultiService):
    """
    pypid's top service, which also decides where logs go. Once twistd
    makes it a child of the application, it sets a L{StreamLogObserver} on
    the standard output as the application's log observer: always for
    C{--log-format json}; for text, when twistd would have written text to
    the standard output anyway (C{-n}, no C{--logfile}/C{--syslog}). A
    C{--logger} or an observer already set wins, and then access lines go
    out as ordinary events (L{emit_access}).

    L{access} is where the Site sends each finished request. A child that
    cannot start (a L{StartError}) stops the start with one line
    (L{refuse_start}).
    """

    def __init__(self, log_format: str = "text", twistd=None, clock=None) -> None:
        super().__init__()
        self.log_format = log_format
        self.twistd = twistd
        self.clock = clock
        self.observer: Optional[StreamLogObserver] = None
        self._access: Callable[[AccessEntry], None] = emit_access

    def setServiceParent(self, parent) -> None:
        wanted = self.log_format == "json" or twistd_logs_to_stdout(self.twistd)
        if wanted and isinstance(parent, Componentized) and parent.getComponent(ILogObserver, None) is None \
                and not (self.twistd is not None and self.twistd.get("logger")):
            clock = self.clock
            if clock is None:
                from twisted.internet import reactor as clock
            formats = json_format() if self.log_format == "json" else text_format()
            # Bind the real stdout now: twistd replaces sys.stdout with a
            # logging file once logging starts.
            self.observer = StreamLogObserver(sys.stdout, *formats, clock)
            parent.setComponent(ILogObserver, self.observer)
            self._access = self.observer.access
        super().setServiceParent(parent)

    def access(self, entry: AccessEntry) -> None:
        """Log one finished request."""
        self._access(entry)

    def write_to(self, stream: IO[str], clock) -> StreamLogObserver:
        """
        Write every log line to C{stream} from now on, in this service's
        format, through an observer of its own (a worker's log, which its
        supervisor relays): no twistd there to ask.
        """
        from twisted.logger import globalLogBeginner

        formats = json_format() if self.log_format == "json" else text_format()
        self.observer = StreamLogObserver(stream, *formats, clock)
        self._access = self.observer.access
        globalLogBeginner.beginLoggingTo([self.observer], redirectStandardIO=False)
        return self.observer

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartError as e:
            refuse_start(str(e), self.twistd)

    def startService(self) -> None:
        try:
            super().startService()
        except StartError as e:
            refuse_start(str(e), self.twistd)

    def stopService(self):
        d = super().stopService()
        if self.observer is not None:
            self.observer.flush()
        return d
