"""Machinery shared by the four RFC 3261 17 state machines: states, inputs, the timer heap.

The four machines speak the same small vocabulary (send bytes, arm or cancel a timer,
report an event to the TU, terminate), so it lives here once, in
:class:`TransactionCore`, the base of the public layer. The *rules* stay in ``_client.py``
and ``_server.py``, one ``_TRANSITIONS`` table per machine (architecture 7.3).

Timers use one ``heapq`` of ``(deadline, seq, key, timer name)`` for every transaction, as
aioquic keeps one timer per connection: cancelling is lazy (the transaction forgets the
``seq``, the heap entry is skipped when it surfaces), and the heap is compacted when
stale entries outnumber live ones, so a burst of transactions that end early cannot grow
it without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum
from heapq import heapify, heappush
from typing import Any, ClassVar

from sipsca.config import TransactionConfig
from sipsca.errors import LocalProtocolError
from sipsca.sip.address import Flow
from sipsca.sip.message import SipMessage
from sipsca.transaction.events import (
    Outgoing,
    TransactionEvent,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from sipsca.transaction.timers import Timer, TimerValues

__all__ = ["TIMER_BY_NAME", "Effect", "Input", "State", "Transaction", "TransactionCore"]

# Heap compaction: rebuild when the heap holds this many entries and at least this
# multiple of the live (armed) timers. Compaction is O(n), amortised over >= n arms.
_COMPACT_MIN = 4096
_COMPACT_RATIO = 4

TIMER_BY_NAME: dict[str, Timer] = {timer.value: timer for timer in Timer}
"""Timers are kept by name (``"J"``) in ``Transaction.timers`` and in the heap: an enum
member is an object the cyclic garbage collector tracks, so a dict or tuple holding one is
scanned by every collection for as long as it lives (32 s for timer J), while one holding
only strings and numbers is not tracked at all."""


class State(StrEnum):
    """States of all four machines (RFC 3261 Figures 5-8, RFC 6026 Figures 5-6)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Input(StrEnum):
    """What drives a machine, besides its timers.

    Client machines: ``PROVISIONAL``/``FINAL*`` are responses *received* from the network,
    ``CANCEL_SENT`` means the TU sent a CANCEL for the INVITE. Server machines: ``REQUEST``
    is a retransmission of the request, ``ACK`` an ACK matching the INVITE (both from the
    network); ``PROVISIONAL``/``FINAL*`` are responses the TU *sends*. ``FINAL`` (200-699) is
    used by non-INVITE machines, ``FINAL_2XX``/``FINAL_NON2XX`` by INVITE machines.
    """

    REQUEST = "request"
    ACK = "ACK"
    PROVISIONAL = "1xx"
    FINAL = "200-699"
    FINAL_2XX = "2xx"
    FINAL_NON2XX = "300-699"
    CANCEL_SENT = "CANCEL sent"
    TRANSPORT_ERROR = "transport error"


Effect = Callable[["TransactionCore", Any, float, SipMessage | None, Flow | None], None]
"""``effect(core, transaction, now, message, source)``; runs after the state changed."""


