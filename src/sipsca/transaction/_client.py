"""Client transactions: the INVITE machine (RFC 3261 17.1.1 + RFC 6026) and the
non-INVITE machine (RFC 3261 17.1.2). Every rule of both machines is in this file, as a
``_TRANSITIONS`` table ``(state, input) -> (effect, new state)`` (architecture 7.3).

Inputs here are responses *received* from the network, timers, ``CANCEL_SENT`` (the TU
sent a CANCEL for an INVITE) and transport errors. The tables list every response class
in every live state, so a response can never hit a missing pair.
"""

from __future__ import annotations

from typing import Any

from sipsca.sip.address import Flow
from sipsca.sip.headers import Headers
from sipsca.sip.message import SipMessage, SipRequest, SipResponse
from sipsca.transaction._core import (
    Input,
    State,
    Transaction,
    TransactionCore,
    terminate,
    transport_failed,
)
from sipsca.transaction.events import Outgoing, ResponseReceived
from sipsca.transaction.timers import Timer

__all__ = [
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "build_ack",
]


class ClientTransaction(Transaction):
    """A request we sent, the bytes that carried it and where they went."""

    __slots__ = ("destination", "out", "request")

    def __init__(self, key: str, request: SipRequest, out: Outgoing) -> None:
        super().__init__(key, out.destination.reliable)
        self.request: SipRequest | None = request
        """The request; released (None) once a final response arrived (see ``_finished``)."""
        self.out: Outgoing | None = out
        """Serialised once; timers A and E re-queue this same object. Released (None) with
        the request."""
        self.destination = out.destination

    def start(self, core: TransactionCore, now: float) -> None:
        """Arm the timers of the initial state (the request itself is already queued)."""
        raise NotImplementedError


def build_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """The hop-by-hop ACK for a 300-699 response to ``request`` (RFC 3261 17.1.1.3).

    Request-URI, Call-ID and From are those of the INVITE; To is the response's (it
    carries the tag); CSeq keeps the number with method ACK; the single Via is the INVITE's
    top Via (same branch, so the server transaction matches it, 17.2.3); the INVITE's Route
    header fields are copied. Max-Forwards is added because every request needs one (8.1.1).
    """
    headers = request.headers
    items: list[list[str]] = [["via", "Via", headers.values("via")[0]]]
    items.extend(["route", "Route", value] for value in headers.get_all("route"))
    items.append(["max-forwards", "Max-Forwards", "70"])
    items.append(["from", "From", headers.get("from") or ""])
    items.append(["to", "To", response.headers.get("to") or headers.get("to") or ""])
    items.append(["call-id", "Call-ID", headers.get("call-id") or ""])
    items.append(["cseq", "CSeq", f"{request.cseq.number} ACK"])
    items.append(["content-length", "Content-Length", "0"])
    return SipRequest("ACK", request.uri, Headers(items))


# -- effects shared by both machines ---------------------------------------------------


def _finished(tx: ClientTransaction) -> None:
    """A final response arrived: the request is never sent again, so the transaction
    drops it while it waits (timers D, K and M; up to 32 s). Every object a waiting
    transaction holds is one more for the cyclic garbage collector to scan."""
    tx.request = None
    tx.out = None


