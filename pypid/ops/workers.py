"""
C{--workers N}: N processes serving one index, on every core.

The process twistd runs becomes a supervisor that serves nothing itself.
It listens on every C{--port} (and C{--ftp}) in twistd's privileged step,
accepts nothing, and starts N workers (C{python -m pypid.worker}), each
given the listening sockets: every worker accepts from the same sockets, one
connection at a time, so the kernel hands each new connection to a worker
that is waiting for one. Each worker is a whole pypid (its own index, page
cache, watcher and rescans) over the same package directories, which stay
the single source of truth: an upload taken by one worker lands in the
directory (by a hard link, which never clobbers: two workers taking one
filename at once store it once), and every other worker's watcher lists it
within a fraction of a second. They share the state directory (the SQLite
state cache, safe across processes; the index image, written by worker 0
only).

Worker 0 starts first; the others start once it is ready and has written
the index image, so a cold start reads every file once, not N times, and
the others start warm. A worker that exits is logged and started again
(after a second, and longer when it keeps dying young). When the
supervisor stops, so do the workers (SIGTERM, then SIGKILL after
L{STOP_TIMEOUT}); a worker whose supervisor is gone (its standard input
closes) stops too.

The workers' log lines come to the supervisor through pipes and go out
where its own go (the terminal, the journal, twistd's log file), whole
lines at a time. C{/metrics} of any worker shows every worker's metrics,
each series labelled C{worker="N"}: each worker writes its own to a shared
run directory every second (L{METRICS_EVERY}).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Optional

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger, LogLevel, globalLogPublisher

from pypid.ops.startup import StartError

if TYPE_CHECKING:
    from twisted.internet.task import LoopingCall

log = Logger(namespace="pypid.workers")

#: Seconds a stopping worker has before it is killed.
STOP_TIMEOUT = 30.0
#: Seconds before a worker that exited is started again; doubled (up to
#: L{RESTART_MAX}) while workers keep exiting within L{YOUNG} seconds.
RESTART_DELAY = 1.0
RESTART_MAX = 30.0
YOUNG = 10.0
#: Seconds between the metrics files each worker writes.
METRICS_EVERY = 1.0

#: The worker's file descriptors: its control pipe to the supervisor, then
#: the listening sockets from this one on.
CONTROL_FD = 3
FIRST_SOCKET_FD = 4


def parse_workers(value: Optional[str]) -> int:
    """C{--workers}: a number of processes, or C{auto} (one per CPU)."""
    from twisted.python import usage

    text = (value or "1").strip().lower()
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1 or count > 256:
        raise usage.UsageError(f"--workers takes a number of processes from 1 to 256, or auto; not {value!r}.")
    return count


class _Held(protocol.Factory):
    """What the supervisor listens with: it never accepts (its workers do)."""

    noisy = False

    def logPrefix(self) -> str:
        return "pypid workers' socket"

    def buildProtocol(self, addr):
        return None


class SharedSocket:
    """One listening socket the supervisor holds for its workers."""

    def __init__(self, port, description: str, option: str) -> None:
        self.port = port
        self.description = description
        self.option = option
        self.fileno = port.fileno()
        self.family = port.socket.family


def hold(endpoint_, description: str, option: str) -> SharedSocket:
    """Listen on C{endpoint_} and stop accepting: the socket is for the workers. Blocking."""
    from pypid.ops.startup import listen_error

    outcome: list = []
    endpoint_.listen(_Held()).addBoth(outcome.append)
    if not outcome or not hasattr(outcome[0], "stopReading"):
        error = getattr(outcome[0], "value", outcome[0]) if outcome else RuntimeError("no port")
        raise StartError(listen_error(option, error))
    port = outcome[0]
    port.stopReading()
    return SharedSocket(port, description, option)


class _WorkerProcess(protocol.ProcessProtocol):
    """One worker, seen from the supervisor."""

    def __init__(self, pool: "WorkerPool", index: int) -> None:
        self.pool = pool
        self.index = index
        self.started = time.monotonic()
        self.buffers = {1: b"", 2: b"", CONTROL_FD: b""}
        self.ended: Deferred = Deferred()
        self.ready = False
        self.pid: Optional[int] = None

    def childDataReceived(self, fd: int, data: bytes) -> None:
        pending = self.buffers.get(fd, b"") + data
        cut = pending.rfind(b"\n")
        if cut < 0:
            self.buffers[fd] = pending
            return
        self.buffers[fd] = pending[cut + 1:]
        lines = pending[: cut + 1]
        if fd == CONTROL_FD:
            for line in lines.splitlines():
                if line.strip() == b"ready":
                    self.ready = True
                    self.pool.worker_ready(self.index)
            return
        self.pool.relay(lines.decode("utf-8", "replace"), self.index)

    def processEnded(self, reason) -> None:
        for fd in (1, 2):
            if self.buffers.get(fd):
                self.pool.relay(self.buffers[fd].decode("utf-8", "replace") + "\n", self.index)
                self.buffers[fd] = b""
        self.ended.callback(reason.value)
        self.pool.worker_ended(self, reason.value)


class WorkerPool(Service):
    """
    The supervisor's service: holds the listening sockets, starts the
    workers, starts again those that exit, stops them all when it stops.

    @param spec: what every worker is told (the options' class and
        command line, the log format); the sockets and its number are added.
    @param relay: where the workers' log lines go (see L{LogRelay}).
    """

    def __init__(self, count: int, sockets: list[tuple[Any, str, str]], spec: dict, reactor,
                 relay: "LogRelay", executable: str = sys.executable) -> None:
        self.count = count
        #: (endpoint, description, option) of each socket to hold, web ports first.
        self.wanted = sockets
        self.spec = spec
        self.reactor = reactor
        self.relay_to = relay
        self.executable = executable
        self.sockets: list[SharedSocket] = []
        self.processes: dict[int, _WorkerProcess] = {}
        self.restarts = 0
        self.run_dir: Optional[str] = None
        self._delay = RESTART_DELAY
        self._pending: dict[int, Any] = {}
        self._stopping = False
        self._first_ready = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        for endpoint_, description, option in self.wanted:
            self.sockets.append(hold(endpoint_, description, option))

    def startService(self) -> None:
        super().startService()
        if not self.sockets:
            self.privilegedStartService()
        self.run_dir = tempfile.mkdtemp(prefix="pypid-workers-")
        where = ", ".join(s.description for s in self.sockets)
        log.info("starting {count} workers on {where}; worker 0 first, the others once it is ready",
                 count=self.count, where=where)
        self._start(0)

    def _start(self, index: int) -> None:
        self._pending.pop(index, None)
        if self._stopping:
            return
        fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", CONTROL_FD: "r"}
        ports = []
        ftp = None
        for offset, shared in enumerate(self.sockets):
            fd = FIRST_SOCKET_FD + offset
            if shared.option == "--ftp":
                if index != 0:
                    continue
                ftp = [fd, shared.family]
            else:
                ports.append([fd, shared.family, shared.description])
            fds[fd] = shared.fileno
        spec = dict(self.spec, index=index, count=self.count, ports=ports, ftp=ftp, run_dir=self.run_dir,
                    log=self.relay_to.mode)
        process = _WorkerProcess(self, index)
        self.processes[index] = process
        transport = self.reactor.spawnProcess(
            process, self.executable, [self.executable, "-m", "pypid.worker", json.dumps(spec)],
            env=os.environ.copy(), childFDs=fds)
        process.pid = transport.pid
        log.info("worker {index} started (pid {pid})", index=index, pid=transport.pid)

    def worker_ready(self, index: int) -> None:
        log.info("worker {index} is ready", index=index)
        if not self._first_ready:
            self._first_ready = True
            for other in range(1, self.count):
                if other not in self.processes:
                    self._start(other)

    def worker_ended(self, process: _WorkerProcess, reason) -> None:
        index = process.index
        if self.processes.get(index) is process:
            del self.processes[index]
        if self.run_dir is not None:
            for name in (f"metrics-{index}.json",):
                try:
                    os.unlink(os.path.join(self.run_dir, name))
                except OSError:
                    pass
        code = getattr(reason, "exitCode", None)
        signal_ = getattr(reason, "signal", None)
        how = f"signal {signal_}" if signal_ else f"status {code}"
        if self._stopping:
            log.info("worker {index} stopped ({how})", index=index, how=how)
            return
        lived = time.monotonic() - process.started
        # Again after a second; while workers keep dying young, later and later.
        delay = self._delay if lived < YOUNG else RESTART_DELAY
        self._delay = min(RESTART_MAX, delay * 2) if lived < YOUNG else RESTART_DELAY
        self.restarts += 1
        log.warn("worker {index} (pid {pid}) exited ({how}) after {lived:.0f} s; starting it again in {delay:g} s",
                 index=index, pid=process.pid, how=how, lived=lived, delay=delay)
        if index != 0 and not self._first_ready:
            return
        self._pending[index] = self.reactor.callLater(delay, self._start, index)

    def relay(self, text: str, index: int) -> None:
        self.relay_to(text, index)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.pid is not None]

    def stopService(self):
        super().stopService()
        self._stopping = True
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        ended = []
        for process in list(self.processes.values()):
            ended.append(process.ended)
            try:
                process.transport.signalProcess("TERM")
            except Exception:
                pass
        if not ended:
            return self._clean_up(None)

        def kill() -> None:
            for process in list(self.processes.values()):
                try:
                    transport = process.transport
                    if transport is not None:
                        transport.signalProcess("KILL")
                except Exception:
                    pass

        killer = self.reactor.callLater(STOP_TIMEOUT, kill)

        def done(result):
            if killer.active():
                killer.cancel()
            return self._clean_up(result)

        return DeferredList(ended, consumeErrors=True).addBoth(done)

    def _clean_up(self, result):
        for shared in self.sockets:
            try:
                shared.port.stopListening()
            except Exception:
                pass
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return result


class LogRelay:
    """
    Where the workers' log lines go, in the supervisor. When the
    supervisor writes its own log (C{observer}: the standard output, text
    or JSON), the workers write lines in that very format and they are
    copied whole; otherwise (twistd's log file, syslog) they write JSON
    lines, turned back into events for the supervisor's observers.
    """

    def __init__(self, observer=lambda: None) -> None:
        #: Returns the supervisor's own observer, if it writes its log itself.
        self.observer = observer

    @property
    def mode(self) -> str:
        """What the workers write: C{raw} (in the supervisor's format) or C{events} (JSON to parse)."""
        return "raw" if self.observer() is not None else "events"

    def __call__(self, text: str, index: int) -> None:
        observer = self.observer()
        if observer is not None:
            observer.raw(text)
            return
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                globalLogPublisher({"log_format": "{line}", "line": line, "log_level": LogLevel.info,
                                    "log_namespace": "pypid.worker", "log_time": time.time(), "worker": index})
                continue
            event = {key: value for key, value in record.items()
                     if key not in ("time", "level", "namespace", "message")}
            event.update(log_format="{log_text}", log_text=record.get("message", ""),
                         log_namespace=record.get("namespace") or "pypid.worker",
                         log_level=_level(record.get("level")), log_time=time.time(), worker=index)
            globalLogPublisher(event)


def _level(name) -> LogLevel:
    try:
        return LogLevel.levelWithName(name or "info")
    except Exception:
        return LogLevel.info


# In the worker.


class AdoptedListener(Service):
    """
    A worker's listener: the socket its supervisor listens on (file
    descriptor C{fd}), adopted with C{factory} (wrapped in TLS for an
    C{ssl:} description), accepting one connection at a time so that the
    workers share the new connections.
    """

    def __init__(self, reactor, fd: int, family: int, factory, description: str = "", option: str = "--port") -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = family
        self.factory = factory
        self.description = description
        self.option = option
        self.port = None

    def startService(self) -> None:
        super().startService()
        factory = self.factory
        from pypid.ops.startup import is_tls

        if is_tls(self.description):
            from twisted.internet import endpoints
            from twisted.protocols.tls import TLSMemoryBIOFactory

            endpoint_ = endpoints.serverFromString(self.reactor, self.description)
            context = getattr(endpoint_, "_sslContextFactory", None)
            if context is None:
                raise StartError(f"{self.option} {self.description!r}: TLS with --workers needs an ssl: endpoint")
            factory = TLSMemoryBIOFactory(context, False, factory)
        port = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        os.close(self.fd)
        share_accepts(port)
        self.port = port

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None

    # What pypid.web.options.announce asks of a listener.

    def _address(self):
        if self.port is None:
            return None, None
        address = self.port.getHost()
        return getattr(address, "host", None), getattr(address, "port", None)

    @property
    def everywhere(self) -> bool:
        return self._address()[0] in ("0.0.0.0", "::")

    def url(self, scheme: str = "http") -> Optional[str]:
        from pypid.ops.startup import Listener

        # Borrowed: Listener.url needs only _address(), which this has too.
        return Listener.url(self, scheme)  # type: ignore[arg-type]


_one_at_a_time: dict[type, type] = {}


def share_accepts(port) -> None:
    """
    Make C{port} accept one connection per wake-up: Twisted accepts up to a
    hundred at once, so with a socket shared by several processes the
    first one awake would take a whole burst of connections.
    """
    cls = port.__class__
    shared = _one_at_a_time.get(cls)
    if shared is None:
        shared = _one_at_a_time[cls] = type(
            "OneAccept" + cls.__name__, (cls,),
            {"numberAccepts": property(lambda self: 1, lambda self, value: None)})
    port.__class__ = shared


class MetricsFiles:
    """
    Every worker's metrics, each series labelled with its worker: this
    worker's own (fresh) and the others' (the files they write every
    L{METRICS_EVERY} seconds into the run directory).
    """

    def __init__(self, run_dir: str, index: int, registry, clock) -> None:
        self.run_dir = run_dir
        self.index = index
        self.registry = registry
        self.clock = clock
        self._loop: Optional[LoopingCall] = None

    def start(self) -> None:
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self.write)
        self._loop.clock = self.clock
        self._loop.start(METRICS_EVERY, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def write(self) -> None:
        path = os.path.join(self.run_dir, f"metrics-{self.index}.json")
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(temp, "w") as f:
                json.dump(self.registry.snapshot(), f)
            os.replace(temp, path)
        except OSError:
            pass

    def snapshots(self) -> list[tuple[str, dict]]:
        """(worker label, snapshot) of every worker, this one's fresh."""
        found = [(str(self.index), self.registry.snapshot())]
        try:
            names = sorted(os.listdir(self.run_dir))
        except OSError:
            names = []
        for name in names:
            if not (name.startswith("metrics-") and name.endswith(".json")):
                continue
            worker = name[len("metrics-"):-len(".json")]
            if worker == str(self.index):
                continue
            try:
                with open(os.path.join(self.run_dir, name)) as f:
                    found.append((worker, json.load(f)))
            except (OSError, ValueError):
                continue
        return found

    def render(self) -> bytes:
        return self.registry.render_merged(self.snapshots(), "worker")


