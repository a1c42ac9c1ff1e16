"""
Mistakes at start, with a real twistd: one clear line and a non-zero exit,
no traceback and no page of help, in the foreground and when twistd
daemonizes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.server import ROOT, tool


def twistd(*args: str, cwd: Path, daemon: bool = False, prefix: tuple = ()) -> subprocess.CompletedProcess:
    """Run C{twistd [-n] pypid ARGS} to its end; stdout and stderr apart."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    mode = ["--pidfile", str(cwd / "twistd.pid"), "--logfile", str(cwd / "twistd.log")] if daemon else \
        ["-n", "--pidfile="]
    return subprocess.run([*prefix, tool("twistd"), *mode, "pypid", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=60)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("daemon", [False, True], ids=["foreground", "daemon"])
def test_health_endpoint_over_a_route(tmp_path, packages, daemon):
    """--health-endpoint /simple/ would hide the project list: refused at start."""
    result = twistd("--port", "tcp:0:interface=127.0.0.1", "--health-endpoint", "/simple/", str(packages),
                    cwd=tmp_path, daemon=daemon)
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "twistd pypid: --health-endpoint '/simple/' would hide /simple, which pypid serves; "
        "choose another path, such as /health.",
        "Try 'twistd pypid --help' for the options.",
    ]
    assert result.stdout == ""
    assert not (tmp_path / "twistd.pid").exists()
