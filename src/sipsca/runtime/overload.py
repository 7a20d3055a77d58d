"""Overload control: when to shed new dialogs with 503 + Retry-After.

A UDP server that cannot keep up does not fail loudly: requests queue in the socket's
receive buffer (megabytes, seconds of work), every one of them is served too late, the
clients retransmit and time out, and the extra retransmissions make it worse. Shedding
early keeps the queue short, so what is accepted completes in time and the rest gets a
cheap, immediate 503 that tells the client when to come back (RFC 3261 21.5.4, like
Kamailio's ratelimit/pike answers).

Two signals, either one sheds: the bytes waiting in the UDP receive buffer (hysteresis
between ``high`` and ``low``), and event-loop lag (a blocked loop, slow storage, TCP).
"""

from __future__ import annotations

__all__ = ["OverloadGuard"]


class OverloadGuard:
    """Pure state: fed the receive backlog per datagram and the loop-lag verdict."""

    __slots__ = ("_queue_full", "episodes", "high", "lagging", "low", "shed")

    def __init__(self, high_bytes: int, low_bytes: int | None = None) -> None:
        self.high = high_bytes
        self.low = high_bytes // 4 if low_bytes is None else low_bytes
        self.lagging = False
        self._queue_full = False
        self.episodes = 0
        """How many times the receive backlog crossed ``high`` (shedding episodes)."""
        self.shed = 0
        """Requests answered 503 because of overload."""

    @property
    def active(self) -> bool:
        return self._queue_full or self.lagging

    def observe_backlog(self, queued_bytes: int) -> bool:
        """Update with the bytes still queued after the datagram just read; True = shed."""
        if self.high > 0:
            if self._queue_full:
                if queued_bytes <= self.low:
                    self._queue_full = False
            elif queued_bytes > self.high:
                self._queue_full = True
                self.episodes += 1
        return self._queue_full or self.lagging
