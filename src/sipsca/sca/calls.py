"""Call tracking: appearance state from the INVITE/CANCEL/BYE traffic the proxy routes.

This is Kamailio's ``sca_call_info_update()`` plus its tm/sl callbacks
(sca-behaviour.md §5), driven by three engine calls: :meth:`CallTracker.on_request`
(request about to be forwarded), :meth:`CallTracker.on_response` (response about to be
sent upstream to the UAC) and :meth:`CallTracker.on_ack` (end-to-end ACK forwarded).

Where decisions.md fixes Kamailio, this module follows the decision:

* #2 dialogs are stored as the INVITE had them and matched by Call-ID plus either tag,
  so ACK/BYE/re-INVITE find an answered call whichever side sends them;
* #3 181/182 and other provisional replies change nothing, 401/407 change nothing, a
  failed re-INVITE keeps the call;
* #4 retrieving a ``held-private`` appearance from another phone gets 403;
* #5 hold detection lives in :mod:`sipsca.sca.sdp`;
* #6 only SCA Call-Info values are stripped, other Call-Info values stay;
* #8 outgoing calls without a line-seize get the lowest free appearance, incoming
  calls to a line are shown ``alerting`` while they ring.

Per INVITE transaction the tracker remembers what it decided on the request (line,
index, retrieval backup), keyed by Call-ID, From-tag and CSeq, so the response handling
does not depend on which copy of the request the runtime passes back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from sipsca.errors import RemoteProtocolError
from sipsca.sca.aor import canonical_aor, contact_uri, parse_uri_or_none, user_of
from sipsca.sca.call_info import (
    CallInfoScan,
    domain_of,
    make_appearance_uri,
    render_index_only,
    scan_call_info,
    strip_sca_call_info,
)
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent
from sipsca.sca.sdp import HoldState, sdp_hold_state
from sipsca.sip.fields import NameAddr
from sipsca.sip.message import SipMessage, SipRequest, SipResponse, make_response

__all__ = ["TRACKED_METHODS", "CallTracker", "RequestOutcome"]

logger = logging.getLogger(__name__)

TRACKED_METHODS = frozenset({"INVITE", "CANCEL", "BYE", "PRACK", "REFER"})
TX_TTL = 600.0
"""Seconds a remembered INVITE transaction is kept without a final response (> timer C)."""

S = AppearanceState
_HOLD_STATES = (S.HELD, S.HELD_PRIVATE)
_UNANSWERED = (S.SEIZED, S.PROGRESSING, S.ALERTING)


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
class _Leg:
    """The SCA-relevant parts of a message, parsed once."""

    call_id: str
    from_: NameAddr
    to: NameAddr
    from_tag: str
    to_tag: str
    contact: str


@dataclass(slots=True)
class _Tx:
    caller: str | None
    callee: str | None
    contact: str
    initial: bool
    caller_index: int = 0
    callee_index: int = 0
    backup: Appearance | None = None
    created: float = 0.0


TxKey = tuple[str, str, int]


class CallTracker:
    """Appearance state machine fed by routed call signalling (see module docstring)."""

    def __init__(self, core: ScaCore) -> None:
        self.core = core
        self._tx: dict[TxKey, _Tx] = {}

    # -- helpers ---------------------------------------------------------------------

    def _leg(self, message: SipMessage) -> _Leg | None:
        try:
            from_ = message.from_
            to = message.to
            call_id = message.call_id
        except RemoteProtocolError:
            return None
        contact = contact_uri(message) or self.core.config.contact_fallback
        return _Leg(
            call_id=call_id,
            from_=from_,
            to=to,
            from_tag=from_.tag or "",
            to_tag=to.tag or "",
            contact=contact,
        )

    def _caller_line(self, leg: _Leg) -> str | None:
        directory = self.core.directory
        return self.core.pick_line(directory.caller_candidates(leg.from_, leg.contact or None))

    def _callee_line(self, leg: _Leg, ruri: str | None, caller: str | None) -> str | None:
        directory = self.core.directory
        callee = self.core.pick_line(directory.callee_candidates(leg.to, ruri))
        return None if callee == caller else callee

    def _by_index_or_dialog(self, aor: str, index: int, leg: _Leg) -> Appearance | None:
        """Kamailio's lookup: the Call-Info index (if it is this call) else the dialog."""
        table = self.core.appearances
        if index > 0:
            appearance = table.get(aor, index)
            if appearance is not None and appearance.call_id == leg.call_id:
                return appearance
        return table.find_by_dialog(aor, leg.call_id, leg.from_tag, leg.to_tag)

    def _set_dialog(self, appearance: Appearance, call_id: str, from_tag: str, to_tag: str) -> None:
        if (appearance.call_id, appearance.from_tag, appearance.to_tag) != (
            call_id,
            from_tag,
            to_tag,
        ):
            appearance.call_id, appearance.from_tag, appearance.to_tag = call_id, from_tag, to_tag
            self.core.appearances.touch(appearance)

    @staticmethod
    def _hold(message: SipMessage) -> HoldState:
        return sdp_hold_state(message.body, message.headers.get("content-type"))

    def invite_pending(self, appearance: Appearance) -> bool:
        """A tracked INVITE of the appearance's call still waits for its final response (a
        callee that keeps sending 18x may ring past timer C, which each 18x restarts)."""
        dialog = (appearance.call_id, appearance.from_tag)
        return any(key[:2] == dialog for key in self._tx)

    def expire(self, now: float) -> None:
        """Forget INVITE transactions that never got a final response."""
        for key in [k for k, tx in self._tx.items() if now - tx.created > TX_TTL]:
            del self._tx[key]

    # -- requests --------------------------------------------------------------------

    def on_request(self, request: SipRequest, now: float) -> RequestOutcome:
        method = request.method.upper()
        if method not in TRACKED_METHODS:
            return NO_OUTCOME
        scan = scan_call_info(request.headers)
        strip_sca_call_info(request.headers)
        leg = self._leg(request)
        if leg is None:
            return NO_OUTCOME
        if method == "INVITE":
            return self._invite(request, leg, scan, now)
        if method == "CANCEL":
            self._cancel(request, leg)
        elif method == "BYE":
            self._bye(request, leg, scan)
        return NO_OUTCOME

    def _invite(
        self, request: SipRequest, leg: _Leg, scan: CallInfoScan, now: float
    ) -> RequestOutcome:
        caller = self._caller_line(leg)
        callee = self._callee_line(leg, request.uri, caller)
        if caller is None and callee is None:
            return NO_OUTCOME
        initial = not leg.to_tag
        tx = _Tx(caller=caller, callee=callee, contact=leg.contact, initial=initial, created=now)
        outcome = NO_OUTCOME
        if caller is not None and leg.contact:
            hold = self._hold(request)
            appearance: Appearance | None = None
            if initial:
                retrieval = self._retrieval(request, leg, scan, caller, hold, now, tx)
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
                appearance = self._by_index_or_dialog(caller, scan.index, leg)
                if appearance is not None:
                    if hold is HoldState.HELD:
                        self._hold_state(appearance, scan, leg, now)
                    else:
                        appearance.private_owner = ""
                        self._set_dialog(appearance, leg.call_id, leg.from_tag, leg.to_tag)
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
        self._remember(request, leg, tx)
        return outcome

    def _remember(self, request: SipRequest, leg: _Leg, tx: _Tx) -> None:
        try:
            cseq = request.cseq.number
        except RemoteProtocolError:
            return
        self._tx[(leg.call_id, leg.from_tag, cseq)] = tx

    def _hold_state(
        self, appearance: Appearance, scan: CallInfoScan, leg: _Leg, now: float
    ) -> None:
        """Held by the line: HELD, or HELD_PRIVATE when asked (or already private)."""
        asked = scan.value.state if scan.value is not None else None
        private = asked is S.HELD_PRIVATE or (asked is None and appearance.state is S.HELD_PRIVATE)
        appearance.private_owner = leg.contact if private else ""
        # The request comes from the line side, so its tags orient the stored dialog as
        # (line tag, remote tag), which the Replaces header of a retrieval needs.
        self._set_dialog(appearance, leg.call_id, leg.from_tag, leg.to_tag)
        self.core.appearances.set_state(appearance, S.HELD_PRIVATE if private else S.HELD, now)

    def _outgoing_appearance(
        self, caller: str, leg: _Leg, scan: CallInfoScan, now: float
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
                self._set_dialog(appearance, leg.call_id, leg.from_tag, "")
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
                self._set_dialog(appearance, leg.call_id, leg.from_tag, "")
                return appearance
        appearance = table.seize(
            caller, leg.contact, now=now, call_id=leg.call_id, from_tag=leg.from_tag
        )
        if appearance is None:
            logger.warning("line %s is full: outgoing call %s not shown", caller, leg.call_id)
        return appearance

    def _retrieval(
        self,
        request: SipRequest,
        leg: _Leg,
        scan: CallInfoScan,
        caller: str,
        hold: HoldState,
        now: float,
        tx: _Tx,
    ) -> RequestOutcome | None:
        """§5.8: a member picks up a call held on another phone. None = not a retrieval."""
        if hold is HoldState.HELD or scan.index <= 0:
            return None
        target = self.core.pick_line(self.core.directory.callee_candidates(leg.to, None))
        if target != caller:
            return None
        table = self.core.appearances
        held = table.get(caller, scan.index)
        if held is None or held.state not in _HOLD_STATES:
            return None
        if held.state is S.HELD_PRIVATE and leg.contact != (held.private_owner or held.owner):
            logger.info(
                "retrieval of private hold %s index %d by %s refused",
                caller,
                held.index,
                leg.contact,
            )
            reject = make_response(
                request, 403, "Forbidden - private call", to_tag=self.core.tag_factory()
            )
            return RequestOutcome(reject=reject)
        if not held.to_tag or not held.callee:
            return None
        tx.backup = replace(held)
        tx.caller_index = held.index
        old = (held.call_id, held.from_tag, held.to_tag)
        request.uri = held.callee
        request.headers.add("Replaces", f"{old[0]};to-tag={old[2]};from-tag={old[1]}")
        held.owner = leg.contact
        held.private_owner = ""
        self._set_dialog(held, leg.call_id, leg.from_tag, "")
        table.set_state(held, S.ACTIVE, now)
        self._retrieval_remote_side(held, caller, old, leg)
        logger.info(
            "retrieval of %s index %d by %s -> %s", caller, held.index, leg.contact, held.callee
        )
        return RequestOutcome(retrieval_target=held.callee)

    def _retrieval_remote_side(
        self, held: Appearance, caller: str, old: tuple[str, str, str], leg: _Leg
    ) -> None:
        """§5.8 step 4: the remote party is itself a line: point its appearance at us."""
        remote_uri = parse_uri_or_none(held.callee)
        user = user_of(held.callee)
        if remote_uri is None or not user:
            return
        remote = f"sip:{user}@{domain_of(caller)}"
        if remote == caller or not self.core.is_line(remote):
            return
        appearance = self.core.appearances.find_by_dialog(remote, *old)
        if appearance is not None:
            appearance.callee = leg.contact
            self._set_dialog(appearance, leg.call_id, leg.from_tag, "")

    def _alerting(self, callee: str, leg: _Leg, now: float) -> Appearance | None:
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

    def _cancel(self, request: SipRequest, leg: _Leg) -> None:
        """CANCEL ends a call that is not answered yet (caller or ringing line side)."""
        caller = self._caller_line(leg)
        table = self.core.appearances
        if caller is not None:
            appearance = table.find_by_dialog(caller, leg.call_id, leg.from_tag)
            if appearance is not None and appearance.state in _UNANSWERED:
                table.release(caller, appearance.index)
        callee = self._callee_line(leg, request.uri, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None and appearance.state is S.ALERTING:
                table.release(callee, appearance.index)

    def _bye(
        self, request: SipRequest, leg: _Leg, scan: CallInfoScan, *, answer: bool = False
    ) -> None:
        """BYE from either side ends the call on both lines it involves (decision #2).

        The BYE's final response runs this again (``answer``) for a BYE whose request
        found nothing yet; the usual case is that the request already released the
        appearance, which is not worth a log line (it looked like Kamailio's #341).
        """
        caller = self._caller_line(leg)
        table = self.core.appearances
        if caller is not None:
            appearance = self._by_index_or_dialog(caller, scan.index, leg)
            if appearance is not None:
                table.release(caller, appearance.index)
            elif not answer:
                logger.info("BYE on %s: dialog %s is not active", caller, leg.call_id)
        callee = self._callee_line(leg, request.uri, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None:
                table.release(callee, appearance.index)

    # -- ACK -------------------------------------------------------------------------

    def on_ack(self, ack: SipRequest, now: float) -> None:
        """End-to-end ACK: hold in the ACK's SDP (§5.6), ACTIVE_PENDING -> ACTIVE."""
        leg = self._leg(ack)
        if leg is None:
            return
        table = self.core.appearances
        caller = self._caller_line(leg)
        if caller is not None:
            appearance = table.find_by_dialog(caller, leg.call_id, leg.from_tag, leg.to_tag)
            if appearance is not None:
                hold = self._hold(ack)
                if hold is HoldState.HELD:
                    scan = scan_call_info(ack.headers)
                    self._hold_state(appearance, scan, leg, now)
                elif hold is HoldState.NOT_HELD and appearance.state in _HOLD_STATES:
                    appearance.private_owner = ""
                    table.set_state(appearance, S.ACTIVE, now)
                if appearance.state is S.ACTIVE_PENDING:
                    table.set_state(appearance, S.ACTIVE, now)
        callee = self._callee_line(leg, None, caller)
        if callee is not None:
            appearance = table.find_by_dialog(callee, leg.call_id, leg.from_tag, leg.to_tag)
            # Kamailio notifies the called line's group on the ACK (§5.6 step 2) because it
            # says nothing on the 200; sipsca already announced `active` on the 200, so an
            # ACK that changes nothing visible sends nothing (no duplicate NOTIFY).
            if appearance is not None and appearance.state is S.ACTIVE_PENDING:
                table.set_state(appearance, S.ACTIVE, now)

    # -- responses -------------------------------------------------------------------

    def on_response(self, response: SipResponse, request: SipRequest, now: float) -> None:
        try:
            method = response.cseq.method.upper()
        except RemoteProtocolError:
            return
        if method not in TRACKED_METHODS:
            return
        scan = scan_call_info(response.headers)
        strip_sca_call_info(response.headers)
        leg = self._leg(request)
        if leg is None:
            return
        if method == "INVITE":
            self._invite_response(response, request, leg, scan, now)
        elif method == "BYE" and response.status >= 200:
            self._bye(
                request, leg, CallInfoScan(present=False, value=None, invalid=False), answer=True
            )

    def on_repeated_answer(self, response: SipResponse) -> None:
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
        leg = self._leg(response)
        if leg is None:
            return
        if self.core.pick_line(self.core.directory.caller_candidates(leg.from_, None)) is None:
            return
        assert_identity(response, leg.to, contact_uri(response))

    def _tx_for(self, request: SipRequest, leg: _Leg, final: bool) -> _Tx:
        try:
            key: TxKey | None = (leg.call_id, leg.from_tag, request.cseq.number)
        except RemoteProtocolError:
            key = None
        tx = self._tx.get(key) if key is not None else None
        if tx is not None:
            if final and key is not None:
                del self._tx[key]
            return tx
        caller = self._caller_line(leg)
        callee = self._callee_line(leg, request.uri, caller)
        return _Tx(caller=caller, callee=callee, contact=leg.contact, initial=not leg.to_tag)

    def _invite_response(
        self, response: SipResponse, request: SipRequest, leg: _Leg, scan: CallInfoScan, now: float
    ) -> None:
        status = response.status
        tx = self._tx_for(request, leg, final=status >= 200)
        if tx.caller is not None:
            if status in (180, 183) and tx.initial:
                self._caller_progress(tx, leg, now)
            elif 200 <= status < 300:
                self._caller_answered(tx, leg, response, now)
            elif status >= 400:
                self._caller_failed(tx, leg, status, now)
        if tx.callee is not None and tx.initial:
            if 200 <= status < 300:
                self._callee_answered(tx, leg, response, scan, now)
            elif status >= 300:
                self._callee_failed(tx, leg)

    def _caller_appearance(self, tx: _Tx, leg: _Leg, to_tag: str = "") -> Appearance | None:
        assert tx.caller is not None
        table = self.core.appearances
        if tx.caller_index:
            appearance = table.get(tx.caller, tx.caller_index)
            if appearance is not None and appearance.call_id == leg.call_id:
                return appearance
        return table.find_by_dialog(tx.caller, leg.call_id, leg.from_tag, to_tag or leg.to_tag)

    def _caller_progress(self, tx: _Tx, leg: _Leg, now: float) -> None:
        """First 180/183: ``progressing``; the line-seize is used up (``noresource``)."""
        appearance = self._caller_appearance(tx, leg)
        if appearance is None or appearance.state is not S.SEIZED:
            return
        assert tx.caller is not None
        self.core.appearances.set_state(appearance, S.PROGRESSING, now)
        self.core.end_line_seize(tx.caller, appearance.owner, now, index=appearance.index)

    def _caller_answered(self, tx: _Tx, leg: _Leg, response: SipResponse, now: float) -> None:
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
            and appearance.state not in _UNANSWERED
        ):
            logger.info("second 2xx (fork %s) for %s ignored", to_tag, leg.call_id)
            return
        if tx.initial:
            # A re-INVITE's answer keeps the orientation the request gave the dialog.
            self._set_dialog(appearance, leg.call_id, leg.from_tag, to_tag)
            if remote_contact and appearance.callee != remote_contact:
                appearance.callee = remote_contact
                self.core.appearances.touch(appearance)
        if (tx.initial or not appearance.uri) and remote_aor != tx.caller:
            uri = make_appearance_uri(to.display, remote_aor)
            if uri != appearance.uri:
                appearance.uri = uri
                self.core.appearances.touch(appearance, visible=True)
        if appearance.state not in _HOLD_STATES:
            self.core.appearances.set_state(appearance, S.ACTIVE, now)
        if tx.initial:
            self.core.end_line_seize(tx.caller, appearance.owner, now, index=appearance.index)

    def _caller_failed(self, tx: _Tx, leg: _Leg, status: int, now: float) -> None:
        """Final failure of the line's INVITE (§5.7 with decision #3)."""
        assert tx.caller is not None
        if status in (401, 407) or not tx.initial:
            return
        table = self.core.appearances
        if tx.backup is not None:
            self._roll_back(tx.backup, leg, now)
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
        if appearance is not None and appearance.state in _UNANSWERED:
            table.release(tx.caller, appearance.index)

    def _roll_back(self, backup: Appearance, leg: _Leg, now: float) -> None:
        """A failed retrieval leaves the call held where it was (Kamailio shows idle)."""
        table = self.core.appearances
        current = table.get(backup.aor, backup.index)
        if current is None or current.call_id != leg.call_id:
            return
        current.owner = backup.owner
        current.callee = backup.callee
        current.uri = backup.uri
        current.private_owner = backup.private_owner
        self._set_dialog(current, backup.call_id, backup.from_tag, backup.to_tag)
        table.set_state(current, backup.state, now)
        logger.info("retrieval of %s index %d failed: restored", backup.aor, backup.index)

    def _callee_answered(
        self, tx: _Tx, leg: _Leg, response: SipResponse, scan: CallInfoScan, now: float
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
            self._set_dialog(appearance, leg.call_id, leg.from_tag, to_tag)
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

    def _callee_failed(self, tx: _Tx, leg: _Leg) -> None:
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
