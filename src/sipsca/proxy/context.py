"""The response context of a proxied server transaction (RFC 3261 16.7, 16.8-16.10).

A :class:`ResponseContext` groups the client transactions ("branches") forked from one
server transaction. It is fed branch events (responses, timeouts, transport errors,
an upstream CANCEL) and answers each with a :class:`ContextAction` telling the runtime
which response to send upstream and which branches to CANCEL. It never sends anything
and keeps no clock: timers B/F and C are run by the runtime, which reports their expiry
with :meth:`ResponseContext.on_branch_timeout`.

Selection of the final response (16.7 step 6), as implemented::

    2xx                  forwarded at once (every 2xx of an INVITE, even late ones;
                         only the first final of a non-INVITE)
    class                6xx if any, else the lowest class present
    within the class     401/407 first (challenges merged, step 7), then 415/420/484
                         (they tell the caller how to retry), then responses really
                         received before ones we synthesised (408 timeout, 503
                         transport error, 480 SIPS refusal), then the lowest code,
                         then the first received. The RFC allows any response of the class;
                         lowest-code-wins is Kamailio's t_pick_branch rule and makes
                         the choice independent of arrival order (404 beats 486).
    chosen 503           replaced by 500 (step 6: a 503 means *we* are unavailable)
    no branch at all     480 Temporarily Unavailable (:meth:`on_no_branches`)
"""

from __future__ import annotations

from dataclasses import dataclass

from sipsca.errors import LocalProtocolError
from sipsca.proxy._hashing import local_tag
from sipsca.sip.message import SipRequest, SipResponse, make_response
from sipsca.sip.status import reason_phrase

__all__ = ["COMPLETED_ELSEWHERE", "ContextAction", "ResponseContext"]

COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
"""RFC 3326 Reason for the CANCELs sent when another branch answered 2xx; SCA phones
show "answered elsewhere" instead of a missed call."""

# RFC 3261 16.7 step 6: "The proxy SHOULD give preference to responses that provide
# information affecting resubmission of this request, such as 401, 407, 415, 420, and
# 484 if the 4xx class is chosen."
_AUTH = frozenset({401, 407})
_RESUBMIT = frozenset({415, 420, 484})
_AUTH_HEADERS = ("WWW-Authenticate", "Proxy-Authenticate")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextAction:
    """What the runtime must do after a context event.

    Apply in this order: send the CANCELs (``make_cancel(context.branch_request(key),
    reason=cancel_reason)``), then send ``forward_upstream`` on the server transaction.
    """

    forward_upstream: SipResponse | None = None
    """Response to send on the server transaction now (a 1xx, a 2xx, or the chosen final)."""
    cancel_branches: tuple[str, ...] = ()
    """Branches to CANCEL now. Each has received a provisional response (RFC 3261 9.1:
    without one a CANCEL "MUST NOT be sent"); a branch that had none is cancelled by the
    action of its first provisional response instead."""
    cancel_reason: str | None = None
    """RFC 3326 Reason value to put in those CANCELs, if any."""
    done: bool = False
    """A final response has been sent upstream (by this action or earlier): stop timer C.
    Keep the context while :attr:`ResponseContext.pending` is non-empty: late 2xx to an
    INVITE must still be forwarded and cancelled branches still answer 487."""
    reset_timer_c: bool = False
    """A 101-199 arrived on an INVITE branch: restart timer C (RFC 3261 16.7 step 2)."""


class _Branch:
    __slots__ = (
        "cancel_reason",
        "cancel_sent",
        "cancel_wanted",
        "final",
        "key",
        "order",
        "provisional",
        "request",
        "synthetic",
        "target",
    )

    def __init__(self, key: str, request: SipRequest, target: str) -> None:
        self.key = key
        self.request = request
        self.target = target
        self.provisional = False
        self.final: SipResponse | None = None
        self.synthetic = False
        self.order = 0
        self.cancel_wanted = False
        self.cancel_sent = False
        self.cancel_reason: str | None = None