class Transaction:
    """One transaction: its key, state and armed timers; subclasses add the machine."""

    __slots__ = ("interval", "key", "reliable", "state", "timers")

    _TRANSITIONS: ClassVar[dict[tuple[State, Input | Timer], tuple[Effect | None, State]]] = {}
    INITIAL: ClassVar[State] = State.TERMINATED
    KIND: ClassVar[str] = ""
    SERVER: ClassVar[bool] = False

    def __init__(self, key: str, reliable: bool) -> None:
        self.key = key
        self.state = self.INITIAL
        self.reliable = reliable
        self.timers: dict[str, int] = {}
        """Armed timers: timer name (see ``TIMER_BY_NAME``) -> sequence number of its live
        heap entry."""
        self.interval = 0.0
        """Current retransmission interval of timer A, E or G."""

    def handle(
        self,
        core: TransactionCore,
        event: Input | Timer,
        now: float,
        message: SipMessage | None = None,
        source: Flow | None = None,
    ) -> None:
        """Apply ``_TRANSITIONS[(state, event)]``: switch state first, then run the effect.

        Switching first lets an effect terminate at once (a zero-length timer on a
        reliable transport) without the caller overwriting the state afterwards.

        Raises:
            LocalProtocolError: the pair is not in the table. The tables cover every
                network input in every live state, so only TU misuse (a second final
                response, a 1xx after a final) gets here; the transaction is left as it
                was, so it keeps retransmitting what it already sent.
        """
        try:
            effect, state = self._TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{self.KIND} transaction {self.key} in state {self.state} cannot take {event!s}"
            ) from None
        self.state = state
        if effect is not None:
            effect(core, self, now, message, source)


