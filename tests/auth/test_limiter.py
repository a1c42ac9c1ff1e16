"""Failed logins limited per client (pure logic, injected clock)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pypid.auth.limiter import FailureLimiter, client_key


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self):
        return self.now


class LimiterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.limiter = FailureLimiter(self.clock, failures=3, period=30.0)

    def test_budget_then_blocked_then_refilled(self):
        for _ in range(3):
            self.assertIsNone(self.limiter.retry_after("a"))
            self.assertIsNone(self.limiter.reserve("a"))
        self.assertEqual(self.limiter.retry_after("a"), 10)
        self.assertEqual(self.limiter.reserve("a"), 10)
        self.assertIsNone(self.limiter.retry_after("b"), "other clients are not affected")
        self.assertEqual(self.limiter.blocked(), 1)
        self.clock.now += 9.5
        self.assertEqual(self.limiter.retry_after("a"), 1)
        self.clock.now += 0.5
        self.assertIsNone(self.limiter.reserve("a"))
        self.assertEqual(self.limiter.reserve("a"), 10)
        self.clock.now += 1000
        self.assertEqual(self.limiter.blocked(), 0)
        for _ in range(3):
            self.assertIsNone(self.limiter.reserve("a"))
        self.assertIsNotNone(self.limiter.reserve("a"))

    def test_refund_for_success(self):
        for _ in range(20):
            self.assertIsNone(self.limiter.reserve("a"))
            self.limiter.refund("a")
        self.assertEqual(self.limiter._budgets, {}, "a client at a full budget is not remembered")

    def test_concurrent_reservations_cannot_overdraw(self):
        taken = [self.limiter.reserve("a") for _ in range(10)]
        self.assertEqual(taken.count(None), 3)

    def test_bounded_memory(self):
        limiter = FailureLimiter(self.clock, failures=1, period=60.0, max_clients=100)
        for i in range(1000):
            limiter.reserve(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(len(limiter._budgets), 100)
        self.assertIsNotNone(limiter.retry_after("10.0.3.231"), "the most recent are kept")

    def test_bad_settings(self):
        with self.assertRaises(ValueError):
            FailureLimiter(self.clock, failures=0)


class ClientKeyTests(SynchronousTestCase):
    def test_keys(self):
        self.assertEqual(client_key("192.0.2.7"), "192.0.2.7")
        self.assertEqual(client_key("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(client_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64")
        self.assertEqual(client_key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64")
        self.assertEqual(client_key("fe80::1%eth0"), "fe80::/64")
        self.assertEqual(client_key("-"), "-")
