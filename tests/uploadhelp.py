"""Helpers of the upload tests: htpasswd files, multipart bodies, raw HTTP."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Optional

from tests.server import tool


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    from pypid.auth.hashes import default

    lines = [f"{u}:{default().hash_bcrypt(p.encode(), rounds=4)}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def form_fields(filename: str, data: bytes, name: Optional[str] = None, version: Optional[str] = None,
                **extra) -> list:
    """The fields twine sends for a file, as (name, filename or None, bytes)."""
    if name is None or version is None:
        stem = filename[:-4] if filename.endswith(".whl") else filename.rsplit(".tar.gz", 1)[0]
        parts = stem.split("-")
        name = name or parts[0]
        version = version or parts[1]
    filetype = "bdist_wheel" if filename.endswith(".whl") else "sdist"
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        "metadata_version": "2.1",
        "filetype": filetype,
        "pyversion": "py3" if filetype == "bdist_wheel" else "source",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    fields.update(extra)
    out = [(k, None, v.encode()) for k, v in fields.items() if v is not None]
    out.append(("content", filename, data))
    return out


def multipart(parts: list, boundary: Optional[str] = None) -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for name, filename, data in parts:
        chunks.append(f"--{boundary}\r\n".encode())
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(disposition.encode() + b"\r\n")
        if filename is not None:
            chunks.append(b"Content-Type: application/octet-stream\r\n")
        chunks.append(b"\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post(server, body: bytes, content_type: str, path: str = "/", headers: Optional[dict] = None):
    """POST and return (status, reason, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    all_headers = {"Content-Type": content_type, "User-Agent": "pypid-tests"}
    all_headers.update(headers or {})
    conn.request("POST", path, body=body, headers=all_headers)
    response = conn.getresponse()
    result = response.status, response.reason, response.read().decode("utf-8", "replace")
    conn.close()
    return result


def upload(server, filename: str, data: bytes, headers: Optional[dict] = None, path: str = "/", **fields):
    body, ctype = multipart(form_fields(filename, data, **fields))
    return post(server, body, ctype, path, headers)


def raw_exchange(port: int, head: bytes, body_chunks=(), read_first: bool = False, timeout: float = 10):
    """Send raw bytes; return whatever the server answers before closing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = b""
    try:
        sock.sendall(head)
        if read_first:
            received += sock.recv(65536)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
        while True:
            try:
                data = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not data:
                break
            received += data
    finally:
        sock.close()
    return received


def listed(directory: Path) -> list[str]:
    """
    Every file under the package directory, hidden ones included (relative),
    except the state cache in C{.pypid/}.
    """
    out = []
    for top, dirs, names in os.walk(directory):
        if top == str(directory) and ".pypid" in dirs:
            dirs.remove(".pypid")
        for n in names:
            out.append(os.path.relpath(os.path.join(top, n), directory))
    return sorted(out)


def run(args, env, cwd=None, check=True, input=None):
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, input=input)
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def pip_install(server, env, target: Path, *requirements, index=None):
    index = index or server.url + "simple/"
    return run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                "--index-url", index, *requirements], env)


def twine(*args):
    return [tool("twine"), *args]
