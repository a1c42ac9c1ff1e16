"""pypid mirror: pip download from a local upstream into a directory pip and pypid can serve."""

from __future__ import annotations

import os
import sys

from pypid.feed.mirror import main as mirror_main, pip_command
from pypid.testing import sdist_bytes, wheel_bytes, write_dist
from tests.process.test_update import pypid
from tests.process.test_upstream_http import installed, run


def test_pip_command_for_another_platform():
    import argparse

    args = argparse.Namespace(pip=None, directory="out", requirement=["r.txt"], packages=[], index_url="http://i/simple/",
                              platform=["manylinux2014_x86_64"], python_version="3.9", implementation=None,
                              abi=None, pre=False, pip_args=["--no-deps"])
    command = pip_command(args)
    assert command[1:4] == ["-m", "pip", "download"]
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert ["--only-binary", ":all:"] == command[command.index("--only-binary"):command.index("--only-binary") + 2]
    assert command[-1] == "--no-deps"


def test_requirements_needed(capsys):
    try:
        mirror_main(["out"])
    except SystemExit as e:
        assert e.code == 2


def test_mirror_then_install_offline_and_through_pypid(start_server, env, tmp_path):
    upstream_dir = tmp_path / "upstream"
    write_dist(str(upstream_dir), wheel_bytes("remote-app", "1.0", requires=["remote-lib>=1"]))
    write_dist(str(upstream_dir), wheel_bytes("remote-lib", "1.0"))
    write_dist(str(upstream_dir), sdist_bytes("remote-lib", "2.0"))
    write_dist(str(upstream_dir), wheel_bytes("unrelated", "1.0"))
    upstream = start_server(str(upstream_dir))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("remote-app\n")
    mirror = tmp_path / "mirror"

    result = pypid("mirror", "-r", str(requirements), "--index-url", upstream.url + "simple/", str(mirror), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(mirror)) == ["remote_app-1.0-py3-none-any.whl", "remote_lib-2.0.tar.gz"]

    upstream.stop()
    run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(mirror),
         "--target", str(tmp_path / "t1"), "-r", str(requirements)], env)
    assert installed(tmp_path / "t1") == ["remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]
    server = start_server(str(mirror))
    run([sys.executable, "-m", "pip", "install", "--index-url", server.url + "simple/",
         "--target", str(tmp_path / "t2"), "-r", str(requirements)], env)
    assert installed(tmp_path / "t2") == ["remote_app-1.0.dist-info", "remote_lib-2.0.dist-info"]
