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

from typing import Any, Callable, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

_P = ParamSpec("_P")
_T = TypeVar("_T")


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
