"""
Structured logs: one JSON object per log event, one per line.

Two ways to get them from a real twistd:

  - C{twistd -n pypid --log-format json ...}: pypid's top service sets
    itself as the application's L{ILogObserver} component when twistd makes
    it a child of the application (twistd asks the application for that
    component before it falls back to its own text log).
  - C{twistd -n --logger pypid.logs.json_observer pypid ...}: twistd's own
    hook for an observer factory; works for any twistd plugin.

Either way the lines go to the standard output twistd started with (run in
the foreground, as under systemd or supervisor). Each object has C{time}
(ISO 8601, UTC), C{level}, C{namespace}, C{message} (the formatted text) and
the event's own fields (C{client}, C{status}, C{uri}... for the access log),
plus C{traceback} for failures. No RFC 7464 record separator.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Optional

from twisted.application.service import MultiService
from twisted.logger import FileLogObserver, ILogObserver, formatEvent
from twisted.python.components import Componentized

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


def event_as_json(event: dict) -> str:
    """One log event as a line of JSON (with its newline)."""
    moment = event.get("log_time")
    record: dict = {
        "time": datetime.fromtimestamp(moment, tz=timezone.utc).isoformat(timespec="milliseconds")
        if isinstance(moment, (int, float)) else None,
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


class JSONLoggingService(MultiService):
    """
    A MultiService that, once twistd makes it a child of the application,
    installs L{json_observer} as the application's log observer (unless one
    is set already, e.g. by C{--logger}: twistd prefers that anyway).
    """

    def setServiceParent(self, parent) -> None:
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver, None) is None:
            # Bind the real stdout now: twistd replaces sys.stdout with a
            # logging file once logging starts.
            parent.setComponent(ILogObserver, json_observer(sys.stdout))
        super().setServiceParent(parent)
