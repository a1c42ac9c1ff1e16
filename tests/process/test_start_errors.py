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


def unprivileged() -> tuple:
    """
    A command prefix under which a file mode is obeyed: as root, drop the
    capabilities that read and search past permissions (util-linux setpriv).
    """
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def usage_lines(message: str) -> list[str]:
    return [f"twistd pypid: {message}", "Try 'twistd pypid --help' for the options."]


MODES = pytest.mark.parametrize("daemon", [False, True], ids=["foreground", "daemon"])


@MODES
def test_port_in_use(tmp_path, packages, daemon):
    """Another process on the port: one line, exit 1, no traceback, no pid file left."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = twistd("--port", f"tcp:{port}:interface=127.0.0.1", str(packages), cwd=tmp_path, daemon=daemon)
    finally:
        holder.close()
    line = f"cannot listen on 127.0.0.1:{port}: address already in use (another pypid?)"
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    if daemon:
        # twistd's waiting parent prints what the daemon sent it.
        assert lines(result.stderr) == [f"An error has occurred: b'{line}'",
                                         "Please look at log file for more information."]
        log = (tmp_path / "twistd.log").read_text()
        assert f"[pypid#critical] {line}" in log and "Traceback" not in log
        assert not (tmp_path / "twistd.pid").exists()
    else:
        assert [text for text in lines(result.stdout) if "pypid#" in text] == [
            text for text in lines(result.stdout) if text.endswith(f"[pypid#critical] {line}")]
        assert any(text.endswith(f"[pypid#critical] {line}") for text in lines(result.stdout))
        assert result.stderr == ""


@MODES
def test_port_in_use_with_a_log_file(tmp_path, packages, daemon):
    """With --logfile the line is on the standard error too (the log is not where one looks)."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        env_args = ["--port", f"tcp:{port}:interface=127.0.0.1", str(packages)]
        if daemon:
            result = twistd(*env_args, cwd=tmp_path, daemon=True)
        else:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            result = subprocess.run([tool("twistd"), "-n", "--pidfile=", "--logfile", str(tmp_path / "t.log"),
                                     "pypid", *env_args], cwd=str(tmp_path), env=env, capture_output=True,
                                    text=True, timeout=60)
    finally:
        holder.close()
    assert result.returncode == 1
    assert "address already in use (another pypid?)" in result.stderr
    assert len(lines(result.stderr)) == (2 if daemon else 1)
    assert result.stdout == ""


@MODES
def test_unreadable_package_directory(tmp_path, daemon):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        result = twistd("--port", "tcp:0:interface=127.0.0.1", str(locked), cwd=tmp_path, daemon=daemon,
                        prefix=unprivileged())
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2
    assert lines(result.stderr) == usage_lines(f"package directory {str(locked)!r} is not readable.")
    assert result.stdout == ""


@MODES
def test_unreadable_password_file(tmp_path, packages, daemon):
    passwords = tmp_path / "htpasswd"
    passwords.write_text("alice:{SHA}x\n")
    passwords.chmod(0o000)
    result = twistd("--port", "tcp:0:interface=127.0.0.1", "-P", str(passwords), str(packages), cwd=tmp_path,
                    daemon=daemon, prefix=unprivileged())
    assert result.returncode == 2
    assert lines(result.stderr) == usage_lines(f"cannot read the password file {str(passwords)!r}: Permission denied")
    assert result.stdout == ""


@MODES
@pytest.mark.parametrize("key", ["garbage", "missing"])
def test_bad_tls_key(tmp_path, packages, daemon, key):
    pytest.importorskip("OpenSSL", reason="Twisted's ssl: endpoint needs pyOpenSSL (Debian: python3-openssl)")
    pem = tmp_path / "key.pem"
    if key == "garbage":
        pem.write_text("not a key\n")
    description = f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
    result = twistd("--port", description, str(packages), cwd=tmp_path, daemon=daemon)
    assert result.returncode == 2
    [first, hint] = lines(result.stderr)
    assert first.startswith(f"twistd pypid: --port {description!r}")
    assert ("cannot load its TLS key or certificate" if key == "garbage" else "No such file or directory") in first
    assert hint == "Try 'twistd pypid --help' for the options."
    assert result.stdout == ""
    assert not (tmp_path / "twistd.pid").exists()


@pytest.mark.parametrize("argv, message", [
    (["PKG", "--port", "8080"],
     "'--port' comes after the package directory 'PKG': options go before the package directories."),
    (["--bogus", "PKG"], "option --bogus not recognized"),
    (["--hash-algo", "sha1", "PKG"],
     "--hash-algo 'sha1' is not one of sha256, sha384, sha512, md5 or off (the ones both pip and uv accept)."),
])
def test_usage_errors_are_one_line_and_a_hint(tmp_path, packages, argv, message):
    """Not a page of help: the error, and where the help is."""
    argv = [str(packages) if a == "PKG" else a for a in argv]
    result = twistd(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert lines(result.stderr) == usage_lines(message.replace("'PKG'", repr(str(packages))))
    assert result.stdout == ""
