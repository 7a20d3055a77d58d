"""Shared state of the SCA engine and the primitives every handler uses.

One :class:`ScaCore` holds the subscription store, the appearance table, the effect
queue and the counters. Handlers (SUBSCRIBE, call tracking, timers, RPC) mutate it
through a few primitives:

* :meth:`ScaCore.notify` - one NOTIFY to one subscriber (its own Subscription-State);
* appearance changes mark their line *dirty*; :meth:`ScaCore.flush` then sends one
  call-info broadcast per dirty line at the end of the engine call, after any NOTIFY
  addressed to a single subscriber (Kamailio's order: line-seize NOTIFY, then broadcast);
* :meth:`ScaCore.want_broadcast` asks for a broadcast even when nothing changed, where
  Kamailio sends one (INVITE, 200 OK, every line-seize SUBSCRIBE).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from sipsca.config import ScaConfig
from sipsca.sca.aor import LineDirectory
from sipsca.sca.appearances import AppearanceTable
from sipsca.sca.call_info import render_full_state, render_index_only
from sipsca.sca.effects import (
    AppearanceChanged,
    DeleteAppearance,
    DeleteSubscription,
    Effect,
    PersistAppearance,
    PersistSubscription,
    SendNotify,
)
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.sca.notify import build_notify, next_hop, subscription_state_value
from sipsca.sca.subscription_store import SubscriptionStore

__all__ = ["ScaCore"]

logger = logging.getLogger(__name__)


def log_subscription(subscription: Subscription, change: str) -> None:
    """One line per subscription state change, with its fields for JSON logs."""
    if not logger.isEnabledFor(logging.INFO):
        return  # under load at WARNING: not even the fields are built
    logger.info(
        "%s subscription %s -> %s %s call-id=%s",
        subscription.event.value,
        subscription.subscriber,
        subscription.aor,
        change,
        subscription.call_id,
        extra={
            "sca": {
                "kind": "subscription",
                "event": subscription.event.value,
                "aor": subscription.aor,
                "subscriber": subscription.subscriber,
                "change": change,
                "index": subscription.index,
                "call_id": subscription.call_id,
            }
        },
    )


class ScaCore:
    """State and primitives shared by the SCA handlers (see module docstring)."""

    def __init__(
        self,
        config: ScaConfig,
        *,
        tag_factory: Callable[[], str],
        server_id: int = 0,
        user_agent: str = "",
    ) -> None:
        self.config = config
        self.tag_factory = tag_factory
        self.server_id = server_id
        self.user_agent = user_agent
        self.directory = LineDirectory(config)
        self.subscriptions = SubscriptionStore()
        self.appearances = AppearanceTable(self, max_appearances=config.max_appearances)
        self.effects: deque[Effect] = deque()
        self._dirty: dict[str, None] = {}
        self.notifies_sent = 0
        self.notifies_failed = 0

    # -- lines -----------------------------------------------------------------------

    def is_line(self, aor: str) -> bool:
        """A line is known when it has a subscription or an appearance or is configured."""
        return (
            self.subscriptions.has_line(aor)
            or self.appearances.has_line(aor)
            or self.directory.config_of(aor) is not None
        )

    def pick_line(self, candidates: list[str]) -> str | None:
        return self.directory.pick(candidates, self.is_line)

    # -- effects ---------------------------------------------------------------------

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def persist(self, subscription: Subscription) -> None:
        """Store a live call-info subscription.

        Line-seize subscriptions are never stored, as in Kamailio (its
        ``sca_subscriptions`` table only ever holds event 1): they live 15 s, and a seized
        appearance restored without them is cleaned up by the stale purge.
        """
        if subscription.event is ScaEvent.CALL_INFO and not subscription.state.is_terminated:
            self.emit(PersistSubscription(subscription=subscription.copy()))

    def forget(self, key: tuple[str, ScaEvent, str]) -> None:
        """Remove a subscription from storage (a no-op for line-seize, never stored)."""
        if key[1] is ScaEvent.CALL_INFO:
            self.emit(DeleteSubscription(key=key))

    def appearance_changed(
        self, appearance: Appearance, old: AppearanceState, *, released: bool, visible: bool
    ) -> None:
        """Listener of :class:`AppearanceTable`: effects + dirty mark."""
        new = AppearanceState.IDLE if released else appearance.state
        if released:
            self.emit(DeleteAppearance(aor=appearance.aor, index=appearance.index))
        else:
            self.emit(PersistAppearance(appearance=appearance.copy()))
        if old is not new:
            self.emit(
                AppearanceChanged(
                    aor=appearance.aor,
                    index=appearance.index,
                    old=old,
                    new=new,
                    owner=appearance.owner,
                    call_id=appearance.call_id,
                )
            )
        if visible:
            self.want_broadcast(appearance.aor)

    # -- NOTIFY ------------------------------------------------------------------------

    def call_info_for(self, subscription: Subscription) -> str:
        """Call-Info value of a NOTIFY: full state (call-info) or the index (line-seize)."""
        mode = self.config.call_info_uri
        if subscription.event is ScaEvent.LINE_SEIZE:
            return render_index_only(subscription.aor, subscription.index, mode)
        return render_full_state(subscription.aor, self.appearances.all(subscription.aor), mode)

    def contact_value(self, aor: str) -> str:
        """Contact of our NOTIFYs: ``server_address`` or the AoR (§3.2)."""
        return self.config.server_address or aor

    def notify(self, subscription: Subscription, now: float) -> None:
        """Send one NOTIFY in the subscription's dialog with the current state."""
        subscription.notify_cseq += 1
        request = build_notify(
            subscription,
            cseq=subscription.notify_cseq,
            call_info=self.call_info_for(subscription),
            state_value=subscription_state_value(subscription, now),
            contact=self.contact_value(subscription.aor),
            user_agent=self.user_agent,
        )
        self.notifies_sent += 1
        self.emit(
            SendNotify(
                key=subscription.key,
                request=request,
                flow=subscription.flow,
                next_hop=next_hop(subscription),
            )
        )
        self.persist(subscription)

    def want_broadcast(self, aor: str) -> None:
        self._dirty[aor] = None

    def broadcast(self, aor: str, now: float) -> None:
        """One call-info NOTIFY to every active, unexpired call-info subscriber of ``aor``.

        Most recently created subscription first (Kamailio's bucket order). Terminated
        subscriptions get nothing (decisions.md #1); expired ones get their
        ``terminated;reason=timeout`` from the next purge instead.
        """
        for subscription in self.subscriptions.for_line(aor, ScaEvent.CALL_INFO):
            if subscription.state is not SubscriptionState.ACTIVE:
                continue
            if subscription.expires_at <= now:
                continue
            self.notify(subscription, now)

    def flush(self, now: float) -> None:
        """Send the broadcasts requested during this engine call (one per line)."""
        while self._dirty:
            aor = next(iter(self._dirty))
            del self._dirty[aor]
            self.broadcast(aor, now)

    # -- subscriptions -----------------------------------------------------------------

    def terminate(
        self,
        subscription: Subscription,
        state: SubscriptionState,
        now: float,
        *,
        send: bool = True,
        expires_at: int = 0,
    ) -> None:
        """End a subscription: state, NOTIFY (optional) and removal from storage.

        The record stays in memory until the next purge (RPC still lists it; an in-dialog
        SUBSCRIBE for it gets 481, unlike Kamailio which revives it, decisions.md 42), but
        storage forgets it at once so it can never come back after a restart (#11).
        """
        subscription.state = state
        subscription.expires_at = expires_at
        log_subscription(subscription, state.header_value)
        if send:
            self.notify(subscription, now)
        self.forget(subscription.key)

    def end_line_seize(self, aor: str, contact: str, now: float, *, index: int = 0) -> bool:
        """Terminate ``contact``'s active line-seize on ``aor`` with ``noresource``: the one
        of appearance ``index`` (0: whichever it has). A call on index 1 leaves a seize of
        index 2 alone (Kamailio ends it: that appearance then stays seized until its TTL)."""
        subscription = self.subscriptions.get((aor, ScaEvent.LINE_SEIZE, contact))
        if subscription is None or subscription.state.is_terminated:
            return False
        if index and subscription.index and subscription.index != index:
            return False
        self.terminate(subscription, SubscriptionState.TERMINATED_NORESOURCE, now)
        return True
