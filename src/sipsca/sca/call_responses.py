"""Call tracking on the responses sent upstream to the UAC, and P-Asserted-Identity.

An INVITE's 180/183 shows the caller's appearance ``progressing``, its 2xx makes it
``active`` (and the called line's appearance ``active`` pending the ACK), a failure
releases what the INVITE took or rolls a failed retrieval back (decision #3: 181/182,
other provisionals and 401/407 change nothing; a failed re-INVITE keeps the call, with
the state it had before that re-INVITE). A 2xx toward a line gets
``P-Asserted-Identity`` naming the answering party, retransmissions too.
"""

from __future__ import annotations

import logging

from sipsca.errors import RemoteProtocolError
from sipsca.sca.aor import canonical_aor, contact_uri
from sipsca.sca.call_info import CallInfoScan, make_appearance_uri, strip_sca_call_info
from sipsca.sca.call_state import (
    HOLD_STATES,
    UNANSWERED,
    Leg,
    Transactions,
    Tx,
    callee_line,
    caller_line,
    leg_of,
    set_dialog,
)
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent
from sipsca.sca.retrieval import roll_back
from sipsca.sip.fields import NameAddr
from sipsca.sip.message import SipRequest, SipResponse

__all__ = ["CallResponses", "assert_identity", "pai_value"]

logger = logging.getLogger(__name__)

S = AppearanceState


