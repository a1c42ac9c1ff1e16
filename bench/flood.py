"""
The wrong-password flood of issue 18: how long another client's requests
take while four connections send wrong passwords, against idle.

    python bench/flood.py                       # this checkout, this Python
    python bench/flood.py --python OTHER/bin/python --source OTHER_CHECKOUT

A real twistd serves one project with reads protected (-a
update,download,list) and one user with a bcrypt entry of pypid passwd's
cost (12). The other client, at 127.0.0.2, reads /simple/private/ with the
right password, one request at a time; the flooders, at 127.0.0.1 (or
each at its own address with --spread), read it with wrong passwords as
fast as they are answered, each on one keep-alive connection in a process
of its own. Printed: the other client's p50/p90/max idle and under the
flood, and what the flooders were answered.
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)

from pypid.auth.hashes import default as hashes  # noqa: E402
from pypid.testing import wheel_bytes, write_dist  # noqa: E402


def auth(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def start(python: str, source: str, work: str) -> tuple[subprocess.Popen, int]:
    packages = os.path.join(work, "packages")
    os.makedirs(packages)
    write_dist(packages, wheel_bytes("private", "1.0"))
    passwords = os.path.join(work, "htpasswd")
    with open(passwords, "w") as f:
        f.write("alice:" + hashes().hash_bcrypt(b"wonderland", 12) + "\n")
    env = dict(os.environ, PYTHONPATH=source)
    log = open(os.path.join(work, "twistd.log"), "wb")
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(python), "twistd"), "-n", "--pidfile=", "pypid", "--port", "tcp:0:interface=127.0.0.1",
         "-P", passwords, "-a", "update,download,list", packages],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = open(os.path.join(work, "twistd.log"), errors="replace").read()
        match = re.search(r"PypidSite starting on (\d+)", text)
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            raise SystemExit("twistd exited:\n" + text)
        time.sleep(0.1)
    process.kill()
    raise SystemExit("twistd did not start")


class Client:
    def __init__(self, port: int, source: str) -> None:
        self.port = port
        self.source = source
        self.connection = None

    def get(self, path: str, headers: dict) -> int:
        for _ in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=120, source_address=(self.source, 0))
            try:
                self.connection.request("GET", path, headers=headers)
                response = self.connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
        return 0


def sample(port: int, count: int, pause: float) -> list[float]:
    """Milliseconds of C{count} reads by the other client (right password, 127.0.0.2)."""
    client = Client(port, "127.0.0.2")
    headers = auth("alice", "wonderland")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status = client.get("/simple/private/", headers)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"the other client got {status}")
        time.sleep(pause)
    return times


def flooder(port: int, n: int, source: str, stop, answers) -> None:
    """One flooding connection, in a process of its own (so it does not take the measuring client's GIL)."""
    client = Client(port, source)
    counts: collections.Counter = collections.Counter()
    i = 0
    while not stop.is_set():
        counts[client.get("/simple/private/", auth("alice", f"guess-{n}-{i}"))] += 1
        i += 1
    answers.put(dict(counts))


def summary(times: list[float]) -> str:
    times = sorted(times)
    p90 = times[int(len(times) * 0.9) - 1]
    return f"p50 {statistics.median(times):8.1f} ms  p90 {p90:8.1f} ms  max {times[-1]:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of the pypid under test (its twistd beside it)")
    parser.add_argument("--source", default=TOP, help="the checkout of the pypid under test")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--requests", type=int, default=100, help="reads by the other client, idle and flooded")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between the other client's reads")
    parser.add_argument("--spread", action="store_true",
                        help="each flooder at an address of its own (127.0.1.N): each gets its own "
                             "budget of failed logins, so the checks keep the password pool busy")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pypid-flood-")
    process, port = start(args.python, args.source, work)
    try:
        sample(port, 3, 0)  # warm up: the first check of the right password
        idle = sample(port, args.requests, args.pause)
        stop = multiprocessing.Event()
        queue: multiprocessing.Queue = multiprocessing.Queue()
        sources = [f"127.0.1.{n + 1}" if args.spread else "127.0.0.1" for n in range(args.flooders)]
        flooders = [multiprocessing.Process(target=flooder, args=(port, n, sources[n], stop, queue), daemon=True)
                    for n in range(args.flooders)]
        for p in flooders:
            p.start()
        time.sleep(1.0)
        started = time.monotonic()
        flooded = sample(port, args.requests, args.pause)
        elapsed = time.monotonic() - started
        stop.set()
        answers: collections.Counter = collections.Counter()
        for _ in flooders:
            answers.update(queue.get(timeout=150))
        for p in flooders:
            p.join(10)
        print(f"pypid from {args.source} with {args.python}")
        print(f"  idle:    {summary(idle)}")
        print(f"  flooded: {summary(flooded)}   ({statistics.median(flooded) / statistics.median(idle):.2f}x idle p50)")
        addresses = len(set(sources))
        print(f"  flooders ({args.flooders} connections from {addresses} address{'es' if addresses > 1 else ''}, "
              f"{elapsed:.1f} s measured): "
              + ", ".join(f"{count} x {status}" for status, count in sorted(answers.items())))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
