"""
The replicas' administration commands, run as a user would (the real
C{pypid} command) against a real SeaweedFS and PostgreSQL: C{store import}
then C{store export} of a corpus gives identical bytes (and importing
again changes nothing), C{store import --watch} feeds a running replica,
C{store fsck} finds a planted orphan and a missing object, and C{catalog
migrate} brings an empty catalog up to date.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pypid.store.objectstore.migrations import LATEST
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.process.conftest import need_module
from tests.replicas import Replicas, health, subprocess_env
from tests.server import tool

need_module("botocore", "pip install 'pypid[replicas]'; scripts/test does")
need_module("psycopg2", "pip install 'pypid[replicas]'; scripts/test does")


@pytest.fixture
def replicas(tmp_path, seaweedfs, postgres):
    made = Replicas(tmp_path, seaweedfs, postgres)
    yield made
    made.stop()


def pypid(replicas: Replicas, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([tool("pypid"), *args], capture_output=True, text=True, timeout=300,
                            env=subprocess_env(replicas), cwd=str(replicas.tmp_path))
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def engines(replicas: Replicas) -> list[str]:
    return ["--store", replicas.store, "--s3-endpoint", replicas.seaweedfs.endpoint, "--catalog",
            replicas.catalog_url]


def zip_sdist(name: str, version: str) -> tuple[str, bytes]:
    """An sdist in the .zip format (older tools made them)."""
    import io
    import zipfile

    from pypid.testing import metadata_text

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}-{version}/PKG-INFO", metadata_text(name, version))
        archive.writestr(f"{name}-{version}/setup.py", "from setuptools import setup\nsetup()\n")
    return f"{name}-{version}.zip", buffer.getvalue()


def corpus(directory: Path) -> dict[str, bytes]:
    """Wheels, sdists of each kind, a signature and a subfolder; and what must not be imported."""
    directory.mkdir()
    (directory / "team").mkdir()
    files = {}
    for built, where in (
        (wheel_bytes("alpha", "1.0", requires_python=">=3.8"), directory),
        (wheel_bytes("alpha", "1.1"), directory),
        (sdist_bytes("alpha", "1.1"), directory),
        (wheel_bytes("beta_lib", "2.0.post1", summary="Beta"), directory / "team"),
        (zip_sdist("gamma", "0.1"), directory / "team"),
    ):
        write_dist(str(where), built)
        files[built[0]] = built[1]
    signature = b"-----BEGIN PGP SIGNATURE-----\nalpha\n-----END PGP SIGNATURE-----\n"
    (directory / (wheel_bytes("alpha", "1.1")[0] + ".asc")).write_bytes(signature)
    files[wheel_bytes("alpha", "1.1")[0] + ".asc"] = signature
    # Never imported: hidden, temporary, not a distribution, an archive cut short.
    (directory / ".hidden-1.0-py3-none-any.whl").write_bytes(wheel_bytes("hidden", "1.0")[1])
    (directory / "delta-1.0-py3-none-any.whl.part").write_bytes(b"partial")
    (directory / "README.txt").write_text("not a distribution")
    cut = sdist_bytes("cut", "1.0")
    (directory / cut[0]).write_bytes(cut[1][: len(cut[1]) // 2])
    old = time.time() - 10
    for path in directory.rglob("*"):
        os.utime(path, (old, old))
    return files


def test_import_then_export_gives_identical_bytes(replicas, tmp_path):
    source = tmp_path / "source"
    files = corpus(source)
    dists = [name for name in files if not name.endswith(".asc")]
    result = pypid(replicas, "store", "import", str(source), *engines(replicas), check=False)
    assert result.returncode == 1, result.stdout + result.stderr  # the archive cut short is reported
    lines = result.stdout.splitlines()
    for name in dists:
        assert f"created {name}" in lines
    assert "not imported cut-1.0.tar.gz: " in result.stdout
    assert lines[-1] == f"imported {len(dists)} files, 0 already in the store, 1 not complete yet"

    # A replica lists them, signature included, from the catalog alone.
    server = replicas.start()
    assert health(server)["files"] == len(dists)
    status, _, body = server.get(f"/packages/{wheel_bytes('alpha', '1.1')[0]}.asc")
    assert (status, body) == (200, files[wheel_bytes("alpha", "1.1")[0] + ".asc"])

    # Again: nothing changes.
    os.unlink(source / sdist_bytes("cut", "1.0")[0])
    result = pypid(replicas, "store", "import", str(source), *engines(replicas))
    assert result.stdout.splitlines() == [f"imported 0 files, {len(dists)} already in the store"]

    out = tmp_path / "exported"
    result = pypid(replicas, "store", "export", str(out), *engines(replicas))
    assert result.stdout.startswith(f"exported {len(dists)} files to {out} (0 already there)")
    exported = {path.name: path.read_bytes() for path in out.iterdir()}
    assert exported == files
    result = pypid(replicas, "store", "export", str(out), *engines(replicas))
    assert result.stdout.startswith(f"exported 0 files to {out} ({len(dists)} already there)")


def test_import_refuses_other_bytes_under_a_stored_name(replicas, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    name, data = wheel_bytes("clash", "1.0")
    other = wheel_bytes("clash", "1.0", summary="Other")[1]
    (first / name).write_bytes(data)
    (second / name).write_bytes(other)
    for d in (first, second):
        os.utime(d / name, (time.time() - 10,) * 2)
    pypid(replicas, "store", "import", str(first), *engines(replicas))
    result = pypid(replicas, "store", "import", str(second), *engines(replicas), check=False)
    assert result.returncode == 1
    assert f"refused {name}: the store has other bytes as {name} (--overwrite replaces them)" in result.stdout
    result = pypid(replicas, "store", "import", "--overwrite", str(second), *engines(replicas))
    assert f"replaced {name}" in result.stdout
    out = tmp_path / "out"
    pypid(replicas, "store", "export", str(out), *engines(replicas))
    assert (out / name).read_bytes() == other


def test_import_watch_feeds_a_running_replica(replicas, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    server = replicas.start()
    watcher = subprocess.Popen([tool("pypid"), "store", "import", "--watch", str(drop), *engines(replicas)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=subprocess_env(replicas))
    try:
        assert watcher.stdout.readline().strip() == f"watching {drop}"
        name, data = wheel_bytes("dropped", "1.0", padding=300_000)
        # Written in two steps, as a slow copy would: never imported half-way.
        with open(drop / name, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(1.5)
            assert health(server)["files"] == 0
            f.write(data[len(data) // 2:])
        deadline = time.monotonic() + 20
        while health(server)["files"] != 1:
            assert time.monotonic() < deadline, "the dropped file was not imported"
            time.sleep(0.1)
        assert server.get(f"/packages/{name}")[2] == data
    finally:
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=30)
    assert f"created {name}" in out
    assert watcher.returncode == 0, out


def test_fsck_finds_a_planted_orphan_and_a_missing_object(replicas, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    kept, lost = wheel_bytes("kept", "1.0"), wheel_bytes("lost", "1.0")
    for built in (kept, lost):
        write_dist(str(source), built, mtime=time.time() - 10)
    pypid(replicas, "store", "import", str(source), *engines(replicas))
    result = pypid(replicas, "store", "fsck", *engines(replicas))
    assert result.stdout.splitlines()[-1] == "2 rows, 4 objects: 0 objects without a row, 0 rows without their object"

    s3 = replicas.seaweedfs
    orphan = f"files/ab/{'ab' * 32}/orphan-1.0-py3-none-any.whl"
    status, _ = s3.request("PUT", f"/{s3.bucket}/{replicas.prefix}/{orphan}", b"left by a crash")
    assert status == 200
    lost_key = f"files/{hashlib.sha256(lost[1]).hexdigest()[:2]}/{hashlib.sha256(lost[1]).hexdigest()}/{lost[0]}"
    assert s3.request("DELETE", f"/{s3.bucket}/{replicas.prefix}/{lost_key}")[0] == 204

    result = pypid(replicas, "store", "fsck", *engines(replicas), check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"orphan: {orphan} (15 bytes, recent: an upload in flight?)" in lines
    assert f"missing: {lost[0]}: no object ({lost_key})" in lines
    assert "2 rows, 4 objects: 1 object without a row, 1 row without their object" in lines

    # --fix leaves a recent orphan alone (an upload may be in flight), removes an old one.
    result = pypid(replicas, "store", "fsck", "--fix", *engines(replicas), check=False)
    assert f"removed {orphan}" not in result.stdout
    result = pypid(replicas, "store", "fsck", "--fix", "--min-age", "0", *engines(replicas), check=False)
    assert f"removed {orphan}" in result.stdout.splitlines()
    assert s3.request("GET", f"/{s3.bucket}/{replicas.prefix}/{orphan}")[0] == 404
    assert result.returncode == 1  # the missing object is still reported


def test_catalog_migrate(replicas):
    result = pypid(replicas, "catalog", "migrate", "--catalog", replicas.catalog_url)
    where = replicas.catalog_url
    assert result.stdout == f"catalog {where}: schema version 0 -> {LATEST}\n"
    result = pypid(replicas, "catalog", "migrate", "--catalog", replicas.catalog_url)
    assert result.stdout == f"catalog {where}: schema version {LATEST}, up to date\n"
    result = pypid(replicas, "catalog", "migrate", "--catalog", "postgresql://pypid@127.0.0.1:1/x", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("pypid catalog: catalog postgresql://pypid@127.0.0.1:1/x: cannot connect")
