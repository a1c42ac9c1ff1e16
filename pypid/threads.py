"""
The one way into threads. A L{Threads} callable is made once, in
C{makeService}, from a bounded thread pool, and handed to every part that
has blocking work (scans, archive checks, landing files, password checks):
C{threads(f, *args)} runs C{f(*args)} in the pool and returns a L{Deferred}
that fires on the reactor thread with its result.

Tests hand the same parts L{immediate}, which runs the work at once in the
calling thread, so that a synchronous test sees its result without a
reactor.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, ParamSpec, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.internet.threads import deferToThreadPool

_P = ParamSpec("_P")
_T = TypeVar("_T")
_S = TypeVar("_S")
_V = TypeVar("_V")


class Threads(Protocol):
    """Runs a blocking callable away from the reactor thread: C{threads(f, *args)}."""

    def __call__(self, f: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]: ...


def pool_threads(reactor: Any, pool: Any = None) -> Threads:
    """
    A L{Threads} running work in C{pool} (a L{twisted.python.threadpool.ThreadPool},
    bounded), by default the reactor's own pool, whose results come back
    through C{reactor}.
    """

    def run(f: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        return deferToThreadPool(reactor, pool if pool is not None else reactor.getThreadPool(), f, *args, **kwargs)

    return run


def immediate(f: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
    """A L{Threads} for synchronous tests: runs C{f} at once, in the calling thread."""
    return maybeDeferred(f, *args, **kwargs)


class Prepared(Generic[_S, _V]):
    """
    A value worth preparing once per version of some state, in a thread:
    a page whose size grows with the index (the project list, the search
    index of every project), built from the state's current version when
    first asked for after a change, and kept until the next change.

    L{get} answers at once with the value of the current version, or with
    a L{Deferred} that fires once a build of that version (or a newer one)
    is done: requests wait for it without holding the reactor. One build
    runs at a time; changes meanwhile are covered by one more build after
    it, of whatever is then current, for those who asked since.

    @param state: returns the current state (an immutable snapshot), read
        on the reactor thread when a build starts.
    @param build: makes the value from a state; runs in C{threads}, or at
        once in the caller's thread when C{threads} is L{None} (synchronous
        tests, small tools).
    """

    def __init__(self, state: Callable[[], _S], build: Callable[[_S], _V], threads: "Threads | None" = None) -> None:
        self._state = state
        self._build = build
        self._threads = threads
        #: Goes up by one with every change (L{invalidate}).
        self.version = 0
        self._value: Optional[_V] = None
        self._value_version = -1
        self._running = False
        self._waiters: list[tuple[int, Deferred[_V]]] = []
        #: Builds done so far (what the tests count).
        self.builds = 0

    def invalidate(self) -> None:
        """The state has changed: the next L{get} needs a new build."""
        self.version += 1

    def peek(self) -> Optional[_V]:
        """The value of the current version if it is built, else L{None}."""
        return self._value if self._value_version == self.version else None

    def latest(self) -> Optional[_V]:
        """The value built last, whatever its version (L{None} before the first)."""
        return self._value

    def get(self) -> "_V | Deferred[_V]":
        """The value of the current version, or a L{Deferred} of it."""
        if self._value_version == self.version:
            # Built (so a _V, even if that is None).
            return cast(_V, self._value)
        if self._threads is None:
            version = self.version
            self._value = self._build(self._state())
            self._value_version = version
            self.builds += 1
            return self._value
        d: Deferred[_V] = Deferred()
        self._waiters.append((self.version, d))
        if not self._running:
            self._start()
        return d

    def _start(self) -> None:
        self._running = True
        version = self.version
        threads = self._threads
        assert threads is not None  # (without threads, get() builds at once)
        built = threads(self._build, self._state())
        built.addBoth(self._done, version)

    def _done(self, result: "_V | Failure", version: int) -> None:
        self._running = False
        self.builds += 1
        if not isinstance(result, Failure) and version >= self._value_version:
            # (The old value goes now, not when the next one is asked for.)
            self._value, self._value_version = result, version
        served = [d for wanted, d in self._waiters if wanted <= version]
        self._waiters = [(wanted, d) for wanted, d in self._waiters if wanted > version]
        for d in served:
            if not d.called:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)
        if self._waiters:
            self._start()