class CallResponses:
    """Appearance changes a response sent upstream makes (see module docstring)."""

    def __init__(self, core: ScaCore, transactions: Transactions) -> None:
        self.core = core
        self.transactions = transactions

    def invite_response(
        self, response: SipResponse, request: SipRequest, leg: Leg, scan: CallInfoScan, now: float
    ) -> None:
        status = response.status
        tx = self._tx_for(request, leg, final=status >= 200)
        if tx.caller is not None:
            if status in (180, 183) and tx.initial:
                self._caller_progress(tx, leg, now)
            elif 200 <= status < 300:
                self._caller_answered(tx, leg, response, now)
            elif status >= 300 and not tx.initial:
                self._reinvite_failed(tx, leg, now)
            elif status >= 400:
                self._caller_failed(tx, leg, status, now)
        if tx.callee is not None and tx.initial:
            if 200 <= status < 300:
                self._callee_answered(tx, leg, response, scan, now)
            elif status >= 300:
                self._callee_failed(tx, leg)

    def repeated_answer(self, response: SipResponse) -> None:
        """A retransmitted 2xx relayed again: the edits of the first copy (SCA Call-Info
        stripped, P-Asserted-Identity toward a line), no state change. Both follow from the
        response itself, so nothing is remembered per call for it."""
        try:
            if response.cseq.method.upper() != "INVITE":
                return
        except RemoteProtocolError:
            return
        strip_sca_call_info(response.headers)
        if response.headers.get("p-asserted-identity") is not None:
            return
        leg = leg_of(self.core, response)
        if leg is None:
            return
        if self.core.pick_line(self.core.directory.caller_candidates(leg.from_, None)) is None:
            return
        assert_identity(response, leg.to, contact_uri(response))

    def _tx_for(self, request: SipRequest, leg: Leg, final: bool) -> Tx:
        tx = self.transactions.recall(request, leg, final)
        if tx is not None:
            return tx
        caller = caller_line(self.core, leg)
        callee = callee_line(self.core, leg, request.uri, caller)
        return Tx(caller=caller, callee=callee, contact=leg.contact, initial=not leg.to_tag)

    def _caller_appearance(self, tx: Tx, leg: Leg, to_tag: str = "") -> Appearance | None:
        assert tx.caller is not None
        table = self.core.appearances
        if tx.caller_index:
            appearance = table.get(tx.caller, tx.caller_index)
            if appearance is not None and appearance.call_id == leg.call_id:
                return appearance
        return table.find_by_dialog(tx.caller, leg.call_id, leg.from_tag, to_tag or leg.to_tag)

    def _caller_progress(self, tx: Tx, leg: Leg, now: float) -> None:
        """First 180/183: ``progressing``; the line-seize is used up (``noresource``)."""
        appearance = self._caller_appearance(tx, leg)
        if appearance is None or appearance.state is not S.SEIZED:
            return
        assert tx.caller is not None
        self.core.appearances.set_state(appearance, S.PROGRESSING, now)
        self.core.end_line_seize(tx.caller, appearance.owner, now, index=appearance.index)

    def _caller_answered(self, tx: Tx, leg: Leg, response: SipResponse, now: float) -> None:
        """2xx to an INVITE from the line: PAI toward the phone, appearance ``active``."""
        assert tx.caller is not None
        try:
            to = response.to
        except RemoteProtocolError:
            return
        remote_contact = contact_uri(response)
        remote_aor = assert_identity(response, to, remote_contact)
        self.core.want_broadcast(tx.caller)
        to_tag = to.tag or ""
        appearance = self._caller_appearance(tx, leg, to_tag)
        if appearance is None:
            return
        if (
            tx.initial
            and appearance.to_tag
            and to_tag
            and appearance.to_tag != to_tag
            and appearance.state not in UNANSWERED
        ):
            logger.info("second 2xx (fork %s) for %s ignored", to_tag, leg.call_id)
            return
        if tx.initial:
            # A re-INVITE's answer keeps the orientation the request gave the dialog.
            set_dialog(self.core, appearance, leg.call_id, leg.from_tag, to_tag)
            if remote_contact and appearance.callee != remote_contact:
                appearance.callee = remote_contact
                self.core.appearances.touch(appearance)
        if (tx.initial or not appearance.uri) and remote_aor != tx.caller:
            uri = make_appearance_uri(to.display, remote_aor)
            if uri != appearance.uri:
                appearance.uri = uri
                self.core.appearances.touch(appearance, visible=True)
        if appearance.state not in HOLD_STATES:
            self.core.appearances.set_state(appearance, S.ACTIVE, now)
        if tx.initial:
            self.core.end_line_seize(tx.caller, appearance.owner, now, index=appearance.index)

    def _reinvite_failed(self, tx: Tx, leg: Leg, now: float) -> None:
        """A re-INVITE from the line failed: the session is as it was (RFC 3261 14.1), so
        the appearance gets back what the request changed (a failed hold stays active, a
        failed resume held). 401/407 too: the retry with credentials passes through again
        and sets the state again, and a retry never sent must not leave a hold shown."""
        if tx.backup is not None:
            roll_back(self.core, tx.backup, leg, now)

    def _caller_failed(self, tx: Tx, leg: Leg, status: int, now: float) -> None:
        """Final failure of the line's initial INVITE (§5.7 with decision #3)."""
        assert tx.caller is not None
        if status in (401, 407):
            return
        table = self.core.appearances
        if tx.backup is not None:
            roll_back(self.core, tx.backup, leg, now)
            return
        appearance = self._caller_appearance(tx, leg)
        seize = self.core.subscriptions.get((tx.caller, ScaEvent.LINE_SEIZE, tx.contact))
        ended = self.core.end_line_seize(
            tx.caller, tx.contact, now, index=appearance.index if appearance is not None else 0
        )
        if appearance is None and ended and seize is not None:
            seized = table.get(tx.caller, seize.index)
            if seized is not None and seized.state is S.SEIZED and seized.owner == tx.contact:
                appearance = seized
        if appearance is not None and appearance.state in UNANSWERED:
            table.release(tx.caller, appearance.index)

    def _callee_answered(
        self, tx: Tx, leg: Leg, response: SipResponse, scan: CallInfoScan, now: float
    ) -> None:
        """A member answered an incoming call: the appearance becomes active (§5.5)."""
        assert tx.callee is not None
        table = self.core.appearances
        try:
            to_tag = response.to.tag or ""
        except RemoteProtocolError:
            return
        answering = contact_uri(response) or self.core.config.contact_fallback
        appearance: Appearance | None = None
        if tx.callee_index:
            candidate = table.get(tx.callee, tx.callee_index)
            if candidate is not None and candidate.call_id == leg.call_id:
                appearance = candidate
        if appearance is None:
            appearance = table.find_by_dialog(tx.callee, leg.call_id, leg.from_tag)
        wanted = scan.index
        if appearance is not None:
            if appearance.to_tag and to_tag and appearance.to_tag != to_tag:
                logger.info("second answer (fork %s) for %s ignored", to_tag, leg.call_id)
                return
            if wanted and wanted != appearance.index and appearance.state is S.ALERTING:
                moved = table.move(appearance, wanted, now)
                appearance = moved or appearance
            appearance.owner = answering
            set_dialog(self.core, appearance, leg.call_id, leg.from_tag, to_tag)
            if appearance.state in (S.ALERTING, S.SEIZED, S.PROGRESSING):
                table.set_state(appearance, S.ACTIVE_PENDING, now)
            return
        if wanted and table.get(tx.callee, wanted) is not None:
            wanted = 0
        table.seize(
            tx.callee,
            answering,
            now=now,
            index=wanted,
            state=S.ACTIVE_PENDING,
            call_id=leg.call_id,
            from_tag=leg.from_tag,
            to_tag=to_tag,
            uri=make_appearance_uri(leg.from_.display, leg.from_.uri_text),
            callee=leg.from_.uri_text,
        )

    def _callee_failed(self, tx: Tx, leg: Leg) -> None:
        """An incoming call ended unanswered (busy, declined, redirected, cancelled)."""
        assert tx.callee is not None
        table = self.core.appearances
        appearance = table.find_by_dialog(tx.callee, leg.call_id, leg.from_tag)
        if appearance is not None and appearance.state is S.ALERTING:
            table.release(tx.callee, appearance.index)


def assert_identity(response: SipResponse, to: NameAddr, contact: str | None) -> str:
    """Add ``P-Asserted-Identity`` (the answering party) to a 2xx toward a line; returns
    the remote AoR it names."""
    remote_aor = canonical_aor(to, contact)
    response.headers.add("P-Asserted-Identity", pai_value(to.display, remote_aor))
    return remote_aor


def pai_value(display: str, aor: str) -> str:
    """``P-Asserted-Identity`` value toward the line: To display (verbatim) + remote AoR."""
    display = display.strip()
    return f"{display} <{aor}>" if display else f"<{aor}>"
