"""
Side-by-side benchmark: pypid, pypiserver (its default server), devpi-server
(a user index without upstream, loaded with the same files by uploads) and
nginx serving pre-rendered pages, on one synthetic tree, measured
alternately in one run so that the ratios hold on a noisy machine.

    python bench/run.py --projects 2000 --files 5

Servers run on CPU 0, the clients (wrk, uv) on CPU 1, all on 127.0.0.1.
pypiserver and devpi-server are installed into throwaway virtualenvs under
--out; devpi's loaded server directory is kept there too, per tree size.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, TOP)
sys.path.insert(0, HERE)

import tree  # noqa: E402
from pypid.store.metadata import parse_message, read_metadata  # noqa: E402
from pypid.index.names import normalize  # noqa: E402
from pypid.testing import wheel_bytes, write_dist  # noqa: E402

PYPISERVER = "pypiserver==2.4.2"
DEVPI = "devpi-server>=6,<7"
DEVPI_USER, DEVPI_PASSWORD, DEVPI_INDEX = "bench", "bench", "dev"
#: Files copied into the tree at once by the burst measurement.
BURST_FILES = 10_000
NGINX_CONF = """worker_processes {cores};
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


#: Where servers run and where the load generators (wrk, uv) run; set by --cores.
SERVER_CPUS = "0"
CLIENT_CPUS = "1"


def cpu_sets(cores: int) -> tuple[str, str]:
    """The CPUs of a server given C{cores}, and of the clients: the next one, or the last one."""
    available = sorted(os.sched_getaffinity(0))
    server = available[:cores]
    client = available[cores] if len(available) > cores else available[-1]
    return ",".join(map(str, server)), str(client)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds used so far by C{pids} (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


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


def rss_kib(pids: list[int], field: str = "VmRSS") -> int:
    """Resident memory of C{pids}, summed: C{VmRSS} now, or C{VmHWM} at its peak."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(p) for p in out]


class Unavailable(Exception):
    """A server kind that cannot be run here (not installable, ...)."""


class Server:
    name = "?"
    #: Path of the simple index below the server's root URL.
    simple_path = "simple/"
    #: Whether it lists files dropped into the tree (drop-to-listed).
    watches_tree = False

    def __init__(self, args, work: str, cores: int = 1) -> None:
        self.args = args
        self.work = work
        self.cores = cores
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        # This run's log only (a start appends to it).
        open(os.path.join(self.work, f"{self.name}.log"), "wb").close()

    @property
    def label(self) -> str:
        """The column of the report: the name, and the cores when more than one."""
        return self.name if self.cores == 1 else f"{self.name} x{self.cores}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def simple_url(self) -> str:
        return self.url + self.simple_path

    @property
    def upload_url(self) -> str:
        return self.url

    def prepare(self) -> None:
        """Install or load what the server needs; raise L{Unavailable} if it can't run."""

    def scripts(self, common: dict) -> dict:
        """wrk scripts and the large file's path for this server (most share the tree's paths)."""
        return common

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, last_project: str) -> float:
        """Start; return seconds until /simple/ is complete."""
        log = open(os.path.join(self.work, f"{self.name}.log"), "ab")
        started = time.monotonic()
        # A start may use every CPU (a warm start of a large tree walks it
        # on another core); serving is measured on SERVER_CPUS.
        cpus = SERVER_CPUS if not self.args.start_on_all_cpus else ",".join(map(str, sorted(os.sched_getaffinity(0))))
        self.process = subprocess.Popen(["taskset", "-c", cpus, *self.command()], stdout=log, stderr=log,
                                        env=self.env())
        needle = f'href="{last_project}/"'.encode()
        while time.monotonic() - started < self.args.start_timeout:
            status, body = get(self.simple_url)
            if status == 200 and needle in body:
                took = time.monotonic() - started
                if cpus != SERVER_CPUS:
                    for pid in self.pids():
                        subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CPUS, str(pid)], capture_output=True)
                return took
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {log.name}")
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
    watches_tree = True

    def command(self) -> list[str]:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        extra = []
        if self.args.state_dir_supported:
            extra = ["--state-dir", os.path.join(self.work, "pypid-state")]
        if self.cores > 1:
            extra += ["--workers", str(self.cores)]
        return [twistd, "-n", "--pidfile=", "pypid", "--port", f"tcp:{self.port}:interface=127.0.0.1",
                "-P", ".", "-a", ".", *extra, self.args.packages]

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = TOP
        return env


