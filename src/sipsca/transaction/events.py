"""What the transaction layer hands back: bytes to send and events for the TU.

Events are past tense (something happened), :class:`Outgoing` is the one "effect" the
runtime executes. All are frozen, slotted, keyword-only dataclasses (architecture 7.4),
created by the layer only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sipsca.sip.address import Flow
from sipsca.sip.message import SipMessage, SipRequest, SipResponse

__all__ = [
    "CancelReceived",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponseReceived",
    "TransactionEvent",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes for the runtime to put on the wire.

    ``data`` is serialised once: retransmissions re-queue the same object, so a message
    is never re-encoded (and a TU mutating its message later changes nothing on the wire).
    """

    data: bytes
    destination: Flow
    message: SipMessage | None = field(default=None, compare=False)
    """The message ``data`` was made from, for tracing only (not compared); None for a
    retransmission (transactions keep only the bytes of what they may send again)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A request for the TU.

    ``key`` names the new server transaction to answer with
    :meth:`~sipsca.transaction.TransactionLayer.send_response`. It is ``None`` for an ACK
    that is not part of a transaction: the ACK for a 2xx (RFC 3261 17: "If the response was
    a 2xx, the ACK is not considered part of the transaction") or an ACK matching nothing.
    Retransmitted requests are absorbed by their transaction and never reported.
    """

    request: SipRequest
    source: Flow
    key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    """A CANCEL (RFC 3261 9.2): ``key`` is its own non-INVITE server transaction (answer it
    with 200, or 481 when ``invite_key`` is ``None``); ``invite_key`` is the INVITE server
    transaction it cancels, found with the 17.2.3 rules applied to method INVITE.
    """

    request: SipRequest
    source: Flow
    key: str
    invite_key: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response for client transaction ``key``: every 1xx and the first final response;
    retransmitted finals are absorbed, except 2xx to INVITE which are all reported so the TU
    can ACK each one (RFC 6026 Accepted state).
    """

    response: SipResponse
    source: Flow
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponseReceived:
    """A response matching no client transaction (RFC 3261 18.1.2 passes it to the core; a
    proxy forwards 2xx statelessly, RFC 3261 16.7 step 3 and RFC 6026).
    """

    response: SipResponse
    source: Flow


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """A timer ran out without the awaited message.

    Client: timer B/F (no final response; the TU treats it as a 408, RFC 3261 8.1.3.1) or
    timer C (proxy INVITE, RFC 3261 16.8). Server INVITE: timer H (no ACK for a non-2xx).
    ``timer`` names which one. Only timer C in Proceeding leaves the transaction alive (the
    TU sends a CANCEL; timer B is then armed as the RFC 3261 9.1 "64*T1 after CANCEL"
    guard); every other timeout is followed by :class:`TransactionTerminated`.
    """

    key: str
    server: bool
    timer: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The runtime reported that sending for ``key`` failed (RFC 3261 17.1.4, 17.2.4); the
    transaction is terminated right after (a :class:`TransactionTerminated` follows).
    """

    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    """Transaction ``key`` is gone; the layer keeps nothing about it any more."""

    key: str


TransactionEvent = (
    RequestReceived
    | CancelReceived
    | ResponseReceived
    | StrayResponseReceived
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
)
"""Everything :meth:`~sipsca.transaction.TransactionLayer.next_event` can return."""
