"""Building NOTIFY requests (sca-behaviour.md §3.1-3.2).

The NOTIFY is a request inside the subscription dialog that the SUBSCRIBE created:
Request-URI = the subscriber's Contact, To = AoR + subscriber's tag, From = AoR + our
tag, Route = the Record-Route set of the initial SUBSCRIBE in received order (the UAS
route-set rule of RFC 3261 12.1.1). Header order and content follow Kamailio byte for
byte; the Via is left to the runtime (it owns branches and transports).
"""

from __future__ import annotations

from sipsca.errors import RemoteProtocolError
from sipsca.sca.model import Subscription, SubscriptionState
from sipsca.sip.fields import parse_name_addr, split_values
from sipsca.sip.headers import Headers
from sipsca.sip.message import SipRequest

__all__ = ["EVENT_ID_KEY", "build_notify", "remaining_seconds", "subscription_state_value"]

EVENT_ID_KEY = "event_id"
"""Key in ``Subscription.extra`` of the SUBSCRIBE's ``Event: ...;id=`` value (echoed)."""


def remaining_seconds(subscription: Subscription, now: float) -> int:
    """Whole seconds until expiry, measured like Kamailio (integer clock)."""
    return subscription.expires_at - int(now)


def subscription_state_value(subscription: Subscription, now: float) -> str:
    """``Subscription-State`` of this subscriber: ``active;expires=N`` or ``terminated[...]``.

    ``;expires=`` is sent only while active and with time left (decisions.md #1: each
    subscriber gets its own value, also in the first NOTIFY after a SUBSCRIBE).
    """
    value = subscription.state.header_value
    if subscription.state is SubscriptionState.ACTIVE:
        remaining = remaining_seconds(subscription, now)
        if remaining > 0:
            value += f";expires={remaining}"
    return value


def _route_set(subscription: Subscription) -> tuple[str, list[str]]:
    """(Request-URI, Route values), applying RFC 3261 12.2.1.1 for a strict first hop."""
    routes = split_values(subscription.record_route) if subscription.record_route else []
    target = subscription.subscriber
    if not routes:
        return target, []
    try:
        first = parse_name_addr(routes[0], "Route")
        loose = first.uri.has_param("lr")
    except RemoteProtocolError:
        return target, routes
    if loose:
        return target, routes
    return first.uri_text, [*routes[1:], f"<{target}>"]


def next_hop(subscription: Subscription) -> str:
    """Where the subscription's NOTIFYs go first (RFC 3261 8.1.2): the first Record-Route
    value, loose or strict (a strict one is the NOTIFY's Request-URI, 12.2.1.1), else the
    subscriber's Contact."""
    if not subscription.record_route:
        return subscription.subscriber
    routes = split_values(subscription.record_route)
    try:
        return parse_name_addr(routes[0], "Route").uri_text
    except RemoteProtocolError:
        return subscription.subscriber


def build_notify(
    subscription: Subscription,
    *,
    cseq: int,
    call_info: str,
    state_value: str,
    contact: str,
    user_agent: str = "",
) -> SipRequest:
    """A complete NOTIFY (without Via) for ``subscription``."""
    uri, routes = _route_set(subscription)
    event = subscription.event.value
    event_id = subscription.extra.get(EVENT_ID_KEY)
    if event_id:
        event += f";id={event_id}"
    pairs: list[tuple[str, str]] = [
        ("To", f"<{subscription.aor}>;tag={subscription.from_tag}"),
        ("From", f"<{subscription.aor}>;tag={subscription.to_tag}"),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Call-ID", subscription.call_id),
    ]
    if routes:
        pairs.append(("Route", ", ".join(routes)))
    pairs += [("Max-Forwards", "70"), ("Content-Length", "0")]
    if user_agent:
        pairs.append(("User-Agent", user_agent))
    pairs += [
        ("Contact", contact),
        ("Call-Info", call_info),
        ("Event", event),
        ("Subscription-State", state_value),
    ]
    return SipRequest("NOTIFY", uri, Headers.from_pairs(pairs))
