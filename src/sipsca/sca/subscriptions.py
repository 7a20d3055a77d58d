"""SUBSCRIBE handling for ``call-info`` and ``line-seize`` (sca-behaviour.md §2).

The validation order and reply texts are Kamailio's (§2.2) except where decisions.md
rules otherwise: 489 + Allow-Events for a missing/unknown event (#7), ``Event``
parameters accepted and ``;id=`` echoed, a missing Expires means the package default
(#12), a missing Contact is a 400, members-only lines answer 403 to non-members.

The decision table is §2.4 with three fixes that follow from decisions #9/#10
(documented in docs/compat.md): a failed seize (480) leaves an existing subscription
untouched; an out-of-dialog line-seize that names the index the same phone already holds
(still seized, no call) is granted again instead of 480; the index granted by
"lowest free" is recorded in the subscription; and a line-seize unsubscribe only
releases an appearance that is still merely *seized* (never a call in progress).
A subscription that has ended counts as none (RFC 6665 4.4.1): an in-dialog SUBSCRIBE
for it gets 481, an out-of-dialog one starts afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError
from sipsca.sca.aor import truncate_aor
from sipsca.sca.call_info import scan_call_info
from sipsca.sca.core import ScaCore, log_subscription
from sipsca.sca.model import (
    Appearance,
    AppearanceState,
    ScaEvent,
    Subscription,
    SubscriptionState,
)
from sipsca.sca.notify import EVENT_ID_KEY
from sipsca.sip.fields import parse_name_addr
from sipsca.sip.message import SipRequest, SipResponse, make_response

__all__ = ["ALLOW_EVENTS", "handle_subscribe"]

logger = logging.getLogger(__name__)

ALLOW_EVENTS = "call-info, line-seize"
BAD_SCA_REQUEST = "Bad Shared Call Appearance Request"


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The validated parts of a SUBSCRIBE (row 5 of §2.2 passed)."""

    event: ScaEvent
    event_id: str
    aor: str
    contact: str
    call_id: str
    from_tag: str
    to_tag: str | None
    cseq: int
    expires: int
    record_route: str
    from_aor: str


class _Reject(Exception):
    def __init__(self, response: SipResponse) -> None:
        super().__init__(response.reason)
        self.response = response


def _reply(
    core: ScaCore,
    request: SipRequest,
    status: int,
    reason: str,
    extra: list[tuple[str, str]] | None = None,
    *,
    tag: str | None = None,
) -> SipResponse:
    has_tag = _to_tag_or_none(request) is not None
    to_tag = None if has_tag else (tag or core.tag_factory())
    return make_response(request, status, reason, to_tag=to_tag, extra=extra)


def _to_tag_or_none(request: SipRequest) -> str | None:
    try:
        return request.to_tag
    except RemoteProtocolError:
        return None


_EVENTS = {event.value: event for event in ScaEvent}


def _event_of(request: SipRequest) -> tuple[ScaEvent, str] | None:
    raw = request.headers.get("event")
    if raw is None or not raw.strip():
        return None
    name, _, params = raw.partition(";")
    event = _EVENTS.get(name.strip().lower())
    if event is None:
        return None
    event_id = ""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "id":
            event_id = value.strip()
    return event, event_id


