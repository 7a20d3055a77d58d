"""Shared Call Appearances: the pure SCA engine (no I/O, clock passed in).

The runtime talks to :class:`ScaEngine` only; it drains the :mod:`effects
<sipsca.sca.effects>` the engine queues. See docs/sca.md for the operator's view and
docs/compat.md for every deliberate difference from Kamailio's ``sca`` module.
"""

from __future__ import annotations

from sipsca.sca.calls import RequestOutcome
from sipsca.sca.effects import (
    AppearanceChanged,
    DeleteAppearance,
    DeleteSubscription,
    Effect,
    PersistAppearance,
    PersistSubscription,
    SendNotify,
)
from sipsca.sca.engine import CSEQ_RESTORE_GAP, ScaEngine
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.sca.rpc import ScaRpcError

__all__ = [
    "CSEQ_RESTORE_GAP",
    "Appearance",
    "AppearanceChanged",
    "AppearanceState",
    "DeleteAppearance",
    "DeleteSubscription",
    "Effect",
    "PersistAppearance",
    "PersistSubscription",
    "RequestOutcome",
    "ScaEngine",
    "ScaEvent",
    "ScaRpcError",
    "SendNotify",
    "Subscription",
    "SubscriptionState",
]
