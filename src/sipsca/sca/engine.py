"""``ScaEngine``: the sans-I/O facade of Shared Call Appearances.

The runtime feeds it messages and clock readings and drains effects; the engine never
sends, stores or sleeps. Time is always an argument: ``now`` in UNIX epoch seconds
(subscription expiries and appearance times are persisted, so they must survive a
restart).

Contract with the runtime:

* :meth:`ScaEngine.handle_subscribe` returns the reply; send it first, then drain
  :meth:`ScaEngine.next_effect` (the NOTIFYs it caused come after it, as in Kamailio).
* :meth:`ScaEngine.on_request` is called for a request the proxy is about to forward,
  and may edit it (SCA Call-Info stripped, held-call retrieval rewrites the
  Request-URI and adds ``Replaces``); keep an unmodified copy if you need one.
* :meth:`ScaEngine.on_response` takes the response about to go upstream to the UAC
  and *the request as the UAC sent it* (before :meth:`on_request` edited it). Only its
  Call-ID, From, To, CSeq, Contact and Request-URI are read, none of which the edits
  that matter for it change, so passing the edited request works as well; the engine
  also remembers per INVITE transaction what it decided on the request.
* After any call, re-arm the timer from :meth:`ScaEngine.get_timer` and call
  :meth:`ScaEngine.handle_timer` when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

from sipsca.config import ScaConfig
from sipsca.sca import rpc
from sipsca.sca.calls import CallTracker, RequestOutcome
from sipsca.sca.core import ScaCore, log_subscription
from sipsca.sca.effects import Effect
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription
from sipsca.sca.purge import purge
from sipsca.sca.subscriptions import handle_subscribe
from sipsca.sip.message import SipRequest, SipResponse

__all__ = ["CSEQ_RESTORE_GAP", "RequestOutcome", "ScaEngine"]

logger = logging.getLogger(__name__)

CSEQ_RESTORE_GAP = 100
"""Added to every restored ``notify_cseq``.

