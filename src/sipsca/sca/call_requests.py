"""Call tracking on the requests the proxy forwards: INVITE, CANCEL, BYE and the ACK.

An INVITE from a line takes an appearance (the seized one, or the lowest free one,
decision #8) or retrieves a held call (:mod:`sipsca.sca.retrieval`); an INVITE to a line
shows it ``alerting`` while it rings; hold in an INVITE's or ACK's SDP (decision #5)
marks the appearance held (a re-INVITE's hold or resume is undone if it fails). CANCEL
ends a call not answered yet, BYE from either side ends it on both lines it involves
(decision #2).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sipsca.sca.call_info import (
    CallInfoScan,
    make_appearance_uri,
    render_index_only,
    scan_call_info,
)
from sipsca.sca.call_state import (
    HOLD_STATES,
    NO_OUTCOME,
    UNANSWERED,
    Leg,
    RequestOutcome,
    Transactions,
    Tx,
    by_index_or_dialog,
    callee_line,
    caller_line,
    hold_of,
    leg_of,
    set_dialog,
)
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState
from sipsca.sca.retrieval import retrieve
from sipsca.sca.sdp import HoldState
from sipsca.sip.message import SipRequest

__all__ = ["CallRequests"]

logger = logging.getLogger(__name__)

S = AppearanceState


class CallRequests:
    """Appearance changes a forwarded request makes (see module docstring)."""

    def __init__(self, core: ScaCore, transactions: Transactions) -> None:
        self.core = core
        self.transactions = transactions

    def invite(
        self, request: SipRequest, leg: Leg, scan: CallInfoScan, now: float
    ) -> RequestOutcome:
        caller = caller_line(self.core, leg)
        callee = callee_line(self.core, leg, request.uri, caller)
        if caller is None and callee is None:
            return NO_OUTCOME
        initial = not leg.to_tag
        tx = Tx(caller=caller, callee=callee, contact=leg.contact, initial=initial, created=now)
        outcome = NO_OUTCOME
        if caller is not None and leg.contact:
            hold = hold_of(request)
            appearance: Appearance | None = None
            if initial:
                retrieval = retrieve(self.core, request, leg, scan, caller, hold, now, tx)
                if retrieval is not None and retrieval.reject is not None:
                    return retrieval
                if retrieval is not None:
                    outcome = retrieval
                    appearance = self.core.appearances.get(caller, tx.caller_index)
                else:
                    appearance = self._outgoing_appearance(caller, leg, scan, now)
                    if hold is HoldState.HELD and appearance is not None:
                        self._hold_state(appearance, scan, leg, now)
            else:
                appearance = by_index_or_dialog(self.core, caller, scan.index, leg)
                if appearance is not None:
                    # A failed re-INVITE leaves the session as it was (RFC 3261 14.1): its
                    # final response puts this copy back (``CallResponses``).
                    tx.backup = appearance.copy()
                    if hold is HoldState.HELD:
                        self._hold_state(appearance, scan, leg, now)
                    else:
                        appearance.private_owner = ""
                        set_dialog(self.core, appearance, leg.call_id, leg.from_tag, leg.to_tag)
                        self.core.appearances.set_state(appearance, S.ACTIVE, now)
                else:
                    logger.info(
                        "re-INVITE on %s matches no appearance (call-id %s)", caller, leg.call_id
                    )
            if appearance is not None:
                tx.caller_index = appearance.index
            # Kamailio notifies the group on every INVITE from a line (traces 01, 12).
            self.core.want_broadcast(caller)
        if callee is not None and initial and self.core.config.incoming_alerting:
            appearance = self._alerting(callee, leg, now)
            if appearance is not None:
                tx.callee_index = appearance.index
                outcome = replace(
                    outcome,
                    member_call_info=render_index_only(
                        callee, appearance.index, self.core.config.call_info_uri
                    ),
                )
        self.transactions.remember(request, leg, tx)
        return outcome

    def _hold_state(self, appearance: Appearance, scan: CallInfoScan, leg: Leg, now: float) -> None:
        """Held by the line: HELD, or HELD_PRIVATE when asked (or already private)."""
        asked = scan.value.state if scan.value is not None else None
        private = asked is S.HELD_PRIVATE or (asked is None and appearance.state is S.HELD_PRIVATE)
        appearance.private_owner = leg.contact if private else ""
        # The request comes from the line side, so its tags orient the stored dialog as
        # (line tag, remote tag), which the Replaces header of a retrieval needs.
        set_dialog(self.core, appearance, leg.call_id, leg.from_tag, leg.to_tag)
        self.core.appearances.set_state(appearance, S.HELD_PRIVATE if private else S.HELD, now)

    def _outgoing_appearance(
        self, caller: str, leg: Leg, scan: CallInfoScan, now: float
    ) -> Appearance | None:
        """The appearance an initial INVITE from the line uses (seized one, or a new one)."""
        table = self.core.appearances
        same_call = table.find_by_dialog(caller, leg.call_id, leg.from_tag)
        if same_call is not None:
            return same_call  # retransmission, or the retry after a 401/407 challenge
        auto = self.core.config.outgoing_auto_appearance
        index = scan.index
        if index > 0:
            appearance = table.get(caller, index)
            if appearance is not None and appearance.state is S.SEIZED and not appearance.call_id:
                set_dialog(self.core, appearance, leg.call_id, leg.from_tag, "")
                return appearance
            if appearance is None and auto:
                return table.seize(
                    caller,
                    leg.contact,
                    now=now,
                    index=index,
                    call_id=leg.call_id,
                    from_tag=leg.from_tag,
                )
            if appearance is None:
                logger.info("INVITE on %s names index %d which is not seized", caller, index)
                return None
        if not auto:
            return None
        for appearance in table.owned_by(caller, leg.contact):
            if appearance.state is S.SEIZED and not appearance.call_id:
                set_dialog(self.core, appearance, leg.call_id, leg.from_tag, "")
                return appearance
        appearance = table.seize(
            caller, leg.contact, now=now, call_id=leg.call_id, from_tag=leg.from_tag
        )
        if appearance is None:
            logger.warning("line %s is full: outgoing call %s not shown", caller, leg.call_id)
        return appearance

    def _alerting(self, callee: str, leg: Leg, now: float) -> Appearance | None:
        """Incoming call to a line: an ``alerting`` appearance while it rings (decision #8)."""
        table = self.core.appearances
        existing = table.find_by_dialog(callee, leg.call_id, leg.from_tag)
        if existing is not None:
            return existing
        appearance = table.seize(
            callee,
            "",
            now=now,
            state=S.ALERTING,
            call_id=leg.call_id,
            from_tag=leg.from_tag,
            uri=make_appearance_uri(leg.from_.display, leg.from_.uri_text),
            callee=leg.from_.uri_text,
        )
        if appearance is None:
            logger.warning("line %s is full: incoming call %s not shown", callee, leg.call_id)
        return appearance

    def cancel(self, request: SipRequest, leg: Leg) -> None:
        """CANCEL ends a call that is not answered yet (caller or ringing line side)."""
        caller = caller_line(self.core, leg)
        table = self.core.appearances
        if caller is not None:
            appearance = table.find_by_dialog(caller, leg.call_id, leg.from_tag)
            if appearance is not None and appearance.state in UNANSWERED:
                table.release(caller, appearance.index)
        callee = callee_line(self.core, leg, request.uri, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None and appearance.state is S.ALERTING:
                table.release(callee, appearance.index)

    def bye(
        self, request: SipRequest, leg: Leg, scan: CallInfoScan, *, answer: bool = False
    ) -> None:
        """BYE from either side ends the call on both lines it involves (decision #2).

        The BYE's final response runs this again (``answer``) for a BYE whose request
        found nothing yet; the usual case is that the request already released the
        appearance, which is not worth a log line (it looked like Kamailio's #341).
        """
        caller = caller_line(self.core, leg)
        table = self.core.appearances
        if caller is not None:
            appearance = by_index_or_dialog(self.core, caller, scan.index, leg)
            if appearance is not None:
                table.release(caller, appearance.index)
            elif not answer:
                logger.info("BYE on %s: dialog %s is not active", caller, leg.call_id)
        callee = callee_line(self.core, leg, request.uri, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None:
                table.release(callee, appearance.index)

    def ack(self, ack: SipRequest, now: float) -> None:
        """End-to-end ACK: hold in the ACK's SDP (§5.6), ACTIVE_PENDING -> ACTIVE."""
        leg = leg_of(self.core, ack)
        if leg is None:
            return
        table = self.core.appearances
        caller = caller_line(self.core, leg)
        if caller is not None:
            appearance = table.find_by_dialog(caller, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None:
                hold = hold_of(ack)
                if hold is HoldState.HELD:
                    scan = scan_call_info(ack.headers)
                    self._hold_state(appearance, scan, leg, now)
                elif hold is HoldState.NOT_HELD and appearance.state in HOLD_STATES:
                    appearance.private_owner = ""
                    table.set_state(appearance, S.ACTIVE, now)
                if appearance.state is S.ACTIVE_PENDING:
                    table.set_state(appearance, S.ACTIVE, now)
        callee = callee_line(self.core, leg, None, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            # Kamailio notifies the called line's group on the ACK (§5.6 step 2) because it
            # says nothing on the 200; sipsca already announced `active` on the 200, so an
            # ACK that changes nothing visible sends nothing (no duplicate NOTIFY).
            if appearance is not None and appearance.state is S.ACTIVE_PENDING:
                table.set_state(appearance, S.ACTIVE, now)
