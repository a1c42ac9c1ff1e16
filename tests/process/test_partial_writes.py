"""
Writers that pause mid-file, against a real twistd watching its package
directory: nothing is listed until the file is whole and left alone.

 - Issue 18, item 4: tarballs of several compression members (BGZF,
   bgzip, concatenated gzip, pbzip2) end a compression stream at every
   member boundary; a writer pausing there must not get its half file
   listed.
 - Issue 18, item 9: a listed file rewritten in place (as C{rsync
   --inplace} does) must never be listed with the hash of a half-written
   state.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import tarfile
import threading
import time


from pypid.testing import wheel_bytes
from tests.store.test_complete import bgzf, split_members, tar_end, uncompressed_size
from tests.needs import IN_CI

PAUSE = 0.6


def listing(server, project: str) -> str:
    status, _, body = server.get(f"simple/{project}/")
    return body.decode() if status == 200 else ""


def listed_hashes(server, project: str, filename: str) -> list[str]:
    return re.findall(re.escape(filename) + r"#sha256=([0-9a-f]{64})", listing(server, project))


def wait_for(predicate, timeout: float, interval: float = 0.02) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def sdist_tar(project: str, size: int = 400_000) -> bytes:
    """An uncompressed sdist tar of C{project} 1.0 with C{size} bytes of random data in it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in ((f"{project}-1.0/PKG-INFO", f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n\n".encode()),
                           (f"{project}-1.0/data.bin", os.urandom(size)),
                           (f"{project}-1.0/zeros.bin", bytes(4096)),
                           (f"{project}-1.0/setup.py", b"# nothing\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cut(data: bytes, every: int) -> list[bytes]:
    return [data[i : i + every] for i in range(0, len(data), every)]


def write_pausing(path, members: list[bytes], server, project: str) -> list[bool]:
    """
    Write C{members} in order, the file kept open, pausing after each but
    the last long enough for pypid to look at it: whether each pause saw
    the file listed.
    """
    filename = os.path.basename(path)
    seen = []
    with open(path, "wb") as f:
        for member in members[:-1]:
            f.write(member)
            f.flush()
            deadline = time.monotonic() + PAUSE
            listed = False
            while time.monotonic() < deadline:
                listed = listed or filename in listing(server, project)
                time.sleep(0.05)
            seen.append(listed)
        f.write(members[-1])
    return seen


RAW = sdist_tar("x", 250_000)


def writers() -> list[tuple[str, str, list[bytes]]]:
    """(what, file suffix, members): each a multi-member tarball, members ending mid-archive."""
    raw = RAW
    out = [
        # 64 KiB a member: every trailer's size is a whole number of tar blocks.
        ("concatenated gzip", ".tar.gz", [gzip.compress(p) for p in cut(raw, 65536)]),
        ("BGZF", ".tar.gz", bgzf(raw)),
        ("bzip2 streams", ".tar.bz2", [bz2.compress(p) for p in cut(raw, 100_000)]),
    ]
    if shutil.which("bgzip") or IN_CI:  # in CI it must be there (.ci/run installs it)
        out.append(("bgzip", ".tar.gz", split_members(
            subprocess.run(["bgzip", "-c"], input=raw, capture_output=True, check=True).stdout, "gzip")))
    if shutil.which("pbzip2") or IN_CI:  # in CI it must be there (.ci/run installs it)
        out.append(("pbzip2", ".tar.bz2", split_members(
            subprocess.run(["pbzip2", "-c", "-b1", "-p2"], input=raw, capture_output=True, check=True).stdout,
            "bzip2")))
    return out


def test_multi_member_tarballs_listed_only_when_whole(packages, start_server):
    server = start_server("--rescan-interval", "0", str(packages))
    partial, pauses = {}, 0
    end = tar_end(RAW)
    for number, (what, suffix, members) in enumerate(writers()):
        project = f"multi{number}"
        data = b"".join(members)
        path = packages / f"{project}-1.0{suffix}"
        seen = write_pausing(path, members, server, project)
        # Pauses before the tar's end-of-archive blocks are written (after
        # them only record padding, or BGZF's empty last member, may follow).
        early = [i for i in range(len(seen)) if uncompressed_size(suffix, b"".join(members[: i + 1])) < end]
        assert len(early) >= 2, what
        pauses += len(early)
        partial[what] = sum(seen[i] for i in early)
        digest = hashlib.sha256(data).hexdigest()
        wait_for(lambda: listed_hashes(server, project, path.name) == [digest], timeout=5)
    assert partial == {what: 0 for what in partial}, f"of {pauses} pauses, these saw a partial file listed: {partial}"
    assert "not listing multi0-1.0.tar.gz yet: incomplete" in server.log()


class Poller(threading.Thread):
    """Reads a project page over and over: every sha256 it listed for C{filename}."""

    def __init__(self, server, project: str, filename: str) -> None:
        super().__init__(daemon=True)
        self.server, self.project, self.filename = server, project, filename
        self.seen: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for digest in listed_hashes(self.server, self.project, self.filename):
                self.seen[digest] = self.seen.get(digest, 0) + 1
            time.sleep(0.01)


def same_size(build) -> list[tuple[str, bytes]]:
    """Two builds of the same size, other bytes (the compressed RECORD's length varies by a byte or so)."""
    first = build()
    while True:
        second = build()
        if len(second[1]) == len(first[1]):
            return [first, second]


def rewrite_in_place(path, data: bytes, rng: random.Random) -> None:
    """What rsync --inplace does to a file: new bytes over the old, chunk by chunk, pausing up to 0.15 s."""
    with open(path, "r+b") as f:
        for start in range(0, len(data), 16384):
            f.write(data[start : start + 16384])
            f.flush()
            time.sleep(rng.uniform(0, 0.15))
        f.truncate(len(data))


def test_rewrite_in_place_never_lists_a_half_written_state(packages, start_server, tmp_path):
    """
    A listed wheel rewritten in place, four times, by a writer pausing up to
    0.15 s between chunks (and by real rsync --inplace, where installed):
    every hash ever listed is that of a whole version.
    """
    project = "inplace"
    versions = same_size(lambda: wheel_bytes(project, "1.0", padding=250_000))
    filename = versions[0][0]
    whole = {hashlib.sha256(data).hexdigest() for _, data in versions}
    path = packages / filename
    path.write_bytes(versions[0][1])
    server = start_server("--rescan-interval", "0", str(packages))
    wait_for(lambda: listed_hashes(server, project, filename) == [hashlib.sha256(versions[0][1]).hexdigest()], 5)
    poller = Poller(server, project, filename)
    poller.start()
    rng = random.Random(18)
    try:
        for turn in range(1, 5):
            rewrite_in_place(path, versions[turn % 2][1], rng)
            final = hashlib.sha256(versions[turn % 2][1]).hexdigest()
            took = wait_for(lambda: listed_hashes(server, project, filename) == [final], 5)
            assert took < 1.0
        if shutil.which("rsync") or IN_CI:  # in CI it must be there (.ci/run installs it)
            big = same_size(lambda: wheel_bytes(project, "1.0", padding=2_000_000))
            sources = []
            for number, (_, data) in enumerate(big):
                source = tmp_path / f"source{number}" / filename
                source.parent.mkdir()
                source.write_bytes(data)
                sources.append(source)
                whole.add(hashlib.sha256(data).hexdigest())
            for turn in range(4):
                # --bwlimit makes rsync write in bursts about 0.1 s apart.
                subprocess.run(["rsync", "--inplace", "-I", "--bwlimit=5000", str(sources[turn % 2]), str(path)],
                               check=True)
                final = hashlib.sha256(big[turn % 2][1]).hexdigest()
                wait_for(lambda: listed_hashes(server, project, filename) == [final], 5)
    finally:
        poller.stop.set()
        poller.join()
    partial = {digest: count for digest, count in poller.seen.items() if digest not in whole}
    assert partial == {}, f"{len(partial)} hashes of half-written states listed ({sum(partial.values())} times)"
