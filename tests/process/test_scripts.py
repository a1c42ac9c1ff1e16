"""scripts/serve's arguments and the virtualenvs scripts/venv.sh makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pypid import __version__
from tests.server import BIN, ROOT


@pytest.fixture
def serve(tmp_path):
    """
    scripts/serve as it is, in a copy of the checkout where setting up the
    virtualenv does nothing and twistd prints the arguments it was given.
    """
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "serve", tmp_path / "scripts" / "serve")
    (tmp_path / "scripts" / "venv.sh").write_text("ensure_venv() { :; }\n")
    twistd = tmp_path / ".venv" / "bin" / "twistd"
    twistd.parent.mkdir(parents=True)
    twistd.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    twistd.chmod(0o755)

    def run(*args: str) -> list[str]:
        result = subprocess.run([str(tmp_path / "scripts" / "serve"), *args], capture_output=True, text=True,
                                check=True, timeout=30)
        return result.stdout.splitlines()

    return run


def test_serve_default_port(serve):
    assert serve() == ["--nodaemon", "--pidfile=", "pypid", "--port", "3141", "./packages"]
    assert serve("--metrics") == ["--nodaemon", "--pidfile=", "pypid", "--port", "3141", "--metrics", "./packages"]


@pytest.mark.parametrize("args", [["--port", "8080"], ["-p", "8080"], ["--port=tcp:8080"], ["-p8080"],
                                  ["--port", "3141", "--port", "tcp:8443:interface=127.0.0.1"]])
def test_serve_port_replaces_the_default(serve, args):
    """./scripts/serve --port 8080 serves on 8080 only, not beside 3141."""
    assert serve(*args) == ["--nodaemon", "--pidfile=", "pypid", *args, "./packages"]


def test_virtualenv_has_the_pypid_command(tmp_path):
    """The pypid command works from anywhere, and twistd still finds the plugin."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    pypid = BIN / "pypid"
    assert pypid.exists(), f"scripts/venv.sh makes {pypid}"
    result = subprocess.run([str(pypid), "version"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, __version__)
    result = subprocess.run([str(BIN / "twistd"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert "    pypid " in result.stdout
    assert Path(sys.executable).parent == BIN
