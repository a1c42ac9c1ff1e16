"""
Running a C{<!-- run -->} block of the documents in a temporary directory,
against the real code: real twistd processes, pip, uv, twine, git.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, Block
from tests.server import client_env

BIN = Path(sys.executable).parent
#: A server command line of a block, after any VAR=value prefixes.
_SERVER = re.compile(
    r"^(?:\w+=\S*\s+)*(?P<cmd>(?:\S*/)?twistd3?|(?:\S*/)?pypid\s+serve|\./scripts/serve)(?:\s|$)"
)
_FOREGROUND = re.compile(r"(?:^|\s)(?:-n|--nodaemon)(?:\s|$)")

PRELUDE = r"""
set -euo pipefail
eventually() {  # retry a command for up to 10 s
    local i
    for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    "$@"
}
_pypid_ready() {  # PORT SCHEME LOG
    python -m tests.docs.ready "$@"
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Substitution:
    """The marker's replace: pairs, then its ports, applied to every text of the block."""

    def __init__(self, block: Block, tmp: Path) -> None:
        marker = block.marker
        self.tmp = tmp
        self._pubtmp = None
        self.pairs = []
        for value in marker.get("replace"):
            old, _, new = value.partition(" => ")
            self.pairs.append((old, new))
        listed = (marker.get("ports") or ["3141"])[0].split()
        self.ports = [(old, str(free_port())) for old in listed]

    def __call__(self, text: str) -> str:
        """The block's own text: replace: pairs, then ports."""
        for old, new in self.pairs:
            text = text.replace(old, self.marker_line(new))
        return self.marker_line(text)

    def marker_line(self, text: str) -> str:
        """The marker's own lines: {tmp}, {root} and ports."""
        text = text.replace("{tmp}", str(self.tmp)).replace("{root}", str(ROOT))
        if "{pubtmp}" in text:
            text = text.replace("{pubtmp}", self.pubtmp)
        for old, new in self.ports:
            text = re.sub(rf"\b{old}\b", new, text)
        return text

    @property
    def pubtmp(self) -> str:
        """A directory that other users can read (nginx's workers), removed after the block."""
        if self._pubtmp is None:
            self._pubtmp = tempfile.mkdtemp(prefix="pypid-doc-")
            os.chmod(self._pubtmp, 0o755)
        return self._pubtmp

    def cleanup(self) -> None:
        if self._pubtmp is not None:
            shutil.rmtree(self._pubtmp, ignore_errors=True)

    @property
    def first_port(self) -> str:
        return self.ports[0][1]


def _logical_lines(text: str) -> list[list[str]]:
    """Lines grouped with their backslash continuations."""
    groups: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        current.append(line)
        if not line.rstrip().endswith("\\"):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def rewrite_servers(text: str, subst: Substitution, counter: list[int]) -> str:
    """
    Server command lines of C{text} (already substituted) run in the
    background; the next line runs once the server answers its health check.
    """
    out = []
    for group in _logical_lines(text):
        joined = " ".join(line.rstrip().rstrip("\\") for line in group).strip()
        match = _SERVER.match(joined)
        if not match:
            out.extend(group)
            continue
        ports = [new for _, new in subst.ports if re.search(rf"\b{new}\b", joined)]
        port = ports[0] if ports else subst.first_port
        scheme = "https" if "ssl:" in joined else "http"
        counter[0] += 1
        log = f"$DOC_TMP/.doc-server-{counter[0]}.log"
        command = match.group("cmd")
        foreground = not command.endswith(("twistd", "twistd3")) or _FOREGROUND.search(joined)
        if foreground:
            out.append("{")
            out.extend(group)
            out.append(f"}} < /dev/null >> {log} 2>&1 &")
        else:
            out.extend(line for line in group)
        out.append(f"_pypid_ready {port} {scheme} {log}")
    return "\n".join(out) + "\n"


def prepare(tmp: Path, subst: Substitution) -> dict:
    """The block's directory and environment: shims, scripts/serve, client environments."""
    python = sys.executable
    twistd = shutil.which("twistd", path=str(BIN)) or "twistd"
    shims = tmp / ".doc-bin"
    _write(shims / "pypid", f'#!/bin/sh\nexec {shlex.quote(python)} -m pypid.cli "$@"\n', True)
    _write(shims / "twistd3", f'#!/bin/sh\nexec {shlex.quote(twistd)} "$@"\n', True)
    _write(shims / "mkdist", f'#!/bin/sh\nexec {shlex.quote(python)} -m tests.docs.fixtures mkdist "$@"\n', True)
    _write(shims / "poetry-project",
           f'#!/bin/sh\nexec {shlex.quote(python)} -m tests.docs.fixtures poetry-project "$@"\n', True)
    venv = tmp / ".venv" / "bin"
    _write(venv / "python", f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n', True)
    _write(venv / "pypid", f'#!/bin/sh\nexec {shlex.quote(python)} -m pypid.cli "$@"\n', True)
    _write(venv / "twistd", f'#!/bin/sh\nexec {shlex.quote(twistd)} "$@"\n', True)
    _write(venv / "activate", f'PATH={shlex.quote(str(venv))}:"$PATH"; export PATH\n')
    # The real scripts/serve, its virtualenv taken as set up.
    _write(tmp / "scripts" / "serve", subst.marker_line((ROOT / "scripts" / "serve").read_text()), True)
    _write(tmp / "scripts" / "venv.sh",
           f". {shlex.quote(str(ROOT / 'scripts' / 'venv.sh'))}\nensure_venv() {{ :; }}  # .venv is made above\n")

    env = client_env(tmp)
    for name in ("pip", "uv"):
        target = tmp / f".doc-{name}-env"
        subprocess.run([shutil.which("uv", path=str(BIN)) or "uv", "venv", "-q", "--python", python, str(target)],
                       check=True, env=env, capture_output=True, timeout=60)
    env.update(
        PATH=os.pathsep.join([str(shims), str(BIN), env.get("PATH", "")]),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        DOC_TMP=str(tmp),
        DOC_PIP_ENV=str(tmp / ".doc-pip-env"),
        DOC_UV_ENV=str(tmp / ".doc-uv-env"),
        PIP_PYTHON=str(tmp / ".doc-pip-env" / "bin" / "python"),
        VIRTUAL_ENV=str(tmp / ".doc-uv-env"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
        COLUMNS="100",
    )
    # A user's shell has none of these; they would override pip's --cert.
    for name in ("PYTHONHOME", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
                 "NIX_SSL_CERT_FILE"):
        env.pop(name, None)
    return env


def script(block: Block, tmp: Path, subst: Substitution) -> str:
    marker = block.marker
    counter = [0]
    parts = [PRELUDE, f"cd {shlex.quote(str(tmp))}"]
    for line in marker.get("before"):
        parts.append(rewrite_servers(subst.marker_line(line), subst, counter))
    for args in marker.get("server"):
        line = f"twistd -n --pidfile= pypid --port tcp:3141:interface=127.0.0.1 {args}"
        parts.append(rewrite_servers(subst.marker_line(line), subst, counter))
    for cwd in marker.get("cwd"):
        parts.append(f"cd {shlex.quote(subst.marker_line(cwd))}")
    parts.append("# the block")
    parts.append(rewrite_servers(subst(block.text), subst, counter))
    for line in marker.get("after"):
        check = subst.marker_line(line)
        parts.append(f"if ! {{\n{check}\n}}; then echo {shlex.quote('after: check failed: ' + check)} >&2; exit 1; fi")
    return "\n".join(parts) + "\n"


def run(block: Block, tmp: Path, timeout: float = 300) -> str:
    """Run C{block} in C{tmp}; fail the test with its output when it fails."""
    marker = block.marker
    for tool in marker.get("needs"):
        if shutil.which(tool) is None:
            message = f"{block.where} needs {tool}, which is not installed (.ci/run installs it)"
            if os.environ.get("PYPID_CI"):
                pytest.fail(message)
            pytest.skip(message)
    subst = Substitution(block, tmp)
    env = prepare(tmp, subst)
    for value in marker.get("env"):
        name, _, val = value.partition("=")
        env[name.strip()] = subst.marker_line(val)
    for path in marker.get("previous-block"):
        if block.previous is None:
            pytest.fail(f"{block.where}: previous-block, but there is no block before it")
        path = subst.marker_line(path)
        target = Path(path.replace("~", env["HOME"], 1)) if path.startswith("~") else tmp / path
        _write(target, subst(block.previous.text))
    text = script(block, tmp, subst)
    (tmp / ".doc-block.sh").write_text(text)
    stdin = "".join(subst.marker_line(line) + "\n" for line in marker.get("stdin"))
    process = subprocess.Popen(
        ["bash", str(tmp / ".doc-block.sh")], cwd=tmp, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        output = ""
        _stop(process.pid, tmp)
        output, _ = process.communicate()
        pytest.fail(f"{block.where} did not finish in {timeout} s:\n{text}\n--- output\n{output}{_logs(tmp)}")
    finally:
        _stop(process.pid, tmp)
        subst.cleanup()
    if process.returncode != 0:
        pytest.fail(
            f"{block.where} failed (exit {process.returncode}); the script run was:\n{text}\n"
            f"--- output\n{output}{_logs(tmp)}"
        )
    return output


def _logs(tmp: Path) -> str:
    return "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
                   for log in sorted(tmp.rglob("*.log")) if log.is_file())


def _stop(pgid: int, tmp: Path) -> None:
    """Stop what the block left running: its process group, and daemonised twistds."""
    pids = []
    for pidfile in tmp.rglob("twistd.pid"):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            pass
    for pid in pids:
        _signal(lambda: os.kill(pid, signal.SIGTERM))
    _signal(lambda: os.killpg(pgid, signal.SIGTERM))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive and not _group_alive(pgid):
            return
        time.sleep(0.05)
    for pid in pids:
        _signal(lambda: os.kill(pid, signal.SIGKILL))
    _signal(lambda: os.killpg(pgid, signal.SIGKILL))


def _signal(send) -> None:
    try:
        send()
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
