"""
Real podman for the container tests (issue 23), without any registry:

  - the base image is made from Debian's packages: C{debootstrap --variant=minbase
    bookworm}, trimmed like the slim image (no documentation, manual pages or
    translations; no apt lists), then C{podman import}ed. The mirror is the
    machine's own (its apt sources), or PYPID_DEBIAN_MIRROR (and
    PYPID_DEBIAN_SECURITY_MIRROR). The image stays in podman's storage,
    tagged with a hash of what made it, so later runs reuse it; a clean
    machine builds it (about 30 s). PYPID_REBUILD_BASE=1 makes it again.
  - the Containerfile is built on that image (C{--build-arg BASE=}) once
    per test session, and removed at the end, like every container, volume
    and image the tests make (they carry the session's label, L{LABEL}).
  - podman runs as root with runc and cgroupfs, and without default rlimits
    (crun, the default runtime, fails on this machine's rlimits and cgroups):
    a containers.conf of our own, named by CONTAINERS_CONF.

Where podman, runc or debootstrap is missing, or not running as root, the
tests are skipped, or fail when PYPID_CI=1 (.ci/run).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

from tests.server import ROOT

#: The uid and gid pypid runs as in the image (docs/container.md).
UID = 9898
BASE_REPOSITORY = "localhost/pypid-test-base"
SUITE = "bookworm"
#: Raise when the way the base is made changes: the cached one is then remade.
BASE_RECIPE = 1
#: A label on everything a test session makes, for the final sweep.
SESSION = uuid.uuid4().hex[:10]
LABEL = f"pypid-test-session={SESSION}"

CONTAINERS_CONF = """\
# Written by pypid's tests (tests/process/podman.py).
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""

# What the slim image leaves out (dpkg path excludes), for the base.
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""


def missing() -> Optional[str]:
    """Why the container tests cannot run here, or None."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    absent = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool, path=path) is None]
    if absent:
        return (f"{', '.join(absent)} not installed "
                "(apt-get install podman runc debootstrap; .ci/run does)")
    if os.geteuid() != 0:
        return "the container tests run podman as root"
    return None


def require() -> None:
    """Skip, or fail under PYPID_CI=1, when podman cannot be used."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("PYPID_CI") == "1":
        pytest.fail(f"PYPID_CI=1: {reason}", pytrace=False)
    pytest.skip(reason)


class Podman:
    """C{podman} with our containers.conf."""

    def __init__(self, directory: Path) -> None:
        self.conf = directory / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        self.env["PATH"] = self.env.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: Optional[str] = None,
            **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, input=input, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited with {result.returncode}:\n"
                                 f"{result.stdout}\n{_quiet(result.stderr)}")
        return result

    def inspect(self, name: str, what: str = "container") -> dict:
        return json.loads(self.run(what, "inspect", name).stdout)[0]

    def exists(self, what: str, name: str) -> bool:
        return self.run(what, "exists", name, check=False).returncode == 0

    def sweep(self) -> None:
        """Remove whatever this session made and left (containers, volumes)."""
        names = self.run("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", check=False)
        for name in names.stdout.split():
            self.run("rm", "-f", "-v", name, check=False)
        volumes = self.run("volume", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}", check=False)
        for name in volumes.stdout.split():
            self.run("volume", "rm", "-f", name, check=False)


def _quiet(stderr: str) -> str:
    """podman's stderr without its complaints about systemd timers (no systemd here)."""
    return "\n".join(line for line in stderr.splitlines() if "systemd" not in line)


# --- the base image -----------------------------------------------------------


def _apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled 'deb' source of this machine's apt."""
    entries: list[tuple[str, list[str]]] = []
    one_line = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in one_line:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    entries.append((line[1], [line[2]]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", Path(path).read_text()):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    return entries


def debian_mirrors() -> tuple[str, Optional[str]]:
    """
    The Debian mirror and security mirror to make the base from:
    PYPID_DEBIAN_MIRROR (and PYPID_DEBIAN_SECURITY_MIRROR), else the ones
    this machine's apt uses for its Debian release.
    """
    mirror = os.environ.get("PYPID_DEBIAN_MIRROR")
    if mirror:
        return mirror, os.environ.get("PYPID_DEBIAN_SECURITY_MIRROR") or None
    codename = None
    with contextlib.suppress(OSError):
        match = re.search(r"^VERSION_CODENAME=(\S+)", Path("/etc/os-release").read_text(), re.M)
        codename = match and match.group(1)
    main = security = None
    for uri, suites in _apt_sources():
        if main is None and (SUITE in suites or (codename and codename in suites)):
            main = uri
        if security is None and any(s.endswith("-security") for s in suites):
            security = uri
    if main is None:
        pytest.fail("no Debian mirror in this machine's apt sources; set PYPID_DEBIAN_MIRROR", pytrace=False)
    return main, security


def _debootstrap_version() -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], capture_output=True, text=True)
    return result.stdout.strip()


