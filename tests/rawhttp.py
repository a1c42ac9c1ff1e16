"""Requests written byte for byte on a socket, for what urllib will not send."""

from __future__ import annotations

import socket
from typing import NamedTuple, Optional


class RawResponse(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


def exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send C{request} to 127.0.0.1:C{port} and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> RawResponse:
    """The first response in C{raw}."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status), reason, headers, body)


def request(port: int, method: str, path: str, headers: Optional[list[tuple[str, str]]] = None,
            version: str = "HTTP/1.1", body: bytes = b"") -> RawResponse:
    """One request on its own connection (C{Connection: close}, C{Host} unless C{headers} say otherwise)."""
    lines = [f"{method} {path} {version}"]
    given = headers if headers is not None else [("Host", f"127.0.0.1:{port}")]
    lines.extend(f"{name}: {value}" for name, value in given)
    lines.append("Connection: close")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parse(exchange(port, data))
