"""Stateful forwarding (RFC 3261 16): one response context per server transaction.

The pure :class:`~sipsca.proxy.context.ResponseContext` decides which response goes
upstream and which branches to cancel; this module moves the messages, runs timer C and
feeds the SCA engine with every response sent toward the caller.

DNS failover (RFC 3263 4.3): a branch whose next hop resolved to several targets (SRV
records, addresses; all of one transport) keeps them in a :class:`_Failover`. When the
target it was sent to cannot be reached (transport error), does not answer at all (timer
B/F) or answers 503, the same request goes to the next target in a new client transaction
(a new Via branch). The response context keeps seeing one branch, under the key of its
first transaction, and hears of the failure only when no target is left or the branch may
not move on (the request was cancelled, timer C fired, a final went upstream, a 6xx
arrived, or the target had answered 101-199: the call went on there).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipsca.errors import RemoteProtocolError
from sipsca.proxy._hashing import local_tag
from sipsca.proxy.context import ContextAction, ResponseContext
from sipsca.proxy.route import (
    branch_needs_tls,
    compute_branch,
    make_cancel,
    needs_tls,
    next_hop,
    prepare_forward,
    secure_transport,
    strip_own_via,
)
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.uri import SipUri
from sipsca.transaction import stateless_response_destination

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication
    from sipsca.runtime.routing import Target

__all__ = ["ProxyCore"]

logger = logging.getLogger(__name__)


class _Failover:
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


class _Forwarded:
    """A proxied server transaction."""

    __slots__ = (
        "answered",
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
    ) -> None:
        self.key = key
        self.request = request
        self.context = context
        self.sca = sca
        self.sca_request = sca_request
        self.timer_c: asyncio.TimerHandle | None = None
        self.answered: set[str] = set()
        """To-tags of the 2xx already seen: a retransmitted 2xx is relayed, not re-tracked."""
        self.resolving = False
        """DNS is being asked for a next hop: no branch exists yet (see ``relay``)."""
        self.failover: dict[str, _Failover] | None = None
        """Branches with more targets to try, by the context's key (made when needed)."""
        self.stopped = False
        """No branch may move to another target: the caller cancelled, or a 6xx arrived
        (RFC 3261 16.7 step 5, 16.10: no new branches)."""


def _stop_timer_c(fwd: _Forwarded) -> None:
    if fwd.timer_c is not None:
        fwd.timer_c.cancel()
        fwd.timer_c = None


