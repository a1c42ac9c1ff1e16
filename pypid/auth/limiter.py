"""
Failed logins limited per client: pure logic, with the clock injected.

Each client has a budget of C{failures} failed logins that refills at
C{failures} per C{period} seconds (a token bucket). A password check takes
one from the budget before it starts (so that concurrent attempts cannot
overdraw it) and gives it back when the password was right. A client with
nothing left is refused without a check until the budget has refilled by
one: L{FailureLimiter.retry_after} says how long that is.

Clients are keyed by address: an IPv6 address by its /64 network (one
host usually holds a whole /64), an IPv4-mapped IPv6 address as IPv4.
At most C{max_clients} are remembered; beyond that the one seen least
recently is forgotten first.
"""

from __future__ import annotations

import collections
import ipaddress
import math
from typing import Callable, Optional

#: Failed logins a client may make in a row, and the time in which they refill.
FAILURES = 10
PERIOD = 60.0
MAX_CLIENTS = 10_000


def client_key(host: str) -> str:
    """The key that failed logins from C{host} are counted under."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimiter:
    def __init__(self, clock: Callable[[], float], failures: int = FAILURES, period: float = PERIOD,
                 max_clients: int = MAX_CLIENTS) -> None:
        if failures < 1 or period <= 0:
            raise ValueError("failures >= 1 and period > 0")
        self._clock = clock
        self.failures = failures
        self.period = period
        self._rate = failures / period
        self._max_clients = max_clients
        # key -> (budget left, when it was last brought up to date)
        self._budgets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def _budget(self, key: str, now: float) -> float:
        entry = self._budgets.get(key)
        if entry is None:
            return float(self.failures)
        left, then = entry
        return min(float(self.failures), left + max(0.0, now - then) * self._rate)

    def _store(self, key: str, left: float, now: float) -> None:
        if left >= self.failures:
            self._budgets.pop(key, None)
            return
        self._budgets[key] = (left, now)
        self._budgets.move_to_end(key)
        while len(self._budgets) > self._max_clients:
            self._budgets.popitem(last=False)

    def retry_after(self, key: str) -> Optional[int]:
        """Whole seconds until C{key} may try again, or None when it may now."""
        left = self._budget(key, self._clock())
        if left >= 1.0:
            return None
        return max(1, math.ceil((1.0 - left) / self._rate))

    def reserve(self, key: str) -> Optional[int]:
        """
        Take one failure from C{key}'s budget before a check: None when
        taken, else the seconds to wait (nothing taken).
        """
        now = self._clock()
        left = self._budget(key, now)
        if left < 1.0:
            return max(1, math.ceil((1.0 - left) / self._rate))
        self._store(key, left - 1.0, now)
        return None

    def refund(self, key: str) -> None:
        """The reserved check succeeded (or never ran): give its failure back."""
        now = self._clock()
        self._store(key, min(float(self.failures), self._budget(key, now) + 1.0), now)

    def blocked(self) -> int:
        """How many clients may not try now (for metrics and tests)."""
        now = self._clock()
        return sum(1 for key in self._budgets if self._budget(key, now) < 1.0)
