"""
What slow and stalled clients cost pypid: memory per client that asks for
a large file and reads nothing, and large-file throughput to a fast client
(so a fix for the first does not slow the second).

    python bench/stalled.py --clients 1000 --size-mb 64

Starts C{twistd -n pypid} on a temporary directory holding one large wheel
(pinned to CPU 0 when taskset exists; clients run on CPU 1), then:

  - throughput: C{curl} downloads the file to /dev/null C{--downloads}
    times, one after the other; the median rate is reported;
  - stalled readers: C{--clients} connections (receive buffer 4 KiB) each
    send a GET for the file and never read; once pypid's RSS (from
    /proc/PID/status) stops growing, its growth divided by the clients is
    the cost of one stalled reader.

C{--pythonpath DIR} runs another checkout's pypid (to compare with the
code before a change).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)

from pypid.testing import wheel_bytes, write_dist  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def settle(pid: int, quiet: float = 2.0, limit: float = 60.0) -> int:
    """pypid's RSS once it has not changed by more than 1% for C{quiet} seconds."""
    deadline = time.monotonic() + limit
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) > last / 100:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return rss_kib(pid)


def start(directory: str, pythonpath: str, extra: list[str],
          port: str = "tcp:0:interface=127.0.0.1") -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    log = open(os.path.join(directory, "twistd.log"), "wb")
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    command = [twistd, "-n", "--pidfile=", "pypid", "--no-access-log", "--port",
               port, *extra, os.path.join(directory, "packages")]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = open(os.path.join(directory, "twistd.log"), errors="replace").read()
        found = re.search(r"PypidSite starting on (\d+)", text)
        if found and "index ready" in text:
            return process, int(found.group(1))
        if process.poll() is not None:
            raise SystemExit(text)
        time.sleep(0.1)
    process.kill()
    raise SystemExit("pypid did not start")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of C{pid} so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def throughput(url: str, downloads: int) -> float:
    """Median MiB/s of C{downloads} curl downloads."""
    rates = []
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") else []
    for _ in range(downloads):
        out = subprocess.run([*pin, "curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
                             capture_output=True, text=True, check=True).stdout
        rates.append(float(out) / 2**20)
    return statistics.median(rates)


def stalled(port: int, path: str, clients: int) -> list[socket.socket]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sockets = []
    for _ in range(clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        sockets.append(s)
    return sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--downloads", type=int, default=9)
    parser.add_argument("--pythonpath", default=TOP, help="checkout whose pypid runs (default: this one)")
    parser.add_argument("pypid_args", nargs="*", help="more twistd pypid options (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pypid-stalled-") as directory:
        packages = os.path.join(directory, "packages")
        os.mkdir(packages)
        name = write_dist(packages, wheel_bytes("big", "1.0", padding=args.size_mb * 2**20))
        path = "/packages/" + os.path.basename(name)
        process, port = start(directory, args.pythonpath, args.pypid_args)
        try:
            url = f"http://127.0.0.1:{port}{path}"
            user, system = cpu_seconds(process.pid)
            rate = throughput(url, args.downloads)
            gib = args.downloads * args.size_mb / 1024
            user_after, system_after = cpu_seconds(process.pid)
            print(f"throughput: {rate:.0f} MiB/s (median of {args.downloads} downloads of {args.size_mb} MiB); "
                  f"pypid CPU per GiB sent: {(user_after - user) / gib:.2f} s user, "
                  f"{(system_after - system) / gib:.2f} s system (loopback delivery included)")
            before = settle(process.pid)
            sockets = stalled(port, path, args.clients)
            after = settle(process.pid)
            open_now = len(os.listdir(f"/proc/{process.pid}/fd"))
            print(f"stalled readers: {args.clients}, RSS {before} -> {after} KiB: "
                  f"{(after - before) / args.clients:.1f} KiB each ({open_now} fds open in pypid)")
            for s in sockets:
                s.close()
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