def _parse(core: ScaCore, request: SipRequest, event: ScaEvent, event_id: str) -> _Parsed:
    """Row 5 of §2.2; raises RemoteProtocolError for every malformed part."""
    call_id = request.call_id
    cseq = request.cseq.number
    contacts = request.headers.values("contact")
    if len(contacts) != 1 or contacts[0].strip() == "*":
        raise RemoteProtocolError("SUBSCRIBE needs exactly one Contact")
    contact = parse_name_addr(contacts[0], "Contact").uri_text
    from_ = request.from_
    if not from_.tag:
        raise RemoteProtocolError("From without tag")
    to = request.to
    _ = request.ruri
    routes = request.headers.values("record-route")
    for route in routes:
        parse_name_addr(route, "Record-Route")
    maximum = (
        core.config.call_info_max_expires
        if event is ScaEvent.CALL_INFO
        else core.config.line_seize_max_expires
    )
    requested = request.expires
    expires = maximum if requested is None else min(requested, maximum)
    to_tag = to.tag or None
    if to_tag:
        aor = to.uri_text
        if not core.is_line(aor):
            aor = core.directory.alias_target(aor) or aor
    else:
        candidates = core.directory.subscribe_candidates(request.uri, to.uri_text)
        aor = core.pick_line(candidates) or candidates[0]
    return _Parsed(
        event=event,
        event_id=event_id,
        aor=aor,
        contact=contact,
        call_id=call_id,
        from_tag=from_.tag,
        to_tag=to_tag,
        cseq=cseq,
        expires=max(0, expires),
        record_route=",".join(routes),
        from_aor=truncate_aor(from_.uri_text),
    )


def handle_subscribe(
    core: ScaCore,
    request: SipRequest,
    *,
    now: float,
    flow: str = "",
    authenticated: str | None = None,
) -> SipResponse:
    """Answer a call-info / line-seize SUBSCRIBE; NOTIFYs are queued on ``core``."""
    if request.method != "SUBSCRIBE":
        return _reply(core, request, 500, "Internal server error - config")
    event = _event_of(request)
    if event is None:
        return _reply(core, request, 489, "Bad Event", [("Allow-Events", ALLOW_EVENTS)])
    try:
        parsed = _parse(core, request, *event)
    except RemoteProtocolError as exc:
        logger.info("SUBSCRIBE rejected: %s", exc.reason)
        return _reply(core, request, 400, BAD_SCA_REQUEST)
    user = authenticated or parsed.from_aor
    if not core.directory.is_member(parsed.aor, user):
        logger.info("SUBSCRIBE to %s from non-member %s rejected", parsed.aor, user)
        return _reply(core, request, 403, "Forbidden")
    try:
        if parsed.event is ScaEvent.CALL_INFO:
            return _call_info(core, request, parsed, now, flow)
        return _line_seize(core, request, parsed, now, flow)
    except _Reject as reject:
        return reject.response


def _ok(core: ScaCore, request: SipRequest, parsed: _Parsed, tag: str | None) -> SipResponse:
    """The 2xx of §2.3: 202 (call-info) / 200 (line-seize), headers in Kamailio's order."""
    status, reason = (202, "Accepted") if parsed.event is ScaEvent.CALL_INFO else (200, "OK")
    event = parsed.event.value + (f";id={parsed.event_id}" if parsed.event_id else "")
    extra = [
        ("Event", event),
        ("Contact", core.config.server_address or request.uri),
        ("Allow-Events", ALLOW_EVENTS),
        ("Expires", str(parsed.expires)),
    ]
    return _reply(core, request, status, reason, extra, tag=tag)


def _new_subscription(
    core: ScaCore, parsed: _Parsed, tag: str, now: float, flow: str
) -> Subscription:
    subscription = Subscription(
        subscriber=parsed.contact,
        aor=parsed.aor,
        event=parsed.event,
        expires_at=int(now) + parsed.expires,
        state=SubscriptionState.ACTIVE if parsed.expires > 0 else SubscriptionState.TERMINATED,
        call_id=parsed.call_id,
        from_tag=parsed.from_tag,
        to_tag=tag,
        record_route=parsed.record_route,
        subscribe_cseq=parsed.cseq,
        server_id=core.server_id,
        flow=flow,
    )
    if parsed.event_id:
        subscription.extra[EVENT_ID_KEY] = parsed.event_id
    return subscription


