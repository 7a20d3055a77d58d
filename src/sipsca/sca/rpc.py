"""The ``sca.*`` RPC commands with Kamailio's output lines and fault texts (§7).

Each function returns the output as a list of lines (kamcmd prints one per line,
JSON-RPC returns the array) or raises :class:`ScaRpcError` with Kamailio's code and
message. Commands Kamailio leaves unimplemented (``sca.subscribers``,
``sca.show_appearance``, ``sca.deactivate_subscription``, fault 600) are implemented
here; their formats are documented in docs/sca.md.

Broadcasts caused by a command are queued on the core and flushed by the engine.

Arguments that name a line or a phone are checked before anything is looked up or
created: an AoR must be a SIP/SIPS URI without parameters (or an already known line),
a Contact/owner a SIP/SIPS URI (or a known subscriber of the line); otherwise the fault
is ``<value>: invalid AoR`` / ``<value>: invalid contact``, worded like Kamailio's
``<state>: invalid state`` (docs/compat.md).
"""

from __future__ import annotations

from sipsca.errors import SipscaError
from sipsca.sca.aor import parse_uri_or_none, truncate_aor
from sipsca.sca.call_info import escape_display
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.sip.uri import SipUri

__all__ = [
    "ScaRpcError",
    "all_appearances",
    "all_subscriptions",
    "deactivate_all_subscriptions",
    "deactivate_subscription",
    "release_appearance",
    "seize_appearance",
    "show_appearance",
    "show_subscription",
    "subscribers",
    "subscription_count",
    "update_appearance",
]

USAGE_COUNT = "usage: sca.subscription_count {call-info | line-seize}"
USAGE_SHOW = "usage: sca.show_subscription sip:user@domain {call-info | line-seize} [sip:user@IP]"
USAGE_DEACTIVATE = (
    "usage: sca.deactivate_subscription sip:user@domain {call-info | line-seize} sip:user@IP"
)
USAGE_SEIZE = "usage: sca.seize_appearance sip:user@domain"
USAGE_UPDATE = (
    "Usage: sca.update_appearance sip:user@domain appearance-index "
    "appearance-state [appearance-uri]"
)
USAGE_RELEASE = "usage: sca.release_appearance user@domain appearance-index"
USAGE_SHOW_APPEARANCE = "usage: sca.show_appearance sip:user@domain [appearance-index]"