class TransactionCore:
    """Owns every transaction, the timer heap, the outbox and the event queue."""

    __slots__ = (
        "_client",
        "_counts",
        "_events",
        "_heap",
        "_live",
        "_outbox",
        "_retired",
        "_retired_j",
        "_retired_k",
        "_seq",
        "_server",
        "_timer_values",
        "config",
    )

    def __init__(self, config: TransactionConfig, *, timer_c: bool = False) -> None:
        self.config = config
        self._timer_values = TimerValues.from_config(config, timer_c=timer_c)
        self._client: dict[str, Transaction] = {}
        self._server: dict[str, Transaction] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._retired: dict[str, tuple[str, float, bytes, str, str, int]] = {}
        """Non-INVITE transactions in Completed over UDP, kept as plain data while timer J
        (server, 64*T1) or K (client, T4) runs: key -> (kind, deadline, response bytes,
        transport, host, port); a client keeps no response (``b""``, ``""``, ``""``, 0).
        A tuple of strings, bytes and numbers is not tracked by the cyclic GC; the
        transaction object, which is, is dropped when it enters Completed."""
        self._retired_j: deque[tuple[float, str]] = deque()
        self._retired_k: deque[tuple[float, str]] = deque()
        """(deadline, key) of ``_retired``, one queue per timer: every J (and every K) has
        the same duration, so each queue is in deadline order and replaces the heap."""
        self._seq = 0
        self._live = 0
        self._outbox: list[Outgoing] = []
        self._events: deque[TransactionEvent] = deque()
        self._counts: dict[str, int] = {
            "client_invite": 0,
            "client_non_invite": 0,
            "server_invite": 0,
            "server_non_invite": 0,
        }

    @property
    def timer_values(self) -> TimerValues:
        """The durations this layer uses, derived from its config."""
        return self._timer_values

    # -- used by the effects in _client.py / _server.py -------------------------------

    def _arm(self, tx: Transaction, timer: Timer, now: float, delay: float) -> None:
        """Arm (or re-arm) ``timer`` of ``tx`` to fire ``delay`` seconds after ``now``.

        A zero delay (timers D, I, J, K on reliable transports, RFC 3261 Table 4) fires the
        timer's transition immediately instead of going through the heap, so a TCP
        transaction ends within the call that completed it.
        """
        name = str(timer)  # its value (a StrEnum), without enum's Python-level property
        if delay <= 0.0:
            if tx.timers.pop(name, None) is not None:
                self._live -= 1
            tx.handle(self, timer, now)
            return
        self._seq = seq = self._seq + 1
        if name not in tx.timers:
            self._live += 1
        tx.timers[name] = seq
        heap = self._heap
        heappush(heap, (now + delay, seq, tx.key, name))
        if len(heap) >= _COMPACT_MIN and len(heap) > _COMPACT_RATIO * self._live:
            self._compact()

    def _cancel(self, tx: Transaction, timer: Timer) -> None:
        if tx.timers.pop(str(timer), None) is not None:
            self._live -= 1

    def _compact(self) -> None:
        client, server = self._client, self._server
        live = []
        for entry in self._heap:
            key = entry[2]
            tx = (server if key[0] == "s" else client).get(key)
            if tx is not None and tx.timers.get(entry[3]) == entry[1]:
                live.append(entry)
        heapify(live)
        self._heap = live

    def _retire(
        self,
        tx: Transaction,
        now: float,
        wait: float,
        response: bytes = b"",
        destination: Flow | None = None,
    ) -> None:
        """Keep a non-INVITE transaction that entered Completed over UDP only as the data
        its timer needs: a server's final response and where it went (J: absorb request
        retransmissions, RFC 3261 17.2.2), nothing for a client (K: absorb response
        retransmissions, 17.1.2.2)."""
        key = tx.key
        (self._server if tx.SERVER else self._client).pop(key, None)
        self._live -= len(tx.timers)
        tx.timers.clear()
        deadline = now + wait
        if destination is None:
            self._retired[key] = (tx.KIND, deadline, response, "", "", 0)
        else:
            self._retired[key] = (
                tx.KIND,
                deadline,
                response,
                destination.transport,
                destination.host,
                destination.port,
            )
        (self._retired_j if tx.SERVER else self._retired_k).append((deadline, key))

    def _retired_deadline(self) -> float | None:
        """The earliest timer J or K of a retired transaction (stale queue entries dropped)."""
        earliest: float | None = None
        retired = self._retired
        for queue in (self._retired_j, self._retired_k):
            while queue:
                deadline, key = queue[0]
                entry = retired.get(key)
                if entry is not None and entry[1] == deadline:
                    break
                queue.popleft()  # ended early (transport error) or retired again since
            if queue and (earliest is None or queue[0][0] < earliest):
                earliest = queue[0][0]
        return earliest

    def _expire_retired(self, now: float) -> None:
        """Timers J and K of retired transactions: they end (TransactionTerminated)."""
        retired = self._retired
        for queue in (self._retired_j, self._retired_k):
            while queue and queue[0][0] <= now:
                deadline, key = queue.popleft()
                entry = retired.get(key)
                if entry is not None and entry[1] == deadline:
                    del retired[key]
                    self._counts[entry[0]] -= 1
                    self._events.append(TransactionTerminated(key=key))

    def _send(self, out: Outgoing) -> None:
        self._outbox.append(out)

    def _emit(self, event: TransactionEvent) -> None:
        self._events.append(event)

    def _terminate(self, tx: Transaction) -> None:
        """Forget ``tx`` entirely (RFC 3261 17: destroyed on entering Terminated)."""
        tx.state = State.TERMINATED
        self._live -= len(tx.timers)
        tx.timers.clear()
        table = self._server if tx.SERVER else self._client
        if table.pop(tx.key, None) is not None:
            self._counts[tx.KIND] -= 1
            self._forget(tx)
            self._events.append(TransactionTerminated(key=tx.key))

    def _forget(self, tx: Transaction) -> None:
        """Hook for the layer to drop its secondary indexes of ``tx``."""

    def _timed_out(self, tx: Transaction, timer: Timer) -> None:
        self._events.append(TransactionTimedOut(key=tx.key, server=tx.SERVER, timer=timer.value))

    def _transport_failed(self, tx: Transaction) -> None:
        self._events.append(TransportFailed(key=tx.key))
        self._terminate(tx)


def terminate(
    core: TransactionCore, tx: Transaction, now: float, message: Any, source: Any
) -> None:
    """Terminate: the waiting time is over (timers D, I, J, K, L, M)."""
    core._terminate(tx)


def transport_failed(
    core: TransactionCore, tx: Transaction, now: float, message: Any, source: Any
) -> None:
    """Report the transport error to the TU and terminate (RFC 3261 17.1.4, 17.2.4)."""
    core._transport_failed(tx)
