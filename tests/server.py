"""Running a real pypid process, and an isolated client environment."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed next to the test interpreter."""
    path = BIN / name
    return str(path) if path.exists() else name


class PypidServer:
    """
    C{twistd -n pypid --port tcp:0:interface=127.0.0.1 ARGS}, with the real
    port read back from its log.
    """

    def __init__(self, args: list[str], log_path: Path, port: str = "tcp:0:interface=127.0.0.1",
                 env: Optional[dict] = None) -> None:
        self.args = args
        self.log_path = Path(log_path)
        self.port_description = port
        self.extra_env = env or {}
        self.process: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [tool("twistd"), "-n", "--pidfile=", "pypid", "--port", self.port_description, *self.args]

    def start(self, timeout: float = 30.0) -> "PypidServer":
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(self.log_path.parent)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            match = re.search(r"PypidSite (?:\(TLS\) )?starting on (\d+)", text)
            if match:
                self.port = int(match.group(1))
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"pypid exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"pypid did not start listening:\n{self.log()}")
        self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "health", timeout=5) as response:
                    if json.load(response).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"pypid did not become ready:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def get(self, path: str, headers: Optional[dict] = None, method: str = "GET"):
        """
        Request C{path} without following redirects.

        @return: (status, headers, body).
        """
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {}, method=method)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def client_env(tmp_path: Path) -> dict:
    """
    Environment for pip, uv and twine subprocesses: no user or machine
    configuration, no caches shared with anything, no network but loopback.
    """
    env = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    for key in list(env):
        if key.startswith(("PIP_", "UV_", "TWINE_")):
            del env[key]
    env.update(
        HOME=str(home),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_RETRIES="0",
        PIP_TIMEOUT="30",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        NO_PROXY="*",
        no_proxy="*",
    )
    env.pop("http_proxy", None)
    env.pop("https_proxy", None)
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    return env