class ScaRpcError(SipscaError):
    """An RPC fault: ``code`` (500, Kamailio's code for every SCA fault) and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def _event(name: str, usage: str) -> ScaEvent:
    try:
        return ScaEvent(name.strip())
    except ValueError:
        raise ScaRpcError(500, usage) from None


def _sip_uri(text: str) -> SipUri | None:
    """``text`` parsed when it is a SIP or SIPS URI, else None."""
    uri = parse_uri_or_none(text)
    return uri if uri is not None and uri.is_sip else None


def _check_aor(core: ScaCore, aor: str) -> None:
    """Fault unless ``aor`` can name a line: a SIP/SIPS URI in the form every line has
    (truncated at ``;``, §1.5; no ``?headers``), or a line that already exists whatever
    its form (so nothing stored becomes unreachable by RPC)."""
    if core.is_line(aor):
        return
    uri = _sip_uri(aor)
    if uri is None or uri.headers or truncate_aor(aor) != aor:
        raise ScaRpcError(500, f"{aor}: invalid AoR")


def _check_contact(core: ScaCore, aor: str, contact: str) -> None:
    """Fault unless ``contact`` is a SIP/SIPS URI or a subscriber of the line already."""
    if _sip_uri(contact) is not None:
        return
    if any(core.subscriptions.get((aor, event, contact)) is not None for event in ScaEvent):
        return
    raise ScaRpcError(500, f"{contact}: invalid contact")


def _subscription_line(subscription: Subscription, now: float) -> str:
    aor = parse_uri_or_none(subscription.aor)
    contact = parse_uri_or_none(subscription.subscriber)
    state = subscription.state.header_value
    event = subscription.event.value
    if aor is None or contact is None or not aor.is_sip or not contact.is_sip:
        return (
            f"{subscription.aor} {subscription.subscriber} {event} "
            f"{subscription.expires_at} {state}"
        )
    # Never negative: Kamailio prints ``expires - now`` as is, i.e. minus the epoch for a
    # deactivated subscription (its expires is 0) until the next purge.
    remaining = max(0, subscription.expires_at - int(now))
    return f"{aor.user} {contact.hostport} {event} {remaining} {state}"


def all_subscriptions(core: ScaCore, now: float) -> list[str]:
    """``<AoR user> <subscriber host[:port]> <event> <seconds left> <state>`` per subscription.

    Terminated subscriptions awaiting the purge are listed too (with their state);
    ``<seconds left>`` is 0 once the expiry has passed.
    """
    return [_subscription_line(s, now) for s in core.subscriptions]


def subscription_count(core: ScaCore, event: str) -> list[str]:
    """``<n> <event>``: subscriptions not terminated (deactivated, unsubscribed... ones
    awaiting the purge are not counted; Kamailio counts every record)."""
    parsed = _event(event, USAGE_COUNT)
    return [f"{core.subscriptions.count(parsed)} {parsed.value}"]


def show_subscription(core: ScaCore, aor: str, event: str, contact: str | None) -> list[str]:
    """``<aor> <event> <subscriber> <absolute expires>`` per matching subscription."""
    if not aor:
        raise ScaRpcError(500, USAGE_SHOW)
    parsed = _event(event, USAGE_SHOW)
    _check_aor(core, aor)
    if contact:
        _check_contact(core, aor, contact)
    return [
        f"{s.aor} {s.event.value} {s.subscriber} {s.expires_at}"
        for s in core.subscriptions.for_line(aor, parsed)
        if not contact or s.subscriber == contact
    ]


def subscribers(core: ScaCore) -> list[str]:
    """sipsca's ``sca.subscribers``: ``<aor> <subscriber> <event> <state> <absolute expires>``.

    One line per subscription, grouped by line (AoR sorted), call-info before
    line-seize, most recently created first.
    """
    lines: list[str] = []
    aors = sorted({s.aor for s in core.subscriptions})
    for aor in aors:
        for event in (ScaEvent.CALL_INFO, ScaEvent.LINE_SEIZE):
            for s in core.subscriptions.for_line(aor, event):
                lines.append(
                    f"{s.aor} {s.subscriber} {s.event.value} {s.state.header_value} {s.expires_at}"
                )
    return lines


def _deactivate(core: ScaCore, subscription: Subscription, now: float) -> str:
    core.terminate(subscription, SubscriptionState.TERMINATED_DEACTIVATED, now)
    return f"Deactivating {subscription.event.value} subscription from {subscription.subscriber}"


def deactivate_all_subscriptions(core: ScaCore, now: float) -> list[str]:
    """Terminate every live subscription (``terminated;reason=deactivated``); appearances stay."""
    return [
        _deactivate(core, s, now) for s in core.subscriptions.all() if not s.state.is_terminated
    ]


def deactivate_subscription(
    core: ScaCore, aor: str, event: str, contact: str, now: float
) -> list[str]:
    """sipsca's ``sca.deactivate_subscription``: the same for one subscription."""
    if not aor or not contact:
        raise ScaRpcError(500, USAGE_DEACTIVATE)
    parsed = _event(event, USAGE_DEACTIVATE)
    _check_aor(core, aor)
    _check_contact(core, aor, contact)
    subscription = core.subscriptions.get((aor, parsed, contact))
    if subscription is None or subscription.state.is_terminated:
        raise ScaRpcError(500, f"No {parsed.value} subscription from {contact} to {aor}")
    return [_deactivate(core, subscription, now)]


