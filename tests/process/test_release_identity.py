"""
One release file, however its name is spelled (issue 18, item 2), against a
real twistd: with C{Casep-1.0-py3-none-any.whl} stored, other bytes sent as
C{casep-1.0-py3-none-any.whl}, C{CASEP-1.0-PY3-NONE-ANY.WHL} or
C{casep-1.0.0-py3-none-any.whl} are "File already exists", by HTTP and FTP
alike (the same bytes are a 200), and pip keeps installing the first bytes.
Variants copied into the directory are logged once, and one of them is
listed, the same one at every start.
"""

from __future__ import annotations

import ftplib
import io
import os
import re
import time

import pytest

from pypid.testing import wheel_bytes
from tests.process.test_ftp import connect, ftp_port
from tests.uploadhelp import basic, htpasswd, listed, upload

ALICE = basic("alice", "wonderland")


def simple_files(server, project: str) -> list[str]:
    status, _, body = server.get(f"simple/{project}/")
    assert status == 200, status
    return re.findall(r'<a [^>]*>([^<]+)</a>', body.decode())


@pytest.fixture
def server(tmp_path, packages, start_server):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    server = start_server("-P", str(passwords), "--ftp", "tcp:0:interface=127.0.0.1", str(packages))
    server.ftp_port = ftp_port(server)
    return server


def test_case_variants_are_the_same_file_by_http_and_ftp(server, packages):
    _, first = wheel_bytes("Casep", "1.0", summary="The first bytes")
    _, other = wheel_bytes("Casep", "1.0", summary="Other bytes")
    original = "Casep-1.0-py3-none-any.whl"
    status, reason, _ = upload(server, original, first, ALICE, name="Casep", version="1.0")
    assert status == 200, reason
    for variant in ("casep-1.0-py3-none-any.whl", "CASEP-1.0-PY3-NONE-ANY.WHL", "casep-1.0.0-py3-none-any.whl"):
        version = "1.0.0" if "1.0.0" in variant else "1.0"
        status, reason, _ = upload(server, variant, other, ALICE, name="casep", version=version,
                                 filetype="bdist_wheel", pyversion="py3")
        assert status == 400, (variant, status, reason)
        assert reason.startswith(f"File already exists ('{variant}' is the same release file as the stored "
                                 f"'{original}'"), reason
        status, reason, _ = upload(server, variant, first, ALICE, name="casep", version=version,
                                 filetype="bdist_wheel", pyversion="py3")
        assert (status, reason) == (200, "OK"), variant
        # FTP: the same rule, from the same publisher.
        client = connect(server.ftp_port)
        with pytest.raises(ftplib.error_perm, match="File already exists"):
            client.storbinary(f"STOR {variant}", io.BytesIO(other))
        client.quit()
    assert listed(packages) == [original]
    assert simple_files(server, "casep") == [original]
    status, _, body = server.get("packages/" + original)
    assert (status, body) == (200, first)
    assert "Traceback" not in server.log()


def test_variants_copied_in_are_listed_once_and_logged_once(tmp_path, packages, start_server):
    """Two spellings of one file on disk: the older is listed, the other logged once and not served."""
    _, older = wheel_bytes("Demo", "2.0", summary="older")
    _, newer = wheel_bytes("Demo", "2.0", summary="newer")
    (packages / "demo-2.0-py3-none-any.whl").write_bytes(older)
    os.utime(packages / "demo-2.0-py3-none-any.whl", (1_600_000_000, 1_600_000_000))
    (packages / "Demo-2.0-PY3-none-any.whl").write_bytes(newer)
    for attempt in range(2):
        server = start_server("--rescan-interval", "1", str(packages))
        assert simple_files(server, "demo") == ["demo-2.0-py3-none-any.whl"]
        assert server.get("packages/demo-2.0-py3-none-any.whl")[2] == older
        assert server.get("packages/Demo-2.0-PY3-none-any.whl")[0] == 404
        assert b"Demo-2.0-PY3" not in server.get("packages/")[2]
        status, _, body = server.get("health")
        assert b'"files":1' in body.replace(b" ", b""), body
        # A few rescans later, it was said once.
        time.sleep(2.5)
        lines = [line for line in server.log().splitlines() if "not listing Demo-2.0-PY3-none-any.whl" in line]
        assert len(lines) == 1, lines
        assert "the same release file as demo-2.0-py3-none-any.whl" in lines[0]
        server.stop()