class ProxyCore:
    def __init__(self, app: SipApplication) -> None:
        self.app = app
        self.forwarded: dict[str, _Forwarded] = {}
        self.branch_of: dict[str, str] = {}
        self.cancels: set[str] = set()
        self.retry_of: dict[str, str] = {}
        """Client transaction of a failover attempt -> the context's key of its branch (the
        first attempt's transaction is that key itself and is not listed)."""

    # ------------------------------------------------------------------ requests
    def relay(
        self,
        request: SipRequest,
        source: Flow,
        key: str,
        targets: list[Target],
        *,
        sca: bool,
        member_call_info: str | None = None,
        sca_done: bool = False,
        record_route: bool | None = None,
    ) -> None:
        app = self.app
        router = app.router
        sca_request = request.copy() if sca else request  # as received, before SCA rewrites
        if sca and not sca_done:
            outcome = app.sca.on_request(request, now=app.clock.time())
            if outcome.reject is not None:
                router.send_reply(outcome.reject, key)
                return
            if outcome.retrieval_target:
                targets = [type(targets[0])(outcome.retrieval_target)]
            member_call_info = member_call_info or outcome.member_call_info
        invite = request.method == "INVITE"
        context = ResponseContext(request, invite=invite)
        fwd = _Forwarded(key, request, context, sca, sca_request)
        self.forwarded[key] = fwd
        if invite:
            router.reply(request, key, 100, "Trying")
        if record_route is None:
            record_route = app.config.proxy.record_route and request.method in (
                "INVITE",
                "SUBSCRIBE",
                "REFER",
            )
        dests: list[tuple[Flow, ...]] = []
        lookups: list[tuple[int, SipUri]] = []
        for index, target in enumerate(targets):
            flows, hop = self._destination(request, target)
            if not flows and hop is not None and app.resolver.must_query(hop):
                lookups.append((index, hop))
            dests.append(flows)
        if invite and targets:
            self._arm_timer_c(fwd)
        if lookups:
            # Host names not cached: fork once DNS has answered for every one of them, so
            # every branch is still added before any outcome is fed to the context.
            fwd.resolving = True
            app.spawn(
                self._resolve_and_fork(
                    fwd, source, targets, dests, lookups, record_route, member_call_info
                )
            )
            return
        self._fork_all(fwd, source, targets, dests, record_route, member_call_info)

    def _destination(
        self, request: SipRequest, target: Target
    ) -> tuple[tuple[Flow, ...], SipUri | None]:
        """Where a branch to ``target`` goes: (flows known now, in the order to try them;
        next-hop URI to resolve)."""
        if target.flow is not None:  # a registered flow is known
            return (target.flow,), None
        # the probe only tells the next hop (Route, Path or the target itself)
        probe = prepare_forward(
            request,
            target=target.uri,
            via="SIP/2.0/UDP 0.0.0.0;branch=x",
            record_route=[],
            path=target.path,
        )
        try:
            hop = next_hop(probe)
        except RemoteProtocolError:
            return (), None
        return self.app.resolver.targets_now(hop), hop

    async def _resolve_and_fork(
        self,
        fwd: _Forwarded,
        source: Flow,
        targets: list[Target],
        dests: list[tuple[Flow, ...]],
        lookups: list[tuple[int, SipUri]],
        record_route: bool,
        member_call_info: str | None,
    ) -> None:
        """Resolve the next hops DNS must tell (in parallel), then fork (runs as a task)."""
        resolver = self.app.resolver
        try:
            answers = await asyncio.gather(
                *(resolver.resolve_targets(hop) for _, hop in lookups), return_exceptions=True
            )
        finally:
            fwd.resolving = False
        if self.forwarded.get(fwd.key) is not fwd or fwd.context.done:
            return  # cancelled (487 sent) or its server transaction ended meanwhile
        for (index, _), flows in zip(lookups, answers, strict=True):
            dests[index] = flows if isinstance(flows, tuple) else ()  # an error: no answer
        self._fork_all(fwd, source, targets, dests, record_route, member_call_info)

    def _fork_all(
        self,
        fwd: _Forwarded,
        source: Flow,
        targets: list[Target],
        dests: list[tuple[Flow, ...]],
        record_route: bool,
        member_call_info: str | None,
    ) -> None:
        context = fwd.context
        unresolved: list[str] = []
        for index, target in enumerate(targets):
            failed = self._fork(
                fwd, source, target, index, dests[index], record_route, member_call_info
            )
            if failed is not None:
                unresolved.append(failed)
        for failed in unresolved:  # every branch is added before any outcome is fed in
            if failed.startswith("insecure-"):  # 480 + Warning: 380 SIPS Not Allowed
                warning = self.app.router.sips_warning()
                self._apply(fwd, context.on_branch_refused(failed, 480, warning=warning))
                continue
            self._apply(fwd, context.on_transport_error(failed))
        if not targets:
            self._apply(fwd, context.on_no_branches())

    def _fork(
        self,
        fwd: _Forwarded,
        source: Flow,
        target: Target,
        index: int,
        flows: tuple[Flow, ...],
        record_route: bool,
        member_call_info: str | None,
    ) -> str | None:
        """Send one branch to ``flows[0]`` (the others are its failover targets); returns
        the key of a branch without a destination."""
        app = self.app
        router = app.router
        branch = compute_branch(fwd.request, index)
        dest = flows[0] if flows else None
        if dest is None:
            logger.info("cannot resolve %s", target.uri)
            key = "unresolved-" + branch
            fwd.context.add_branch(key, fwd.request, target.uri)
            return key
        sips = branch_needs_tls(fwd.request, target.uri, target.path)
        # RFC 5630 5.3: TLS only (and without a TLS listener there is no TLS client either)
        if sips and not (secure_transport(dest.transport) and router.tls_listener()):
            logger.info("not sending %s over %s: a sips: target needs TLS", target.uri, dest)
            key = "insecure-" + branch
            fwd.context.add_branch(key, fwd.request, target.uri)
            return key
        rr: list[str] = []
        if record_route:
            inbound = router.record_route_uri(source.transport, sips=needs_tls(fwd.request))
            outbound = router.record_route_uri(dest.transport, sips=sips)
            rr = [inbound] if inbound == outbound else [outbound, inbound]
        out = prepare_forward(
            fwd.request,
            target=target.uri,
            via=router.via_value(dest, branch),
            record_route=rr,
            path=target.path,
        )
        if member_call_info and out.method == "INVITE":
            out.headers.add("Call-Info", member_call_info)
        key = app.send_request(out, dest)
        fwd.context.add_branch(key, out, target.uri)
        self.branch_of[key] = fwd.key
        if len(flows) > 1:
            if fwd.failover is None:
                fwd.failover = {}
            fwd.failover[key] = _Failover(key, out, flows, target.uri, index)
        return None

    def forward_stateless(self, request: SipRequest) -> None:
        """End-to-end ACK for a 2xx: forwarded without a transaction (RFC 3261 16.11)."""
        app = self.app
        try:
            if request.max_forwards == 0:
                return  # nobody to answer 483 to: an ACK is dropped
            hop = next_hop(request)
            dest = app.resolver.resolve_now(hop)
        except RemoteProtocolError:
            return
        if dest is None:
            if app.resolver.must_query(hop):
                app.spawn(self._resolve_and_send(request, hop))
            return
        self._send_stateless(request, dest)

    async def _resolve_and_send(self, request: SipRequest, hop: SipUri) -> None:
        dest = await self.app.resolver.resolve(hop)
        if dest is not None:
            self._send_stateless(request, dest)

    def _send_stateless(self, request: SipRequest, dest: Flow) -> None:
        app = self.app
        if needs_tls(request) and not secure_transport(dest.transport):
            return  # a sips: ACK never leaves without TLS (RFC 5630 5.3); nobody to answer
        branch = compute_branch(request)
        out = prepare_forward(
            request, target=request.uri, via=app.router.via_value(dest, branch), record_route=[]
        )
        app.tl.send_stateless(out, destination=dest)

    def sca_local_failure(self, request: SipRequest, key: str, status: int) -> None:
        """A failure we answered ourselves (404/480) to a tracked INVITE (Kamailio sl callback)."""
        if request.method != "INVITE":
            return
        response = make_response(request, status)
        self.app.sca.on_response(response, request, now=self.app.clock.time())

    # ------------------------------------------------------------------ CANCEL
    def on_cancel(self, cancel: SipRequest, source: Flow, key: str, invite_key: str | None) -> None:
        app = self.app
        router = app.router
        if invite_key is None:
            router.reply(cancel, key, 481)
            return
        router.reply(cancel, key, 200, "canceling")
        fwd = self.forwarded.get(invite_key)
        app.sca.on_request(cancel, now=app.clock.time())
        if fwd is None:
            # Not proxied, or already finished: a final response went upstream, and then
            # the CANCEL has no effect (RFC 3261 9.2).
            invite = app.tl.server_request(invite_key)
            if invite is not None and app.tl.server_state(invite_key) == "proceeding":
                router.reply(invite, invite_key, 487, "Request Terminated")
            return
        fwd.stopped = True  # 16.10: no new branches, no other target either
        if fwd.resolving:
            # No branch yet (DNS pending): answer 487 now; nothing is forked when the
            # answer comes (RFC 3261 16.10: no new branches after a CANCEL).
            if fwd.context.invite:
                self._abandon(fwd, 487)
            return
        # RFC 3326: the caller's reason (e.g. answered elsewhere) goes on downstream
        reason = cancel.headers.get("reason")
        for branch in fwd.context.cancel_all():
            self._send_cancel(fwd, branch, reason)

    def _send_cancel(self, fwd: _Forwarded, branch: str, reason: str | None) -> None:
        """CANCEL ``branch`` (the context's key): the transaction running on it now."""
        app = self.app
        failover = fwd.failover.get(branch) if fwd.failover is not None else None
        if failover is None:
            sent = fwd.context.branch_request(branch)
            key = branch
        else:
            if failover.exhausted or failover.cancel_sent:
                return
            if not failover.responded:
                # The context saw a provisional response from an earlier target; this one
                # has sent none yet (RFC 3261 9.1): the CANCEL goes with its first one.
                failover.cancel_due = True
                failover.cancel_reason = reason
                return
            failover.cancel_due = False
            failover.cancel_sent = True
            sent, key = failover.request, failover.key
        dest = app.flow_of_key.get(key)
        if sent is None or dest is None:
            return
        cancel = make_cancel(sent, reason=reason)
        cancel_key = app.send_request(cancel, dest)
        self.cancels.add(cancel_key)

    # ------------------------------------------------------------------ responses
    def on_response(self, response: SipResponse, key: str) -> None:
        if key in self.cancels:
            return
        server_key = self.branch_of.get(key)
        fwd = self.forwarded.get(server_key) if server_key is not None else None
        if fwd is None:
            if server_key is not None:  # finished and released: only 2xx retransmissions
                self.on_stray_response(response)
            return
        if not strip_own_via(response):
            return
        branch = self.retry_of.get(key, key)
        failover = fwd.failover.get(branch) if fwd.failover is not None else None
        status = response.status
        if failover is not None:
            if failover.key != key:
                return  # a target already given up (its transaction is over)
            if status < 200:
                failover.responded = True
                failover.progressed = failover.progressed or status > 100
            elif status == 503:
                # RFC 3263 4.3: on to the next target; the 503 goes upstream only if none is
                # left
                self._failed(fwd, failover, answer=response)
                return
        if status >= 600:
            fwd.stopped = True  # 16.7 step 5: no new branches
        action = fwd.context.on_response(branch, response)
        if action.reset_timer_c and fwd.timer_c is not None:
            self._arm_timer_c(fwd)
        self._apply(fwd, action)
        if failover is not None and failover.cancel_due and failover.responded:
            self._send_cancel(fwd, branch, failover.cancel_reason)

    def on_branch_failure(self, key: str, *, timeout: bool) -> None:
        if key in self.cancels:
            return
        server_key = self.branch_of.get(key)
        fwd = self.forwarded.get(server_key) if server_key is not None else None
        if fwd is None:
            return
        branch = self.retry_of.get(key, key)
        failover = fwd.failover.get(branch) if fwd.failover is not None else None
        if failover is not None:
            if failover.key == key:  # else a target already given up
                self._failed(fwd, failover, timeout=timeout)
            return
        action = (
            fwd.context.on_branch_timeout(key) if timeout else fwd.context.on_transport_error(key)
        )
        self._apply(fwd, action)

    # ------------------------------------------------------------------ DNS failover
    def _failed(
        self,
        fwd: _Forwarded,
        failover: _Failover,
        *,
        timeout: bool = False,
        answer: SipResponse | None = None,
    ) -> None:
        """The running transaction of a failover branch failed: a transport error, a
        time-out or (``answer``) a 503. Send to the next target, or tell the context."""
        if timeout:
            failover.timed_out = True
        elif answer is not None:
            failover.answer = answer
        if self._may_fail_over(fwd, failover, timeout=timeout):
            why = "timed out" if timeout else "unreachable" if answer is None else "answered 503"
            self._next_target(fwd, failover, why)
            return
        failover.exhausted = True
        context = fwd.context
        if failover.timed_out:
            action = context.on_branch_timeout(failover.branch)
        elif failover.answer is not None:
            action = context.on_response(failover.branch, failover.answer)
        else:
            action = context.on_transport_error(failover.branch)
        self._apply(fwd, action)

    def _may_fail_over(self, fwd: _Forwarded, failover: _Failover, *, timeout: bool) -> bool:
        if failover.tried >= len(failover.flows):
            return False  # every target tried (a look-up gives at most MAX_TARGETS)
        if failover.progressed or (timeout and failover.responded):
            return False  # the target took the request (a 101-199, or timer F after a 1xx)
        if fwd.stopped or failover.cancel_due or failover.cancel_sent or fwd.context.done:
            return False  # cancelled, a 6xx, or a final already went upstream
        if self.forwarded.get(fwd.key) is not fwd:
            return False
        return failover.branch in fwd.context.pending  # not once timer C has ended it

    def _next_target(self, fwd: _Forwarded, failover: _Failover, why: str) -> None:
        """Send the same request again, in a new client transaction, to the next target.

        The targets of one look-up share their transport, so the request sent to the first
        (Record-Route, Call-Info and all) only needs a new Via: same sent-by, a branch of
        its own with the same loop hash (16.6 step 8) and a suffix per attempt.
        """
        app = self.app
        failed = failover.dest
        dest = failover.flows[failover.tried]
        branch = f"{compute_branch(fwd.request, failover.index)}.{failover.tried}"
        failover.tried += 1
        out = failover.request.copy()
        out.headers.pop_first_value("via")
        out.headers.prepend("Via", app.router.via_value(dest, branch))
        logger.info(
            "%s to %s: %s %s, trying %s", fwd.request.method, failover.target, failed, why, dest
        )
        key = app.send_request(out, dest)
        self.branch_of[key] = fwd.key
        self.retry_of[key] = failover.branch
        failover.key = key
        failover.request = out
        failover.dest = dest
        failover.responded = failover.progressed = False

    def on_stray_response(self, response: SipResponse) -> None:
        """2xx retransmissions whose client transaction is gone: forward statelessly (16.7)."""
        if response.cseq.method != "INVITE" or not 200 <= response.status < 300:
            return
        try:
            # Only a response whose top Via is ours goes on (RFC 4475 3.3.10 bcast): else
            # anyone could have us send a 2xx to the address in the next Via.
            if not strip_own_via(response, is_myself=self.app.router.is_myself):
                return
            via = response.top_via
        except RemoteProtocolError:
            return
        # received/rport of the caller's Via (RFC 3581), as the server transaction did
        dest = stateless_response_destination(via)
        self.app.sca.on_repeated_answer(response)
        self.app.tl.send_stateless(response, destination=dest)

    def _apply(self, fwd: _Forwarded, action: ContextAction) -> None:
        app = self.app
        for branch in action.cancel_branches:
            self._send_cancel(fwd, branch, action.cancel_reason)
        upstream = action.forward_upstream
        if upstream is not None:
            if fwd.sca and upstream.status > 100:
                if self._first_time(fwd, upstream):
                    app.sca.on_response(upstream, fwd.sca_request, now=app.clock.time())
                else:
                    app.sca.on_repeated_answer(upstream)
            app.tl.send_response(upstream, now=app.clock.monotonic(), key=fwd.key)
        if action.done:
            _stop_timer_c(fwd)
        if fwd.context.finished:
            self._release(fwd)

    def _abandon(self, fwd: _Forwarded, status: int) -> None:
        """Answer a request still waiting for DNS (no branch yet) and forget it."""
        fwd.context.cancel_all()  # closed: no branch can be added any more
        response = make_response(fwd.request, status, to_tag=local_tag(fwd.request))
        self._apply(fwd, ContextAction(forward_upstream=response, done=True))
        self._release(fwd)

    def _release(self, fwd: _Forwarded) -> None:
        """Forget a finished context at once instead of with its server transaction.

        The server transaction answers retransmissions from its own copy of the response for
        up to 32 s (timers J and L); the context, the requests and the responses it holds
        would otherwise wait with it, and at thousands of calls per second they are most of
        what the cyclic GC scans. Later 2xx retransmissions on a branch are relayed
        statelessly (:meth:`on_stray_response`), a late CANCEL has no effect (9.2).
        """
        if self.forwarded.get(fwd.key) is fwd:
            del self.forwarded[fwd.key]
        _stop_timer_c(fwd)

    @staticmethod
    def _first_time(fwd: _Forwarded, response: SipResponse) -> bool:
        """False for a retransmitted 2xx (same To-tag): Kamailio re-NOTIFYs those, we don't."""
        if not 200 <= response.status < 300:
            return True
        tag = response.to_tag or ""
        if tag in fwd.answered:
            return False
        fwd.answered.add(tag)
        return True

    # ------------------------------------------------------------------ timers / cleanup
    def _arm_timer_c(self, fwd: _Forwarded) -> None:
        loop = asyncio.get_running_loop()
        _stop_timer_c(fwd)
        fwd.timer_c = loop.call_later(
            self.app.config.transaction.timer_c, self._on_timer_c, fwd.key
        )

    def _on_timer_c(self, key: str) -> None:
        fwd = self.forwarded.get(key)
        if fwd is None:
            return
        fwd.timer_c = None
        if fwd.resolving:  # DNS took longer than timer C: 408, as for a silent branch
            self._abandon(fwd, 408)
        for branch in list(fwd.context.pending):
            self._apply(fwd, fwd.context.on_branch_timeout(branch))
        self.app.pump()

    def on_terminated(self, key: str) -> None:
        self.cancels.discard(key)
        self.retry_of.pop(key, None)
        server_key = self.branch_of.pop(key, None)
        if server_key is None:
            fwd = self.forwarded.get(key)
            if fwd is not None and not fwd.context.pending:
                self._release(fwd)
