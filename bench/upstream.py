"""
The upstream fallback's cold path: `uv pip compile` of a set of common
projects against a local upstream directly, and through pypid with an empty
cache (cold) and again (warm), measured alternately.

    python bench/upstream.py --wheels /opt/pypi/files --rounds 5 --latency 0,0.02

The upstream (tests/fake_upstream.py) serves real wheels: the projects named
(--projects) and every project their requirements name, all versions found
in --wheels (a directory of distribution files, such as a pip mirror's), as
JSON pages with hashes and sizes, files in byte ranges, and:

- "pep658": PEP 658 .metadata files, as the public index serves;
- "ranges": no .metadata files, as many private indexes serve. uv then reads
  each wheel's METADATA by HEAD and ranges itself; pypid reads it the same
  way once and offers it as a .metadata file.

Each answer of the upstream can be held back (--latency, seconds: a
network's round trip to a remote index; 0 is a LAN at its best).

uv's cache is fresh for every compile (what "cold" means for the client);
pypid's upstream cache is fresh for every cold compile. Everything on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)

from packaging.requirements import InvalidRequirement, Requirement  # noqa: E402

from pypid.index.filenames import parse_filename  # noqa: E402
from pypid.index.names import normalize  # noqa: E402
from pypid.store.metadata import MetadataError, parse_message, read_metadata  # noqa: E402
from tests.server import PypidServer, tool  # noqa: E402

DEFAULT_PROJECTS = "requests,flask,django,fastapi,pydantic,sqlalchemy,numpy,pandas,pytest,rich"


def closure(wheels: Path, wanted: list[str]) -> dict[str, list[Path]]:
    """The files of C{wanted} and of every project their requirements name (extras left out)."""
    by_project: dict[str, list[Path]] = {}
    for path in sorted(wheels.iterdir()):
        parsed = parse_filename(path.name)
        if parsed is not None and parsed.kind in ("wheel", "sdist"):
            by_project.setdefault(parsed.project, []).append(path)
    seen: dict[str, list[Path]] = {}
    todo = [normalize(name) for name in wanted]
    while todo:
        key = todo.pop()
        if key in seen or key not in by_project:
            continue
        seen[key] = by_project[key]
        for path in by_project[key]:
            if not path.name.endswith(".whl"):
                continue
            try:
                message = parse_message(read_metadata(str(path), "wheel"))
            except MetadataError:
                continue
            for line in message.get_all("Requires-Dist") or []:
                try:
                    requirement = Requirement(str(line))
                except InvalidRequirement:
                    continue
                if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                    continue
                todo.append(normalize(requirement.name))
    return seen


class FakeUpstream:
    """tests/fake_upstream.py over a directory of files, with byte ranges."""

    def __init__(self, directory: Path, dists: Path, metadata: bool, delay: float) -> None:
        self.dir = directory
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        (directory / "dists").symlink_to(dists)
        (directory / "config.json").write_text(json.dumps({"ranges": True, "metadata": metadata, "delay": delay}))
        env = dict(os.environ, PYTHONPATH=TOP)
        self.log = open(directory / "server.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream", str(directory)],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not (directory / "port").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((directory / "server.log").read_text())
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{int((directory / 'port').read_text())}/simple/"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def compile_once(index: str, requirements: Path, work: Path) -> float:
    """Seconds of one `uv pip compile` with a fresh uv cache."""
    cache = Path(tempfile.mkdtemp(prefix="uv-cache-", dir=work))
    env = dict(os.environ, UV_CACHE_DIR=str(cache), UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never",
               NO_PROXY="*", no_proxy="*")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    started = time.monotonic()
    result = subprocess.run([tool("uv"), "pip", "compile", "--quiet", "--python", sys.executable, "--no-header",
                             "--index-url", index, str(requirements)], env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    shutil.rmtree(cache, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"uv pip compile against {index} failed:\n{result.stderr}")
    return took


def fetched(log: str) -> tuple[int, int]:
    """(whole distribution files, their bytes) pypid fetched from the upstream, from its log."""
    sizes = [int(n.replace(",", "")) for n in re.findall(r"cached \S+ \(([\d,]+) bytes?\)", log)]
    return len(sizes), sum(sizes)


def measure(work: Path, dists: Path, kind: str, latency: float, requirements: Path, rounds: int):
    """Times of direct, cold and warm compiles ({name: [seconds]}) and what pypid fetched, per round."""
    work.mkdir()
    upstream = FakeUpstream(work / "upstream", dists, kind == "pep658", latency)
    times: dict[str, list[float]] = {"direct": [], "cold": [], "warm": []}
    traffic = []
    try:
        compile_once(upstream.url, requirements, work)  # the upstream's own first-request costs
        for round_ in range(rounds):
            times["direct"].append(compile_once(upstream.url, requirements, work))
            local = work / f"local-{round_}"
            local.mkdir()
            pypid = PypidServer(["--fallback-url", upstream.url, "--cache-dir", str(work / f"cache-{round_}"),
                                 str(local)], log_path=work / f"pypid-{round_}.log").start()
            try:
                times["cold"].append(compile_once(pypid.url + "simple/", requirements, work))
                traffic.append(fetched(pypid.log()))
                times["warm"].append(compile_once(pypid.url + "simple/", requirements, work))
            finally:
                pypid.stop()
    finally:
        upstream.stop()
    return times, traffic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", default="/opt/pypi/files", help="directory of distribution files")
    parser.add_argument("--projects", default=DEFAULT_PROJECTS, help="comma-separated names to compile")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--upstreams", default="pep658,ranges")
    parser.add_argument("--latency", default="0,0.02", help="seconds each upstream answer is held back, comma-separated")
    parser.add_argument("--out", default=os.path.join(HERE, "out", "upstream"))
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    projects = [p for p in args.projects.split(",") if p]
    files = closure(Path(args.wheels), projects)
    dists = out / "dists"
    dists.mkdir()
    for paths in files.values():
        for path in paths:
            os.symlink(path.resolve(), dists / path.name)
    count = sum(len(p) for p in files.values())
    size = sum(p.stat().st_size for paths in files.values() for p in paths)
    print(f"upstream: {len(files)} projects, {count} files, {size / 1e6:.0f} MB", file=sys.stderr)
    requirements = out / "requirements.in"
    requirements.write_text("\n".join(projects) + "\n")

    results = {}
    for latency in (float(x) for x in args.latency.split(",")):
        for kind in args.upstreams.split(","):
            label = f"{kind}-{latency:g}"
            results[(kind, latency)] = measure(out / label, dists, kind, latency, requirements, args.rounds)
            print(f"{label}: " + ", ".join(f"{k} {statistics.median(v):.2f}s"
                                           for k, v in results[(kind, latency)][0].items()), file=sys.stderr)

    print(f"\n`uv pip compile` of {len(projects)} projects ({', '.join(projects)}), "
          f"{len(files)} projects and {count} files ({size / 1e6:.0f} MB) upstream, median of {args.rounds}:\n")
    print("| upstream | latency (ms) | direct (s) | through pypid, cold (s) | cold / direct "
          "| through pypid, warm (s) | warm / direct | whole files pypid fetched, cold |")
    print("|---|---|---|---|---|---|---|---|")
    for (kind, latency), (times, traffic) in results.items():
        direct, cold, warm = (statistics.median(times[k]) for k in ("direct", "cold", "warm"))
        files_fetched, bytes_fetched = sorted(traffic)[len(traffic) // 2]
        label = {"pep658": "PEP 658 and ranges", "ranges": "ranges, no .metadata files"}.get(kind, kind)
        print(f"| {label} | {latency * 1000:g} | {direct:.2f} | {cold:.2f} | {cold / direct:.2f} | {warm:.2f} "
              f"| {warm / direct:.2f} | {files_fetched} ({bytes_fetched / 1e6:.1f} MB) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