def _update(
    core: ScaCore, subscription: Subscription, parsed: _Parsed, tag: str, now: float, flow: str
) -> None:
    """Kamailio's update rules: new dialog replaces the old one, RR replaced when given."""
    if (subscription.call_id, subscription.from_tag, subscription.to_tag) != (
        parsed.call_id,
        parsed.from_tag,
        tag,
    ):
        subscription.call_id = parsed.call_id
        subscription.from_tag = parsed.from_tag
        subscription.to_tag = tag
    subscription.expires_at = int(now) + parsed.expires
    subscription.state = (
        SubscriptionState.ACTIVE if parsed.expires > 0 else SubscriptionState.TERMINATED
    )
    if parsed.record_route and parsed.record_route != subscription.record_route:
        subscription.record_route = parsed.record_route
    if flow:
        subscription.flow = flow
    subscription.subscribe_cseq = parsed.cseq
    if parsed.event_id:
        subscription.extra[EVENT_ID_KEY] = parsed.event_id
    else:
        subscription.extra.pop(EVENT_ID_KEY, None)


def _finish(core: ScaCore, subscription: Subscription, now: float, stored: bool) -> None:
    """Persist or forget the subscription, then send its own NOTIFY."""
    if subscription.state.is_terminated:
        if stored:
            log_subscription(subscription, "unsubscribed")
        core.notify(subscription, now)
        if stored:
            core.forget(subscription.key)
    else:
        core.notify(subscription, now)


def _live(core: ScaCore, parsed: _Parsed) -> Subscription | None:
    """The subscriber's stored subscription unless it has ended.

    An ended one (unsubscribed, deactivated, a line-seize used up) is kept until the purge
    only for RPC: its final NOTIFY ended the dialog usage (RFC 6665 4.4.1), so an
    in-dialog SUBSCRIBE for it gets 481 (Kamailio revives it) and an out-of-dialog one is
    a new subscription, not a "rebooted phone" (decisions.md 42).
    """
    existing = core.subscriptions.get((parsed.aor, parsed.event, parsed.contact))
    if existing is None or existing.state.is_terminated:
        return None
    return existing


def _call_info(
    core: ScaCore, request: SipRequest, parsed: _Parsed, now: float, flow: str
) -> SipResponse:
    existing = _live(core, parsed)
    if parsed.to_tag is not None:
        if not _same_dialog(existing, parsed):
            return _reply(core, request, 481, "Call Leg/Transaction Does Not Exist")
        assert existing is not None
        _update(core, existing, parsed, parsed.to_tag, now, flow)
        reply = _ok(core, request, parsed, None)
        _finish(core, existing, now, stored=True)
        return reply
    tag = core.tag_factory()
    reply = _ok(core, request, parsed, tag)
    if existing is None:
        subscription = _new_subscription(core, parsed, tag, now, flow)
        if parsed.expires > 0:
            core.subscriptions.add(subscription)
            log_subscription(subscription, "created")
        _finish(core, subscription, now, stored=False)
        return reply
    # An out-of-dialog SUBSCRIBE from a Contact that is already subscribed: the phone
    # rebooted, so whatever it owned is gone (Kamailio's rule, §2.4).
    _update(core, existing, parsed, tag, now, flow)
    log_subscription(existing, "re-subscribed in a new dialog")
    for appearance in core.appearances.owned_by(parsed.aor, parsed.contact):
        core.appearances.release(appearance.aor, appearance.index)
    _finish(core, existing, now, stored=True)
    return reply


def _same_dialog(existing: Subscription | None, parsed: _Parsed) -> bool:
    """An in-dialog SUBSCRIBE belongs to the stored subscription only through its dialog
    (RFC 6665 4.1.2): Kamailio matches on (AoR, event, Contact) alone, so anyone who knew a
    member's Contact could end its subscription or move its NOTIFYs elsewhere."""
    return existing is not None and (existing.call_id, existing.from_tag, existing.to_tag) == (
        parsed.call_id,
        parsed.from_tag,
        parsed.to_tag,
    )


