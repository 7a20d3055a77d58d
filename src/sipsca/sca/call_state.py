"""What call tracking reads from a message and keeps between messages.

A :class:`Leg` is the SCA-relevant part of one message, parsed once; :func:`caller_line`
and :func:`callee_line` tell which line each side of it is (if any). What was decided on
an INVITE request (line, index, the appearance before it) is a :class:`Tx`, kept in
:class:`Transactions` by Call-ID, From-tag and CSeq until the final response, so the
response handling does not depend on which copy of the request the runtime passes back.
The request, response and retrieval handling of :mod:`sipsca.sca.calls` share these.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipsca.errors import RemoteProtocolError
from sipsca.sca.aor import contact_uri
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState
from sipsca.sca.sdp import HoldState, sdp_hold_state
from sipsca.sip.fields import NameAddr
from sipsca.sip.message import SipMessage, SipRequest, SipResponse

__all__ = [
    "HOLD_STATES",
    "NO_OUTCOME",
    "TX_TTL",
    "UNANSWERED",
    "Leg",
    "RequestOutcome",
    "Transactions",
    "Tx",
    "TxKey",
    "by_index_or_dialog",
    "callee_line",
    "caller_line",
    "hold_of",
    "leg_of",
    "set_dialog",
]

TX_TTL = 600.0
"""Seconds a remembered INVITE transaction is kept without a final response (> timer C)."""

S = AppearanceState
HOLD_STATES = (S.HELD, S.HELD_PRIVATE)
UNANSWERED = (S.SEIZED, S.PROGRESSING, S.ALERTING)


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What the proxy must do with a request after call tracking looked at it.

    ``reject``: answer the UAC with this response instead of forwarding.
    ``retrieval_target``: forward only to this URI (held-call retrieval, no location
    lookup). ``member_call_info``: value of the ``Call-Info`` header to add to each
    INVITE forked to the line's members (incoming call, decisions.md #8).
    """

    reject: SipResponse | None = None
    retrieval_target: str | None = None
    member_call_info: str | None = None


NO_OUTCOME = RequestOutcome()


@dataclass(frozen=True, slots=True)
class Leg:
    """The SCA-relevant parts of a message, parsed once."""

    call_id: str
    from_: NameAddr
    to: NameAddr
    from_tag: str
    to_tag: str
    contact: str


@dataclass(slots=True)
class Tx:
    """What call tracking decided on one INVITE request.

    ``backup``: the appearance as it was before the request changed it (a retrieval, or
    a re-INVITE from the line), put back when the INVITE fails.
    """

    caller: str | None
    callee: str | None
    contact: str
    initial: bool
    caller_index: int = 0
    callee_index: int = 0
    backup: Appearance | None = None
    created: float = 0.0


TxKey = tuple[str, str, int]


class Transactions:
    """The :class:`Tx` of each INVITE transaction call tracking saw, until its final response."""

    def __init__(self) -> None:
        self._tx: dict[TxKey, Tx] = {}

    def remember(self, request: SipRequest, leg: Leg, tx: Tx) -> None:
        """Keep what was decided on an INVITE; a second pass of the same transaction (a
        spiral through this proxy) keeps the first record, which holds the backup."""
        try:
            cseq = request.cseq.number
        except RemoteProtocolError:
            return
        self._tx.setdefault((leg.call_id, leg.from_tag, cseq), tx)

    def recall(self, request: SipRequest, leg: Leg, final: bool) -> Tx | None:
        """What was decided on ``request``, if it was remembered; forgotten once ``final``."""
        try:
            key: TxKey | None = (leg.call_id, leg.from_tag, request.cseq.number)
        except RemoteProtocolError:
            key = None
        tx = self._tx.get(key) if key is not None else None
        if tx is not None:
            if final and key is not None:
                del self._tx[key]
            return tx
        return None

    def pending(self, appearance: Appearance) -> bool:
        """A tracked INVITE of the appearance's call still waits for its final response (a
        callee that keeps sending 18x may ring past timer C, which each 18x restarts)."""
        dialog = (appearance.call_id, appearance.from_tag)
        return any(key[:2] == dialog for key in self._tx)

    def expire(self, now: float) -> None:
        """Forget INVITE transactions that never got a final response."""
        for key in [k for k, tx in self._tx.items() if now - tx.created > TX_TTL]:
            del self._tx[key]


def leg_of(core: ScaCore, message: SipMessage) -> Leg | None:
    try:
        from_ = message.from_
        to = message.to
        call_id = message.call_id
    except RemoteProtocolError:
        return None
    contact = contact_uri(message) or core.config.contact_fallback
    return Leg(
        call_id=call_id,
        from_=from_,
        to=to,
        from_tag=from_.tag or "",
        to_tag=to.tag or "",
        contact=contact,
    )


def caller_line(core: ScaCore, leg: Leg) -> str | None:
    directory = core.directory
    return core.pick_line(directory.caller_candidates(leg.from_, leg.contact or None))


def callee_line(core: ScaCore, leg: Leg, ruri: str | None, caller: str | None) -> str | None:
    directory = core.directory
    callee = core.pick_line(directory.callee_candidates(leg.to, ruri))
    return None if callee == caller else callee


def by_index_or_dialog(core: ScaCore, aor: str, index: int, leg: Leg) -> Appearance | None:
    """Kamailio's lookup: the Call-Info index (if it is this call) else the dialog."""
    table = core.appearances
    if index > 0:
        appearance = table.get(aor, index)
        if appearance is not None and appearance.call_id == leg.call_id:
            return appearance
    return table.find_by_dialog(aor, leg.call_id, leg.from_tag, leg.to_tag)


def set_dialog(
    core: ScaCore, appearance: Appearance, call_id: str, from_tag: str, to_tag: str
) -> None:
    if (appearance.call_id, appearance.from_tag, appearance.to_tag) != (
        call_id,
        from_tag,
        to_tag,
    ):
        appearance.call_id, appearance.from_tag, appearance.to_tag = call_id, from_tag, to_tag
        core.appearances.touch(appearance)


def hold_of(message: SipMessage) -> HoldState:
    return sdp_hold_state(message.body, message.headers.get("content-type"))
