"""
What a burst of concurrent connections leaves in pypid's memory: RSS
before, at the peak (VmHWM) and once the burst is over and pypid idle.

    python bench/burst.py --connections 3000

Starts C{twistd -n pypid} on a temporary tree of C{--projects} projects
(pinned to CPU 0 when taskset exists), then opens C{--connections}
connections at once, each asking for one project page, a small file and the
root page on a kept-alive connection; reads every answer; closes them all;
then waits C{--idle} seconds and reports RSS again. C{--rounds} bursts in a
row show whether memory is reused or grows.

C{--pythonpath DIR} runs another checkout's pypid (to compare with the code
before a change); C{--env NAME=VALUE} sets pypid's environment (e.g.
C{MALLOC_ARENA_MAX=2}).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)
sys.path.insert(0, HERE)

from stalled import rss_kib, settle, start  # noqa: E402

from pypid.testing import wheel_bytes, write_dist  # noqa: E402


def hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def burst(port: int, connections: int, paths: list[bytes], timeout: float = 120) -> int:
    """Open every connection at once, send its requests, read until each answered all; the answers read."""
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, list] = {}
    for i in range(connections):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        requests = b"".join(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % paths[(i + k) % len(paths)]
                            for k in range(3))
        pending[s] = [requests, 0, b""]
        selector.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
    answers = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, events in selector.select(1):
            s = key.fileobj
            state = pending.get(s)
            if state is None:
                continue
            if events & selectors.EVENT_WRITE and state[0]:
                try:
                    sent = s.send(state[0])
                    state[0] = state[0][sent:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    state[0] = b""
                if not state[0]:
                    selector.modify(s, selectors.EVENT_READ)
            if events & selectors.EVENT_READ:
                try:
                    data = s.recv(262144)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                # (A status line may be split between two reads.)
                seen = state[2] + data
                state[1] += seen.count(b"HTTP/1.1 ")
                state[2] = seen[-8:]
                if not data or state[1] >= 3:
                    answers += state[1]
                    selector.unregister(s)
                    s.close()
                    del pending[s]
    for s in pending:
        s.close()
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--projects", type=int, default=300)
    parser.add_argument("--file-mb", type=int, default=0,
                        help="also a file of this many MiB, which every connection downloads first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle after the last burst")
    parser.add_argument("--pythonpath", default=TOP, help="checkout whose pypid runs (default: this one)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE in pypid's environment")
    parser.add_argument("--listen", default="tcp:0:interface=127.0.0.1",
                        help="pypid's --port (e.g. with :backlog=N)")
    parser.add_argument("pypid_args", nargs="*", help="more twistd pypid options (after --)")
    args = parser.parse_args()
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    with tempfile.TemporaryDirectory(prefix="pypid-burst-") as directory:
        packages = os.path.join(directory, "packages")
        os.mkdir(packages)
        paths = [b"/"]
        for i in range(args.projects):
            name = write_dist(packages, wheel_bytes(f"proj{i}", "1.0", summary=f"project {i}"))
            paths += [b"/simple/proj%d/" % i, b"/packages/" + os.path.basename(name).encode()]
        if args.file_mb:
            big = write_dist(packages, wheel_bytes("big", "1.0", padding=args.file_mb * 2**20))
            paths = [b"/packages/" + os.path.basename(big).encode()] + paths[:2]
        process, port = start(directory, args.pythonpath,
                              ["--max-connections", str(args.connections + 100), *args.pypid_args], args.listen)
        try:
            before = settle(process.pid)
            print(f"RSS at rest {before / 1024:.0f} MiB")
            for n in range(args.rounds):
                started = time.monotonic()
                answers = burst(port, args.connections, paths)
                took = time.monotonic() - started
                after = settle(process.pid, quiet=2.0)
                print(f"burst {n + 1}: {args.connections} connections, {answers} answers in {took:.1f} s; "
                      f"peak RSS {hwm_kib(process.pid) / 1024:.0f} MiB, after it {after / 1024:.0f} MiB")
            time.sleep(args.idle)
            print(f"after {args.idle:.0f} s idle: RSS {rss_kib(process.pid) / 1024:.0f} MiB")
            with open(os.path.join(directory, "twistd.log"), errors="replace") as f:
                for line in f:
                    if "#warn" in line or "#error" in line or "Traceback" in line:
                        print("pypid: " + line.rstrip()[:300])
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
