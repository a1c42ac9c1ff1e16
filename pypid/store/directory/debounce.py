"""A trailing-edge debounce with a cap on the total delay, on an injected clock."""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Debouncer:
    """
    Call C{action} once activity stops: C{quiet} seconds after the last
    L{poke}, but never later than C{max_delay} seconds after the first poke
    of a burst, so that a copy that goes on for minutes still shows its
    files as it goes. Reactor thread only.
    """

    def __init__(self, clock: IReactorTime, quiet: float, max_delay: float, action: Callable[[], object]) -> None:
        if max_delay < quiet:
            raise ValueError("max_delay must be at least quiet")
        self.clock = clock
        self.quiet = quiet
        self.max_delay = max_delay
        self.action = action
        self._call: Optional[IDelayedCall] = None
        self._first = 0.0

    @property
    def pending(self) -> bool:
        """Whether a call of C{action} is scheduled."""
        return self._call is not None

    def poke(self) -> None:
        """Something happened: call C{action} once things are quiet."""
        now = self.clock.seconds()
        if self._call is None:
            self._first = now
            self._call = self.clock.callLater(self.quiet, self._fire)
            return
        remaining = self._first + self.max_delay - now
        self._call.reset(max(0.0, min(self.quiet, remaining)))

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _fire(self) -> None:
        self._call = None
        self.action()
