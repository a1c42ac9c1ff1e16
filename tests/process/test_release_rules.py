"""
The opt-in release rules against a running daemon, with twine, uv publish
and pip: --no-filename-reuse and --one-sdist refuse, clearly; without them
(the default) both are allowed, as pypiserver allows them.
"""

from __future__ import annotations

import sys
import time

from pypid.testing import sdist_bytes, wheel_bytes
from tests.feed.test_checks import zip_sdist
from tests.server import tool
from tests.uploadhelp import basic, htpasswd, listed, multipart, post, run, twine

ALICE = basic("alice", "alice-pw")
WHEEL = wheel_bytes("Demo_Pkg", "1.0")
SWAPPED = wheel_bytes("Demo_Pkg", "1.0", summary="other bytes under the same name")
SDIST = sdist_bytes("Demo_Pkg", "1.0")
ZIP = zip_sdist("Demo_Pkg", "1.0")


def said(result) -> str:
    return " ".join((result.stdout + result.stderr).split())


def remove(server, name="demo-pkg", version="1.0"):
    body, ctype = multipart([(":action", None, b"remove_pkg"), ("name", None, name.encode()),
                             ("version", None, version.encode())])
    status, _, _ = post(server, body, ctype, "/", ALICE)
    assert status == 200


def write(directory, *built):
    directory.mkdir(exist_ok=True)
    for name, data in built:
        (directory / name).write_bytes(data)
    return [str(directory / name) for name, _ in built]


def twine_upload(server, env, *paths, check=True):
    return run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "alice", "-p", "alice-pw",
                     *paths), env, check=check)


def uv_publish(server, env, *paths, check=True):
    return run([tool("uv"), "publish", "--publish-url", server.url + "legacy/", "--username", "alice",
                "--password", "alice-pw", *paths], env, check=check)


def test_no_filename_reuse(packages, start_server, env, tmp_path):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    server = start_server("-P", str(passwords), "--no-filename-reuse", str(packages))
    [first] = write(tmp_path / "first", WHEEL)
    [swapped] = write(tmp_path / "swapped", SWAPPED)
    twine_upload(server, env, first)
    remove(server)
    result = twine_upload(server, env, swapped, check=False)
    assert result.returncode != 0
    assert "This filename was previously used by a file that has since been deleted" in said(result)
    result = uv_publish(server, env, swapped, check=False)
    assert result.returncode != 0 and "previously used" in said(result)
    # Deleted by hand counts too.
    [other] = write(tmp_path / "other", wheel_bytes("Demo_Pkg", "1.1"))
    twine_upload(server, env, other)
    (packages / other.rsplit("/", 1)[1]).unlink()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "demo_pkg-1.1" not in (packages / ".pypid-removed").read_text():
        time.sleep(0.1)
    assert twine_upload(server, env, other, check=False).returncode != 0
    assert [p for p in listed(packages) if not p.startswith(".")] == []
    assert "file_upload refused user=alice" in server.log()


def test_reuse_is_allowed_by_default(packages, start_server, env, tmp_path):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    server = start_server("-P", str(passwords), str(packages))
    [first] = write(tmp_path / "first", WHEEL)
    [swapped] = write(tmp_path / "swapped", SWAPPED)
    twine_upload(server, env, first)
    remove(server)
    twine_upload(server, env, swapped)
    assert (packages / WHEEL[0]).read_bytes() == SWAPPED[1]
    zips = write(tmp_path / "zips", SDIST, ZIP)
    twine_upload(server, env, *zips)
    assert {SDIST[0], ZIP[0]} <= set(listed(packages))


def test_one_sdist(packages, start_server, env, tmp_path):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    server = start_server("-P", str(passwords), "--one-sdist", str(packages))
    tarball, zipped = write(tmp_path / "dist", SDIST, ZIP)
    # (uv publishes .tar.gz sdists only: the .zip goes first, with twine.)
    twine_upload(server, env, zipped)
    result = uv_publish(server, env, tarball, check=False)
    assert result.returncode != 0
    assert f"Only one sdist may be uploaded per release: demo-pkg 1.0 already has {ZIP[0]}" in said(result)
    result = twine_upload(server, env, tarball, check=False)
    assert result.returncode != 0 and "Only one sdist" in said(result)
    # The same sdist again is fine (a retry), and so is a wheel.
    twine_upload(server, env, zipped, *write(tmp_path / "wheel", WHEEL))
    assert SDIST[0] not in listed(packages)
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-binary", ":all:", "--target",
         str(tmp_path / "t"), "--index-url", server.url + "simple/", "demo-pkg==1.0"], env)
    assert (tmp_path / "t" / "demo_pkg").is_dir()
