"""The periodic purge (sca-behaviour.md §6.1-6.2, decisions.md #2).

Every ``purge_expired_interval`` seconds:

* subscriptions whose expiry has passed get ``terminated;reason=timeout`` (call-info:
  full state; line-seize: its index) and are removed; an expired line-seize also
  releases its appearance if that is still merely *seized*. Subscriptions that were
  already terminated (unsubscribed, deactivated, used up) are removed silently.
* an appearance stored as IDLE is released: idle means "no appearance" (only a database
  written before ``sca.update_appearance ... idle`` released, as it does now, can hold
  one; Kamailio keeps such an appearance forever and renders it with its index);
* appearances stuck in SEIZED for ``seized_ttl`` are released, and so are PROGRESSING or
  ALERTING ones unchanged for ``ringing_ttl`` whose INVITE is no longer pending (its final
  response was lost, or the server restarted while it rang: Kamailio keeps no appearances
  over a restart, sipsca restores them); ACTIVE_PENDING for
  ``pending_ttl`` are released only when the call was never answered - an answered
  call (full dialog) is promoted to ACTIVE instead, because its ACK may simply not have
  passed through us; Kamailio's purge here showed answered calls as idle while they
  were still up (PR #3249).

A run ends at most :data:`PURGE_BATCH` subscriptions (each is a NOTIFY to send); when more
have expired, the engine runs the purge again right away instead of after the interval, so a
mass expiry (a site cut off from the server) is worked off in slices with the sockets served
in between, not in one multi-second stall.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, SubscriptionState

__all__ = ["PURGE_BATCH", "purge"]

logger = logging.getLogger(__name__)

PURGE_BATCH = 5000
"""Expired subscriptions ended (and NOTIFYed) per purge run."""


def _purge_subscriptions(core: ScaCore, now: float, limit: int) -> bool:
    """End expired subscriptions, at most ``limit``; True when some are left for later."""
    ended = 0
    for subscription in core.subscriptions.all():
        if not subscription.state.is_terminated and subscription.expires_at > now:
            continue
        if not subscription.state.is_terminated:
            if ended == limit:
                return True
            ended += 1
            core.terminate(subscription, SubscriptionState.TERMINATED_TIMEOUT, now)
            if subscription.event is ScaEvent.LINE_SEIZE and subscription.index:
                appearance = core.appearances.get(subscription.aor, subscription.index)
                if (
                    appearance is not None
                    and appearance.state is AppearanceState.SEIZED
                    and appearance.owner == subscription.subscriber
                ):
                    core.appearances.release(subscription.aor, subscription.index)
        core.subscriptions.remove(subscription.key)
    return False


def _purge_appearances(core: ScaCore, now: float, ringing: Callable[[Appearance], bool]) -> None:
    config = core.config
    for appearance in core.appearances.every():
        if appearance.state is AppearanceState.IDLE:
            core.appearances.release(appearance.aor, appearance.index)
    stale, pending = core.appearances.stale(
        now, config.seized_ttl, config.pending_ttl, config.ringing_ttl
    )
    for appearance in stale:
        if appearance.state is AppearanceState.SEIZED or not ringing(appearance):
            core.appearances.release(appearance.aor, appearance.index)
    for appearance in pending:
        if appearance.call_id and appearance.to_tag:
            core.appearances.set_state(appearance, AppearanceState.ACTIVE, now)
        else:
            core.appearances.release(appearance.aor, appearance.index)


def purge(
    core: ScaCore, now: float, *, ringing: Callable[[Appearance], bool] = lambda _: False
) -> bool:
    """One purge run; broadcasts are left queued for the caller's flush.

    ``ringing`` tells whether an old ``progressing``/``alerting`` appearance still has its
    INVITE pending (kept then); without one it lost its final response and is released.

    Returns:
        True when expired subscriptions are left over for another run (PURGE_BATCH).
    """
    more = _purge_subscriptions(core, now, PURGE_BATCH)
    _purge_appearances(core, now, ringing)
    return more
