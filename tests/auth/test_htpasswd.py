"""The htpasswd file and its checker (pure logic, synchronous)."""

from __future__ import annotations

import os

from passlib.hash import apr_md5_crypt, ldap_sha1, md5_crypt, sha256_crypt, sha512_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pypid.auth import hashes
from pypid.auth.htpasswd import Busy, HtpasswdChecker, HtpasswdFile


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


class HeldThreads:
    """A Threads that holds each piece of work until the test runs it."""

    def __init__(self):
        self.work: list[tuple[Deferred, object, tuple]] = []

    def __call__(self, f, *args):
        d: Deferred = Deferred()
        self.work.append((d, f, args))
        return d

    def run_all(self):
        work, self.work = self.work, []
        for d, f, args in work:
            d.callback(f(*args))


def write(path, lines):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def bcrypt_hash(password: str, ident: str = "2y") -> str:
    made = hashes.default().hash_bcrypt(password.encode(), rounds=4)
    return f"${ident}$" + made[4:]


class HtpasswdCheckerTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp())
        write(self.path, [
            "alice:" + bcrypt_hash("a-pass", "2y"),
            "bea:" + bcrypt_hash("b-pass", "2b"),
            "ann:" + bcrypt_hash("n-pass", "2a"),
            "bob:" + sha512_crypt.using(rounds=1000).hash("b-pass"),
            "carol:" + sha256_crypt.using(rounds=1000).hash("c-pass"),
            "dave:" + apr_md5_crypt.hash("d-pass"),
            "eve:" + ldap_sha1.hash("e-pass"),
            "fay:" + md5_crypt.hash("f-pass"),
            "mallory:plain-pass",
            "# a comment",
            "",
            "des:abJnggxhB/yWI",
        ])
        self.clock = Clock()
        self.checker = HtpasswdChecker(self.path, clock=self.clock)

    def login(self, user, password):
        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        return self.successResultOf(d)

    def refused(self, user, password):
        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_every_accepted_scheme(self):
        for user, password in (("alice", "a-pass"), ("bea", "b-pass"), ("ann", "n-pass"),
                               ("bob", "b-pass"), ("carol", "c-pass"), ("dave", "d-pass"),
                               ("eve", "e-pass"), ("fay", "f-pass")):
            self.assertEqual(self.login(user.encode(), password.encode()), user)
            self.refused(user.encode(), b"not-" + password.encode())

    def test_str_credentials(self):
        """FTP hands over str user names; both kinds work."""
        self.assertEqual(self.login("alice", "a-pass"), "alice")

    def test_wrong_password_and_unknown_user(self):
        self.refused(b"alice", b"b-pass")
        self.refused(b"zed", b"a-pass")
        self.refused(b"", b"")
        self.refused(b"alice:x", b"a-pass")

    def test_plain_text_entries_accepted_and_warned(self):
        """As pypiserver and Apache's htpasswd -p have them; a warning names the user."""
        self.assertEqual(self.login(b"mallory", b"plain-pass"), "mallory")
        self.refused(b"mallory", b"plain-pas")
        self.refused(b"mallory", b"plain-pass\0")

    def test_des_crypt_refused(self):
        """A 13-character crypt-alphabet entry is DES crypt (Apache on Unix), which is refused."""
        self.refused(b"des", b"abJnggxhB/yWI")
        self.refused(b"des", b"password")

    def test_reloads_when_the_file_changes(self):
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        write(self.path, ["alice:" + bcrypt_hash("new-pass")])
        self.refused(b"alice", b"a-pass")
        self.refused(b"bob", b"b-pass")
        self.assertEqual(self.login(b"alice", b"new-pass"), "alice")

    def test_cache_is_forgotten_when_the_file_changes(self):
        """A remembered success no longer counts once the file changed, even before any re-read."""
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        self.assertEqual(self.checker.cached(b"alice", b"a-pass"), "alice")
        self.assertIsNone(self.checker.cached(b"alice", b"wrong"))
        self.assertIsNone(self.checker.cached(b"bob", b"a-pass"))
        # Same size, same inode, only the contents' times change: still a change.
        with open(self.path, "r+") as f:
            data = f.read()
            f.seek(0)
            f.write(data)
        os.utime(self.path, ns=(1, 1))
        self.assertIsNone(self.checker.cached(b"alice", b"a-pass"))
        write(self.path, ["bob:" + bcrypt_hash("b")])
        self.assertIsNone(self.checker.cached(b"alice", b"a-pass"))
        self.refused(b"alice", b"a-pass")
        os.remove(self.path)
        self.assertIsNone(self.checker.cached(b"bob", b"b"))

    def test_cache_expires(self):
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")
        self.clock.now += 10_000
        self.assertIsNone(self.checker.cached(b"alice", b"a-pass"))
        self.assertEqual(self.login(b"alice", b"a-pass"), "alice")

    def test_cache_key_separates_user_and_password(self):
        write(self.path, ["ab:" + bcrypt_hash("c")])
        self.assertEqual(self.login(b"ab", b"c"), "ab")
        self.assertIsNone(self.checker.cached(b"a", b"bc"))

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

    def test_concurrent_checks_share_one_hash(self):
        threads = HeldThreads()
        checker = HtpasswdChecker(self.path, threads, clock=self.clock)
        first = checker.verify(b"alice", b"a-pass")
        second = checker.verify(b"alice", b"a-pass")
        wrong = checker.verify(b"alice", b"nope")
        self.assertEqual(len(threads.work), 2)
        threads.run_all()
        self.assertEqual(self.successResultOf(first), "alice")
        self.assertEqual(self.successResultOf(second), "alice")
        self.failureResultOf(wrong, UnauthorizedLogin)

    def test_too_many_waiting_checks_are_refused_at_once(self):
        threads = HeldThreads()
        checker = HtpasswdChecker(self.path, threads, clock=self.clock, max_pending=2)
        waiting = [checker.verify(b"alice", b"guess-%d" % i) for i in range(2)]
        self.failureResultOf(checker.verify(b"alice", b"guess-x"), Busy)
        threads.run_all()
        for d in waiting:
            self.failureResultOf(d, UnauthorizedLogin)
        # Room again once those are done.
        later = checker.verify(b"alice", b"a-pass")
        threads.run_all()
        self.assertEqual(self.successResultOf(later), "alice")