def _appearance_line(a: Appearance) -> str:
    fields = [
        a.aor,
        str(a.index),
        a.state.wire_name,
        str(int(a.changed_at)),
        a.owner,
        a.callee,
        a.call_id,
        a.from_tag,
        a.to_tag,
    ]
    return " ".join(fields)


def all_appearances(core: ScaCore) -> list[str]:
    """``<aor> <index> <state> <mtime> <owner> <callee> <call-id> <from-tag> <to-tag>``."""
    return [_appearance_line(a) for a in core.appearances.every()]


def show_appearance(core: ScaCore, aor: str, index: int | None) -> list[str]:
    """sipsca's ``sca.show_appearance``: the ``all_appearances`` lines of one line (or index)."""
    if not aor:
        raise ScaRpcError(500, USAGE_SHOW_APPEARANCE)
    _check_aor(core, aor)
    appearances = core.appearances.all(aor)
    if not appearances and not core.is_line(aor):
        raise ScaRpcError(500, f"No appearances for {aor}")
    if index is not None:
        appearance = core.appearances.get(aor, index)
        if appearance is None:
            raise ScaRpcError(500, f"{aor} appearance index {index} is not in use")
        appearances = [appearance]
    return [_appearance_line(a) for a in appearances]


def seize_appearance(core: ScaCore, aor: str, owner: str, now: float) -> list[str]:
    """Seize the lowest free index for ``owner`` (works for an unknown AoR too).

    Both must be SIP/SIPS URIs (or a known line / subscriber): Kamailio seizes for any two
    strings, e.g. ``garbage garbage`` or an owner ``1234`` (kamcmd sends digits as a number).
    """
    if not aor or not owner:
        raise ScaRpcError(500, USAGE_SEIZE)
    _check_aor(core, aor)
    _check_contact(core, aor, owner)
    appearance = core.appearances.seize(aor, owner, now=now)
    if appearance is None:
        raise ScaRpcError(500, "Failed to seize line")
    return [f"Seized {aor} appearance-index {appearance.index} for {owner}"]


def update_appearance(
    core: ScaCore, aor: str, index: int, state: str, uri: str | None, now: float
) -> list[str]:
    """Set an in-use appearance's state (and appearance-uri); no output on success.

    ``active`` stores ACTIVE (Kamailio stores its internal ACTIVE_PENDING, which the
    stale purge removes 35 s later). ``idle`` releases the appearance exactly as
    :func:`release_appearance` does (Kamailio stores an idle appearance that is never
    purged, keeps its index taken and is rendered ``appearance-index=N;...=idle``).
    """
    if not aor or not state:
        raise ScaRpcError(500, USAGE_UPDATE)
    try:
        new_state = AppearanceState.from_wire(state)
    except ValueError:
        raise ScaRpcError(500, f"{state}: invalid state") from None
    _check_aor(core, aor)
    appearance = core.appearances.get(aor, index)
    if appearance is None:
        raise ScaRpcError(500, f"Failed to update {aor} appearance-index {index}")
    if new_state is AppearanceState.IDLE:
        core.appearances.release(aor, index)
        return []
    if uri:
        value = f"<{escape_display(uri)}>"
        if value != appearance.uri:
            appearance.uri = value
            core.appearances.touch(appearance, visible=True)
    if new_state is not AppearanceState.HELD_PRIVATE:
        appearance.private_owner = ""
    core.appearances.set_state(appearance, new_state, now)
    core.want_broadcast(aor)
    return []


def release_appearance(core: ScaCore, aor: str, index: int) -> list[str]:
    """Release an in-use appearance (broadcast); no output on success."""
    if not aor:
        raise ScaRpcError(500, USAGE_RELEASE)
    if index <= 0:
        raise ScaRpcError(500, "appearance-index must be > 0")
    _check_aor(core, aor)
    if not core.appearances.has_line(aor) and not core.is_line(aor):
        raise ScaRpcError(500, f"No appearances for {aor}")
    if core.appearances.release(aor, index) is None:
        raise ScaRpcError(500, f"{aor} appearance index {index} is not in use")
    return []
