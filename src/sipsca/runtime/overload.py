"""Overload control: when to shed new dialogs with 503 + Retry-After.

A UDP server that cannot keep up does not fail loudly: requests queue in the socket's
receive buffer (megabytes, seconds of work), every one of them is served too late, the
clients retransmit and time out, and the extra retransmissions make it worse. Shedding
early keeps the queue short, so what is accepted completes in time and the rest gets a
cheap, immediate 503 that tells the client when to come back (RFC 3261 21.5.4, like
Kamailio's ratelimit/pike answers).

Two signals, either one sheds:

* the bytes waiting in the UDP receive buffer: above ``high`` *and grown over two
  consecutive sampling windows* (a queue left by a short pause, a GC run or a burst grows
  once and then drains by itself: that is not overload), or above ``4 * high`` whatever
  its trend; shedding lasts until the queue is down to ``low`` (half of ``high``);
* event-loop lag (a blocked loop, slow storage, TCP).
"""

from __future__ import annotations

__all__ = ["OverloadGuard"]

TREND_WINDOW = 0.1
"""Seconds between the backlog samples that tell a growing queue from a draining one."""


class OverloadGuard:
    """Pure state: fed the receive backlog per datagram (with the clock) and the lag verdict."""

    __slots__ = (
        "_queue_full",
        "_ref_bytes",
        "_ref_time",
        "_rises",
        "high",
        "lagging",
        "low",
        "shed",
    )

    def __init__(self, high_bytes: int, low_bytes: int | None = None) -> None:
        self.high = high_bytes
        self.low = high_bytes // 2 if low_bytes is None else low_bytes
        self.lagging = False
        self._queue_full = False
        self._ref_bytes = -1
        """Backlog at the last sample (-1: none yet)."""
        self._ref_time = 0.0
        self._rises = 0
        """Consecutive sampling windows over which the backlog grew."""
        self.shed = 0
        """Requests answered 503 because of overload."""

    @property
    def active(self) -> bool:
        return self._queue_full or self.lagging

    def observe_backlog(self, queued_bytes: int, now: float) -> bool:
        """Update with the bytes still queued after the datagram just read; True = shed."""
        if self.high <= 0:
            return self.lagging
        if now - self._ref_time >= TREND_WINDOW:
            if self._ref_bytes >= 0:
                self._rises = self._rises + 1 if queued_bytes > self._ref_bytes else 0
            self._ref_bytes, self._ref_time = queued_bytes, now
        if self._queue_full:
            if queued_bytes <= self.low:
                self._queue_full = False
        elif queued_bytes > self.high and (self._rises >= 2 or queued_bytes > 4 * self.high):
            self._queue_full = True
        return self._queue_full or self.lagging