def venv_with(venv: str, program: str, requirements: list[str]) -> str:
    """C{venv}/bin/C{program}, installing C{requirements} into a new virtualenv first if needed."""
    path = os.path.join(venv, "bin", program)
    if os.path.exists(path):
        return path
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
        result = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", *requirements],
                                capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Unavailable(f"could not make a virtualenv in {venv}: {e}")
    if result.returncode != 0 or not os.path.exists(path):
        shutil.rmtree(venv, ignore_errors=True)
        lines = [line for line in result.stderr.splitlines() if "is ignored: it is neither" not in line]
        raise Unavailable(f"pip install {' '.join(requirements)} failed:\n" + "\n".join(lines[-15:]))
    return path


class PypiServer(Server):
    name = "pypiserver"
    watches_tree = True

    def prepare(self) -> None:
        self.program = venv_with(os.path.join(self.args.out, "venv-pypiserver"), "pypi-server",
                                 [PYPISERVER, "passlib"])

    def command(self) -> list[str]:
        return [self.program, "run", "-p", str(self.port), "-i", "127.0.0.1",
                "-P", ".", "-a", ".", "--disable-fallback", "--backend", "simple-dir", self.args.packages]


class Devpi(Server):
    """
    devpi-server 6 with one user index (no bases, so no mirror behind it),
    started with --offline-mode and without the root/pypi mirror: nothing
    leaves the machine. The tree is loaded once by uploads (the legacy
    upload API, as twine and devpi-client use it) into a server directory
    kept in --out per tree size; each run serves a copy of it (files hard
    linked), so the run's own uploads never reach the cache.
    """

    name = "devpi"
    simple_path = f"{DEVPI_USER}/{DEVPI_INDEX}/+simple/"

    @property
    def upload_url(self) -> str:
        return self.url + f"{DEVPI_USER}/{DEVPI_INDEX}/"

    @property
    def cache(self) -> str:
        return os.path.join(self.args.out, f"devpi-{self.args.projects}x{self.args.files}")

    def prepare(self) -> None:
        venv = os.path.join(self.args.out, "venv-devpi")
        self.program = venv_with(venv, "devpi-server", [DEVPI])
        self.init = os.path.join(venv, "bin", "devpi-init")
        loaded = os.path.join(self.cache, "load.json")
        if not os.path.exists(loaded):
            self.load(loaded)
        with open(loaded) as f:
            self.loaded = json.load(f)
        self.serverdir = os.path.join(self.work, "devpi-server")
        shutil.rmtree(self.serverdir, ignore_errors=True)

        def link_or_copy(src: str, dst: str) -> None:
            # Stored files are written once; the database and state files change.
            if os.sep + "+files" + os.sep in src:
                os.link(src, dst)
            else:
                shutil.copy2(src, dst)

        shutil.copytree(os.path.join(self.cache, "server"), self.serverdir, copy_function=link_or_copy)

    def command(self) -> list[str]:
        return [self.program, "--serverdir", self.serverdir, "--host", "127.0.0.1", "--port", str(self.port),
                "--offline-mode"]

    def scripts(self, common: dict) -> dict:
        d = os.path.join(self.work, "devpi-lua")
        os.makedirs(d, exist_ok=True)
        names = common["names"]
        return {
            "names": names,
            "projects": lua_paths(os.path.join(d, "projects.lua"), ["/" + self.simple_path + k + "/" for k in names]),
            "files": lua_paths(os.path.join(d, "files.lua"), self.loaded["files"][::7]),
            "large": self.loaded["large"],
        }

    def load(self, loaded: str) -> None:
        """Make the cached server directory: init, user and index, upload every file of the tree."""
        partial = self.cache + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        self.serverdir = os.path.join(partial, "server")
        subprocess.run([self.init, "--serverdir", self.serverdir, "--no-root-pypi",
                        "--root-passwd", base64.b16encode(os.urandom(12)).decode()],
                       check=True, capture_output=True)
        paths = dist_files(self.args.packages)
        print(f"devpi: loading {len(paths)} files by upload into {self.cache} (once per tree size)",
              file=sys.stderr)
        log = open(os.path.join(self.work, f"{self.name}.log"), "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(["taskset", "-c", SERVER_CPUS, *self.command()], stdout=log, stderr=log)
        try:
            while get(self.url + "+api")[0] != 200:
                if self.process.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError(f"devpi-server did not start; see {log.name}")
                time.sleep(0.1)
            started = time.monotonic()
            user = json.dumps({"password": DEVPI_PASSWORD}).encode()
            index = json.dumps({"bases": [], "volatile": True, "type": "stage"}).encode()
            basic = "Basic " + base64.b64encode(f"{DEVPI_USER}:{DEVPI_PASSWORD}".encode()).decode()
            for path, body, headers in ((DEVPI_USER, user, {}),
                                        (f"{DEVPI_USER}/{DEVPI_INDEX}", index, {"Authorization": basic})):
                status = request("PUT", self.url + path, body, {"Content-Type": "application/json", **headers})[0]
                if status not in (200, 201):
                    raise RuntimeError(f"devpi: PUT /{path} answered {status}")
            # A login token: Basic auth costs an argon2 verification per request.
            login = json.dumps({"user": DEVPI_USER, "password": DEVPI_PASSWORD}).encode()
            status, body = request("POST", self.url + "+login", login, {"Content-Type": "application/json"})
            token = json.loads(body)["result"]["password"]
            auth = base64.b64encode(f"{DEVPI_USER}:{token}".encode()).decode()
            done = [0]

            def one(path: str) -> None:
                status = upload_file(self.port, "/" + f"{DEVPI_USER}/{DEVPI_INDEX}/", path, {"X-Devpi-Auth": auth})
                if status != 200:
                    raise RuntimeError(f"devpi: uploading {path} answered {status}")
                done[0] += 1
                if done[0] % 1000 == 0:
                    print(f"devpi: {done[0]} of {len(paths)} uploaded", file=sys.stderr)

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(one, paths))
            load_s = time.monotonic() - started
            files, large = [], None
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            base = "/" + self.simple_path
            for key in sorted({normalize(parse_dist_name(p)) for p in paths}):
                conn.request("GET", base + key + "/")
                response = conn.getresponse()
                page = response.read().decode()
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                for href in re.findall(r'href="([^"#]+)', page):
                    url = urllib.parse.urljoin(base + key + "/", href)
                    if key == "large-wheel":
                        large = url
                    else:
                        files.append(url)
        finally:
            self.stop()
            self.process = None
        if len(files) + 1 != len(paths) or large is None:
            raise RuntimeError(f"devpi lists {len(files)} files, {len(paths)} were uploaded")
        with open(os.path.join(partial, "load.json"), "w") as f:
            json.dump({"load_s": load_s, "uploaded": len(paths), "files": files, "large": large,
                       "when": time.strftime("%Y-%m-%d %H:%M")}, f)
        shutil.rmtree(self.cache, ignore_errors=True)
        os.rename(partial, self.cache)


