"""C{pypid serve}, the container image's command, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.server import ROOT


def test_pypid_serve_says_a_bad_option_in_one_line(tmp_path):
    """The image's command, `pypid serve`: a bad option is one line and a hint on stderr, status 2, with any Twisted."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "pypid.cli", "serve", "--hash-algo", "crc32", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    first, hint = result.stderr.splitlines()
    assert first.startswith("pypid serve: --hash-algo 'crc32' is not one of")
    assert hint == "Try 'pypid serve --help' for the options."


def test_pypid_serve_serves_and_stops_on_sigterm(tmp_path):
    """
    `pypid serve` is twistd -n pypid: it serves, and SIGTERM shuts it down
    cleanly; twistd then ends by the signal, as killed by it (status 0 as a
    container's PID 1, where that signal is ignored).
    """
    import json
    import re
    import signal
    import time
    import urllib.request

    from pypid.testing import wheel_bytes, write_dist

    write_dist(str(tmp_path / "packages"), wheel_bytes("served", "1.0"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pypid.cli", "serve", "--port", "tcp:0:interface=127.0.0.1",
                                    str(tmp_path / "packages")], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline and process.poll() is None:
            match = re.search(r"PypidSite starting on (\d+)", log.read_text())
            port = match and int(match.group(1))
            time.sleep(0.05)
        assert port, log.read_text()
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if json.load(response)["status"] == "ok":
                    break
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/simple/served/", timeout=5) as response:
            assert b"served-1.0-py3-none-any.whl" in response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == -signal.SIGTERM, log.read_text()
        assert log.read_text().rstrip().endswith("Server Shut Down.")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
