"""DNS failover of one branch (RFC 3263 4.3): the targets left, and why the last one failed.

A branch whose next hop resolved to several targets (SRV records, addresses; all of one
transport) keeps them in a :class:`Failover`. When the target it was sent to cannot be
reached (transport error), does not answer at all (timer B/F) or answers 503, the same
request goes to the next target in a new client transaction (a new Via branch). The
response context keeps seeing one branch, under the key of its first transaction, and
hears of the failure only when no target is left or the branch may not move on (the
request was cancelled, timer C fired, a final went upstream, a 6xx arrived, or the target
had answered 101-199: the call went on there).

This module holds the bookkeeping and makes those decisions, without I/O;
:class:`~sipsca.runtime.forwarding.ProxyCore` sends what they call for.
"""

from __future__ import annotations

from collections.abc import Callable

from sipsca.proxy.context import ContextAction, ResponseContext
from sipsca.proxy.route import compute_branch
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, SipResponse

__all__ = ["Failover"]


class Failover:
    """A branch with more targets than the one it is sent to (RFC 3263 4.3).

    ``branch`` is the key the response context knows the branch by (its first client
    transaction); ``key``, ``request`` and ``dest`` are those of the transaction running
    now. When every target has failed, the context is told the outcome it would choose had
    each attempt been a branch of its own: a time-out (408: the lower class), else a 503
    received (it becomes 500 upstream, 16.7 step 6), else our 503 for a transport error.
    """

    __slots__ = (
        "answer",
        "branch",
        "cancel_due",
        "cancel_reason",
        "cancel_sent",
        "dest",
        "exhausted",
        "flows",
        "index",
        "key",
        "progressed",
        "request",
        "responded",
        "target",
        "timed_out",
        "tried",
    )

    def __init__(
        self, key: str, request: SipRequest, flows: tuple[Flow, ...], target: str, index: int
    ) -> None:
        self.branch = key
        self.key = key
        self.request = request
        self.dest = flows[0]
        self.flows = flows
        self.tried = 1
        """Targets sent to so far (``flows[tried - 1]`` is ``dest``)."""
        self.target = target
        self.index = index
        self.responded = False
        """The running transaction had a provisional response."""
        self.progressed = False
        """The running transaction had a 101-199: the call went on there, it stays there."""
        self.answer: SipResponse | None = None
        """The last 503 a target answered."""
        self.timed_out = False
        """A target never answered (timer B/F)."""
        self.cancel_due = False
        """A CANCEL is wanted but the running transaction had no provisional response yet
        (RFC 3261 9.1): it is sent with the first one."""
        self.cancel_reason: str | None = None
        self.cancel_sent = False
        self.exhausted = False
        """The context has been told the outcome: nothing more is sent on this branch."""

    def provisional(self, status: int) -> None:
        """The running transaction had a provisional response ``status``."""
        self.responded = True
        self.progressed = self.progressed or status > 100

    def take_cancel(self, reason: str | None) -> tuple[SipRequest, str] | None:
        """The request and key of the running transaction to CANCEL now; None when nothing
        is to be sent now (the branch is over, its CANCEL went out, or it waits)."""
        if self.exhausted or self.cancel_sent:
            return None
        if not self.responded:
            # The context saw a provisional response from an earlier target; this one
            # has sent none yet (RFC 3261 9.1): the CANCEL goes with its first one.
            self.cancel_due = True
            self.cancel_reason = reason
            return None
        self.cancel_due = False
        self.cancel_sent = True
        return self.request, self.key

    def failed(
        self,
        context: ResponseContext,
        *,
        timeout: bool,
        answer: SipResponse | None,
        stopped: bool,
        current: bool,
        expired: bool = False,
    ) -> ContextAction | None:
        """The running transaction failed: a transport error, a time-out or (``answer``) a
        503. None when the branch goes on to the next target (:meth:`next_attempt`); else
        what ``context`` makes of the outcome (nothing more is sent on this branch).

        ``stopped``: no branch may move to another target (a CANCEL, a 6xx); ``current``:
        the forwarded request is still being served (not finished and released);
        ``expired``: the caller has given up waiting (a non-INVITE past its timer F).
        """
        if timeout:
            self.timed_out = True
        elif answer is not None:
            self.answer = answer
        if not expired and self._may_fail_over(
            context, timeout=timeout, stopped=stopped, current=current
        ):
            return None
        self.exhausted = True
        if self.timed_out:
            return context.on_branch_timeout(self.branch)
        if self.answer is not None:
            return context.on_response(self.branch, self.answer)
        return context.on_transport_error(self.branch)

    def _may_fail_over(
        self, context: ResponseContext, *, timeout: bool, stopped: bool, current: bool
    ) -> bool:
        if self.tried >= len(self.flows):
            return False  # every target tried (a look-up gives at most MAX_TARGETS)
        if self.progressed or (timeout and self.responded):
            return False  # the target took the request (a 101-199, or timer F after a 1xx)
        if stopped or self.cancel_due or self.cancel_sent or context.done:
            return False  # cancelled, a 6xx, or a final already went upstream
        if not current:
            return False
        return self.branch in context.pending  # not once timer C has ended it

    def next_attempt(
        self, original: SipRequest, via_value: Callable[[Flow, str], str]
    ) -> tuple[SipRequest, Flow]:
        """The same request again, for a new client transaction to the next target.

        The targets of one look-up share their transport, so the request sent to the first
        (Record-Route, Call-Info and all) only needs a new Via: same sent-by, a branch of
        its own with the same loop hash (16.6 step 8) and a suffix per attempt.
        ``original`` is the request as received (the loop hash is computed from it).
        """
        dest = self.flows[self.tried]
        branch = f"{compute_branch(original, self.index)}.{self.tried}"
        self.tried += 1
        out = self.request.copy()
        out.headers.pop_first_value("via")
        out.headers.prepend("Via", via_value(dest, branch))
        return out, dest

    def running(self, key: str, request: SipRequest, dest: Flow) -> None:
        """The attempt ``request`` to ``dest`` runs now, as client transaction ``key``."""
        self.key = key
        self.request = request
        self.dest = dest
        self.responded = self.progressed = False
