"""
Uploads of the less common kinds against a real twistd: a C{.zip} sdist
(judged by its filename, not the spool file's), and core metadata over the
size limit.
"""

from __future__ import annotations

import json
import sys
import time

from tests.feed.test_checks import zip_sdist
from tests.store.test_metadata_limit import wheel_with_metadata
from tests.uploadhelp import basic, htpasswd, listed, run, twine, upload

USERS = {"alice": "alice-pw"}


def test_twine_uploads_a_zip_sdist_and_pip_builds_it(packages, start_server, env, tmp_path):
    """Issue 18, item 13: a .zip sdist was refused ("method tar"): it is stored, listed and installable."""
    passwords = htpasswd(tmp_path / "htpasswd", USERS)
    server = start_server("-P", str(passwords), str(packages))
    filename, data = zip_sdist("Zipped_Pkg", "1.0")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / filename).write_bytes(data)
    run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "alice", "-p", "alice-pw",
              str(dist / filename)), env)
    assert listed(packages) == [filename]
    assert (packages / filename).read_bytes() == data
    status, _, body = server.get("simple/zipped-pkg/")
    assert status == 200 and filename.encode() in body
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-binary", ":all:", "--target",
         str(tmp_path / "t"), "--index-url", server.url + "simple/", "zipped-pkg==1.0"], env)
    assert (tmp_path / "t" / "zipped_pkg" / "__init__.py").exists()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_core_metadata_over_the_limit(packages, start_server, tmp_path):
    """
    Issue 18, item 7: a 15 MiB METADATA in a wheel of a few KiB is refused
    at upload; one copied into the directory is listed without a .metadata
    file, and said once in the log.
    """
    passwords = htpasswd(tmp_path / "htpasswd", USERS)
    big = 15 * 1024 * 1024
    filename, data = wheel_with_metadata("big", "1.0", big)
    assert len(data) < 64 * 1024
    server = start_server("-P", str(passwords), "--rescan-interval", "0", str(packages))
    status, reason, body = upload(server, filename, data, basic("alice", "alice-pw"))
    assert status == 400
    assert "big-1.0.dist-info/METADATA is too large: 15,728,640 bytes, over the limit of 2,097,152 (2 MiB)" in (
        reason + body)
    assert listed(packages) == []
    # Copied in: listed (and installable), but no .metadata offered or served.
    (packages / filename).write_bytes(data)
    deadline = time.monotonic() + 5
    while filename.encode() not in server.get("simple/big/")[2]:
        assert time.monotonic() < deadline, "not listed"
        time.sleep(0.05)
    page = server.get("simple/big/")[2]
    assert b"data-core-metadata" not in page and b"data-dist-info-metadata" not in page
    json_page = json.loads(server.get("simple/big/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})[2])
    assert "core-metadata" not in json_page["files"][0]
    assert server.get(f"packages/{filename}.metadata")[0] == 404
    assert server.get(f"packages/{filename}")[0] == 200
    server.get("simple/big/")
    assert server.log().count(f"{filename}: listed with no .metadata file: big-1.0.dist-info/METADATA is too large") == 1


def test_metadata_cache_bounded_in_bytes(packages, start_server):
    """
    Issue 18, item 7: the .metadata of 60 wheels of 1.9 MiB METADATA each
    (under the limit) read by anonymous GETs: the process keeps a bounded
    amount (the cache holds at most 16 MiB), not all 114 MiB.
    """
    size = 1900 * 1024
    names = []
    for i in range(60):
        filename, data = wheel_with_metadata(f"meta{i}", "1.0", size)
        (packages / filename).write_bytes(data)
        names.append(filename)
    server = start_server("--rescan-interval", "0", str(packages))
    status, _, body = server.get(f"packages/{names[0]}.metadata")
    assert status == 200 and len(body) == size
    before = rss_kib(server.process.pid)
    for filename in names:
        status, _, body = server.get(f"packages/{filename}.metadata")
        assert status == 200 and len(body) == size
    grown = (rss_kib(server.process.pid) - before) / 1024
    assert grown < 60, f"RSS grew by {grown:.0f} MiB for 60 x 1.9 MiB of metadata read"
