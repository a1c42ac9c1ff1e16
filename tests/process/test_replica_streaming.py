"""
Large downloads from the object store at a steady RSS: a 50 MiB wheel read
by a slow client and a 1 GiB wheel read at full speed, both streamed from
SeaweedFS through a real pypid replica, whose resident memory is sampled
while they flow (the store's connection is paused while the client's is
full: no whole file is ever held).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.process.conftest import need_module
from tests.replicas import Replicas
from tests.uploadhelp import run, twine

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")

MiB = 1024 * 1024
#: Most the replica's RSS may grow while one download flows.
GROWTH = 24 * MiB


def write_big_wheel(directory: Path, name: str, version: str, size: int) -> tuple[Path, str]:
    """A valid wheel of about C{size} bytes written to disk a MiB at a time; its path and sha256."""
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    small = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pypid-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for member, data in small.items():
            archive.writestr(member, data)
            record.append(f"{member},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}")
        digest = hashlib.sha256()
        with archive.open(zipfile.ZipInfo(f"{name}/payload.bin", (2024, 1, 1, 0, 0, 0)), "w",
                          force_zip64=True) as member:
            left = size
            while left:
                chunk = os.urandom(min(MiB, left))
                member.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        record.append(f"{name}/payload.bin,sha256={_b64(digest.digest())},{size}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path, _sha256_file(path)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.start_rss = rss(pid)
        self.peak = self.start_rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def growth(self) -> int:
        self.done.set()
        self.join(5)
        return self.peak - self.start_rss


def download(url: str, chunk: int = MiB, pause: float = 0.0) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=120) as response:
        while data := response.read(chunk):
            digest.update(data)
            size += len(data)
            if pause:
                time.sleep(pause)
    return size, digest.hexdigest()


@pytest.fixture
def replica(tmp_path, seaweedfs, postgres):
    replicas = Replicas(tmp_path, seaweedfs, postgres)
    server = replicas.start("-a", ".", "-P", ".", "--max-upload-size", "2G", "--no-access-log")
    yield server
    replicas.stop()


def test_50_mib_to_a_slow_client_and_1_gib_at_full_speed(replica, tmp_path, env):
    dist = tmp_path / "dist"
    dist.mkdir()
    wheels = [write_big_wheel(dist, "fifty", "1.0", 50 * MiB), write_big_wheel(dist, "huge", "1.0", 1024 * MiB)]
    run(twine("upload", "--repository-url", replica.url, "-u", "x", "-p", "x", "--disable-progress-bar",
              *[str(path) for path, _ in wheels]), env)

    pid = replica.process.pid
    path, sha256 = wheels[0]
    sampler = Sampler(pid)
    sampler.start()
    # About 8 MiB/s: the client is far slower than the store.
    size, got = download(replica.url + "packages/" + path.name, chunk=64 * 1024, pause=0.008)
    growth = sampler.growth()
    assert (size, got) == (path.stat().st_size, sha256)
    assert growth < GROWTH, f"RSS grew by {growth / MiB:.1f} MiB serving 50 MiB to a slow client"

    path, sha256 = wheels[1]
    sampler = Sampler(pid)
    sampler.start()
    began = time.monotonic()
    size, got = download(replica.url + "packages/" + path.name)
    seconds = time.monotonic() - began
    growth = sampler.growth()
    assert (size, got) == (path.stat().st_size, sha256)
    assert growth < GROWTH, f"RSS grew by {growth / MiB:.1f} MiB serving 1 GiB"
    print(f"1 GiB in {seconds:.1f} s; RSS {sampler.start_rss / MiB:.0f} MiB, growth {growth / MiB:.1f} MiB")
