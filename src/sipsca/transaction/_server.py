"""Server transactions: the INVITE machine (RFC 3261 17.2.1 + RFC 6026) and the
non-INVITE machine (RFC 3261 17.2.2), plus where their responses go (RFC 3261 18.2.2,
RFC 3581). Every rule of both machines is in this file, as a ``_TRANSITIONS`` table
``(state, input) -> (effect, new state)`` (architecture 7.3).

Inputs here are retransmitted requests and ACKs from the network, responses *sent* by
the TU, timers and transport errors. Request and ACK inputs are listed for every live
state; a response the TU may not send in a state (a second final response, a 1xx after
the final) is a missing pair and raises :class:`~sipsca.errors.LocalProtocolError`.

The layer never sends 100 Trying by itself (RFC 3261 17.2.1 lets the TU skip it when it
answers within 200 ms): the TU sends it through ``send_response`` so it controls the
reason phrase and the timing.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sipsca.errors import RemoteProtocolError
from sipsca.sip.address import Flow
from sipsca.sip.fields import Via
from sipsca.sip.message import SipMessage, SipRequest, SipResponse
from sipsca.transaction._core import (
    Input,
    State,
    Transaction,
    TransactionCore,
    terminate,
    transport_failed,
)
from sipsca.transaction.events import Outgoing, RequestReceived
from sipsca.transaction.timers import Timer

__all__ = [
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "reply_via_problem",
    "response_destination",
    "stateless_response_destination",
]


def _default_port(transport: str) -> int:
    return 5061 if transport.upper() == "TLS" else 5060


def response_destination(response_via: Via, source: Flow) -> Flow:
    """Where a response to a request received from ``source`` goes (RFC 3261 18.2.2).

    * Reliable transport: back over the flow the request came in on (the runtime keeps
      the connection; 18.2.2 "using the existing connection").
    * ``maddr``: that address, sent-by port or 5060.
    * ``rport`` present, with or without a value (RFC 3581 4): the source IP (``received``
      when the Via carries it) and the source port, which is what gets through NATs.
    * Otherwise ``received`` (else the source IP, which is what ``received`` would hold;
      resolving the sent-by name is not the transaction layer's job) with the sent-by port
      (5060, or 5061 for TLS, when absent).
    """
    if source.reliable:
        return source
    maddr = received = None
    rport = False
    for name, value in response_via.params:  # one pass: this runs for every transaction
        lname = name.lower()
        if lname == "received":
            received = value
        elif lname == "rport":
            rport = True
        elif lname == "maddr" and maddr is None:
            maddr = value  # the first, as reply_via_problem checked it
    if maddr:
        return Flow(source.transport, maddr.strip("[]"), response_via.port or 5060)
    host = received or source.host
    port = source.port if rport else response_via.port or _default_port(response_via.transport)
    if host == source.host and port == source.port:
        return source  # the usual case: no new Flow per transaction
    return Flow(source.transport, host, port)


def reply_via_problem(via: Via, source: Flow) -> str | None:
    """Why :func:`response_destination` cannot route a reply to a request received from
    ``source`` whose top Via is ``via``; None when it can.

    Only an unreliable transport reads the Via (a reliable one answers over the
    connection). There a ``maddr`` must be an IP address: the layer resolves no names
    (RFC 3263 5 is not done for responses), so a host name (or an empty or mistyped value)
    would lose every reply. The runtime answers such a request 400 at the packet's source.
    """
    if source.reliable:
        return None
    maddr = via.param("maddr")
    if maddr is not None and not _is_ip(maddr):
        return "Unusable Via maddr (not an IP address)"
    if maddr is not None and _is_ip(source.host) and _ipv6(maddr) != _ipv6(source.host):
        # replies leave by the socket the request came in on, of the source's family
        return "Unusable Via maddr (other address family)"
    return None


def _ipv6(text: str) -> bool:
    return ":" in text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") else text)
    except ValueError:
        return False
    return True


_STATELESS_TRANSPORTS = frozenset(("udp", "tcp", "tls"))
"""Transports a stateless response can leave on (the runtime has no others)."""


def stateless_response_destination(response_via: Via) -> Flow:
    """Where a response with no server transaction (and so no known source) goes.

    Read from the Via alone (RFC 3261 18.2.2 with RFC 3581): ``maddr`` (UDP, an IP address
    only); else ``received``
    (else the sent-by host) with the ``rport`` value (else the sent-by port). Correct when
    whoever received the request stamped ``received``/``rport`` (RFC 3261 18.2.1).

    Raises:
        RemoteProtocolError: the Via names a transport other than UDP, TCP or TLS, or an
            ``rport`` that is not a port (1-65535): the response cannot be sent.
    """
    transport = response_via.transport.lower()
    if transport not in _STATELESS_TRANSPORTS:
        raise RemoteProtocolError(f"Unusable Via transport {response_via.transport[:20]!r}")
    default = _default_port(transport)
    maddr = response_via.param("maddr")
    # maddr is an unreliable transport's (18.2.2); over TCP/TLS it would let a caller make
    # the server connect to any host and port it names, and a name would need DNS here
    if maddr and transport == "udp" and _is_ip(maddr):
        return Flow(transport, maddr.strip("[]"), response_via.port or default)
    host = response_via.param("received") or response_via.host.strip("[]")
    rport = response_via.param("rport")
    if not rport:
        return Flow(transport, host, response_via.port or default)
    if not (rport.isascii() and rport.isdigit() and len(rport) <= 5 and 0 < int(rport) < 65536):
        raise RemoteProtocolError(f"Unusable Via rport {rport[:20]!r}")
    return Flow(transport, host, int(rport))


class ServerTransaction(Transaction):
    """A request we received, where it came from and the latest response we sent."""

    __slots__ = ("ack_key", "destination", "last", "request", "source", "via")

    SERVER = True

    def __init__(self, key: str, request: SipRequest, via: Via, source: Flow) -> None:
        super().__init__(key, source.reliable)
        self.request: SipRequest | None = request
        """The request that created the transaction; released (None) once a non-INVITE
        transaction has sent its final response (see ``_send_final``)."""
        self.via: Via | None = via
        """Top Via of the request: responses go where it says (18.2.2); released (None)
        with the request (see ``_send_final``)."""
        self.source = source
        self.destination: Flow | None = None
        """Computed from the request's top Via and source at the first response."""
        self.last: bytes | None = None
        """Bytes of the latest response sent, re-sent to ``destination`` for retransmitted
        requests and timer G. Only the bytes: a finished transaction may wait 32 s (timers J
        and L), and every object it holds is one more for the cyclic GC to scan."""
        self.ack_key: str | None = None
        """RFC 2543 ACK index entry owned by this transaction (see the layer)."""


# -- effects shared by both machines ---------------------------------------------------


def _send_response(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: SipMessage | None, src: Any
) -> None:
    """Send the TU's response and remember it as the latest (17.2.1, 17.2.2)."""
    out = _outgoing(tx, msg)
    core._send(out)
    tx.last = out.data


def _outgoing(tx: ServerTransaction, msg: SipMessage | None) -> Outgoing:
    """``msg`` serialised for the transaction's response destination (computed once)."""
    assert isinstance(msg, SipResponse)
    destination = tx.destination
    if destination is None:
        assert tx.via is not None  # released only after the final response
        destination = tx.destination = response_destination(tx.via, tx.source)
    return Outgoing(data=msg.to_bytes(), destination=destination, message=msg)


def _resend(core: TransactionCore, tx: ServerTransaction) -> None:
    """Queue the latest response sent again, if any."""
    if tx.last is not None and tx.destination is not None:
        core._send(Outgoing(data=tx.last, destination=tx.destination))


def _resend_last(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: Any, src: Any
) -> None:
    """A retransmitted request: send the latest response again, if any (17.2.1, 17.2.2)."""
    _resend(core, tx)


# -- INVITE server (RFC 3261 17.2.1, Figure 7; RFC 6026 Figure 7) ----------------------


def _pass_ack_up(
    core: TransactionCore,
    tx: ServerTransaction,
    now: float,
    msg: SipMessage | None,
    src: Flow | None,
) -> None:
    """An ACK the transaction does not absorb goes to the TU as a transaction-less ACK
    (RFC 6026: in Accepted, ACKs are passed up; before any final it is not ours either)."""
    assert isinstance(msg, SipRequest) and src is not None
    core._emit(RequestReceived(request=msg, source=src, key=None))


def _send_2xx(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: SipMessage | None, src: Any
) -> None:
    """2xx: send it; stay in Accepted for 64*T1 (RFC 6026 timer L) absorbing INVITE
    retransmissions so they are not taken for new requests. The TU (UAS core, 13.3.1.4,
    or the proxy forwarding them) retransmits the 2xx itself."""
    _send_response(core, tx, now, msg, src)
    core._arm(tx, Timer.L, now, core._timer_values.b)


def _send_rejection(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: SipMessage | None, src: Any
) -> None:
    """300-699: send it; retransmit on timer G over unreliable transports; give up waiting
    for the ACK after timer H (17.2.1)."""
    _send_response(core, tx, now, msg, src)
    values = core._timer_values
    if not tx.reliable:
        tx.interval = values.t1
        core._arm(tx, Timer.G, now, values.t1)
    core._arm(tx, Timer.H, now, values.b)


def _retransmit_rejection(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: Any, src: Any
) -> None:
    """Timer G: resend the final response; interval doubles up to T2 (17.2.1).

    Only unreliable transports retransmit; the timer is never armed otherwise."""
    if tx.reliable:
        return
    _resend(core, tx)
    tx.interval = min(max(tx.interval * 2, core._timer_values.t1), core._timer_values.t2)
    core._arm(tx, Timer.G, now, tx.interval)


def _no_ack(core: TransactionCore, tx: ServerTransaction, now: float, msg: Any, src: Any) -> None:
    """Timer H: the ACK never came; tell the TU (17.2.1: "transaction failure") and end."""
    core._timed_out(tx, Timer.H)
    core._terminate(tx)


def _late_2xx(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: SipMessage | None, src: Any
) -> None:
    """A 2xx after our non-2xx final: a proxy whose CANCEL raced a callee's 200 must still
    forward it (2xx are always forwarded, RFC 3261 16.7 step 5; RFC 6026). Sent to the same
    destination, outside the state machine: the non-2xx keeps being retransmitted."""
    core._send(_outgoing(tx, msg))


def _confirmed(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: Any, src: Any
) -> None:
    """ACK: stop G and H; absorb ACK retransmissions for T4 (timer I; 0 if reliable)."""
    core._cancel(tx, Timer.G)
    core._cancel(tx, Timer.H)
    core._arm(tx, Timer.I, now, 0.0 if tx.reliable else core._timer_values.t4)


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.1 as amended by RFC 6026 (Accepted state replaces "2xx -> Terminated")."""

    __slots__ = ()

    INITIAL = State.PROCEEDING
    KIND = "server_invite"

    _TRANSITIONS = {
        (State.PROCEEDING, Input.REQUEST): (_resend_last, State.PROCEEDING),
        (State.PROCEEDING, Input.ACK): (_pass_ack_up, State.PROCEEDING),
        (State.PROCEEDING, Input.PROVISIONAL): (_send_response, State.PROCEEDING),
        (State.PROCEEDING, Input.FINAL_2XX): (_send_2xx, State.ACCEPTED),
        (State.PROCEEDING, Input.FINAL_NON2XX): (_send_rejection, State.COMPLETED),
        (State.PROCEEDING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.ACCEPTED, Input.REQUEST): (None, State.ACCEPTED),
        (State.ACCEPTED, Input.ACK): (_pass_ack_up, State.ACCEPTED),
        (State.ACCEPTED, Input.FINAL_2XX): (_send_response, State.ACCEPTED),
        (State.ACCEPTED, Timer.L): (terminate, State.TERMINATED),
        (State.ACCEPTED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.COMPLETED, Input.REQUEST): (_resend_last, State.COMPLETED),
        (State.COMPLETED, Input.ACK): (_confirmed, State.CONFIRMED),
        (State.COMPLETED, Input.FINAL_2XX): (_late_2xx, State.COMPLETED),
        (State.COMPLETED, Timer.G): (_retransmit_rejection, State.COMPLETED),
        (State.COMPLETED, Timer.H): (_no_ack, State.TERMINATED),
        (State.COMPLETED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.CONFIRMED, Input.REQUEST): (None, State.CONFIRMED),
        (State.CONFIRMED, Input.ACK): (None, State.CONFIRMED),
        (State.CONFIRMED, Input.FINAL_2XX): (_late_2xx, State.CONFIRMED),
        (State.CONFIRMED, Timer.I): (terminate, State.TERMINATED),
        (State.CONFIRMED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
    }


# -- non-INVITE server (RFC 3261 17.2.2, Figure 8) -------------------------------------


def _send_final(
    core: TransactionCore, tx: ServerTransaction, now: float, msg: SipMessage | None, src: Any
) -> None:
    """Final response: send it; answer request retransmissions with it for 64*T1 (timer J;
    0 if reliable, where the request is never retransmitted). The request itself is
    released: from now on only the response bytes are needed, and at 15,000 requests/s
    timer J keeps some 480,000 such transactions alive."""
    _send_response(core, tx, now, msg, src)
    tx.request = None
    tx.via = None  # the destination is known: only it and the response bytes are needed
    if tx.reliable:
        core._arm(tx, Timer.J, now, 0.0)  # J is zero: Terminated at once
    else:
        assert tx.last is not None and tx.destination is not None
        core._retire(tx, now, core._timer_values.b, tx.last, tx.destination)


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.2 (also CANCEL, 9.2)."""

    __slots__ = ()

    INITIAL = State.TRYING
    KIND = "server_non_invite"

    _TRANSITIONS = {
        (State.TRYING, Input.REQUEST): (None, State.TRYING),
        (State.TRYING, Input.PROVISIONAL): (_send_response, State.PROCEEDING),
        (State.TRYING, Input.FINAL): (_send_final, State.COMPLETED),
        (State.TRYING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.PROCEEDING, Input.REQUEST): (_resend_last, State.PROCEEDING),
        (State.PROCEEDING, Input.PROVISIONAL): (_send_response, State.PROCEEDING),
        (State.PROCEEDING, Input.FINAL): (_send_final, State.COMPLETED),
        (State.PROCEEDING, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
        (State.COMPLETED, Input.REQUEST): (_resend_last, State.COMPLETED),
        (State.COMPLETED, Timer.J): (terminate, State.TERMINATED),
        (State.COMPLETED, Input.TRANSPORT_ERROR): (transport_failed, State.TERMINATED),
    }
