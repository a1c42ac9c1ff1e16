"""
One worker of C{--workers} (L{pypid.ops.workers}): C{python -m pypid.worker
SPEC}, started by its supervisor, never by hand. SPEC (JSON) says which
options class parses which command line, which worker this is, and which
of its file descriptors are the listening sockets.

It builds the same services a single pypid builds (L{pypid.tap.build}),
listening on the sockets it was given, logs to its standard output (which
its supervisor relays), tells its supervisor on its control pipe once its
index is ready (worker 0: and written to the index image), and stops on
SIGTERM, or when its supervisor is gone (its standard input closes).
"""

from __future__ import annotations

import json
import signal
import sys
from importlib import import_module
from typing import Any


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    module, _, name = spec["options"].partition(":")
    options_class = getattr(import_module(module), name)

    from twisted.internet import reactor as global_reactor, stdio
    from twisted.internet.protocol import Protocol

    from pypid import tap
    from pypid.ops.workers import CONTROL_FD

    # The global reactor provides more interfaces (IReactorThreads, run's
    # arguments) than its annotation says.
    reactor: Any = global_reactor

    options = options_class()
    options.parseOptions(spec["args"])
    worker = {key: spec[key] for key in ("index", "count", "ports", "ftp", "run_dir")}
    built = tap.build(options, reactor, worker)
    top = built.top
    if spec.get("log") == "events":
        # The supervisor's log is not its standard output: JSON, turned back into events there.
        top.log_format = "json"
    top.write_to(sys.stdout, reactor)

    stopping: list[bool] = []

    def stop() -> None:
        # Once: a terminal's Ctrl-C, or systemd stopping the unit, reaches
        # the workers as well as their supervisor, which passes it on.
        if not stopping:
            stopping.append(True)
            reactor.stop()

    def on_signal(number, frame) -> None:
        reactor.callFromThread(stop)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, on_signal)

    class Supervisor(Protocol):
        """Our standard input: the supervisor's end of a pipe. Closed: it is gone."""

        def connectionLost(self, reason=None) -> None:
            stop()

    supervisor = Supervisor()
    # (mypy reads twisted.internet.stdio's Windows StandardIO; the POSIX one takes stdin and stdout.)
    stdio.StandardIO(supervisor, stdin=0, stdout=CONTROL_FD)  # type: ignore[call-arg]

    def tell_ready(_: object = None) -> None:
        transport = supervisor.transport
        assert transport is not None  # (connected by StandardIO above)
        transport.write(b"ready\n")

    def ready(_) -> None:
        if worker["index"] == 0:
            # The others start from the index image this one writes.
            built.store.save_image().addBoth(tell_ready)
        else:
            tell_ready()

    built.store.whenReady().addCallback(ready)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
