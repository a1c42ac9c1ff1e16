"""
A listed file rewritten in place while it is downloaded (issue 18, item 9,
the download half), against a real twistd: C{cp} of other bytes of the same
size over it, mid-download. The client must never get a whole answer (200,
the full length, the old strong ETag) made of old and new bytes: the
answer is cut before its last bytes instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket

import pytest

from pypid.testing import wheel_bytes

MIB = 1024 * 1024


@pytest.fixture
def big(packages):
    name, data = wheel_bytes("big", "1.0", padding=48 * MIB)
    (packages / name).write_bytes(data)
    return name, data


def rewrite_in_place(path, data: bytes, truncate: bool) -> None:
    """
    C{cp NEW path} (truncate, then write, in the same inode), or C{rsync
    --inplace} (write over, never shorter).
    """
    with open(path, "r+b") as f:
        if truncate:
            f.truncate(0)
        f.write(data)


@pytest.mark.parametrize("ranged", [False, True])
@pytest.mark.parametrize("truncate", [False, True], ids=["inplace", "cp"])
def test_a_file_rewritten_during_its_download_is_never_a_whole_answer(big, packages, start_server, ranged,
                                                                     truncate):
    name, data = big
    other = os.urandom(len(data))
    server = start_server(str(packages))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    # A small receive buffer: most of the file is still on the server's side when it changes.
    connection.sock = socket.create_connection(("127.0.0.1", server.port))
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    headers = {"Range": f"bytes=1000-{len(data) - 1}"} if ranged else {}
    connection.request("GET", "/packages/" + name, headers=headers)
    response = connection.getresponse()
    assert response.status == (206 if ranged else 200)
    expected = data[1000:] if ranged else data
    length = int(response.getheader("Content-Length"))
    assert length == len(expected)
    got = response.read(1 * MIB)
    rewrite_in_place(packages / name, other, truncate)
    try:
        got += response.read()
        whole = True
    except http.client.IncompleteRead as e:
        got += e.partial
        whole = False
    connection.close()
    if whole:
        # Only if the server had sent every byte before the change (it cannot, at this size).
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest(), "a whole answer of mixed bytes"
    assert not whole, f"the answer ran to its end ({len(got)} bytes) though the file changed under it"
    assert len(got) < length
