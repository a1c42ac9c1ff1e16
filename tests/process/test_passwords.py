"""
The password file against a real twistd, with the bcrypt package that is
installed (5 in the newest run, Debian's 3.2.2 in the bookworm run) and
with none: `pypid passwd` makes the entries, other tools' entries sit
beside them, and every one logs in.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from passlib.hash import apr_md5_crypt, ldap_sha1, sha256_crypt, sha512_crypt

from pypid.testing import wheel_bytes, write_dist
from tests.server import ROOT
from tests.uploadhelp import basic

USERS = {
    "alice": None,  # made by pypid passwd ($2y$)
    "bob": sha512_crypt.using(rounds=5000).hash("bob-pw"),
    "carol": sha256_crypt.using(rounds=5000).hash("carol-pw"),
    "dave": apr_md5_crypt.hash("dave-pw"),
    "erin": ldap_sha1.hash("erin-pw"),
    "frank": "frank-pw",  # plain text, as htpasswd -p writes it
}


def environment(tmp_path, bcrypt: str) -> dict:
    env = dict(os.environ)
    path = [str(ROOT)]
    if bcrypt == "hidden":
        # No bcrypt package: an import of it fails, as where it is not installed.
        shadow = tmp_path / "no-bcrypt"
        (shadow / "bcrypt").mkdir(parents=True)
        (shadow / "bcrypt" / "__init__.py").write_text("raise ImportError('no bcrypt here')\n")
        path.insert(0, str(shadow))
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def pypid_passwd(env, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "pypid.cli", "passwd", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("bcrypt", ["installed", "hidden"])
def test_every_kind_of_entry_logs_in(bcrypt, tmp_path, packages, start_server):
    env = environment(tmp_path, bcrypt)
    probe = subprocess.run([sys.executable, "-c", "import bcrypt"], env=env, capture_output=True)
    assert (probe.returncode == 0) == (bcrypt == "installed")
    passwords = tmp_path / "htpasswd"
    made = pypid_passwd(env, "-c", "--password-stdin", str(passwords), "alice", stdin="alice-pw\n")
    assert made.returncode == 0, made.stderr
    # A $2b$ entry, as other tools write them.
    other = pypid_passwd(env, "--password-stdin", str(passwords), "gina", stdin="gina-pw\n")
    assert other.returncode == 0, other.stderr
    text = passwords.read_text()
    assert text.startswith("alice:$2y$12$")
    text = text.replace("gina:$2y$", "gina:$2b$")
    text += "".join(f"{user}:{stored}\n" for user, stored in USERS.items() if stored)
    passwords.write_text(text)
    write_dist(str(packages), wheel_bytes("private", "1.0"))
    server = start_server("-P", str(passwords), "-a", "update,download,list", str(packages), env=env)
    for user in [*USERS, "gina"]:
        status, _, _ = server.get("simple/private/", headers=basic(user, f"{user}-pw"))
        assert status == 200, (bcrypt, user)
        status, _, _ = server.get("simple/private/", headers=basic(user, f"{user}-pw!"))
        assert status == 401, (bcrypt, user)
    log = server.log()
    assert "read 7 users from" in log
    assert "user frank in" in log and "plain-text password" in log
    assert "Traceback" not in log
