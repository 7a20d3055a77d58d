"""Call tracking: appearance state from the INVITE/CANCEL/BYE traffic the proxy routes.

This is Kamailio's ``sca_call_info_update()`` plus its tm/sl callbacks
(sca-behaviour.md §5), driven by three engine calls: :meth:`CallTracker.on_request`
(request about to be forwarded), :meth:`CallTracker.on_response` (response about to be
sent upstream to the UAC) and :meth:`CallTracker.on_ack` (end-to-end ACK forwarded).

Where decisions.md fixes Kamailio, this module follows the decision:

* #2 dialogs are stored as the INVITE had them and matched by Call-ID plus either tag,
  so ACK/BYE/re-INVITE find an answered call whichever side sends them;
* #3 181/182 and other provisional replies change nothing, 401/407 change nothing, a
  failed re-INVITE keeps the call and undoes the hold or resume it announced;
* #4 retrieving a ``held-private`` appearance from another phone gets 403;
* #5 hold detection lives in :mod:`sipsca.sca.sdp`;
* #6 only SCA Call-Info values are stripped, other Call-Info values stay;
* #8 outgoing calls without a line-seize get the lowest free appearance, incoming
  calls to a line are shown ``alerting`` while they ring.

Per INVITE transaction the tracker remembers what it decided on the request (line,
index, the appearance as it was before), keyed by Call-ID, From-tag and CSeq, so the
response handling does not depend on which copy of the request the runtime passes back.

:class:`CallTracker` strips the SCA Call-Info and dispatches; the work is done in
:mod:`~sipsca.sca.call_requests` (INVITE, CANCEL, BYE, ACK),
:mod:`~sipsca.sca.call_responses` (responses, P-Asserted-Identity) and
:mod:`~sipsca.sca.retrieval` (held-call retrieval), over the legs and remembered
transactions of :mod:`~sipsca.sca.call_state`.
"""

from __future__ import annotations

from sipsca.errors import RemoteProtocolError
from sipsca.sca.call_info import CallInfoScan, scan_call_info, strip_sca_call_info
from sipsca.sca.call_requests import CallRequests
from sipsca.sca.call_responses import CallResponses
from sipsca.sca.call_state import NO_OUTCOME, RequestOutcome, Transactions, leg_of
from sipsca.sca.core import ScaCore
from sipsca.sca.model import Appearance
from sipsca.sip.message import SipRequest, SipResponse

__all__ = ["TRACKED_METHODS", "CallTracker", "RequestOutcome"]

TRACKED_METHODS = frozenset({"INVITE", "CANCEL", "BYE", "PRACK", "REFER"})


class CallTracker:
    """Appearance state machine fed by routed call signalling (see module docstring)."""

    def __init__(self, core: ScaCore) -> None:
        self.core = core
        self._tx = Transactions()
        self._requests = CallRequests(core, self._tx)
        self._responses = CallResponses(core, self._tx)

    def invite_pending(self, appearance: Appearance) -> bool:
        """A tracked INVITE of the appearance's call still waits for its final response (a
        callee that keeps sending 18x may ring past timer C, which each 18x restarts)."""
        return self._tx.pending(appearance)

    def expire(self, now: float) -> None:
        """Forget INVITE transactions that never got a final response."""
        self._tx.expire(now)

    # -- requests --------------------------------------------------------------------

    def on_request(self, request: SipRequest, now: float) -> RequestOutcome:
        method = request.method.upper()
        if method not in TRACKED_METHODS:
            return NO_OUTCOME
        scan = scan_call_info(request.headers)
        strip_sca_call_info(request.headers)
        leg = leg_of(self.core, request)
        if leg is None:
            return NO_OUTCOME
        if method == "INVITE":
            return self._requests.invite(request, leg, scan, now)
        if method == "CANCEL":
            self._requests.cancel(request, leg)
        elif method == "BYE":
            self._requests.bye(request, leg, scan)
        return NO_OUTCOME

    # -- ACK -------------------------------------------------------------------------

    def on_ack(self, ack: SipRequest, now: float) -> None:
        """End-to-end ACK: hold in the ACK's SDP (§5.6), ACTIVE_PENDING -> ACTIVE."""
        self._requests.ack(ack, now)

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
        leg = leg_of(self.core, request)
        if leg is None:
            return
        if method == "INVITE":
            self._responses.invite_response(response, request, leg, scan, now)
        elif method == "BYE" and response.status >= 200:
            self._requests.bye(
                request, leg, CallInfoScan(present=False, value=None, invalid=False), answer=True
            )

    def on_repeated_answer(self, response: SipResponse) -> None:
        """A retransmitted 2xx relayed again: the edits of the first copy (SCA Call-Info
        stripped, P-Asserted-Identity toward a line), no state change. Both follow from the
        response itself, so nothing is remembered per call for it."""
        self._responses.repeated_answer(response)
