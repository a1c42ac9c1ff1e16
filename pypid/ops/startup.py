"""
Starting up, or refusing to, in one clear line.

A mistake on the command line is a L{usage.UsageError}: under twistd it is
printed as one line and a hint (L{usage_exit}), not after the whole help.
A mistake found when the services start (a port in use, a spool that cannot
be made) is a L{StartError}: pypid's top service turns it into one line and
a non-zero exit (L{refuse_start}), also when twistd has daemonized, where
the line goes down twistd's status pipe to the parent still waiting on the
terminal.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn, Optional

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

log = Logger(namespace="pypid")

#: twistd's waiting parent reads this much of the status pipe (after "1 ").
_STATUS_LENGTH = 98


class StartError(Exception):
    """A service cannot start; the message says why, in one line."""


def usage_exit(command: str, error: usage.UsageError) -> NoReturn:
    """Print C{error} and a hint on the standard error, as argparse does; exit 2."""
    sys.stderr.write(f"{command}: {error}\nTry '{command} --help' for the options.\n")
    raise SystemExit(2)


def twistd_logs_to_stdout(twistd) -> bool:
    """
    Whether twistd, left to itself, would write text logs to the standard
    output (C{-n} without C{--logfile}, C{--syslog} or C{--logger}).
    """
    if twistd is None:
        return False
    try:
        return bool(twistd["nodaemon"]) and twistd["logfile"] in (None, "-") and not (
            twistd.get("syslog") or twistd.get("logger"))
    except KeyError:
        return False


def refuse_start(message: str, twistd=None) -> NoReturn:
    """
    Stop the start with C{message}: logged, and shown where the person who
    started pypid looks (the terminal twistd's parent waits on when it
    daemonized; the standard error when the log goes elsewhere); the pid
    file is removed; exit status 1.
    """
    log.critical("{message}", message=message)
    # The pid file goes first: twistd's parent returns as soon as it reads
    # the status pipe.
    pidfile = twistd.get("pidfile") if twistd is not None else None
    if pidfile:
        try:
            with open(pidfile) as f:
                mine = int(f.read().strip() or 0) == os.getpid()
            if mine:
                os.remove(pidfile)
        except (OSError, ValueError):
            pass
    pipe = twistd.get("statusPipe") if twistd is not None else None
    if pipe is not None:
        data = message.encode("ascii", "backslashreplace")
        if len(data) > _STATUS_LENGTH:
            data = data[: _STATUS_LENGTH - 3] + b"..."
        try:
            os.write(pipe, b"1 " + data)
            os.close(pipe)
        except OSError:
            pass
        twistd["statusPipe"] = None
    elif twistd is None or not twistd_logs_to_stdout(twistd):
        stderr = sys.__stderr__
        if stderr is not None:
            stderr.write(f"pypid: {message}\n")
    raise SystemExit(1)


def listen_error(option: str, error: BaseException) -> str:
    """The line saying why listening failed, for C{--port} or C{--ftp}."""
    what = "" if option == "--port" else f" ({option})"
    if not isinstance(error, CannotListenError):
        return f"cannot listen{what}: {error}"
    interface = error.interface
    if interface is None:
        where = str(error.port)
    elif interface in ("", "0.0.0.0", "::"):
        where = f"port {error.port}"
    else:
        where = f"{interface}:{error.port}"
    cause = error.socketError
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        reason = "address already in use (another pypid?)"
    elif code == errno.EACCES:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    elif code == errno.EADDRNOTAVAIL:
        reason = "no such address on this host"
    else:
        reason = getattr(cause, "strerror", None) or str(cause)
    return f"cannot listen on {where}{what}: {reason}"


class Listener(Service):
    """
    Listens on one endpoint with C{factory}, in twistd's privileged step
    (before it drops privileges); a failure is a L{StartError}.
    """

    def __init__(self, endpoint, factory, option: str = "--port") -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.option = option
        #: The L{IListeningPort}, once listening.
        self.port = None
        self._listening = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        listening = self._listening = self.endpoint.listen(self.factory)
        outcome: list = []
        listening.addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            raise StartError(listen_error(self.option, outcome[0].value))
        if outcome:
            self.port = outcome[0]

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self):
        super().stopService()
        port, self.port, self._listening = self.port, None, None
        if port is not None:
            return maybeDeferred(port.stopListening)
        return None

    def _address(self):
        if self.port is None:
            return None, None
        address = self.port.getHost()
        return getattr(address, "host", None), getattr(address, "port", None)

    @property
    def everywhere(self) -> bool:
        """Whether it listens on every interface (0.0.0.0 or ::)."""
        return self._address()[0] in ("0.0.0.0", "::")

    def url(self, scheme: str = "http") -> Optional[str]:
        """
        Where clients on this host reach the listener (the loopback address
        when it listens on every interface); L{None} when it is not TCP.
        """
        host, number = self._address()
        if host is None or number is None:
            return None
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{number}/"


def is_tls(description: str) -> bool:
    """Whether the endpoint C{description} serves TLS."""
    return description.split(":", 1)[0].lower() in ("ssl", "tls", "le", "lets")
