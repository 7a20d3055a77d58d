"""A fake network of :class:`TransactionLayer` nodes with explicit simulated time.

After h11's ``ConnectionPair`` and aioquic's lossy ``client_and_server``: every node is a
layer plus a TU callback; datagrams cross a link that can lose, duplicate and reorder
them (a seeded :class:`random.Random`), and every delivery goes through
:func:`parse_message`, as on a real wire. Reliable flows (TCP) are neither lost nor
reordered. Time only moves in :meth:`Network.run`, to the next packet, layer timer or
TU timer, so tests are deterministic.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sipsca.config import TransactionConfig
from sipsca.sip import SipRequest, SipResponse, parse_message
from sipsca.sip.address import Flow
from sipsca.transaction import Outgoing, TransactionEvent, TransactionLayer

TuHandler = Callable[["Node", TransactionEvent], None]
E = TypeVar("E")


@dataclass(eq=False)
class Node:
    """One SIP element: its address, its transaction layer and its TU."""

    name: str
    host: str
    port: int
    layer: TransactionLayer
    network: Network
    on_event: TuHandler | None = None
    events: list[tuple[float, TransactionEvent]] = field(default_factory=list)

    def flow(self, transport: str = "udp") -> Flow:
        """How others reach this node."""
        return Flow(transport, self.host, self.port)

    @property
    def now(self) -> float:
        return self.network.now

    def pump(self) -> None:
        """Drain the layer after an input: transmit its bytes, hand events to the TU."""
        net = self.network
        while True:
            out = self.layer.messages_to_send()
            for item in out:
                net.transmit(self, item)
            event = self.layer.next_event()
            if event is not None:
                self.events.append((net.now, event))
                if self.on_event is not None:
                    self.on_event(self, event)
            if event is None and not out:
                return

    def of_type(self, kind: type[E]) -> list[E]:
        """The events of one type this node's TU saw, in order."""
        return [ev for _, ev in self.events if isinstance(ev, kind)]


class Network:
    """Nodes joined by a lossy, duplicating, reordering link with a fake clock."""

    def __init__(
        self,
        *,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: tuple[float, float] = (0.01, 0.01),
        config: TransactionConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.duplicate = duplicate
        self.delay = delay
        self.config = config or TransactionConfig()
        self.now = 0.0
        self.nodes: dict[tuple[str, int], Node] = {}
        self._seq = itertools.count()
        self._packets: list[tuple[float, int, bytes, Flow, Node]] = []
        self._calls: list[tuple[float, int, Callable[[], None]]] = []
        self.wire: list[tuple[float, str, Outgoing]] = []
        """Every transmission attempt: (time, sender name, outgoing)."""
        self.lost = 0
        self.duplicated = 0
        self.unroutable = 0

    def add_node(
        self, name: str, host: str, port: int = 5060, on_event: TuHandler | None = None
    ) -> Node:
        counter = itertools.count()
        layer = TransactionLayer(self.config, branch_factory=lambda: f"{name}{next(counter)}")
        node = Node(name, host, port, layer, self, on_event)
        self.nodes[(host, port)] = node
        return node

    def transmit(self, sender: Node, out: Outgoing) -> None:
        self.wire.append((self.now, sender.name, out))
        target = self.nodes.get((out.destination.host, out.destination.port))
        if target is None:
            self.unroutable += 1
            return
        source = Flow(out.destination.transport, sender.host, sender.port)
        if out.destination.reliable:
            self._deliver_at(self.now + self.delay[0], out.data, source, target)
            return
        copies = 1
        if self.duplicate and self.rng.random() < self.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            if self.loss and self.rng.random() < self.loss:
                self.lost += 1
                continue
            self._deliver_at(self.now + self.rng.uniform(*self.delay), out.data, source, target)

    def _deliver_at(self, when: float, data: bytes, source: Flow, target: Node) -> None:
        heapq.heappush(self._packets, (when, next(self._seq), data, source, target))

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """A TU timer (e.g. a UAS core retransmitting its 2xx, RFC 3261 13.3.1.4)."""
        heapq.heappush(self._calls, (when, next(self._seq), fn))

    def _next_time(self) -> float | None:
        times = [t for node in self.nodes.values() if (t := node.layer.get_timer()) is not None]
        if self._packets:
            times.append(self._packets[0][0])
        if self._calls:
            times.append(self._calls[0][0])
        return min(times) if times else None

    def run(self, until: float, *, stop: Callable[[], bool] | None = None) -> None:
        """Advance time to ``until`` (or until ``stop()`` holds / nothing is left to do)."""
        while stop is None or not stop():
            when = self._next_time()
            if when is None or when > until:
                break
            self.now = max(self.now, when)
            if self._packets and self._packets[0][0] <= self.now:
                _, _, data, source, target = heapq.heappop(self._packets)
                msg = parse_message(data)
                if isinstance(msg, SipRequest):
                    target.layer.receive_request(msg, source=source, now=self.now)
                else:
                    assert isinstance(msg, SipResponse)
                    target.layer.receive_response(msg, source=source, now=self.now)
                target.pump()
                continue
            if self._calls and self._calls[0][0] <= self.now:
                _, _, fn = heapq.heappop(self._calls)
                fn()
                continue
            for node in self.nodes.values():
                deadline = node.layer.get_timer()
                if deadline is not None and deadline <= self.now:
                    node.layer.handle_timer(self.now)
                    node.pump()
        if stop is None or not stop():
            self.now = max(self.now, until)

    def idle(self) -> bool:
        """Nothing in flight and no timer armed anywhere."""
        return self._next_time() is None


def drain(layer: TransactionLayer) -> list[TransactionEvent]:
    """Every pending event of ``layer``."""
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def fire_timers(
    layer: TransactionLayer, until: float
) -> list[tuple[float, list[Outgoing], list[TransactionEvent]]]:
    """Fire ``layer``'s timers one deadline at a time up to ``until``; for each firing,
    what was sent and reported."""
    log = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        log.append((deadline, layer.messages_to_send(), drain(layer)))
    return log


UDP_PEER = Flow("udp", "10.0.0.2", 5060)
TCP_PEER = Flow("tcp", "10.0.0.2", 40000)


def make_layer(
    *, timer_c: bool = False, config: TransactionConfig | None = None
) -> TransactionLayer:
    """A lone layer with a counter as branch factory."""
    counter = itertools.count()
    return TransactionLayer(
        config or TransactionConfig(), branch_factory=lambda: f"t{next(counter)}", timer_c=timer_c
    )
