"""Stateful forwarding (RFC 3261 16): one response context per server transaction.

The pure :class:`~sipsca.proxy.context.ResponseContext` decides which response goes
upstream and which branches to cancel; this module moves the messages, runs timer C and
feeds the SCA engine with every response sent toward the caller.

What a branch is sent (:mod:`~sipsca.runtime.branches`), DNS failover to the next target
of a branch (RFC 3263 4.3, :mod:`~sipsca.runtime.failover`) and relaying without a
transaction (:mod:`~sipsca.runtime.stateless_relay`) live in modules of their own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sipsca.proxy._hashing import local_tag
from sipsca.proxy.context import ContextAction, ResponseContext
from sipsca.proxy.route import (
    branch_needs_tls,
    compute_branch,
    make_cancel,
    secure_transport,
    strip_own_via,
)
from sipsca.runtime.branches import Target, branch_request, destination
from sipsca.runtime.failover import Failover
from sipsca.runtime.forwarded import Forwarded
from sipsca.runtime.stateless_relay import relay_stray_2xx
from sipsca.sip.address import Flow
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.uri import SipUri

if TYPE_CHECKING:
    from sipsca.runtime.app import SipApplication

__all__ = ["ProxyCore"]

logger = logging.getLogger(__name__)


class ProxyCore:
    def __init__(self, app: SipApplication) -> None:
        self.app = app
        self.forwarded: dict[str, Forwarded] = {}
        self.branch_of: dict[str, str] = {}
        self.cancels: set[str] = set()
        self.retry_of: dict[str, str] = {}
        """Client transaction of a failover attempt -> the context's key of its branch (the
        first attempt's transaction is that key itself and is not listed)."""
        self.late_cancel: dict[str, tuple[SipRequest, str | None]] = {}
        """INVITE failover attempts still waiting for any response when their context was
        released (timer C fired, or a final went upstream after a CANCEL): client
        transaction key -> (the request sent, the CANCEL's Reason). Each is CANCELled at
        its first provisional response (RFC 3261 9.1, 16.8); forgotten at its final
        response or when its transaction ends."""

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
                targets = router.retrieval_targets(outcome.retrieval_target)
            member_call_info = member_call_info or outcome.member_call_info
        invite = request.method == "INVITE"
        context = ResponseContext(request, invite=invite)
        fwd = Forwarded(key, request, context, sca, sca_request, arrived=app.clock.monotonic())
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
            flows, hop = destination(app.resolver, request, target)
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

    async def _resolve_and_fork(
        self,
        fwd: Forwarded,
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
        fwd: Forwarded,
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
                warning = self.app.router.addresses.sips_warning()
                self._apply(fwd, context.on_branch_refused(failed, 480, warning=warning))
                continue
            self._apply(fwd, context.on_transport_error(failed))
        if not targets:
            self._apply(fwd, context.on_no_branches())

    def _fork(
        self,
        fwd: Forwarded,
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
        addresses = app.router.addresses
        branch = compute_branch(fwd.request, index)
        dest = flows[0] if flows else None
        if dest is None:
            logger.info("cannot resolve %s", target.uri)
            key = "unresolved-" + branch
            fwd.context.add_branch(key, fwd.request, target.uri)
            return key
        sips = branch_needs_tls(fwd.request, target.uri, target.path)
        # RFC 5630 5.3: TLS only (and without a TLS listener there is no TLS client either)
        if sips and not (secure_transport(dest.transport) and addresses.tls_listener()):
            logger.info("not sending %s over %s: a sips: target needs TLS", target.uri, dest)
            key = "insecure-" + branch
            fwd.context.add_branch(key, fwd.request, target.uri)
            return key
        out = branch_request(
            addresses,
            fwd.request,
            source,
            target,
            dest,
            branch,
            sips=sips,
            record_route=record_route,
            member_call_info=member_call_info,
        )
        key = app.send_request(out, dest)
        fwd.context.add_branch(key, out, target.uri)
        self.branch_of[key] = fwd.key
        if len(flows) > 1:
            fwd.add_failover(Failover(key, out, flows, target.uri, index))
        return None

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

    def _send_cancel(self, fwd: Forwarded, branch: str, reason: str | None) -> None:
        """CANCEL ``branch`` (the context's key): the transaction running on it now."""
        failover = fwd.failover_of(branch)
        if failover is None:
            sent = fwd.context.branch_request(branch)
            key = branch
        else:
            running = failover.take_cancel(reason)
            if running is None:
                return
            sent, key = running
        if sent is not None:
            self._cancel_transaction(sent, key, reason)

    def _cancel_transaction(self, sent: SipRequest, key: str, reason: str | None) -> None:
        """CANCEL client transaction ``key``, which sent ``sent``, on its own flow."""
        app = self.app
        dest = app.flow_of_key.get(key)
        if dest is None:
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
            late = self.late_cancel.pop(key, None)
            if late is not None and response.status < 200:
                self._cancel_transaction(late[0], key, late[1])  # it may be CANCELled now
            if server_key is not None:  # finished and released: only 2xx are relayed
                relay_stray_2xx(self.app, response)
            return
        if not strip_own_via(response):
            return
        branch = self.retry_of.get(key, key)
        failover = fwd.failover_of(branch)
        status = response.status
        if failover is not None:
            if failover.key != key:
                return  # a target already given up (its transaction is over)
            if status < 200:
                failover.provisional(status)
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
        failover = fwd.failover_of(branch)
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
        fwd: Forwarded,
        failover: Failover,
        *,
        timeout: bool = False,
        answer: SipResponse | None = None,
    ) -> None:
        """The running transaction of a failover branch failed: a transport error, a
        time-out or (``answer``) a 503. Send to the next target, or tell the context."""
        action = failover.failed(
            fwd.context,
            timeout=timeout,
            answer=answer,
            stopped=fwd.stopped,
            current=self.forwarded.get(fwd.key) is fwd,
            expired=self._caller_gave_up(fwd, timeout=timeout),
        )
        if action is None:
            why = "timed out" if timeout else "unreachable" if answer is None else "answered 503"
            self._next_target(fwd, failover, why)
            return
        self._apply(fwd, action)

    def _caller_gave_up(self, fwd: Forwarded, *, timeout: bool) -> bool:
        """A non-INVITE whose caller no longer waits: its timer F (64*T1) has run since
        the request came, so another attempt could only outlive it (Kamailio caps the same
        with ``max_noninv_lifetime``). A time-out is timer F of an attempt, at least that
        long after the request came: a non-INVITE never fails over after one."""
        if fwd.context.invite:
            return False
        if timeout:
            return True
        app = self.app
        return app.clock.monotonic() - fwd.arrived >= 64 * app.config.transaction.t1

    def _next_target(self, fwd: Forwarded, failover: Failover, why: str) -> None:
        """Send the same request again, in a new client transaction, to the next target
        (:meth:`Failover.next_attempt <sipsca.runtime.failover.Failover.next_attempt>`)."""
        app = self.app
        failed = failover.dest
        out, dest = failover.next_attempt(fwd.request, app.router.addresses.via_value)
        logger.info(
            "%s to %s: %s %s, trying %s", fwd.request.method, failover.target, failed, why, dest
        )
        key = app.send_request(out, dest)
        self.branch_of[key] = fwd.key
        self.retry_of[key] = failover.branch
        failover.running(key, out, dest)

    def _apply(self, fwd: Forwarded, action: ContextAction) -> None:
        app = self.app
        for branch in action.cancel_branches:
            self._send_cancel(fwd, branch, action.cancel_reason)
        upstream = action.forward_upstream
        if upstream is not None:
            if fwd.sca and upstream.status > 100:
                if fwd.first_time(upstream):
                    app.sca.on_response(upstream, fwd.sca_request, now=app.clock.time())
                else:
                    app.sca.on_repeated_answer(upstream)
            if upstream.status == 408 and not fwd.context.invite:
                # RFC 4320 4.2: no 408 to a non-INVITE request, no final response at all
                # (the client's own timer F has fired by now)
                app.tl.abandon(fwd.key, now=app.clock.monotonic())
            else:
                app.tl.send_response(upstream, now=app.clock.monotonic(), key=fwd.key)
        if action.done:
            fwd.stop_timer_c()
        if fwd.context.finished:
            self._release(fwd)

    def _abandon(self, fwd: Forwarded, status: int) -> None:
        """Answer a request still waiting for DNS (no branch yet) and forget it."""
        fwd.context.cancel_all()  # closed: no branch can be added any more
        response = make_response(fwd.request, status, to_tag=local_tag(fwd.request))
        self._apply(fwd, ContextAction(forward_upstream=response, done=True))
        self._release(fwd)

    def _release(self, fwd: Forwarded) -> None:
        """Forget a finished context at once instead of with its server transaction.

        The server transaction answers retransmissions from its own copy of the response for
        up to 32 s (timers J and L); the context, the requests and the responses it holds
        would otherwise wait with it, and at thousands of calls per second they are most of
        what the cyclic GC scans. Later 2xx retransmissions on a branch are relayed
        statelessly (:meth:`on_stray_response`), a late CANCEL has no effect (9.2).
        """
        if self.forwarded.get(fwd.key) is fwd:
            del self.forwarded[fwd.key]
            self._keep_late_cancels(fwd)
        fwd.stop_timer_c()

    def _keep_late_cancels(self, fwd: Forwarded) -> None:
        """Failover attempts of a released INVITE that have had no response yet cannot be
        CANCELled now (RFC 3261 9.1) but must be once they answer (16.8, 16.10): the
        caller has its final response, a call set up there would be nobody's."""
        if fwd.failover is None or not fwd.context.invite:
            return
        tl = self.app.tl
        for failover in fwd.failover.values():
            if failover.exhausted or failover.cancel_sent:
                continue  # its outcome went to the context (no attempt runs), or cancelled
            if tl.client_state(failover.key) == "calling":  # no response at all yet
                self.late_cancel[failover.key] = (failover.request, failover.cancel_reason)

    # ------------------------------------------------------------------ timers / cleanup
    def _arm_timer_c(self, fwd: Forwarded) -> None:
        loop = asyncio.get_running_loop()
        fwd.stop_timer_c()
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
        self.late_cancel.pop(key, None)
        server_key = self.branch_of.pop(key, None)
        if server_key is None:
            fwd = self.forwarded.get(key)
            if fwd is not None and not fwd.context.pending:
                self._release(fwd)
