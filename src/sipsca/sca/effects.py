"""Effects the SCA engine asks the runtime to carry out.

The engine never sends or stores anything itself (sans-I/O): every side effect is
queued as one of these frozen dataclasses and drained with ``ScaEngine.next_effect()``
in the order they were produced. Names are imperative (what to do), except
:class:`AppearanceChanged`, which is a notification for metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription
from sipsca.sip.message import SipRequest

__all__ = [
    "AppearanceChanged",
    "DeleteAppearance",
    "DeleteSubscription",
    "Effect",
    "PersistAppearance",
    "PersistSubscription",
    "SendNotify",
    "SubscriptionKey",
]

SubscriptionKey = tuple[str, ScaEvent, str]
"""(AoR, event, subscriber Contact): the identity of a subscription."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendNotify:
    """Send ``request`` (a complete NOTIFY without Via) in the subscription's dialog.

    The runtime prepends its own Via (new branch), sends it through a client
    transaction toward ``next_hop`` (over ``flow`` when that connection is still open)
    and reports the outcome with ``ScaEngine.on_notify_result(key, cseq, status)``.
    """

    key: SubscriptionKey
    request: SipRequest
    flow: str
    next_hop: str
    """The URI to resolve: the first route (a strict one is also the Request-URI) or the
    subscriber's Contact (RFC 3261 8.1.2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistSubscription:
    """Insert or update this subscription (a copy, safe to keep)."""

    subscription: Subscription


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSubscription:
    """Remove the stored subscription (it ended: unsubscribed, expired, deactivated, 481)."""

    key: SubscriptionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistAppearance:
    """Insert or update this appearance (a copy), keyed by (aor, index)."""

    appearance: Appearance


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAppearance:
    """Remove the stored appearance: the index is idle again."""

    aor: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppearanceChanged:
    """An appearance changed state (``IDLE`` stands for "did not exist" / "released")."""

    aor: str
    index: int
    old: AppearanceState
    new: AppearanceState
    owner: str
    call_id: str


Effect = (
    SendNotify
    | PersistSubscription
    | DeleteSubscription
    | PersistAppearance
    | DeleteAppearance
    | AppearanceChanged
)