class HtpasswdFileTests(SynchronousTestCase):
    def test_round_trip_keeps_other_lines(self):
        data = b"# users\nalice:$apr1$x$y\n\nbob:{SHA}abc=\n"
        users = HtpasswdFile.parse(data)
        self.assertEqual(users.users(), ["alice", "bob"])
        self.assertEqual(users.to_string(), data)
        users.set_hash("alice", "plain")
        users.set_hash("carol", "c")
        self.assertTrue(users.delete("bob"))
        self.assertFalse(users.delete("bob"))
        self.assertEqual(users.to_string(), b"# users\nalice:plain\n\ncarol:c\n")

    def test_apache_reading(self):
        """CRLF lines, a BOM, extra fields after the hash, the first of two entries."""
        users = HtpasswdFile.parse(b"\xef\xbb\xbfalice:h1:extra\r\nalice:h2\r\nbob:h3")
        self.assertEqual(users.get_hash("alice"), "h1")
        self.assertEqual(users.get_hash("bob"), "h3")
        self.assertEqual(users.duplicates, ["alice"])
        users.set_hash("alice", "h4")
        self.assertEqual(users.to_string(), b"alice:h4\nbob:h3\n")

    def test_malformed(self):
        with self.assertRaises(ValueError):
            HtpasswdFile.parse(b"alice:x\nnot an entry\n")
        with self.assertRaises(UnicodeDecodeError):
            HtpasswdFile.parse(b"\xff:x\n")
