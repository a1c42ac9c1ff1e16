"""
The pages that grow with the index, on a real server: the listing of every
file at /packages/ is streamed as the client takes it, so a client reading
it slowly (or not at all) holds neither the reactor nor much memory, and
everyone else is served meanwhile.
"""

from __future__ import annotations

import http.client
import re
import socket
import time

from pypid.testing import wheel_bytes, write_dist

FILES = 3000


def _tree(tmp_path, deep: bool = False):
    """FILES wheels in 30 folders; C{deep}: folders 8 levels down long names (a listing of 12 MB)."""
    packages = tmp_path / "packages"
    for i in range(FILES):
        folder = packages / f"d{i % 30}"
        if deep:
            folder = folder.joinpath(*[f"{level}" * 240 for level in range(8)])
        write_dist(str(folder), wheel_bytes(f"p{i}", "1.0"))
    return packages


def test_listing_streams_while_others_are_served(start_server, tmp_path):
    # A listing larger than what the sockets' buffers hold.
    server = start_server("--hash-algo", "sha256", str(_tree(tmp_path, deep=True)))
    # A client that asks for the whole listing, then reads nothing for a while.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    listing = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    listing.sock = stalled
    listing.request("GET", "/packages/")
    time.sleep(0.5)
    latencies = []
    for i in range(0, FILES, 150):
        started = time.monotonic()
        status, _, body = server.get(f"simple/p{i}/")
        latencies.append(time.monotonic() - started)
        assert status == 200 and f"p{i}-1.0-py3-none-any.whl".encode() in body
    assert max(latencies) < 2.0, latencies
    # The listing is still going out: its request has not finished.
    assert not re.search(r'"GET /packages/ HTTP', server.log())
    response = listing.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") is None and response.getheader("Transfer-Encoding") == "chunked"
    body = response.read()
    assert body.count(b"<a href=") == FILES
    assert body.endswith(b"</html>\n")
    listing.close()


def test_project_list_and_search_at_size(start_server, tmp_path):
    """The project list, the people's pages and XML-RPC, prepared in threads, are whole."""
    server = start_server(str(_tree(tmp_path)))
    status, _, body = server.get("simple/")
    assert status == 200 and body.count(b"<a href=") == FILES
    status, _, body = server.get("project/?page=3")
    assert status == 200 and body.count(b"<tr><td>") == 1000
    status, _, body = server.get("search?q=p299")
    assert status == 200 and b"p2990" in body
