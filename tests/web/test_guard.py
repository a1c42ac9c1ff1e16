"""HTTP Basic in front of a resource: 401, 429 with Retry-After, 503 (StubTreq, no sockets)."""

from __future__ import annotations

import base64

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pypid.auth.htpasswd import HtpasswdChecker
from pypid.auth.limiter import FailureLimiter
from pypid.auth.logins import Logins
from pypid.web.guard import Authenticator, Guard
from tests.auth.test_htpasswd import Clock, HeldThreads, bcrypt_hash, write


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello " + request.pypid_user.encode()


def basic(user: str, password: str) -> dict:
    return {b"Authorization": [b"Basic " + base64.b64encode(f"{user}:{password}".encode())]}


class GuardTests(SynchronousTestCase):
    def setUp(self):
        self.build(failures=2)

    def build(self, failures: int) -> None:
        path = self.mktemp()
        write(path, ["alice:" + bcrypt_hash("a-pass")])
        self.clock = Clock()
        self.threads = HeldThreads()
        checker = HtpasswdChecker(path, self.threads, clock=self.clock, max_pending=2)
        self.logins = Logins(checker, FailureLimiter(self.clock, failures=failures, period=30.0 * failures))
        self.authenticator = Authenticator(self.logins)
        self.treq = StubTreq(Guard(Hello(), self.authenticator))

    def get(self, headers=None, method="GET"):
        d = self.treq.request(method, "http://index.example/x", headers=headers or {})
        self.treq.flush()
        self.threads.run_all()
        self.treq.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(self.treq.content(response))
        return response, body

    def test_challenge_then_login(self):
        response, _ = self.get()
        self.assertEqual(response.code, 401)
        self.assertTrue(response.headers.getRawHeaders(b"www-authenticate")[0].startswith(b'Basic realm="pypid"'))
        response, body = self.get(basic("alice", "a-pass"))
        self.assertEqual((response.code, body), (200, b"hello alice"))

    def test_too_many_failures_is_429_with_retry_after(self):
        for _ in range(2):
            self.assertEqual(self.get(basic("alice", "wrong"))[0].code, 401)
        for credentials in (basic("alice", "wrong"), basic("alice", "a-pass"), basic("zed", "")):
            response, body = self.get(credentials)
            self.assertEqual(response.code, 429)
            self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"30"])
            self.assertIn(b"try again in 30 seconds", body)
            self.assertEqual(self.threads.work, [], "nothing was checked")
        response, body = self.get(basic("alice", "a-pass"), method="HEAD")
        self.assertEqual((response.code, body), (429, b""))
        # No credentials: still the challenge (pip's first request never has any).
        self.assertEqual(self.get()[0].code, 401)
        self.clock.now += 30
        self.assertEqual(self.get(basic("alice", "a-pass"))[0].code, 200)

    def test_blocked_answer_for_early_callers(self):
        self.assertIsNone(self.authenticator.blocked("192.0.2.1"))
        for _ in range(2):
            d = self.logins.login("192.0.2.1", b"alice", b"no")
            self.threads.run_all()
            self.failureResultOf(d)
        refused = self.authenticator.blocked("192.0.2.1")
        self.assertEqual((refused.code, refused.headers), (429, ((b"Retry-After", b"30"),)))

    def test_busy_is_503(self):
        """Too many checks waiting (here 2): 503, and it costs the client nothing."""
        self.build(failures=10)
        held = [self.treq.request("GET", "http://index.example/x", headers=basic("alice", f"p{i}"))
                for i in range(2)]
        self.treq.flush()
        d = self.treq.request("GET", "http://index.example/x", headers=basic("alice", "a-pass"))
        self.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"2"])
        self.threads.run_all()
        self.treq.flush()
        self.assertEqual([self.successResultOf(h).code for h in held], [401, 401])
