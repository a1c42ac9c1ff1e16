"""
bcrypt 5 beside passlib 1.7.4 (issue 13): the old code path dies at import,
pypid's does not, and pypid never loads passlib's bcrypt handler.

Each check runs in a fresh interpreter: passlib probes bcrypt once per
process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata

from tests.server import ROOT


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)


def bcrypt_major() -> int:
    return int(metadata.version("bcrypt").split(".")[0])


def test_old_code_path():
    """
    What pypid imported before: passlib's htpasswd support probes bcrypt at
    import, and with bcrypt >= 5 the probe raises. (With bcrypt 3.2 or 4,
    as Debian 12 has, it imports.)
    """
    result = python("import passlib.apache")
    if bcrypt_major() >= 5:
        assert result.returncode != 0
        assert "password cannot be longer than 72 bytes" in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_pypid_with_the_installed_bcrypt():
    """Every accepted kind of entry is made and checked; passlib's bcrypt code is never loaded."""
    result = python("""
        import io, os, sys, tempfile
        from passlib.hash import apr_md5_crypt, sha512_crypt
        from pypid.auth import passwd
        from pypid.auth.htpasswd import HtpasswdChecker
        import pypid.tap, pypid.cli, pypid.web.guard, pypid.feed.ftp, pypid.auth.logins

        path = os.path.join(tempfile.mkdtemp(), "htpasswd")
        passwd.ROUNDS = 4
        assert passwd.main(["-c", "--password-stdin", path, "alice"], stdin=io.StringIO("a-pw\\n")) == 0
        with open(path, "a") as f:
            f.write("bob:" + sha512_crypt.hash("b-pw") + "\\n")
            f.write("carol:" + apr_md5_crypt.hash("c-pw") + "\\n")
            f.write("dave:d-pw\\n")
        checker = HtpasswdChecker(path)
        for user, pw in (("alice", b"a-pw"), ("bob", b"b-pw"), ("carol", b"c-pw"), ("dave", b"d-pw")):
            assert checker.check(user.encode(), pw).user == user, user
            assert checker.check(user.encode(), pw + b"x").user is None, user
        assert open(path).read().startswith("alice:$2y$")
        loaded = sorted(m for m in sys.modules if m.startswith("passlib"))
        assert "passlib.handlers.bcrypt" not in loaded and "passlib.apache" not in loaded, loaded
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "ok"
