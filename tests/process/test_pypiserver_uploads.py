"""
Upload forms pypiserver takes (issue 19, items 5 and 6), against a real
twistd: C{twine register} is answered 200 and creates nothing; a form of
only C{:action} and C{content} (C{curl -F}) takes the name and version
from the file name, then checks them against the file's metadata as for a
twine upload.
"""

from __future__ import annotations

import subprocess

import pytest

from pypid.testing import sdist_bytes, wheel_bytes
from tests.needs import needs
from tests.uploadhelp import htpasswd, listed, twine

import shutil


@pytest.fixture
def server(tmp_path, packages, start_server):
    passwords = htpasswd(tmp_path / "htpasswd", {"alice": "wonderland"})
    return start_server("-P", str(passwords), str(packages))


def test_twine_register_is_200_and_creates_nothing(server, packages, tmp_path, env):
    name, data = wheel_bytes("registered", "1.0")
    (tmp_path / name).write_bytes(data)
    result = subprocess.run(twine("register", "--repository-url", server.url, "-u", "alice", "-p", "wonderland",
                                  str(tmp_path / name)), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert listed(packages) == []
    assert server.get("simple/registered/")[0] == 404
    log = server.log()
    assert "submit ok user=alice client=127.0.0.1 project=- version=- file=- status=200: OK: this index needs " \
           "no registration; nothing was created." in log
    # Still a user's: without the password it is refused like an upload.
    result = subprocess.run(twine("register", "--repository-url", server.url, "-u", "alice", "-p", "wrong",
                                  "--non-interactive", str(tmp_path / name)),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


@needs(shutil.which("curl"), "curl is not installed")
def test_curl_with_only_action_and_content(server, packages, tmp_path):
    for name, data in (sdist_bytes("curled", "1.0"), wheel_bytes("curled", "1.0")):
        (tmp_path / name).write_bytes(data)
        result = subprocess.run(["curl", "-sS", "-u", "alice:wonderland", "-F", ":action=file_upload",
                                 "-F", f"content=@{tmp_path / name}", "-w", "%{http_code}", server.url],
                                capture_output=True, text=True, timeout=60)
        assert result.stdout.endswith("200"), result.stdout + result.stderr
        assert f"{name} created." in result.stdout
    assert listed(packages) == sorted(["curled-1.0.tar.gz", "curled-1.0-py3-none-any.whl"])
    # The name and version taken from the file name are checked against its metadata.
    _, other = wheel_bytes("curled", "2.0")
    lying = tmp_path / "curled-3.0-py3-none-any.whl"
    lying.write_bytes(other)
    result = subprocess.run(["curl", "-sS", "-u", "alice:wonderland", "-F", ":action=file_upload",
                             "-F", f"content=@{lying}", "-w", "%{http_code}", server.url],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.endswith("400"), result.stdout
    assert "The metadata's Version '2.0' does not match the file name." in result.stdout
    assert not (packages / lying.name).exists()
