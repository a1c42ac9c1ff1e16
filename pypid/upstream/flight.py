"""
Single flight: one operation per key however many callers ask for it at
once. Every caller gets its own observer Deferred; cancelling an observer
(a client that went away) detaches only that observer and never cancels the
shared operation, which runs to its end for the others and for the cache.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure


class SingleFlight:
    def __init__(self) -> None:
        self._flights: dict[Hashable, list[Deferred]] = {}
        #: How many operations were started, for tests and statistics.
        self.started = 0

    def busy(self, key: Hashable) -> bool:
        return key in self._flights

    def run(self, key: Hashable, start: Callable[[], Any]) -> Deferred:
        """
        Observe the operation running under C{key}, starting it with
        C{start()} (which may return a Deferred or a plain value) when none
        runs.
        """
        observers = self._flights.get(key)
        first = observers is None
        if observers is None:
            observers = self._flights[key] = []
        observer = self._observer(observers)
        if first:
            self.started += 1
            maybeDeferred(start).addBoth(self._finished, key)
        return observer

    @staticmethod
    def _observer(observers: list[Deferred]) -> Deferred:
        def cancel(d: Deferred) -> None:
            if d in observers:
                observers.remove(d)
            # Deferred errbacks the observer with CancelledError itself.

        d: Deferred = Deferred(cancel)
        observers.append(d)
        return d

    def _finished(self, result: Any, key: Hashable) -> None:
        observers = self._flights.pop(key, [])
        for d in observers:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        return None
