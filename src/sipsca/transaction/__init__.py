"""RFC 3261 17 transaction layer (with the RFC 6026 Accepted states), sans-I/O.

See :class:`TransactionLayer` for the driving contract and ``docs/transactions.md`` for
the state tables generated from the machines' ``_TRANSITIONS``.
"""

from __future__ import annotations

from sipsca.transaction._client import build_ack
from sipsca.transaction._server import reply_via_problem, stateless_response_destination
from sipsca.transaction.events import (
    CancelReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionEvent,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from sipsca.transaction.layer import MAGIC_COOKIE, TransactionLayer, response_destination
from sipsca.transaction.timers import Timer, TimerValues

__all__ = [
    "MAGIC_COOKIE",
    "CancelReceived",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponseReceived",
    "Timer",
    "TimerValues",
    "TransactionEvent",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "build_ack",
    "reply_via_problem",
    "response_destination",
    "stateless_response_destination",
]