class Nginx(Server):
    name = "nginx"

    def command(self) -> list[str]:
        d = os.path.join(self.work, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, port=self.port, static=self.args.static, cores=self.cores))
        return ["nginx", "-c", conf, "-e", os.path.join(d, "error.log")]


def request(method: str, url: str, body: bytes | None = None, headers: dict = {}) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def dist_files(packages: str) -> list[str]:
    """The tree's own files (what tree.generate wrote), not leftovers of runs."""
    paths = []
    for top in sorted(os.listdir(packages)):
        if not (re.fullmatch(r"team\d\d", top) or top == "large"):
            continue
        for folder, dirs, names in os.walk(os.path.join(packages, top)):
            dirs.sort()
            paths.extend(os.path.join(folder, n) for n in sorted(names) if n.endswith((".whl", ".tar.gz")))
    return paths


def parse_dist_name(path: str) -> str:
    return parse_message(read_metadata(path, "wheel" if path.endswith(".whl") else "sdist"))["Name"]


_connections = threading.local()


def upload_file(port: int, path: str, filename: str, headers: dict) -> int:
    """One legacy-API upload (multipart, the fields twine sends) over this thread's connection."""
    wheel = filename.endswith(".whl")
    message = parse_message(read_metadata(filename, "wheel" if wheel else "sdist"))
    fields = [(":action", "file_upload"), ("protocol_version", "1"), ("name", message["Name"]),
              ("version", message["Version"]), ("filetype", "bdist_wheel" if wheel else "sdist"),
              ("pyversion", "py3" if wheel else "source"), ("metadata_version", message["Metadata-Version"]),
              ("summary", message["Summary"] or "")]
    if message["Requires-Python"]:
        fields.append(("requires_python", message["Requires-Python"]))
    fields.extend(("requires_dist", r) for r in message.get_all("Requires-Dist") or [])
    boundary = base64.b16encode(os.urandom(16)).decode()
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields]
    with open(filename, "rb") as f:
        content = f.read()
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                 f'filename="{os.path.basename(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + content + f"\r\n--{boundary}--\r\n".encode())
    for attempt in (1, 2):
        conn = getattr(_connections, "conn", None)
        if conn is None or conn.port != port:
            conn = _connections.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.request("POST", path, b"".join(parts),
                         {"Content-Type": f"multipart/form-data; boundary={boundary}", **headers})
            response = conn.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            _connections.conn = None
            if attempt == 2:
                raise
            continue
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            _connections.conn = None
        return response.status
    return 0


