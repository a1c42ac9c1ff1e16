"""The htpasswd checker (pure logic, synchronous)."""

from __future__ import annotations

import os

from passlib.hash import apr_md5_crypt, bcrypt, ldap_sha1, sha256_crypt, sha512_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial.unittest import SynchronousTestCase

from pypid.auth.htpasswd import HtpasswdChecker


class InlineThreadPool:
    """Runs 'threaded' work at once, on the calling thread."""

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        try:
            result = f(*args, **kwargs)
        except BaseException as e:  # pragma: no cover - reported through onResult
            onResult(False, e)
        else:
            onResult(True, result)


class InlineReactor:
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def getThreadPool(self):
        return InlineThreadPool()


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def write(path, lines):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


class HtpasswdCheckerTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp())
        write(self.path, [
            "alice:" + bcrypt.using(ident="2y", rounds=4).hash("a-pass"),
            "bob:" + sha512_crypt.using(rounds=1000).hash("b-pass"),
            "carol:" + sha256_crypt.using(rounds=1000).hash("c-pass"),
            "dave:" + apr_md5_crypt.hash("d-pass"),
            "eve:" + ldap_sha1.hash("e-pass"),
            "mallory:plain-pass",
        ])
        self.clock = Clock()
        self.checker = HtpasswdChecker(self.path, InlineReactor(), clock=self.clock)

    def login(self, user, password):
        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        return self.successResultOf(d)

    def refused(self, user, password):
        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_every_accepted_scheme(self):
        for user in ("alice", "bob", "carol", "dave", "eve"):
            self.assertEqual(self.login(user.encode(), f"{user[0]}-pass".encode()), user)

    def test_str_credentials(self):
        """FTP hands over str user names; both kinds work."""
        self.assertEqual(self.login("alice", "a-pass"), "alice")

    def test_wrong_password_and_unknown_user(self):
        self.refused(b"alice", b"b-pass")
        self.refused(b"zed", b"a-pass")
        self.refused(b"", b"")

    def test_plain_text_entries_refused(self):
        self.refused(b"mallory", b"plain-pass")

    def test_reloads_when_the_file_changes(self):
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        write(self.path, ["alice:" + bcrypt.using(rounds=4).hash("new-pass")])
        self.refused(b"alice", b"a-pass")
        self.refused(b"bob", b"b-pass")
        self.assertEqual(self.login(b"alice", b"new-pass"), "alice")

    def test_cache_expires(self):
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        self.clock.now += 10_000
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")

    def test_unreadable_file_fails_closed(self):
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        os.remove(self.path)
        self.refused(b"alice", b"a-pass")
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])

    def test_malformed_file_fails_closed(self):
        with open(self.path, "w") as f:
            f.write("no colon here\n")
        self.refused(b"alice", b"a-pass")