Storage may lag behind the NOTIFYs actually sent (write-back every
``db_update_interval`` s, or a crash), and a phone answers a NOTIFY whose CSeq goes
backwards with 500. A gap of 100 covers far more NOTIFYs than one dialog sees between
write-backs, so a NOTIFY CSeq never goes backwards after a restart (decisions.md #11)."""


class ScaEngine:
    """Shared Call Appearances, pure: SUBSCRIBE, call tracking, purge, RPC."""

    def __init__(
        self,
        config: ScaConfig,
        *,
        tag_factory: Callable[[], str],
        server_id: int = 0,
        user_agent: str = "",
    ) -> None:
        if config.onhold_bflag >= 0:
            logger.warning("sca onhold_bflag has no meaning in sipsca and is ignored")
        if config.hash_table_size != -1:
            logger.info("sca hash_table_size is accepted for compatibility and ignored")
        self._core = ScaCore(
            config, tag_factory=tag_factory, server_id=server_id, user_agent=user_agent
        )
        self._calls = CallTracker(self._core)
        self._next_purge: float | None = None

    @property
    def config(self) -> ScaConfig:
        return self._core.config

    # -- start-up --------------------------------------------------------------------

    def restore(
        self,
        subscriptions: Iterable[Subscription],
        appearances: Iterable[Appearance],
        *,
        now: float,
    ) -> None:
        """Load stored state after a (re)start.

        Expired or terminated subscriptions are dropped (and deleted from storage) so
        they never come back; every restored ``notify_cseq`` is raised by
        :data:`CSEQ_RESTORE_GAP` and persisted again. Lines become known through their
        subscriptions and appearances. The first purge is due at once, so appearances
        that went stale while we were down are cleaned up immediately.
        """
        core = self._core
        for stored in subscriptions:
            subscription = replace(stored, extra=dict(stored.extra))
            if subscription.state.is_terminated or subscription.expires_at <= now:
                core.forget(subscription.key)
                continue
            subscription.notify_cseq += CSEQ_RESTORE_GAP
            core.subscriptions.add(subscription)
            core.persist(subscription)
        core.appearances.load(replace(a) for a in appearances)
        logger.info(
            "restored %d subscriptions and %d appearances",
            len(core.subscriptions),
            len(core.appearances.every()),
        )
        self._next_purge = now

    # -- queries ---------------------------------------------------------------------

    def line_for_alias(self, uri_text: str) -> str | None:
        """The line an alias (DID, number, other URI) of ``[[sca.lines]]`` stands for."""
        return self._core.directory.alias_target(uri_text)

    def is_line(self, aor: str) -> bool:
        """A shared line: it has a subscription or an appearance, or is configured."""
        return self._core.is_line(aor)

    def appearances(self, aor: str) -> list[Appearance]:
        """The line's appearances (copies), ascending index."""
        return [replace(a) for a in self._core.appearances.all(aor)]

    def subscriptions(self) -> list[Subscription]:
        """Every subscription (copies), including terminated ones not yet purged."""
        return [replace(s, extra=dict(s.extra)) for s in self._core.subscriptions]

    def stats(self) -> dict[str, int]:
        """Gauges and counters for metrics."""
        core = self._core
        out: dict[str, int] = {
            "subscriptions_call_info": core.subscriptions.count(ScaEvent.CALL_INFO),
            "subscriptions_line_seize": core.subscriptions.count(ScaEvent.LINE_SEIZE),
            "lines_with_appearances": len(core.appearances.lines()),
            "notifies_sent": core.notifies_sent,
            "notifies_failed": core.notifies_failed,
        }
        for state in AppearanceState:
            out[f"appearances_{state.name.lower()}"] = 0
        for appearance in core.appearances.every():
            out[f"appearances_{appearance.state.name.lower()}"] += 1
        return out

    # -- effects & timers ----------------------------------------------------------------

    def next_effect(self) -> Effect | None:
        effects = self._core.effects
        return effects.popleft() if effects else None

    def _started(self, now: float) -> None:
        if self._next_purge is None:
            self._next_purge = now + self._interval()

    def _interval(self) -> float:
        return float(max(1, self._core.config.purge_expired_interval))

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due (the purge period), None before any input."""
        return self._next_purge

    def handle_timer(self, now: float) -> None:
        """Run the purge when due (expired subscriptions, stale appearances); due again at
        once while a mass expiry is being worked off in slices."""
        if self._next_purge is None:
            self._next_purge = now + self._interval()
            return
        if now < self._next_purge:
            return
        more = purge(self._core, now, ringing=self._calls.invite_pending)
        self._calls.expire(now)
        self._core.flush(now)
        self._next_purge = now if more else now + self._interval()

    # -- SIP -------------------------------------------------------------------------

    def handle_subscribe(
        self,
        request: SipRequest,
        *,
        now: float,
        flow: str = "",
        authenticated: str | None = None,
    ) -> SipResponse:
        """Answer a call-info / line-seize SUBSCRIBE (§2); NOTIFYs are queued after it.

        ``authenticated`` is the authenticated user's AoR (the From AoR is used when
        None); it matters only for lines that list their members.
        """
        self._started(now)
        reply = handle_subscribe(
            self._core, request, now=now, flow=flow, authenticated=authenticated
        )
        self._core.flush(now)
        return reply

    def on_request(self, request: SipRequest, *, now: float) -> RequestOutcome:
        """Call tracking for a request about to be forwarded (may edit it, see module doc)."""
        self._started(now)
        outcome = self._calls.on_request(request, now)
        self._core.flush(now)
        return outcome

    def on_ack(self, ack: SipRequest, *, now: float) -> None:
        """An end-to-end ACK (for a 2xx) was forwarded."""
        self._started(now)
        self._calls.on_ack(ack, now)
        self._core.flush(now)

    def on_response(self, response: SipResponse, request: SipRequest, *, now: float) -> None:
        """A response is about to be sent upstream to the UAC (may edit it: SCA Call-Info
        stripped, ``P-Asserted-Identity`` added on a 2xx toward a line)."""
        self._started(now)
        self._calls.on_response(response, request, now)
        self._core.flush(now)

    def on_repeated_answer(self, response: SipResponse) -> None:
        """A retransmitted 2xx to an INVITE goes upstream again: edited as the first copy
        was (Kamailio runs every copy through its reply route)."""
        self._calls.on_repeated_answer(response)

    def on_notify_result(
        self,
        key: tuple[str, ScaEvent, str],
        cseq: int,
        status: int | None,
        *,
        now: float,
        dialog: tuple[str, str] | None = None,
    ) -> None:
        """Outcome of a NOTIFY transaction (``status`` None: timeout or transport error).

        481 or a timeout means the subscriber no longer has the subscription (RFC 6665
        4.2.2): it is removed at once. Other failures are only counted. ``dialog`` is the
        NOTIFY's (Call-ID, From-tag): a result for another dialog than the subscription's
        (one a re-SUBSCRIBE replaced, or an ended subscription whose key a new one took
        meanwhile) is ignored; None means "unknown" and is never filtered.
        """
        core = self._core
        if status is not None and 200 <= status < 300:
            return
        core.notifies_failed += 1
        if status not in (None, 408, 481):
            logger.info(
                "NOTIFY %d to %s for %s answered %d: subscription kept",
                cseq,
                key[2],
                key[0],
                status,
            )
            return
        subscription = core.subscriptions.get(key)
        if subscription is None:
            return
        if dialog is not None and dialog != (subscription.call_id, subscription.to_tag):
            return  # a late result of another dialog: says nothing of this one
        log_subscription(subscription, f"removed: NOTIFY {cseq} {status or 'timed out'}")
        core.subscriptions.remove(key)
        core.forget(key)

    # -- RPC -------------------------------------------------------------------------

    def rpc_all_subscriptions(self, *, now: float) -> list[str]:
        return rpc.all_subscriptions(self._core, now)

    def rpc_subscription_count(self, event: str) -> list[str]:
        return rpc.subscription_count(self._core, event)

    def rpc_show_subscription(self, aor: str, event: str, contact: str | None) -> list[str]:
        return rpc.show_subscription(self._core, aor, event, contact)

    def rpc_subscribers(self) -> list[str]:
        return rpc.subscribers(self._core)

    def rpc_deactivate_all_subscriptions(self, *, now: float) -> list[str]:
        lines = rpc.deactivate_all_subscriptions(self._core, now)
        self._core.flush(now)
        return lines

    def rpc_deactivate_subscription(
        self, aor: str, event: str, contact: str, *, now: float
    ) -> list[str]:
        lines = rpc.deactivate_subscription(self._core, aor, event, contact, now)
        self._core.flush(now)
        return lines

    def rpc_all_appearances(self) -> list[str]:
        return rpc.all_appearances(self._core)

    def rpc_show_appearance(self, aor: str, index: int | None) -> list[str]:
        return rpc.show_appearance(self._core, aor, index)

    def rpc_seize_appearance(self, aor: str, owner: str, *, now: float) -> list[str]:
        self._started(now)
        lines = rpc.seize_appearance(self._core, aor, owner, now)
        self._core.flush(now)
        return lines

    def rpc_update_appearance(
        self, aor: str, index: int, state: str, uri: str | None, *, now: float
    ) -> list[str]:
        self._started(now)
        lines = rpc.update_appearance(self._core, aor, index, state, uri, now)
        self._core.flush(now)
        return lines

    def rpc_release_appearance(self, aor: str, index: int, *, now: float) -> list[str]:
        self._started(now)
        lines = rpc.release_appearance(self._core, aor, index)
        self._core.flush(now)
        return lines