def _regrantable(appearance: Appearance | None, contact: str) -> bool:
    """The phone asks again for an index it already holds, still merely seized."""
    return (
        appearance is not None
        and appearance.owner == contact
        and appearance.state is AppearanceState.SEIZED
        and not appearance.call_id
    )


def _seize(
    core: ScaCore, request: SipRequest, parsed: _Parsed, index: int, previous: int, now: float
) -> Appearance:
    """Grant ``index`` (0 = lowest free) to the subscriber or raise the 480/500 reply."""
    if not core.is_line(parsed.aor):
        raise _Reject(_reply(core, request, 500, "Internal Server Error - seize appearance index"))
    wanted = index or previous
    held = core.appearances.get(parsed.aor, wanted) if wanted else None
    if held is not None and _regrantable(held, parsed.contact):
        return held
    appearance = core.appearances.seize(parsed.aor, parsed.contact, now=now, index=index)
    if appearance is None:
        logger.info(
            "line-seize of %s index %s by %s refused: in use or line full",
            parsed.aor,
            index or "any",
            parsed.contact,
        )
        raise _Reject(_reply(core, request, 480, "Temporarily Unavailable", [("Retry-After", "1")]))
    return appearance


def _line_seize(
    core: ScaCore, request: SipRequest, parsed: _Parsed, now: float, flow: str
) -> SipResponse:
    scan = scan_call_info(request.headers)
    if not scan.present:
        return _reply(core, request, 400, "Bad Request - missing Call-Info header")
    if scan.value is None or scan.value.index is None or scan.value.index < 0:
        return _reply(core, request, 400, "Bad Request - Invalid Call-Info header")
    index = scan.value.index
    existing = _live(core, parsed)
    if parsed.to_tag is not None and not _same_dialog(existing, parsed):
        return _reply(core, request, 481, "Call Leg/Transaction Does Not Exist")
    tag = parsed.to_tag if parsed.to_tag is not None else core.tag_factory()
    new_tag = None if parsed.to_tag is not None else tag

    if parsed.expires == 0:
        if existing is None:
            # Nothing stored, nothing released: a NOTIFY "terminated" for the index.
            probe = _new_subscription(core, parsed, tag, now, flow)
            probe.index = index
            reply = _ok(core, request, parsed, new_tag)
            _finish(core, probe, now, stored=False)
            core.want_broadcast(parsed.aor)
            return reply
        release_index = index or existing.index
        _update(core, existing, parsed, tag, now, flow)
        existing.index = release_index
        appearance = core.appearances.get(parsed.aor, release_index)
        if appearance is None:
            core.terminate(
                existing, SubscriptionState.TERMINATED, now, send=False, expires_at=int(now)
            )
            return _reply(core, request, 500, "Internal Server Error - release seized line")
        if appearance.state is AppearanceState.SEIZED:
            core.appearances.release(parsed.aor, release_index)
        reply = _ok(core, request, parsed, new_tag)
        _finish(core, existing, now, stored=True)
        core.want_broadcast(parsed.aor)
        return reply

    if existing is not None and parsed.to_tag is not None:
        # In-dialog refresh: no new seize.
        _update(core, existing, parsed, tag, now, flow)
        if index:
            existing.index = index
        reply = _ok(core, request, parsed, new_tag)
        _finish(core, existing, now, stored=True)
        core.want_broadcast(parsed.aor)
        return reply

    previous = existing.index if existing is not None else 0
    appearance = _seize(core, request, parsed, index, previous if not index else 0, now)
    if existing is None:
        subscription = _new_subscription(core, parsed, tag, now, flow)
        core.subscriptions.add(subscription)
        log_subscription(subscription, f"created (index {appearance.index})")
    else:
        subscription = existing
        _update(core, subscription, parsed, tag, now, flow)
    subscription.index = appearance.index
    reply = _ok(core, request, parsed, new_tag)
    _finish(core, subscription, now, stored=existing is not None)
    core.want_broadcast(parsed.aor)
    return reply