def _report(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """Pass the response to the TU."""
    assert isinstance(msg, SipResponse) and src is not None
    core._emit(ResponseReceived(response=msg, source=src, key=tx.key))


# -- INVITE client (RFC 3261 17.1.1, Figure 5; RFC 6026 Figure 5) ----------------------


def _retransmit_invite(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer A: resend the INVITE, double the interval (17.1.1.2; no T2 cap for INVITE).

    Only unreliable transports retransmit; the timer is never armed otherwise."""
    if tx.reliable:
        return
    if tx.out is not None:  # None only after a final response
        core._send(tx.out)
    tx.interval = max(tx.interval * 2, core._timer_values.t1)
    core._arm(tx, Timer.A, now, tx.interval)


def _invite_timer_b(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer B: no final response; the TU acts as on a 408 (8.1.3.1, 16.7 step 5)."""
    core._timed_out(tx, Timer.B)
    core._terminate(tx)


def _invite_timer_c_calling(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer C before any 1xx: "behave as if the transaction received a 408" (16.8)."""
    core._timed_out(tx, Timer.C)
    core._terminate(tx)


def _invite_timer_c_proceeding(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer C after a 1xx: the TU must CANCEL (16.8); arm B as the 9.1 "no final response
    64*T1 after CANCEL" guard so the transaction cannot outlive an unresponsive peer."""
    core._timed_out(tx, Timer.C)
    if str(Timer.B) not in tx.timers:
        core._arm(tx, Timer.B, now, core._timer_values.b)


def _invite_cancel_guard(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """CANCEL sent in Proceeding: destroy the transaction if no final response comes within
    64*T1 (9.1: "SHOULD then consider the original transaction cancelled"); timer B."""
    if str(Timer.B) not in tx.timers:
        core._arm(tx, Timer.B, now, core._timer_values.b)


def _invite_first_provisional(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """First 1xx: stop retransmitting (A) and timer B (17.1.1.2: B belongs to Calling),
    unless a CANCEL was already sent: then B restarts as the 9.1 guard; a 1xx other than
    100 restarts timer C (16.7 step 2); report."""
    assert isinstance(tx, ClientInviteTransaction)
    core._cancel(tx, Timer.A)
    if tx.cancel_sent:
        core._arm(tx, Timer.B, now, core._timer_values.b)
    else:
        core._cancel(tx, Timer.B)
    _invite_provisional(core, tx, now, msg, src)


def _invite_cancel_noted(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """CANCEL sent before any 1xx (9.1 says wait for one; the TU did not): timer B keeps
    running, and is restarted as the 9.1 guard when the first 1xx arrives."""
    assert isinstance(tx, ClientInviteTransaction)
    tx.cancel_sent = True


def _invite_provisional(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """Another 1xx: a 1xx other than 100 restarts timer C (16.7 step 2); report."""
    assert isinstance(msg, SipResponse)
    if msg.status > 100 and core._timer_values.c > 0.0:
        core._arm(tx, Timer.C, now, core._timer_values.c)
    _report(core, tx, now, msg, src)


def _invite_accepted(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """2xx: report; wait in Accepted for 2xx retransmissions and forked 2xx (RFC 6026
    timer M), because the TU must ACK every one of them."""
    core._cancel(tx, Timer.A)
    core._cancel(tx, Timer.B)
    core._cancel(tx, Timer.C)
    _finished(tx)
    _report(core, tx, now, msg, src)
    core._arm(tx, Timer.M, now, core._timer_values.b)


def _invite_rejected(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """300-699: send the ACK (17.1.1.3) to the INVITE's destination, report, wait in
    Completed for retransmissions of the response (timer D; 0 on reliable transports)."""
    assert isinstance(tx, ClientInviteTransaction) and isinstance(msg, SipResponse)
    core._cancel(tx, Timer.A)
    core._cancel(tx, Timer.B)
    core._cancel(tx, Timer.C)
    assert tx.request is not None
    ack = build_ack(tx.request, msg)
    _finished(tx)
    # Only the bytes are kept: this same object is re-sent for every retransmitted final
    # (the first send carries the message, which marks it as no retransmission).
    tx.ack = Outgoing(data=ack.to_bytes(), destination=tx.destination)
    core._send(Outgoing(data=tx.ack.data, destination=tx.destination, message=ack))
    _report(core, tx, now, msg, src)
    core._arm(tx, Timer.D, now, 0.0 if tx.reliable else core._timer_values.d)


def _invite_resend_ack(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """A retransmitted 300-699: ACK it again, don't bother the TU (17.1.1.2)."""
    assert isinstance(tx, ClientInviteTransaction)
    if tx.ack is not None:
        core._send(tx.ack)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.1 as amended by RFC 6026 (Accepted state), plus proxy timer C.

    Timer C (RFC 3261 16.6 step 11) is optional (``TransactionLayer(timer_c=True)``): the
    proxy may run it per server transaction instead. When on, it starts with the
    transaction, restarts on every 1xx other than 100 and is reported as
    ``TransactionTimedOut(timer="C")``. Either way a CANCEL sent in Proceeding arms timer B
    as the RFC 3261 9.1 guard, so the transaction ends even if the peer never answers.
    """

    __slots__ = ("ack", "cancel_sent")

    INITIAL = State.CALLING
    KIND = "client_invite"

    def __init__(self, key: str, request: SipRequest, out: Outgoing) -> None:
        super().__init__(key, request, out)
        self.ack: Outgoing | None = None
        """The ACK sent for a 300-699, re-sent for each retransmission of it."""
        self.cancel_sent = False
        """The TU sent a CANCEL while in Calling (see ``_invite_cancel_noted``)."""

    def start(self, core: TransactionCore, now: float) -> None:
        """Calling: timer A (unreliable only), B and C."""
        values = core._timer_values
        if not self.reliable:
            self.interval = values.t1
            core._arm(self, Timer.A, now, values.t1)
        core._arm(self, Timer.B, now, values.b)
        if values.c > 0.0:
            core._arm(self, Timer.C, now, values.c)

    _TRANSITIONS = {
        (State.CALLING, Timer.A): (_retransmit_invite, State.CALLING),
        (State.CALLING, Timer.B): (_invite_timer_b, State.TERMINATED),
        (State.CALLING, Timer.C): (_invite_timer_c_calling, State.TERMINATED),
        (State.CALLING, Input.PROVISIONAL): (_invite_first_provisional, State.PROCEEDING),
        (State.CALLING, Input.FINAL_2XX): (_invite_accepted, State.ACCEPTED),
        (State.CALLING, Input.FINAL_NON2XX): (_invite_rejected, State.COMPLETED),
        (State.CALLING, Input.CANCEL_SENT): (_invite_cancel_noted, State.CALLING),
        (State.CALLING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.PROCEEDING, Input.PROVISIONAL): (_invite_provisional, State.PROCEEDING),
        (State.PROCEEDING, Input.FINAL_2XX): (_invite_accepted, State.ACCEPTED),
        (State.PROCEEDING, Input.FINAL_NON2XX): (_invite_rejected, State.COMPLETED),
        (State.PROCEEDING, Timer.C): (_invite_timer_c_proceeding, State.PROCEEDING),
        (State.PROCEEDING, Input.CANCEL_SENT): (_invite_cancel_guard, State.PROCEEDING),
        (State.PROCEEDING, Timer.B): (_invite_timer_b, State.TERMINATED),
        (State.PROCEEDING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.ACCEPTED, Input.PROVISIONAL): (None, State.ACCEPTED),
        (State.ACCEPTED, Input.FINAL_2XX): (_report, State.ACCEPTED),
        (State.ACCEPTED, Input.FINAL_NON2XX): (None, State.ACCEPTED),
        (State.ACCEPTED, Input.CANCEL_SENT): (None, State.ACCEPTED),
        (State.ACCEPTED, Timer.M): (terminate, State.TERMINATED),
        (State.ACCEPTED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.COMPLETED, Input.PROVISIONAL): (None, State.COMPLETED),
        (State.COMPLETED, Input.FINAL_2XX): (None, State.COMPLETED),
        (State.COMPLETED, Input.FINAL_NON2XX): (_invite_resend_ack, State.COMPLETED),
        (State.COMPLETED, Input.CANCEL_SENT): (None, State.COMPLETED),
        (State.COMPLETED, Timer.D): (terminate, State.TERMINATED),
        (State.COMPLETED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
    }


# -- non-INVITE client (RFC 3261 17.1.2, Figure 6) -------------------------------------


def _retransmit_trying(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer E in Trying: resend; the interval doubles up to T2 (17.1.2.2).

    Only unreliable transports retransmit; the timer is never armed otherwise."""
    if tx.reliable:
        return
    if tx.out is not None:  # None only after a final response
        core._send(tx.out)
    tx.interval = min(max(tx.interval * 2, core._timer_values.t1), core._timer_values.t2)
    core._arm(tx, Timer.E, now, tx.interval)


def _retransmit_proceeding(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer E in Proceeding: resend every T2 (17.1.2.2: "reset with a value of T2").

    Only unreliable transports retransmit; the timer is never armed otherwise."""
    if tx.reliable:
        return
    if tx.out is not None:  # None only after a final response
        core._send(tx.out)
    tx.interval = core._timer_values.t2
    core._arm(tx, Timer.E, now, tx.interval)


def _non_invite_timer_f(
    core: TransactionCore, tx: ClientTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer F: no final response; the TU acts as on a 408 (8.1.3.1)."""
    core._timed_out(tx, Timer.F)
    core._terminate(tx)


def _non_invite_completed(
    core: TransactionCore,
    tx: ClientTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """Final response: report; absorb its retransmissions for T4 (timer K; 0 if reliable)."""
    core._cancel(tx, Timer.E)
    core._cancel(tx, Timer.F)
    _finished(tx)
    _report(core, tx, now, msg, src)
    if tx.reliable:
        core._arm(tx, Timer.K, now, 0.0)  # K is zero: Terminated at once
    else:
        core._retire(tx, now, core._timer_values.t4)


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.2 (also used for CANCEL, which is a non-INVITE transaction, 9.1)."""

    __slots__ = ()

    INITIAL = State.TRYING
    KIND = "client_non_invite"

    def start(self, core: TransactionCore, now: float) -> None:
        """Trying: timer E (unreliable only) and F."""
        values = core._timer_values
        if not self.reliable:
            self.interval = values.t1
            core._arm(self, Timer.E, now, values.t1)
        core._arm(self, Timer.F, now, values.b)

    _TRANSITIONS = {
        (State.TRYING, Timer.E): (_retransmit_trying, State.TRYING),
        (State.TRYING, Timer.F): (_non_invite_timer_f, State.TERMINATED),
        (State.TRYING, Input.PROVISIONAL): (_report, State.PROCEEDING),
        (State.TRYING, Input.FINAL): (_non_invite_completed, State.COMPLETED),
        (State.TRYING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.PROCEEDING, Timer.E): (_retransmit_proceeding, State.PROCEEDING),
        (State.PROCEEDING, Timer.F): (_non_invite_timer_f, State.TERMINATED),
        (State.PROCEEDING, Input.PROVISIONAL): (_report, State.PROCEEDING),
        (State.PROCEEDING, Input.FINAL): (_non_invite_completed, State.COMPLETED),
        (State.PROCEEDING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.COMPLETED, Input.PROVISIONAL): (None, State.COMPLETED),
        (State.COMPLETED, Input.FINAL): (None, State.COMPLETED),
        (State.COMPLETED, Timer.K): (terminate, State.TERMINATED),
        (State.COMPLETED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
    }
