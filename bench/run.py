"""
Side-by-side benchmark: pypid, pypiserver (its default server) and nginx
serving pre-rendered pages, on one synthetic tree, measured alternately in
one run so that the ratios hold on a noisy machine.

    python bench/run.py --projects 2000 --files 5

Servers run on CPU 0, the load generator (wrk) on CPU 1, all on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)
sys.path.insert(0, HERE)

import tree  # noqa: E402
from pypid.names import normalize  # noqa: E402
from pypid.testing import wheel_bytes, write_dist  # noqa: E402

PYPISERVER = "pypiserver==2.4.2"
NGINX_CONF = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  types {{ text/html html; }}
  default_type application/octet-stream;
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    root {static};
    location /simple/ {{ index index.html; }}
    location /packages/ {{ disable_symlinks off; try_files $uri @meta; }}
    location @meta {{ rewrite ^/packages/(.*)$ /metadata/$1 break; }}
  }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(p) for p in out]


class Server:
    name = "?"

    def __init__(self, args, work: str) -> None:
        self.args = args
        self.work = work
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, last_project: str) -> float:
        """Start; return seconds until /simple/ is complete."""
        log = open(os.path.join(self.work, f"{self.name}.log"), "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(["taskset", "-c", "0", *self.command()], stdout=log, stderr=log,
                                        env=self.env())
        needle = f'href="{last_project}/"'.encode()
        while time.monotonic() - started < 300:
            status, body = get(self.url + "simple/")
            if status == 200 and needle in body:
                return time.monotonic() - started
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not serve a complete /simple/")

    def env(self) -> dict:
        return dict(os.environ)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []


class Pypid(Server):
    name = "pypid"

    def command(self) -> list[str]:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        extra = []
        if self.args.state_dir_supported:
            extra = ["--state-dir", os.path.join(self.work, "pypid-state")]
        return [twistd, "-n", "--pidfile=", "pypid", "--port", f"tcp:{self.port}:interface=127.0.0.1",
                "-P", ".", "-a", ".", *extra, self.args.packages]

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = TOP
        return env


class PypiServer(Server):
    name = "pypiserver"

    def command(self) -> list[str]:
        venv = os.path.join(self.args.out, "venv-pypiserver")
        if not os.path.exists(os.path.join(venv, "bin", "pypi-server")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", PYPISERVER, "passlib"], check=True)
        return [os.path.join(venv, "bin", "pypi-server"), "run", "-p", str(self.port), "-i", "127.0.0.1",
                "-P", ".", "-a", ".", "--disable-fallback", "--backend", "simple-dir", self.args.packages]


class Nginx(Server):
    name = "nginx"

    def command(self) -> list[str]:
        d = os.path.join(self.work, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, port=self.port, static=self.args.static))
        return ["nginx", "-c", conf, "-e", os.path.join(d, "error.log")]


def wrk(url: str, script: str | None, duration: int, connections: int = 32) -> dict:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    mb = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[transfer.group(2)] if transfer else 0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
            "mb_s": mb, "non2xx": int(errors.group(1)) if errors else 0}


def lua_paths(path: str, paths: list[str]) -> str:
    with open(path, "w") as f:
        f.write("paths = {\n" + "".join(f'"{p}",\n' for p in paths) + "}\n")
        f.write("counter = 0\nrequest = function()\n  counter = counter + 1\n"
                "  return wrk.format('GET', paths[(counter % #paths) + 1])\nend\n")
    return path


def drop_to_listed(server: Server, packages: str, trials: int = 8) -> float:
    """Median seconds from writing a new wheel into the tree to it being listed."""
    times = []
    drop = os.path.join(packages, "dropped")
    for i in range(trials):
        name = f"dropped-{os.getpid()}-{int(time.time() * 1000)}-{i}"
        started = time.monotonic()
        path = write_dist(drop, wheel_bytes(name, "1.0"))
        while time.monotonic() - started < 30:
            if get(server.url + f"simple/{normalize(name)}/", timeout=5)[0] == 200:
                times.append(time.monotonic() - started)
                break
            time.sleep(0.01)
        else:
            times.append(float("inf"))
        os.unlink(path)
    shutil.rmtree(drop, ignore_errors=True)
    return statistics.median(times)


def uploads(server: Server, count: int = 50) -> float | None:
    """Seconds for COUNT sequential legacy-API uploads with curl, or None if refused."""
    folder = tempfile.mkdtemp(prefix="bench-up-")
    started = time.monotonic()
    try:
        for i in range(count):
            name = f"uploaded-{os.getpid()}-{int(time.time())}-{i}"
            path = write_dist(folder, wheel_bytes(name, "1.0"))
            result = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "bench:bench",
                 "-F", ":action=file_upload", "-F", "protocol_version=1", "-F", f"name={name}",
                 "-F", "version=1.0", "-F", "filetype=bdist_wheel", "-F", "pyversion=py3",
                 "-F", "metadata_version=2.1", "-F", f"content=@{path}", server.url],
                capture_output=True, text=True)
            if result.stdout.strip() != "200":
                return None
        return time.monotonic() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def uv_compile(server: Server, projects: list[str]) -> float | None:
    folder = tempfile.mkdtemp(prefix="bench-uv-")
    try:
        req = os.path.join(folder, "requirements.in")
        with open(req, "w") as f:
            f.write("\n".join(projects) + "\n")
        env = dict(os.environ, UV_NO_CONFIG="1", UV_CACHE_DIR=os.path.join(folder, "cache"),
                   UV_PYTHON_DOWNLOADS="never")
        uv = shutil.which("uv") or os.path.join(os.path.dirname(sys.executable), "uv")
        started = time.monotonic()
        result = subprocess.run([uv, "pip", "compile", "-q", "--python", sys.executable, "--index-url",
                                 server.url + "simple/", req], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"uv pip compile through {server.name} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
            return None
        return time.monotonic() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(server: Server, args, cold: bool, scripts: dict, last: str, sample_projects: list[str]) -> dict:
    if cold and server.name == "pypid":
        shutil.rmtree(os.path.join(server.work, "pypid-state"), ignore_errors=True)
    result = {"startup_s": server.start(last)}
    try:
        d = args.duration
        if server.name == "pypid":
            # The same server again, with the state its first start left.
            server.stop()
            result["startup_warm_s"] = server.start(last)
        index = wrk(server.url + "simple/", None, d)
        result.update({"index_rps": index["rps"], "index_p99_ms": index["p99_ms"]})
        project = wrk(server.url, scripts["projects"], d)
        result.update({"project_rps": project["rps"], "project_p99_ms": project["p99_ms"],
                       "project_non2xx": project["non2xx"]})
        small = wrk(server.url, scripts["files"], d)
        result.update({"download_rps": small["rps"]})
        large = wrk(server.url + "packages/large/large_wheel-1.0-py3-none-any.whl", None, d, connections=4)
        result.update({"large_mb_s": large["mb_s"]})
        result["rss_mib"] = rss_kib(server.pids()) / 1024
        if server.name != "nginx":
            result["drop_to_listed_s"] = drop_to_listed(server, args.packages)
            result["upload_50_s"] = uploads(server)
        result["uv_compile_s"] = uv_compile(server, sample_projects)
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers this many times")
    parser.add_argument("--out", default=os.path.join(HERE, "out"))
    parser.add_argument("--servers", default="pypid,pypiserver,nginx")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    root = os.path.join(args.out, f"tree-{args.projects}x{args.files}")
    print(f"generating {args.projects} x {args.files} tree in {root}", file=sys.stderr)
    tree.generate(root, args.projects, args.files)
    args.static = tree.prerender(root)
    args.packages = os.path.join(root, "packages")
    help_text = subprocess.run([os.path.join(os.path.dirname(sys.executable), "twistd"), "pypid", "--help"],
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=TOP)).stdout
    args.state_dir_supported = "--state-dir" in help_text
    names = [normalize(tree.project_name(i)) for i in range(args.projects)]
    last = sorted(names)[-1]
    scripts_dir = tempfile.mkdtemp(prefix="bench-lua-")
    files = []
    for key in names:
        page = open(os.path.join(args.static, "simple", key, "index.html")).read()
        files.extend(m for m in re.findall(r'href="\.\./\.\./(packages/[^"#]+)', page))
    scripts = {
        "projects": lua_paths(os.path.join(scripts_dir, "projects.lua"), [f"/simple/{k}/" for k in names]),
        "files": lua_paths(os.path.join(scripts_dir, "files.lua"), ["/" + f for f in files[::7]]),
    }
    sample = [tree.project_name(i) for i in range(args.projects - 20, args.projects)]
    kinds = {"pypid": Pypid, "pypiserver": PypiServer, "nginx": Nginx}
    results: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):
        for name in args.servers.split(","):
            work = os.path.join(args.out, "work")
            os.makedirs(work, exist_ok=True)
            print(f"round {round_ + 1}: {name}", file=sys.stderr)
            results.setdefault(name, []).append(
                measure(kinds[name](args, work), args, round_ == 0, scripts, last, sample))
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


ROWS = [
    ("startup_s", "start-up to complete /simple/, cold (s)", "{:.2f}"),
    ("startup_warm_s", "start-up, warm cache (s)", "{:.2f}"),
    ("index_rps", "/simple/ requests/s", "{:,.0f}"),
    ("index_p99_ms", "/simple/ p99 (ms)", "{:.1f}"),
    ("project_rps", "/simple/<project>/ requests/s", "{:,.0f}"),
    ("project_p99_ms", "/simple/<project>/ p99 (ms)", "{:.1f}"),
    ("download_rps", "small downloads/s", "{:,.0f}"),
    ("large_mb_s", "large file MB/s", "{:,.0f}"),
    ("rss_mib", "RSS after load (MiB)", "{:.0f}"),
    ("drop_to_listed_s", "drop-to-listed, median (s)", "{:.3f}"),
    ("upload_50_s", "50 uploads (s)", "{:.2f}"),
    ("uv_compile_s", "uv pip compile, 20 projects (s)", "{:.2f}"),
]


def report(results: dict, args) -> None:
    names = list(results)
    print(f"\n{args.projects} projects x {args.files} files, {args.rounds} round(s), wrk -t1 -c32 -d{args.duration}s\n")
    print("| metric | " + " | ".join(names) + " | pypid / nginx | pypid / pypiserver |")
    print("|---|" + "---|" * (len(names) + 2))
    for key, label, fmt in ROWS:
        cells, values = [], {}
        for name in names:
            vals = [r[key] for r in results[name] if r.get(key) is not None]
            if vals:
                values[name] = statistics.median(vals)
                cells.append(fmt.format(values[name]))
            else:
                cells.append("—")
        ratios = []
        for other in ("nginx", "pypiserver"):
            if "pypid" in values and other in values and values[other]:
                ratios.append(f"{values['pypid'] / values[other]:.2f}")
            else:
                ratios.append("—")
        print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
