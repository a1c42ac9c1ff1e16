"""
The live package directory against a real twistd: files copied in, deleted,
moved; directories moved out; bursts; files written slowly or cut short.
Every wait is a bounded poll.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from pypid.store.directory.watch import BATCH


def listing(server, project: str) -> str:
    status, _, body = server.get(f"simple/{project}/")
    return body.decode() if status == 200 else ""


def wait_for(predicate, timeout: float, interval: float = 0.02):
    """Poll until C{predicate()} is true; return the seconds it took, or fail."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(interval)


def project_count(server) -> int:
    status, _, body = server.get("simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    import json

    return len(json.loads(body)["projects"])


def refresh_lines(server) -> list[str]:
    return re.findall(r"refreshing (\d+) paths after (\d+) events", server.log())


@pytest.fixture
def live(packages, start_server):
    return start_server("--rescan-interval", "0", str(packages))


def test_copy_in_then_delete(packages, live):
    """A wheel copied in is listed within a second; deleted, it is gone as fast."""
    built = wheel_bytes("live-demo", "1.0")
    source = write_dist(str(packages.parent / "elsewhere"), built)
    target = packages / built[0]
    shutil.copy(source, target)
    took = wait_for(lambda: built[0] in listing(live, "live-demo"), timeout=5)
    assert took < 1.0
    os.unlink(target)
    took = wait_for(lambda: listing(live, "live-demo") == "", timeout=5)
    assert took < 1.0


def test_moves_and_renames(packages, live):
    """Renamed from a temporary name, moved between directories, moved out."""
    name, data = sdist_bytes("moved", "2.0")
    temp = packages / (name + ".part")
    temp.write_bytes(data)
    time.sleep(0.4)
    assert listing(live, "moved") == ""
    os.rename(temp, packages / name)
    wait_for(lambda: name in listing(live, "moved"), timeout=5)
    (packages / "sub").mkdir()
    os.rename(packages / name, packages / "sub" / name)
    wait_for(lambda: f"/packages/sub/{name}" in listing(live, "moved"), timeout=5)
    outside = packages.parent / "outside"
    outside.mkdir()
    os.rename(packages / "sub" / name, outside / name)
    wait_for(lambda: listing(live, "moved") == "", timeout=5)
    # A symlink to a file inside the tree is a file of its own.
    os.rename(outside / name, packages / "sub" / name)
    (packages / "latest").mkdir()
    os.symlink(os.path.join("..", "sub", name), packages / "latest" / name)
    wait_for(lambda: f"/packages/latest/{name}" in listing(live, "moved"), timeout=5)
    # The directory of its target renamed: the target moves, the link dangles.
    os.rename(packages / "sub", packages / "renamed")
    wait_for(lambda: f"/packages/renamed/{name}" in listing(live, "moved")
             and f"/packages/latest/{name}" not in listing(live, "moved")
             and f"/packages/sub/{name}" not in listing(live, "moved"), timeout=5)


def test_subdirectory_moved_out_in_and_deleted(packages, live):
    """A directory of 500 files moved out of the tree (watchdog reports only the directory), back in, deleted."""
    sub = packages / "batch"
    built = wheel_bytes("batchpkg", "0.1")
    for i in range(500):
        write_dist(str(sub), (f"batch{i}-1.0-py3-none-any.whl", built[1]))
    wait_for(lambda: project_count(live) == 500, timeout=20)
    os.rename(sub, packages.parent / "batch-moved-away")
    took = wait_for(lambda: project_count(live) == 0, timeout=10)
    assert took < 2.0
    # Moved back in (one directory event for 500 files), then deleted whole.
    os.rename(packages.parent / "batch-moved-away", packages / "back")
    took = wait_for(lambda: project_count(live) == 500, timeout=10)
    assert took < 2.0
    shutil.rmtree(packages / "back")
    took = wait_for(lambda: project_count(live) == 0, timeout=10)
    assert took < 2.0


def test_burst_of_10000_files(packages, live):
    """10,000 files written at once (as a checkout does): all listed, in refreshes of at most BATCH paths."""
    _, data = wheel_bytes("burst", "1.0")
    before = len(refresh_lines(live))
    for d in range(100):
        directory = packages / f"d{d:02}"
        directory.mkdir()
        for i in range(100):
            (directory / f"burst{d * 100 + i}-1.0-py3-none-any.whl").write_bytes(data)
    wait_for(lambda: project_count(live) == 10000, timeout=120, interval=0.2)
    lines = refresh_lines(live)[before:]
    events = sum(int(e) for _, e in lines)
    assert all(int(paths) <= BATCH for paths, _ in lines)
    # Batches fill up while the refreshes lag behind the writer; far fewer
    # refreshes than files either way.
    assert len(lines) < 300, f"{len(lines)} refreshes for 10,000 files"
    assert events >= 10000
    # Every file once: its project page has it, hashed.
    assert "#sha256=" in listing(live, "burst9999")


def test_slow_write_listed_only_when_complete(packages, live):
    """A file written in chunks over a couple of seconds shows only once whole."""
    name, data = wheel_bytes("slowpoke", "1.0", padding=200_000)
    path = packages / name
    chunks = [data[i : i + 20_000] for i in range(0, len(data), 20_000)]
    with open(path, "wb") as f:
        for chunk in chunks[:-1]:
            f.write(chunk)
            f.flush()
            time.sleep(0.15)
            assert listing(live, "slowpoke") == ""
        f.write(chunks[-1])
    wait_for(lambda: name in listing(live, "slowpoke"), timeout=5)
    # (Read mid-way, it is incomplete; or, never left alone long enough to be read, still being written.)
    assert re.search(r"not listing slowpoke-1\.0-py3-none-any\.whl yet: (incomplete|still being written)", live.log())


def test_truncated_file_never_listed(packages, live):
    for name, data in (wheel_bytes("cut", "1.0"), sdist_bytes("cut", "1.0")):
        (packages / name).write_bytes(data[: len(data) - 100])
    time.sleep(1.5)
    assert listing(live, "cut") == ""
    log = live.log()
    assert "not listing cut-1.0-py3-none-any.whl yet: incomplete" in log
    assert "not listing cut-1.0.tar.gz yet: incomplete" in log
    # Completed later (the rest appended): listed.
    name, data = wheel_bytes("cut", "1.0")
    with open(packages / name, "r+b") as f:
        f.seek(len(data) - 100)
        f.write(data[-100:])
    wait_for(lambda: name in listing(live, "cut"), timeout=5)


def test_restart_reads_nothing_again(packages, start_server):
    """A restart on a 10,000-file tree takes every hash from the state cache (the log's counters)."""
    _, data = wheel_bytes("warm", "1.0")
    for d in range(50):
        directory = packages / f"d{d:02}"
        directory.mkdir()
        for i in range(200):
            (directory / f"warm{d * 200 + i}-1.0-py3-none-any.whl").write_bytes(data)
    first = start_server("--rescan-interval", "0", str(packages))
    assert "10000 files (10000 files read, 0 from the state cache, 0 from the index image)" in first.log()
    first.stop()
    assert "index image" in first.log() and (packages / ".pypid" / "index.image").exists()
    os.unlink(packages / "d00" / "warm0-1.0-py3-none-any.whl")
    (packages / "d00" / "warm1-1.0-py3-none-any.whl").write_bytes(wheel_bytes("warm1", "2.0")[1])
    second = start_server("--rescan-interval", "0", str(packages))
    assert "9999 files (1 file read, 0 from the state cache, 9998 from the index image)" in second.log()
    assert (packages / ".pypid" / "cache.sqlite3").exists()
    second.stop()
    # Without the image, every file is in the state cache.
    os.unlink(packages / ".pypid" / "index.image")
    third = start_server("--rescan-interval", "0", str(packages))
    assert "9999 files (0 files read, 9999 from the state cache, 0 from the index image)" in third.log()
