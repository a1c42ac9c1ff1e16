"""
A small disk for the attacks that fill one: a tmpfs of a few MiB mounted
for one test (root only: CI runs as root; elsewhere the tests are skipped,
and in CI a failure to mount fails them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.needs import needs


#: The mark of tests that mount one.
needs_mount = needs(os.geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    """A factory: C{small_disk(mib)} mounts a tmpfs of that many MiB and returns its path."""
    mounted: list[Path] = []

    def mount(mib: int) -> Path:
        path = tmp_path / f"disk-{len(mounted)}"
        path.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0755", "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs at {path}: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        # Lazy: the server using it may still be stopping.
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
