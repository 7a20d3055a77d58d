"""Event-loop timers on a fixed grid, shared by the transaction layer and the SCA engine.

The sans-I/O cores only report their next deadline (``get_timer()``); the runtime turns that
into one loop timer per core. Rounding deadlines up to a :data:`TIMER_TICK` grid lets the
deadlines of a burst of transactions share callbacks (`docs/decisions.md` 16).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["TIMER_TICK", "GridTimer", "timer_tick_after"]

TIMER_TICK = 0.01
"""Loop timers fire on this grid (seconds), so the deadlines of the thousands of transactions
started each second under load share a few callbacks instead of one each (RFC 3261 timers
are 500 ms and up; 10 ms late is nothing to them)."""


def timer_tick_after(deadline: float) -> float:
    """The first grid point at or after ``deadline``."""
    return math.ceil(deadline / TIMER_TICK) * TIMER_TICK


class GridTimer:
    """One event-loop timer on the TIMER_TICK grid, re-armed only for an earlier point.

    When the earliest deadline moves later (its transaction ended) the armed timer just
    fires early and finds nothing due; re-arming on every change would cost a cancel and a
    call_later for nearly every message.
    """

    __slots__ = ("handle", "tick")

    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None
        self.tick: float | None = None

    def arm(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        now: float,
        callback: Callable[[], None],
    ) -> None:
        tick = timer_tick_after(deadline)
        if self.tick is None or tick < self.tick:
            if self.handle is not None:
                self.handle.cancel()
            self.tick = tick
            self.handle = loop.call_later(max(0.0, tick - now), callback)

    def fired(self) -> float:
        """Forget the handle that just ran; its grid point (0.0 if none was armed)."""
        tick = self.tick or 0.0
        self.handle = self.tick = None
        return tick

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.tick = None