def wrk(url: str, script: str | None, duration: int, connections: int = 32) -> dict:
    args = ["taskset", "-c", CLIENT_CPUS, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    mb = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}[transfer.group(2)] if transfer else 0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
            "mb_s": mb, "non2xx": int(errors.group(1)) if errors else 0, "requests": int(done.group(1)) if done else 0}


def wrk_cpu(server: "Server", url: str, script: str | None, duration: int, connections: int = 32) -> dict:
    """L{wrk}, and the server's CPU time per request meanwhile (every process of it, from /proc)."""
    pids = server.pids()
    before = cpu_seconds(pids)
    result = wrk(url, script, duration, connections)
    used = cpu_seconds(pids) - before
    result["cpu_us"] = used / result["requests"] * 1e6 if result["requests"] else float("nan")
    return result


def lua_paths(path: str, paths: list[str]) -> str:
    with open(path, "w") as f:
        f.write("paths = {\n" + "".join(f'"{p}",\n' for p in paths) + "}\n")
        f.write("counter = 0\nrequest = function()\n  counter = counter + 1\n"
                "  return wrk.format('GET', paths[(counter % #paths) + 1])\nend\n")
    return path


def drop_once(server: Server, folder: str, tag: str, timeout: float = 30) -> float:
    """Seconds from writing a new wheel into C{folder} to its project page answering 200 (then removed)."""
    name = f"dropped-{os.getpid()}-{int(time.time() * 1000)}-{tag}"
    started = time.monotonic()
    path = write_dist(folder, wheel_bytes(name, "1.0"))
    url = server.simple_url + f"{normalize(name)}/"
    try:
        while time.monotonic() - started < timeout:
            if get(url, timeout=5)[0] == 200:
                return time.monotonic() - started
            time.sleep(0.01)
        return float("inf")
    finally:
        os.unlink(path)


def drop_to_listed(server: Server, packages: str, trials: int = 8) -> float:
    """Median seconds from writing a new wheel into the tree to it being listed."""
    drop = os.path.join(packages, "dropped")
    try:
        return statistics.median(drop_once(server, drop, str(i)) for i in range(trials))
    finally:
        shutil.rmtree(drop, ignore_errors=True)


