"""
Uploads of the less common kinds against a real twistd: a C{.zip} sdist
(judged by its filename, not the spool file's), and core metadata over the
size limit.
"""

from __future__ import annotations

import sys

from tests.feed.test_checks import zip_sdist
from tests.uploadhelp import htpasswd, listed, run, twine

USERS = {"alice": "alice-pw"}


def test_twine_uploads_a_zip_sdist_and_pip_builds_it(packages, start_server, env, tmp_path):
    """Issue 18, item 13: a .zip sdist was refused ("method tar"): it is stored, listed and installable."""
    passwords = htpasswd(tmp_path / "htpasswd", USERS)
    server = start_server("-P", str(passwords), str(packages))
    filename, data = zip_sdist("Zipped_Pkg", "1.0")
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / filename).write_bytes(data)
    run(twine("upload", "--non-interactive", "--repository-url", server.url, "-u", "alice", "-p", "alice-pw",
              str(dist / filename)), env)
    assert listed(packages) == [filename]
    assert (packages / filename).read_bytes() == data
    status, _, body = server.get("simple/zipped-pkg/")
    assert status == 200 and filename.encode() in body
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-binary", ":all:", "--target",
         str(tmp_path / "t"), "--index-url", server.url + "simple/", "zipped-pkg==1.0"], env)
    assert (tmp_path / "t" / "zipped_pkg" / "__init__.py").exists()
