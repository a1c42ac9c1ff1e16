"""Logins: the limiter, the cache and the checks together (pure logic, synchronous)."""

from __future__ import annotations

import os

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock as TaskClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pypid.auth.htpasswd import Busy, HtpasswdChecker
from pypid.auth.limiter import FailureLimiter
from pypid.auth.logins import REFUSAL_DELAY, SHOWN_USER, Logins, TooManyFailures, shown_user
from tests.auth.test_htpasswd import Clock, HeldThreads, bcrypt_hash, write


class Counting:
    """A Threads that runs work at once and counts it (each is one hash)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, f, *args):
        from twisted.internet.defer import maybeDeferred

        self.calls += 1
        return maybeDeferred(f, *args)


class LoginsTests(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        write(self.path, ["alice:" + bcrypt_hash("a-pass"), "bob:" + bcrypt_hash("b-pass")])
        self.clock = Clock()
        self.threads = Counting()
        self.checker = HtpasswdChecker(self.path, self.threads, clock=self.clock)
        self.logins = Logins(self.checker, FailureLimiter(self.clock, failures=3, period=30.0))
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def audit(self):
        return [e for e in self.events if e.get("log_namespace") == "pypid.audit"]

    def test_failures_are_limited_per_client(self):
        for i in range(3):
            self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"guess-%d" % i), UnauthorizedLogin)
        self.assertEqual(self.threads.calls, 3)
        failure = self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass"), TooManyFailures)
        self.assertEqual(failure.value.retry_after, 10)
        self.assertEqual(self.threads.calls, 3, "a blocked client's password is not checked")
        # Another client is served meanwhile.
        self.assertEqual(self.successResultOf(self.logins.login("192.0.2.2", b"alice", b"a-pass")), "alice")
        self.clock.now += 10
        self.assertEqual(self.successResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass")), "alice")

    def test_the_wait_is_counted(self):
        self.assertEqual(str(TooManyFailures(1)), "too many failed logins from this address; try again in 1 second")
        self.assertTrue(str(TooManyFailures(10)).endswith("try again in 10 seconds"))

    def test_refusals_of_blocked_clients_come_late(self):
        clock = Clock()
        reactor = TaskClock()
        logins = Logins(self.checker, FailureLimiter(clock, failures=1, period=30.0), clock=reactor)
        self.failureResultOf(logins.login("192.0.2.1", b"alice", b"no"), UnauthorizedLogin)
        d = logins.login("192.0.2.1", b"alice", b"no")
        self.assertNoResult(d)
        reactor.advance(REFUSAL_DELAY)
        self.failureResultOf(d, TooManyFailures)
        self.assertEqual(self.successResultOf(logins.login("192.0.2.2", b"alice", b"a-pass")), "alice")

    def test_successes_cost_nothing_from_the_budget(self):
        for _ in range(10):
            self.assertEqual(self.successResultOf(self.logins.login("192.0.2.1", "bob", "b-pass")), "bob")
        self.assertEqual(self.threads.calls, 1, "checked once, then remembered")
        for i in range(3):
            self.failureResultOf(self.logins.login("192.0.2.1", b"bob", b"x%d" % i), UnauthorizedLogin)
        # Blocked: even remembered credentials are refused (the cache is no oracle).
        self.failureResultOf(self.logins.login("192.0.2.1", b"bob", b"b-pass"), TooManyFailures)

    def test_busy_is_not_the_clients_failure(self):
        held = HeldThreads()
        checker = HtpasswdChecker(self.path, held, clock=self.clock, max_pending=1)
        logins = Logins(checker, FailureLimiter(self.clock, failures=3, period=30.0))
        first = logins.login("192.0.2.1", b"alice", b"a-pass")
        for _ in range(5):
            self.failureResultOf(logins.login("192.0.2.1", b"bob", b"b-pass"), Busy)
        held.run_all()
        self.assertEqual(self.successResultOf(first), "alice")
        self.assertIsNone(logins.retry_after("192.0.2.1"))

    def test_an_unreadable_file_is_not_the_clients_failure(self):
        os.remove(self.path)
        for _ in range(5):
            self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass"), UnauthorizedLogin)
        self.assertIsNone(self.logins.retry_after("192.0.2.1"))
        write(self.path, ["alice:" + bcrypt_hash("a-pass")])
        self.assertEqual(self.successResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass")), "alice")

    def test_audit_line_names_the_attempted_user(self):
        self.failureResultOf(self.logins.login("192.0.2.1", "mallory\n=x " + "y" * 200, b"p"), UnauthorizedLogin)
        self.failureResultOf(self.logins.login("192.0.2.1", b"\xff\xfeeve", b"p", "ftp"), UnauthorizedLogin)
        lines = [e["log_format"].format(**e) for e in self.audit()]
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith("login refused user=mallory\\n\\x3dx\\x20yyy"), lines[0])
        self.assertIn("...", lines[0])
        self.assertLess(len(lines[0]), 200)
        self.assertIn("client=192.0.2.1 service=http: wrong user name or password", lines[0])
        self.assertIn("user=\\xff\\xfeeve client=192.0.2.1 service=ftp", lines[1])
        self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"p"), UnauthorizedLogin)
        self.assertIn("login blocked client=192.0.2.1", self.audit()[-1]["log_format"].format(**self.audit()[-1]))
        # Refusals while blocked add no line (a flood cannot flood the log).
        count = len(self.audit())
        for _ in range(50):
            self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"p"), TooManyFailures)
        self.assertEqual(len(self.audit()), count)

    def test_twisted_cred_checker_for_one_client(self):
        checker = self.logins.checker_for("192.0.2.9", "ftp")
        self.assertEqual(self.successResultOf(checker.requestAvatarId(UsernamePassword("alice", "a-pass"))), "alice")
        for _ in range(3):
            self.failureResultOf(checker.requestAvatarId(UsernamePassword("alice", "no")), UnauthorizedLogin)
        self.assertIsNotNone(self.logins.retry_after("192.0.2.9"))
        self.assertIsNone(self.logins.retry_after("192.0.2.8"))

    def test_file_changes_reach_remembered_logins(self):
        self.assertEqual(self.successResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass")), "alice")
        write(self.path, ["bob:" + bcrypt_hash("b-pass")])
        self.failureResultOf(self.logins.login("192.0.2.1", b"alice", b"a-pass"), UnauthorizedLogin)
        os.remove(self.path)
        self.failureResultOf(self.logins.login("192.0.2.1", b"bob", b"b-pass"), UnauthorizedLogin)


class ShownUserTests(SynchronousTestCase):
    def test_shown(self):
        self.assertEqual(shown_user(b"alice"), "alice")
        self.assertEqual(shown_user("jos\u00e9"), "jos\u00e9")
        self.assertEqual(shown_user(b""), '""')
        self.assertEqual(shown_user(b"a b\tc\\d\x00"), "a\\x20b\\tc\\\\d\\x00")
        self.assertEqual(shown_user(b"\x1b[31mred"), "\\x1b[31mred")
        self.assertEqual(shown_user('say "hi"'), "say\\x20\\x22hi\\x22")
        long = shown_user(b"\xff" * 100)
        self.assertTrue(long.endswith("...") and len(long) <= SHOWN_USER + 3)
        self.assertEqual(shown_user("\u202eevil"), "\\u202eevil")