class Client:
    """Sequential GETs over one kept-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 0, b""
        return 0, b""


def burst(server: Server, args, limit: float = 300) -> dict:
    """
    Copy BURST_FILES new files into a new folder of the tree as fast as the
    disk allows (like cp -r), and meanwhile time drop-to-listed trials; time
    until every burst file is listed, then until their removal is absorbed.
    """
    source = tree.generate_burst(os.path.join(args.out, f"burst-{BURST_FILES}"), BURST_FILES)
    # Projects are awaited in the order of a sorted walk; cp goes in directory order, so the
    # wait for one project may cover others: only the time the last one is complete counts.
    rels = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        rels.extend(os.path.relpath(os.path.join(folder, n), source) for n in sorted(names) if n != ".complete")
    projects: dict[str, list[str]] = {}
    for rel in rels:
        filename = os.path.basename(rel)
        projects.setdefault(normalize(re.split(r"-\d", filename, maxsplit=1)[0]), []).append(filename)
    target = os.path.join(args.packages, f"burst-{os.getpid()}")
    drops = os.path.join(args.packages, f"dropped-burst-{os.getpid()}")
    result: dict = {}
    listed = threading.Event()

    def copy() -> None:
        # cp itself, apart from this process's polling threads.
        subprocess.run(["cp", "-r", source, target], check=True)
        result["burst_copy_s"] = time.monotonic() - started

    def check() -> None:
        client = Client(server.port)
        try:
            for key, filenames in projects.items():
                while time.monotonic() - started < limit:
                    status, body = client.get("/" + server.simple_path + key + "/")
                    if status == 200 and all(f.encode() in body for f in filenames):
                        break
                    time.sleep(0.02)
                else:
                    print(f"burst: {key} not completely listed after {limit:.0f}s", file=sys.stderr)
                    return
            result["burst_listed_s"] = time.monotonic() - started
        finally:
            listed.set()

    started = time.monotonic()
    threads = [threading.Thread(target=copy), threading.Thread(target=check)]
    for t in threads:
        t.start()
    trials = []
    try:
        # Trials that start while the burst is being absorbed (at least 5).
        while (not listed.is_set() or len(trials) < 5) and len(trials) < 200:
            trials.append(drop_once(server, drops, f"b{len(trials)}"))
    finally:
        for t in threads:
            t.join()
        shutil.rmtree(drops, ignore_errors=True)
        removed = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        # Absorbed once no burst project is left in /simple/ (no tree project has "burst" in its name).
        client = Client(server.port)
        while time.monotonic() - removed < limit:
            status, body = client.get("/" + server.simple_path)
            if status == 200 and b"burst" not in body:
                result["burst_removed_s"] = time.monotonic() - removed
                break
            time.sleep(0.1)
    result.update({"burst_drop_median_s": statistics.median(trials), "burst_drop_max_s": max(trials),
                   "burst_trials": len(trials)})
    print(f"burst: {len(rels)} files copied in {result.get('burst_copy_s', float('nan')):.2f}s, all listed after "
          f"{result.get('burst_listed_s', float('nan')):.2f}s; {len(trials)} drop-to-listed trials meanwhile",
          file=sys.stderr)
    return result


def uploads(server: Server, count: int = 50) -> float | None:
    """Seconds for COUNT sequential legacy-API uploads with curl (Basic auth, as twine), or None if refused."""
    folder = tempfile.mkdtemp(prefix="bench-up-")
    started = time.monotonic()
    try:
        for i in range(count):
            name = f"uploaded-{os.getpid()}-{int(time.time())}-{i}"
            path = write_dist(folder, wheel_bytes(name, "1.0"))
            result = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{DEVPI_USER}:{DEVPI_PASSWORD}",
                 "-F", ":action=file_upload", "-F", "protocol_version=1", "-F", f"name={name}",
                 "-F", "version=1.0", "-F", "filetype=bdist_wheel", "-F", "pyversion=py3",
                 "-F", "metadata_version=2.1", "-F", f"content=@{path}", server.upload_url],
                capture_output=True, text=True)
            if result.stdout.strip() != "200":
                return None
        return time.monotonic() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(packages: str) -> int:
    """Remove what runs add to the tree (uploads, dropped and burst files); return how many entries."""
    removed = 0
    for entry in os.listdir(packages):
        path = os.path.join(packages, entry)
        if re.match(r"uploaded[-_]", entry) and os.path.isfile(path):
            os.unlink(path)
        elif re.fullmatch(r"(dropped|burst|dropped-burst)(-\d+)?", entry) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed += 1
    return removed


def uv_compile(server: Server, projects: list[str], runs: int = 6) -> tuple[float, float] | None:
    """
    Seconds for `uv pip compile` of PROJECTS through the server: the first
    run after the server's start, and the median of the RUNS - 1 after it.
    Each run has a new, empty uv cache on tmpfs when there is one: uv
    writes a few thousand small files per run, and on a busy ext4 that
    alone took 1-2 s of system time, more than the resolution itself.
    """
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="bench-uv-", dir=shm)
    try:
        req = os.path.join(folder, "requirements.in")
        with open(req, "w") as f:
            f.write("\n".join(projects) + "\n")
        uv = shutil.which("uv") or os.path.join(os.path.dirname(sys.executable), "uv")
        times = []
        for i in range(runs):
            cache = os.path.join(folder, f"cache-{i}")
            env = dict(os.environ, UV_NO_CONFIG="1", UV_CACHE_DIR=cache, UV_PYTHON_DOWNLOADS="never")
            started = time.monotonic()
            result = subprocess.run(["taskset", "-c", CLIENT_CPUS, uv, "pip", "compile", "-q", "--python", sys.executable,
                                     "--index-url", server.simple_url, req], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"uv pip compile through {server.name} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
                return None
            times.append(time.monotonic() - started)
            shutil.rmtree(cache, ignore_errors=True)
        return times[0], statistics.median(times[1:])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(server: Server, args, cold: bool, common: dict, last: str, sample_projects: list[str]) -> dict:
    state = os.path.join(server.work, "pypid-state")
    warm_only = server.name == "pypid" and args.keep_state and os.path.isdir(state)
    if cold and server.name == "pypid" and not warm_only:
        shutil.rmtree(state, ignore_errors=True)
    server.prepare()
    scripts = server.scripts(common)
    result = {}
    try:
        started = server.start(last)
        if isinstance(server, Devpi):
            # Cold, devpi has only the tree's upload; warm, a start with its loaded server directory.
            result.update({"startup_s": server.loaded["load_s"], "startup_warm_s": started})
        elif not warm_only:
            result["startup_s"] = started
        d = args.duration
        if server.name == "pypid":
            # The same server again, with the state its first start left.
            if not warm_only:
                server.stop()
                started = server.start(last)
            result["startup_warm_s"] = started
            time.sleep(1)
            result["rss_start_mib"] = rss_kib(server.pids()) / 1024
            result["rss_peak_mib"] = rss_kib(server.pids(), "VmHWM") / 1024
        index = wrk(server.simple_url, None, d)
        result.update({"index_rps": index["rps"], "index_p99_ms": index["p99_ms"]})
        project = wrk_cpu(server, server.url, scripts["projects"], d)
        result.update({"project_rps": project["rps"], "project_p99_ms": project["p99_ms"],
                       "project_non2xx": project["non2xx"], "project_cpu_us": project["cpu_us"]})
        small = wrk_cpu(server, server.url, scripts["files"], d)
        result.update({"download_rps": small["rps"], "download_non2xx": small["non2xx"],
                       "download_cpu_us": small["cpu_us"]})
        large = wrk(server.url + scripts["large"].lstrip("/"), None, d, connections=4)
        result.update({"large_mb_s": large["mb_s"], "large_non2xx": large["non2xx"]})
        if server.name == "pypid" and args.listing:
            result.update(listing_probe(server, scripts, d))
        result["rss_mib"] = rss_kib(server.pids()) / 1024
        if server.name == "pypid":
            result["rss_peak_mib"] = rss_kib(server.pids(), "VmHWM") / 1024
        compiled = uv_compile(server, sample_projects)
        if compiled:
            result["uv_compile_s"], result["uv_compile_again_s"] = compiled
        if server.watches_tree:
            result["drop_to_listed_s"] = drop_to_listed(server, args.packages)
        if server.name == "pypid" and args.burst:
            result.update(burst(server, args))
        if server.name != "nginx":
            result["upload_50_s"] = uploads(server)
    finally:
        server.stop()
        remove_leftovers(args.packages)
    return result


def listing_probe(server: Server, scripts: dict, duration: int) -> dict:
    """
    Project pages under load while a client reads the whole /packages/
    listing (every file of the tree: 180 MB at a million files): their
    requests/s and p99 meanwhile, and how long the listing took.
    """
    done: dict = {}

    def read_listing() -> None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        conn.request("GET", "/packages/")
        response = conn.getresponse()
        size = 0
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
        conn.close()
        done.update(listing_s=time.monotonic() - started, listing_mb=size / 1e6)

    reader = threading.Thread(target=read_listing)
    reader.start()
    time.sleep(0.2)
    during = wrk(server.url, scripts["projects"], duration)
    reader.join()
    return {"listing_s": done.get("listing_s"), "listing_mb": done.get("listing_mb"),
            "project_during_listing_rps": during["rps"], "project_during_listing_p99_ms": during["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers this many times")
    parser.add_argument("--out", default=os.path.join(HERE, "out"))
    parser.add_argument("--servers", default="pypid,pypiserver,devpi,nginx",
                        help="any of pypid, pypiserver, devpi, nginx, comma-separated")
    parser.add_argument("--no-burst", dest="burst", action="store_false",
                        help=f"skip drop-to-listed during a {BURST_FILES:,}-file burst (pypid)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--cores", default="1",
                        help="CPU cores per server, comma-separated (pypid: --workers N, nginx: N worker "
                             "processes); each count is measured as its own column. The clients run on the next "
                             "CPU (on the last one when there is none left)")
    parser.add_argument("--listing", action="store_true",
                        help="also time project pages while a client reads the whole /packages/ listing (pypid)")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep pypid's state directory from earlier runs: only warm starts are measured "
                             "(a cold start of a million files takes minutes)")
    parser.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to start")
    parser.add_argument("--start-on-all-cpus", action="store_true",
                        help="let servers start on every CPU (they serve on theirs once started)")
    args = parser.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    kinds = {"pypid": Pypid, "pypiserver": PypiServer, "devpi": Devpi, "nginx": Nginx}
    servers = args.servers.split(",")
    unknown = [name for name in servers if name not in kinds]
    if unknown:
        parser.error(f"unknown server kinds: {', '.join(unknown)} (known: {', '.join(kinds)})")
    root = os.path.join(args.out, f"tree-{args.projects}x{args.files}")
    print(f"generating {args.projects} x {args.files} tree in {root}", file=sys.stderr)
    tree.generate(root, args.projects, args.files)
    # nginx's pre-rendered pages (read the whole tree once: minutes at a million files).
    args.static = tree.prerender(root) if "nginx" in servers else None
    args.packages = os.path.join(root, "packages")
    removed = remove_leftovers(args.packages)
    if removed:
        print(f"removed {removed} leftovers of earlier runs (uploads, dropped files) from the tree", file=sys.stderr)
    help_text = subprocess.run([os.path.join(os.path.dirname(sys.executable), "twistd"), "pypid", "--help"],
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=TOP)).stdout
    args.state_dir_supported = "--state-dir" in help_text
    names = [normalize(tree.project_name(i)) for i in range(args.projects)]
    last = sorted(names)[-1]
    scripts_dir = tempfile.mkdtemp(prefix="bench-lua-")
    files = []
    if args.static is not None:
        for key in names:
            page = open(os.path.join(args.static, "simple", key, "index.html")).read()
            files.extend(m for m in re.findall(r'href="\.\./\.\./(packages/[^"#]+)', page))
    else:
        for path in dist_files(args.packages):
            if not path.endswith("large_wheel-1.0-py3-none-any.whl"):
                files.append("packages/" + urllib.parse.quote(os.path.relpath(path, args.packages)))
    common = {
        "names": names,
        "projects": lua_paths(os.path.join(scripts_dir, "projects.lua"), [f"/simple/{k}/" for k in names]),
        "files": lua_paths(os.path.join(scripts_dir, "files.lua"), ["/" + f for f in files[::7]]),
        "large": "/packages/large/large_wheel-1.0-py3-none-any.whl",
    }
    sample = [tree.project_name(i) for i in range(args.projects - 20, args.projects)]
    # pypiserver and devpi have no worker processes: one core each.
    runs = [(name, n) for n in cores for name in servers if n == 1 or name in ("pypid", "nginx")]
    labels = {(name, n): kinds[name].name if n == 1 else f"{kinds[name].name} x{n}" for name, n in runs}
    results: dict[str, list[dict]] = {labels[run]: [] for run in runs}
    unavailable: dict[str, str] = {}
    work = os.path.join(args.out, "work")
    os.makedirs(work, exist_ok=True)
    global SERVER_CPUS, CLIENT_CPUS
    for round_ in range(args.rounds):
        for name, n in runs:
            if name in unavailable:
                continue
            SERVER_CPUS, CLIENT_CPUS = cpu_sets(n)
            label = labels[(name, n)]
            print(f"round {round_ + 1}: {label} (server on CPU {SERVER_CPUS}, clients on CPU {CLIENT_CPUS})",
                  file=sys.stderr)
            try:
                results[label].append(measure(kinds[name](args, work, n), args, round_ == 0, common, last, sample))
            except Unavailable as e:
                lines = str(e).splitlines() or ["?"]
                unavailable[name] = lines[0] + (f" {lines[-1][:200]}" if len(lines) > 1 else "")
                print(f"{name} is not measured: {e}", file=sys.stderr)
            except Exception:
                # One server failing must not cost the others' figures.
                print(f"{label} failed in round {round_ + 1}:", file=sys.stderr)
                traceback.print_exc()
    shutil.rmtree(scripts_dir, ignore_errors=True)
    report(results, args, unavailable)
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
    ("project_cpu_us", "/simple/<project>/ server CPU per request (us)", "{:,.0f}"),
    ("download_cpu_us", "small download server CPU per request (us)", "{:,.0f}"),
    ("rss_start_mib", "RSS after a warm start (MiB)", "{:.0f}"),
    ("rss_mib", "RSS after load (MiB)", "{:.0f}"),
    ("rss_peak_mib", "RSS peak (MiB)", "{:.0f}"),
    ("listing_s", "/packages/ read whole by one client (s)", "{:.1f}"),
    ("listing_mb", "/packages/ size (MB)", "{:,.1f}"),
    ("project_during_listing_rps", "/simple/<project>/ requests/s while /packages/ is read", "{:,.0f}"),
    ("project_during_listing_p99_ms", "/simple/<project>/ p99 while /packages/ is read (ms)", "{:.1f}"),
    ("drop_to_listed_s", "drop-to-listed, median (s)", "{:.3f}"),
    ("burst_drop_median_s", f"drop-to-listed during a {BURST_FILES:,}-file burst, median (s)", "{:.3f}"),
    ("burst_drop_max_s", "drop-to-listed during the burst, max (s)", "{:.3f}"),
    ("burst_listed_s", f"{BURST_FILES:,}-file burst copied in: all listed after (s)", "{:.2f}"),
    ("burst_removed_s", "burst removed: absorbed after (s)", "{:.2f}"),
    ("upload_50_s", "50 uploads (s)", "{:.2f}"),
    ("uv_compile_s", "uv pip compile, 20 projects, first after start (s)", "{:.2f}"),
    ("uv_compile_again_s", "uv pip compile, again (s, median of 5)", "{:.2f}"),
]


def ratio(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


def _pairs(names: list[str]) -> list[tuple[str, str]]:
    """The (pypid, other) columns compared: each pypid against the others on as many cores, and more cores against one."""
    pairs = []
    for name in names:
        if not name.startswith("pypid"):
            continue
        suffix = name[len("pypid"):]
        pairs += [(name, other) for other in names if not other.startswith("pypid") and other.endswith(suffix)
                  and (suffix or " x" not in other)]
        if suffix and "pypid" in names:
            pairs.append((name, "pypid"))
    return pairs


def _cell(values: list[float], fmt: str) -> str:
    """The median, and the range when there are several rounds."""
    middle = fmt.format(statistics.median(values))
    if len(values) < 2:
        return middle
    return f"{middle} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(results: dict, args, unavailable: dict | None = None) -> None:
    names = list(results)
    pairs = _pairs(names)
    print(f"\n{args.projects} projects x {args.files} files, {args.rounds} round(s), wrk -t1 -c32 -d{args.duration}s"
          " (medians, and ranges over the rounds; ratios of the same round)\n")
    print("| metric | " + " | ".join(names) + " | " + "".join(f"{a} / {b} | " for a, b in pairs))
    print("|---|" + "---|" * (len(names) + len(pairs)))
    for key, label, fmt in ROWS:
        cells = []
        for name in names:
            vals = [r[key] for r in results[name] if r.get(key) is not None]
            cells.append(_cell(vals, fmt) if vals else "—")
        ratios = []
        for a, b in pairs:
            # Round by round: the two servers measured minutes apart, under the same load.
            rounds = [(x.get(key), y.get(key)) for x, y in zip(results[a], results[b])]
            each = [x / y for x, y in rounds if x is not None and y]
            if each:
                middle = ratio(statistics.median(each))
                ratios.append(middle if len(each) < 2 else f"{middle} ({ratio(min(each))}-{ratio(max(each))})")
            else:
                ratios.append("—")
        if all(cell == "—" for cell in cells):
            continue
        print(f"| {label} | " + " | ".join(cells) + " | " + "".join(f"{r} | " for r in ratios))
    notes = []
    if "devpi" in names and results["devpi"]:
        notes.append("devpi: cold start-up is loading the tree into a new server directory by uploads (4 connections, "
                     "login token), timed when that directory was built and cached in --out; warm is a start of a "
                     "copy of it. devpi does not watch a directory: no drop-to-listed.")
    for name in names:
        for key, what in (("project_non2xx", "/simple/<project>/"), ("download_non2xx", "small downloads"),
                          ("large_non2xx", "the large file")):
            bad = sum(r.get(key, 0) for r in results[name])
            if bad:
                notes.append(f"{name}: {bad:,} answers to {what} were not 2xx or 3xx: its rate is not comparable")
    for name, why in (unavailable or {}).items():
        notes.append(f"{name}: not measured: {why}")
    for name in names:
        if not results[name] and name not in (unavailable or {}):
            notes.append(f"{name}: failed, see the traceback above")
    if notes:
        print()
        for note in notes:
            print(f"- {note}")


if __name__ == "__main__":
    main()
