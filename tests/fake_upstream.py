"""
A small upstream index that misbehaves on purpose, for the fallback's tests:
C{python -m tests.fake_upstream DIR}. It serves C{/simple/<project>/} (JSON)
and C{/files/<filename>} from the files in DIR, following DIR/config.json,
re-read on every request::

    {"hashes": {"<filename>": "<sha256 to advertise>"},
     "behaviour": {"<filename>": "ok" | "cut" | "slow" | "stall" | "hang"},
     "down": false, "html": false, "metadata": false, "ranges": false, "delay": 0}

With "metadata", wheels have PEP 658 files (C{/files/<wheel>.metadata},
advertised with their sha256); with "ranges", files are served in byte
ranges (C{Accept-Ranges}, 206); "delay" holds every answer back that many
seconds (a network's round trip, for bench/upstream.py). Every request is appended to
DIR/requests.log ("METHOD PATH", and " RANGE" when it had one); the port it
listens on (127.0.0.1, chosen by the system) is written to DIR/port.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


class Upstream(Resource):
    isLeaf = True

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory
        self._files: dict[str, bytes] = {}

    def config(self) -> dict:
        try:
            with open(os.path.join(self.directory, "config.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def dists(self):
        return sorted(n for n in os.listdir(os.path.join(self.directory, "dists")))

    def render_GET(self, request):
        delay = self.config().get("delay") or 0
        if delay:
            def answer() -> None:
                body = self.answer(request)
                if body is not NOT_DONE_YET:
                    request.write(body)
                    request.finish()

            reactor.callLater(delay, answer)
            return NOT_DONE_YET
        return self.answer(request)

    def read(self, name: str) -> bytes:
        """A file's bytes (kept in memory while it is unchanged: ranges of large files are asked for often)."""
        path = os.path.join(self.directory, "dists", name)
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = self._files.get(name)
        if cached is None or cached[0] != stamp:
            with open(path, "rb") as f:
                data = f.read()
            cached = self._files[name] = (stamp, data, hashlib.sha256(data).hexdigest())
        return cached[1]

    def sha256(self, name: str) -> str:
        self.read(name)
        return self._files[name][2]

    def answer(self, request):
        wanted = request.getHeader(b"range")
        with open(os.path.join(self.directory, "requests.log"), "a") as log:
            log.write(request.method.decode() + " " + request.path.decode()
                      + (" " + wanted.decode() if wanted else "") + "\n")
        config = self.config()
        if config.get("down"):
            request.setResponseCode(503)
            return b"down for maintenance\n"
        parts = request.path.decode().strip("/").split("/")
        if len(parts) == 2 and parts[0] == "simple":
            return self.page(request, parts[1], config)
        if len(parts) == 2 and parts[0] == "files":
            return self.file(request, parts[1], config)
        request.setResponseCode(404)
        return b"not found\n"

    def page(self, request, key: str, config: dict) -> bytes:
        files = []
        for name in self.dists():
            if not name.replace("_", "-").lower().startswith(key + "-"):
                continue
            data = self.read(name)
            sha = config.get("hashes", {}).get(name) or self.sha256(name)
            entry = {"filename": name, "url": f"../../files/{name}", "hashes": {"sha256": sha},
                     "size": len(data)}
            if config.get("metadata") and name.endswith(".whl"):
                entry["core-metadata"] = {"sha256": hashlib.sha256(wheel_metadata(data)).hexdigest()}
            files.append(entry)
        if not files:
            request.setResponseCode(404)
            return b"no such project\n"
        if config.get("html"):
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            links = "".join(
                f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}" data-requires-python="&gt;=3">{f["filename"]}</a>\n'
                for f in files)
            return f"<!DOCTYPE html><html><body>{links}</body></html>".encode()
        request.setHeader(b"content-type", b"application/vnd.pypi.simple.v1+json")
        return json.dumps({"meta": {"api-version": "1.1"}, "name": key, "versions": [],
                           "files": files}).encode()

    def file(self, request, name: str, config: dict):
        metadata = name.endswith(".whl.metadata") and config.get("metadata")
        try:
            data = self.read(name[: -len(".metadata")] if metadata else name)
        except OSError:
            request.setResponseCode(404)
            return b"no such file\n"
        if metadata:
            data = wheel_metadata(data)
        behaviour = config.get("behaviour", {}).get(name, "ok")
        request.setHeader(b"content-type", b"application/octet-stream")
        wanted = request.getHeader(b"range")
        if config.get("ranges"):
            request.setHeader(b"accept-ranges", b"bytes")
            if wanted is not None:
                first, last = byte_range(wanted.decode(), len(data))
                if first >= len(data):
                    request.setResponseCode(416)
                    request.setHeader(b"content-range", b"bytes */%d" % len(data))
                    return b""
                request.setResponseCode(206)
                request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, len(data)))
                data = data[first:last + 1]
        request.setHeader(b"content-length", b"%d" % len(data))
        if request.method == b"HEAD":
            return b""
        if behaviour == "cut":
            request.write(data[: len(data) // 2])
            reactor.callLater(0.05, request.transport.loseConnection)
            return NOT_DONE_YET
        if behaviour == "stall":
            request.write(data[: len(data) // 2])
            return NOT_DONE_YET
        if behaviour == "hang":
            return NOT_DONE_YET
        if behaviour == "slow":
            request.write(data[:100])

            def rest():
                request.write(data[100:])
                request.finish()

            reactor.callLater(1.0, rest)
            return NOT_DONE_YET
        return data


def wheel_metadata(data: bytes) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        (member,) = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        return archive.read(member)


def byte_range(spec: str, size: int) -> tuple[int, int]:
    first, _, last = spec.partition("=")[2].partition("-")
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


def main(directory: str) -> None:
    os.makedirs(os.path.join(directory, "dists"), exist_ok=True)
    port = reactor.listenTCP(0, Site(Upstream(directory)), interface="127.0.0.1")
    with open(os.path.join(directory, "port.tmp"), "w") as f:
        f.write(str(port.getHost().port))
    os.replace(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