class ResponseContext:
    """Branches and response selection of one proxied request (RFC 3261 16.7).

    Usage: create it with the received request, :meth:`add_branch` for every request
    sent, then feed every branch event; after each call apply the returned
    :class:`ContextAction`. Add all branches before feeding events: the context sends
    the best final response as soon as no branch is pending. When no branch could be
    started at all call :meth:`on_no_branches`.

    Keys are the runtime's client transaction keys. Events for unknown keys raise
    :class:`LocalProtocolError`; events for branches that already completed are
    ignored, except INVITE 2xx (forwarded, RFC 3261 16.7 step 5).

    Responses passed in must already have our Via removed
    (:func:`sipsca.proxy.route.strip_own_via`); responses the context makes itself
    are built from the received request, so they carry the same Via set.
    """

    __slots__ = ("_branches", "_closed", "_final_sent", "_order", "invite", "request")

    def __init__(self, request: SipRequest, *, invite: bool) -> None:
        """Create the context of the server transaction that received ``request``.

        Args:
            request: the request as received (used to build 408/480/500 responses).
            invite: INVITE semantics: 2xx always forwarded, CANCEL, timer C.
        """
        self.request = request
        self.invite = invite
        self._branches: dict[str, _Branch] = {}
        self._final_sent = False
        self._closed = False
        self._order = 0

    # ------------------------------------------------------------------ state
    @property
    def pending(self) -> tuple[str, ...]:
        """Keys of the branches without a final response, in the order they were added."""
        return tuple(b.key for b in self._branches.values() if b.final is None)

    @property
    def done(self) -> bool:
        """Whether a final response has been sent upstream."""
        return self._final_sent

    @property
    def finished(self) -> bool:
        """A final was sent and no branch is pending: the context can be discarded."""
        return self._final_sent and not self.pending

    def branch_request(self, key: str) -> SipRequest | None:
        """The request sent on branch ``key`` (for :func:`~sipsca.proxy.route.make_cancel`)."""
        branch = self._branches.get(key)
        return None if branch is None else branch.request

    def branch_target(self, key: str) -> str | None:
        """The target URI of branch ``key``."""
        branch = self._branches.get(key)
        return None if branch is None else branch.target

    def add_branch(self, key: str, request: SipRequest, target: str) -> None:
        """Record a branch (a client transaction) forked from this context.

        Args:
            key: the client transaction key events will carry.
            request: the request as sent (after ``prepare_forward``).
            target: the target URI it was sent to.

        Raises:
            LocalProtocolError: ``key`` is already used, or the context takes no new
                branches: a final was sent, a 6xx arrived (16.7 step 5 "MUST NOT create
                any new branches") or the request was cancelled (16.10).
        """
        if key in self._branches:
            raise LocalProtocolError(f"branch {key!r} already exists")
        if self._closed or self._final_sent:
            raise LocalProtocolError("the response context takes no new branches")
        self._branches[key] = _Branch(key, request, target)

    # ------------------------------------------------------------------ events
    def on_response(self, key: str, response: SipResponse) -> ContextAction:
        """A response arrived on branch ``key`` (RFC 3261 16.7 steps 4-5 and 10).

        * 100: not forwarded ("MUST NOT be forwarded"), but it makes the branch
          cancellable.
        * 101-199: forwarded while no final has been sent upstream.
        * 2xx: forwarded at once; for an INVITE, the other pending branches are cancelled
          (step 10) with Reason "Call completed elsewhere", and later 2xx are forwarded
          too. For a non-INVITE only the first final goes upstream.
        * 3xx-6xx: stored; a 6xx on an INVITE cancels the other branches (step 5). When
          no branch is pending any more the best response is forwarded (step 6).

        Raises:
            LocalProtocolError: unknown branch key.
        """
        branch = self._get(key)
        status = response.status
        if status < 200:
            if branch.final is not None:
                return self._action()
            branch.provisional = True
            deferred, why = self._deferred_cancel(branch)
            forward = response if status > 100 and not self._final_sent else None
            return self._action(
                forward=forward,
                cancels=deferred,
                reason=why,
                reset_timer_c=self.invite and status > 100,
            )
        if status < 300:
            if branch.final is None:
                self._complete(branch, response)
            if self.invite:
                self._final_sent = True
                others, why = self._cancel_pending(COMPLETED_ELSEWHERE)
                return self._action(forward=response, cancels=others, reason=why)
            if self._final_sent:
                return self._action()
            self._final_sent = True
            return self._action(forward=response)
        if branch.final is not None:
            return self._action()
        self._complete(branch, response)
        cancels: tuple[str, ...] = ()
        reason: str | None = None
        if status >= 600 and self.invite and not self._final_sent:
            self._closed = True
            text = reason_phrase(status)
            cancels, reason = self._cancel_pending(f'SIP;cause={status};text="{text}"')
        return self._finish(cancels, reason)

    def on_branch_timeout(self, key: str) -> ContextAction:
        """Timer B/F, or timer C, fired for branch ``key`` (RFC 3261 16.8).

        The branch counts as if it had received a 408. For an INVITE branch that has
        received a provisional response (only timer C can then fire) "the proxy MUST
        generate a CANCEL request matching that transaction", so it is in
        ``cancel_branches``; the branch is not waited for any more (Kamailio's
        ``fr_inv_timer``), a late 2xx is still forwarded.

        Raises:
            LocalProtocolError: unknown branch key.
        """
        branch = self._get(key)
        if branch.final is not None:
            return self._action()
        cancels: tuple[str, ...] = ()
        if self.invite and branch.provisional and not branch.cancel_sent:
            branch.cancel_wanted = branch.cancel_sent = True
            cancels = (key,)
        self._complete(branch, self._local(408), synthetic=True)
        return self._finish(cancels, None)

    def on_transport_error(self, key: str) -> ContextAction:
        """Sending on branch ``key`` failed (RFC 3261 16.9): it counts as a 503.

        A lone 503 becomes a 500 upstream (16.7 step 6).

        Raises:
            LocalProtocolError: unknown branch key.
        """
        branch = self._get(key)
        if branch.final is not None:
            return self._action()
        self._complete(branch, self._local(503), synthetic=True)
        return self._finish((), None)

    def on_branch_refused(
        self, key: str, status: int, *, warning: str | None = None
    ) -> ContextAction:
        """Branch ``key`` was not sent: the proxy itself refused it with ``status``.

        Used for a SIPS target whose only way is a non-TLS flow (RFC 5630 5.3: not to be
        forwarded; 480 with warn-code 380, ``warning`` being that ``Warning`` value). The
        branch counts as a synthesised final like a 408 or 503, so a response really
        received on another branch is preferred within the same class.

        Raises:
            LocalProtocolError: unknown branch key.
        """
        branch = self._get(key)
        if branch.final is not None:
            return self._action()
        extra = [("Warning", warning)] if warning else None
        response = make_response(self.request, status, to_tag=local_tag(self.request), extra=extra)
        self._complete(branch, response, synthetic=True)
        return self._finish((), None)

    def on_no_branches(self) -> ContextAction:
        """No (more) branch will be added; call when :attr:`pending` is empty after forking.

        With no branch at all the answer is 480 Temporarily Unavailable (the target
        set was empty). When every branch already failed, the event that completed the
        last one has already sent the best response, and this returns an empty action.
        Closes the context for new branches.
        """
        self._closed = True
        if self._final_sent or self.pending:
            return self._action()
        # Every completed branch went through _finish(), which already sent a final once
        # nothing was pending; so here no branch was ever added.
        self._final_sent = True
        return self._action(forward=self._local(480))

    def cancel_all(self, *, reason: str | None = None) -> tuple[str, ...]:
        """The caller cancelled the request (RFC 3261 16.10): branches to CANCEL now.

        "The proxy MUST cancel any pending client transactions associated with the
        response context" and must not create new branches. Only INVITE branches are
        cancelled (9.1); branches without a provisional response are cancelled later,
        by the action of their first provisional response (9.1). The 487s that follow
        are selected as usual, so the caller normally gets a 487.

        Args:
            reason: RFC 3326 Reason to use in CANCELs sent later (the caller's
                CANCEL's Reason, if it had one).
        """
        self._closed = True
        if not self.invite:
            return ()
        return self._cancel_pending(reason)[0]

    # ------------------------------------------------------------------ internals
    def _get(self, key: str) -> _Branch:
        branch = self._branches.get(key)
        if branch is None:
            raise LocalProtocolError(f"no branch {key!r} in this response context")
        return branch

    def _action(
        self,
        *,
        forward: SipResponse | None = None,
        cancels: tuple[str, ...] = (),
        reason: str | None = None,
        reset_timer_c: bool = False,
    ) -> ContextAction:
        return ContextAction(
            forward_upstream=forward,
            cancel_branches=cancels,
            cancel_reason=reason if cancels else None,
            done=self._final_sent,
            reset_timer_c=reset_timer_c,
        )

    def _local(self, status: int) -> SipResponse:
        return make_response(self.request, status, to_tag=local_tag(self.request))

    def _complete(self, branch: _Branch, response: SipResponse, *, synthetic: bool = False) -> None:
        self._order += 1
        branch.final = response
        branch.synthetic = synthetic
        branch.order = self._order

    def _cancel_pending(self, reason: str | None) -> tuple[tuple[str, ...], str | None]:
        """Mark every pending branch for CANCEL; return those that can be cancelled now."""
        now: list[str] = []
        for branch in self._branches.values():
            if branch.final is None and not branch.cancel_wanted:
                branch.cancel_wanted = True
                branch.cancel_reason = reason
                if branch.provisional:
                    branch.cancel_sent = True
                    now.append(branch.key)
        return tuple(now), reason

    @staticmethod
    def _deferred_cancel(branch: _Branch) -> tuple[tuple[str, ...], str | None]:
        if branch.cancel_wanted and not branch.cancel_sent:
            branch.cancel_sent = True
            return (branch.key,), branch.cancel_reason
        return (), None

    def _finish(self, cancels: tuple[str, ...], reason: str | None) -> ContextAction:
        """Send the best final once nothing is pending (16.7 step 6)."""
        if self._final_sent or self.pending:
            return self._action(cancels=cancels, reason=reason)
        self._final_sent = True
        self._closed = True
        return self._action(forward=self._best(), cancels=cancels, reason=reason)

    def _best(self) -> SipResponse:
        finals = [b for b in self._branches.values() if b.final is not None]
        # "It MUST choose from the 6xx class responses if any exist in the context. If no
        # 6xx class responses are present, the proxy SHOULD choose from the lowest
        # response class stored in the response context."
        six = [b for b in finals if _status(b) >= 600]
        if six:
            candidates = six
        else:
            lowest = min(_status(b) // 100 for b in finals)
            candidates = [b for b in finals if _status(b) // 100 == lowest]
        chosen = min(candidates, key=_rank)
        response = chosen.final
        assert response is not None
        if response.status in _AUTH:
            response = self._merge_challenges(chosen, finals)
        if response.status == 503 and not chosen.synthetic:
            # 16.7 step 6: a downstream 503 means *that* server is overloaded, not us.
            # Our own 503 (the next hop could not be reached) is passed on as is.
            return self._local(500)
        return response

    @staticmethod
    def _merge_challenges(chosen: _Branch, finals: list[_Branch]) -> SipResponse:
        """16.7 step 7: add every other 401/407's challenges, "without modification"."""
        assert chosen.final is not None
        merged = chosen.final.copy()
        for branch in finals:
            if branch is chosen or _status(branch) not in _AUTH:
                continue
            assert branch.final is not None
            for name in _AUTH_HEADERS:
                for value in branch.final.headers.get_all(name):
                    merged.headers.insert_after(name, name, value)
        return merged


def _status(branch: _Branch) -> int:
    assert branch.final is not None
    return branch.final.status


def _rank(branch: _Branch) -> tuple[int, bool, int, int]:
    status = _status(branch)
    if status in _AUTH:
        preference = 0
    elif status in _RESUBMIT:
        preference = 1
    elif status == 503:
        preference = 3  # becomes a 500 anyway; a real 5xx says more
    else:
        preference = 2
    return (preference, branch.synthetic, status, branch.order)