def base_image(podman: Podman) -> str:
    """The tag of the base image, made unless a previous run left it."""
    mirror, security = debian_mirrors()
    recipe = json.dumps([BASE_RECIPE, SUITE, mirror, security, _debootstrap_version(), SLIM_DPKG])
    tag = f"{BASE_REPOSITORY}:{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    lock_path = Path(tempfile.gettempdir()) / "pypid-test-base.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if podman.exists("image", tag) and os.environ.get("PYPID_REBUILD_BASE") != "1":
            return tag
        _make_base(podman, tag, mirror, security)
        # Older bases (another mirror, another recipe) are not needed any more.
        listed = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}", BASE_REPOSITORY, check=False)
        for other in listed.stdout.split():
            if other != tag:
                podman.run("rmi", other, check=False)
    return tag


def _make_base(podman: Podman, tag: str, mirror: str, security: Optional[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="pypid-base.", dir="/var/tmp"))
    try:
        rootfs = work / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            env=podman.env, capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            raise AssertionError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        _slim(rootfs, mirror, security)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        podman.run("import", "--change", "CMD [\"bash\"]", "-", tag, stdin=tar.stdout, timeout=300)
        tar.stdout.close()
        assert tar.wait() == 0, "tar of the base's root file system failed"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _slim(rootfs: Path, mirror: str, security: Optional[str]) -> None:
    """Trim the root file system as the slim image is, and point apt at the mirrors."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/pypid-test-slim").write_text(SLIM_DPKG)
    for pattern in ("usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*",
                    "var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/log/*.log", "var/log/apt/*"):
        for path in glob.glob(str(rootfs / pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    for doc in glob.glob(str(rootfs / "usr/share/doc/*")):
        for entry in os.listdir(doc) if os.path.isdir(doc) and not os.path.islink(doc) else []:
            if entry != "copyright":
                path = os.path.join(doc, entry)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")


# --- the image and its containers ---------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    """One C{podman run -d --network=host} of the image, listening on 127.0.0.1:port."""

    def __init__(self, podman: Podman, image: str, env: Optional[dict] = None,
                 volumes: tuple = (), args: tuple = (), options: tuple = ()) -> None:
        self.podman = podman
        self.image = image
        self.name = f"pypid-test-{SESSION}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.env = {"PYPID_PORT": f"tcp:{self.port}:interface=127.0.0.1", **(env or {})}
        self.volumes = volumes
        self.args = args
        self.options = options

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, health: str = "/health", timeout: float = 60, wait: bool = True) -> "Container":
        command = ["run", "-d", "--name", self.name, "--label", LABEL, "--network=host"]
        for key, value in self.env.items():
            command += ["-e", f"{key}={value}"]
        for volume in self.volumes:
            command += ["-v", volume]
        self.podman.run(*command, *self.options, self.image, *self.args)
        if wait:
            self.wait_healthy(health, timeout)
        return self

    def running(self) -> bool:
        return self.podman.inspect(self.name)["State"]["Running"]

    def wait_healthy(self, health: str = "/health", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.get(health)
            if status == 200 and json.loads(body).get("status") == "ok":
                return
            if status is None and not self.running():
                raise AssertionError(f"the container exited:\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.url} did not become healthy:\n{self.logs()}")

    def get(self, path: str, headers: Optional[dict] = None, method: str = "GET"):
        """(status, body) of one request, None when nothing answers."""
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
            connection.close()
            return response.status, body
        except OSError:
            return None, b""

    def logs(self) -> str:
        result = self.podman.run("logs", self.name, check=False)
        return result.stdout + _quiet(result.stderr)

    def remove(self) -> None:
        self.podman.run("rm", "-f", "-v", "-t", "5", self.name, check=False)
