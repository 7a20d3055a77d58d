"""The state :class:`~sipsca.runtime.forwarding.ProxyCore` keeps per proxied server transaction.

One :class:`Forwarded` per request relayed statefully: its response context, timer C,
the 2xx already seen (a retransmission is relayed but not tracked again), whether DNS is
still being asked, and the failover state of the branches that have more targets.
"""

from __future__ import annotations

import asyncio

from sipsca.proxy.context import ResponseContext
from sipsca.runtime.failover import Failover
from sipsca.sip.message import SipRequest, SipResponse

__all__ = ["Forwarded"]


class Forwarded:
    """A proxied server transaction."""

    __slots__ = (
        "answered",
        "arrived",
        "context",
        "failover",
        "key",
        "request",
        "resolving",
        "sca",
        "sca_request",
        "stopped",
        "timer_c",
    )

    def __init__(
        self,
        key: str,
        request: SipRequest,
        context: ResponseContext,
        sca: bool,
        sca_request: SipRequest,
        *,
        arrived: float,
    ) -> None:
        self.key = key
        self.arrived = arrived
        """When it was relayed (monotonic clock): a non-INVITE fails over only while the
        caller still waits for it (64*T1, its timer F)."""
        self.request = request
        self.context = context
        self.sca = sca
        self.sca_request = sca_request
        self.timer_c: asyncio.TimerHandle | None = None
        self.answered: set[str] = set()
        """To-tags of the 2xx already seen: a retransmitted 2xx is relayed, not re-tracked."""
        self.resolving = False
        """DNS is being asked for a next hop: no branch exists yet (see ``relay``)."""
        self.failover: dict[str, Failover] | None = None
        """Branches with more targets to try, by the context's key (made when needed)."""
        self.stopped = False
        """No branch may move to another target: the caller cancelled, or a 6xx arrived
        (RFC 3261 16.7 step 5, 16.10: no new branches)."""

    def add_failover(self, failover: Failover) -> None:
        """``failover.branch`` has more targets than the one it was sent to."""
        if self.failover is None:
            self.failover = {}
        self.failover[failover.branch] = failover

    def failover_of(self, branch: str) -> Failover | None:
        """The failover state of ``branch`` (the context's key), if it has more targets."""
        return self.failover.get(branch) if self.failover is not None else None

    def stop_timer_c(self) -> None:
        if self.timer_c is not None:
            self.timer_c.cancel()
            self.timer_c = None

    def first_time(self, response: SipResponse) -> bool:
        """False for a retransmitted 2xx (same To-tag): Kamailio re-NOTIFYs those, we don't."""
        if not 200 <= response.status < 300:
            return True
        tag = response.to_tag or ""
        if tag in self.answered:
            return False
        self.answered.add(tag)
        return True
