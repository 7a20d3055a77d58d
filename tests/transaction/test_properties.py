"""Property tests: random walks over the whole API never raise anything but the two
documented protocol errors, the bookkeeping stays consistent, and every transaction
terminates once the TU has answered and timers run long enough."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sipsca.errors import LocalProtocolError, RemoteProtocolError
from sipsca.sip import SipRequest, SipResponse, make_response, parse_message
from sipsca.sip.address import Flow
from sipsca.transaction import (
    MAGIC_COOKIE,
    CancelReceived,
    RequestReceived,
    Timer,
    TransactionLayer,
)
from sipsca.transaction._client import ClientInviteTransaction, ClientNonInviteTransaction
from sipsca.transaction._core import Input, State, Transaction
from sipsca.transaction._server import ServerInviteTransaction, ServerNonInviteTransaction

from .messages import request, response
from .network import make_layer

PEER_BRANCHES = [MAGIC_COOKIE + "p1", MAGIC_COOKIE + "p2", "rfc2543", None]
OUR_BRANCHES = [MAGIC_COOKIE + "o1", MAGIC_COOKIE + "o2", MAGIC_COOKIE + "o3"]
METHODS = ["INVITE", "INVITE", "OPTIONS", "CANCEL", "BYE"]
STATUSES = [100, 180, 183, 200, 202, 302, 404, 486, 487, 500, 603]
DROPPABLE = ["via", "cseq", "from", "to", "call-id"]
FLOWS = {"udp": Flow("udp", "10.0.0.2", 5060), "tcp": Flow("tcp", "10.0.0.2", 40000)}
DELTAS = [0.0, 0.1, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0, 32.0, 40.0, 200.0]
ALLOWED = (LocalProtocolError, RemoteProtocolError)


def _copy(message: SipRequest) -> SipRequest:
    """The same request as a retransmission would bring it: a fresh parse of its bytes."""
    copy = parse_message(message.to_bytes())
    assert isinstance(copy, SipRequest)
    return copy


class TransactionWalk(RuleBasedStateMachine):
    """One layer fed random network input, TU calls and timer firings.

    Inputs are drawn so that they hit live transactions often (retransmissions of requests
    received, ACKs and CANCELs for them, responses for our requests), and sometimes nothing
    or garbage, so every (state, input) pair gets exercised.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer: TransactionLayer = make_layer()
        self.now = 0.0
        self.received: list[tuple[SipRequest, Flow]] = []
        self.server_keys: list[str] = []
        self.client_keys: list[str] = []

    @initialize(timer_c=st.booleans())
    def start(self, timer_c: bool) -> None:
        self.layer = make_layer(timer_c=timer_c)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ALLOWED:
            return None
        finally:
            self.drain()

    def drain(self) -> None:
        self.layer.messages_to_send()
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, (RequestReceived, CancelReceived)) and event.key is not None:
                self.server_keys.append(event.key)

    def receive(self, req: SipRequest, transport: str) -> None:
        self.received.append((req, FLOWS[transport]))
        self.call(self.layer.receive_request, req, source=FLOWS[transport], now=self.now)

    # -- network input ---------------------------------------------------------------------

    @rule(
        method=st.sampled_from(METHODS),
        branch=st.sampled_from(PEER_BRANCHES),
        transport=st.sampled_from(["udp", "tcp"]),
        call=st.integers(0, 1),
        to_tag=st.sampled_from([None, "tt1"]),
    )
    def new_request(
        self, method: str, branch: str | None, transport: str, call: int, to_tag: str | None
    ) -> None:
        via = f"SIP/2.0/{transport.upper()} 10.0.0.2"
        req = request(method, branch=branch, call_id=f"c{call}", to_tag=to_tag, via=via)
        self.receive(req, transport)

    @rule(pick=st.integers(0, 1000))
    def retransmitted_request(self, pick: int) -> None:
        if self.received:
            req, source = self.received[pick % len(self.received)]
            self.call(self.layer.receive_request, _copy(req), source=source, now=self.now)

    @rule(
        pick=st.integers(0, 1000), method=st.sampled_from(["ACK", "CANCEL"]), tagged=st.booleans()
    )
    def ack_or_cancel(self, pick: int, method: str, tagged: bool) -> None:
        """An ACK (To tag of our responses, or none) or CANCEL for a request received."""
        if not self.received:
            return
        original, source = self.received[pick % len(self.received)]
        branch = original.top_via.branch
        via = str(original.top_via).split(";")[0]
        to_tag = ("tt1" if tagged else None) if method == "ACK" else original.to_tag
        req = request(method, branch=branch, call_id=original.call_id, to_tag=to_tag, via=via)
        self.receive(req, source.transport)

    @rule(
        is_request=st.booleans(),
        drop=st.sampled_from(DROPPABLE),
        branch=st.sampled_from([None, *PEER_BRANCHES]),
    )
    def malformed(self, is_request: bool, drop: str, branch: str | None) -> None:
        req = request("INVITE", branch=branch)
        message: SipRequest | SipResponse = req if is_request else response(req, 200)
        message.headers.remove(drop)
        if isinstance(message, SipRequest):
            self.call(self.layer.receive_request, message, source=FLOWS["udp"], now=self.now)
        else:
            self.call(self.layer.receive_response, message, source=FLOWS["udp"], now=self.now)

    @rule(status=st.sampled_from(STATUSES), pick=st.integers(0, 1000), stray=st.integers(0, 5))
    def response_received(self, status: int, pick: int, stray: int) -> None:
        """A response for one of our requests (sometimes for nothing we sent)."""
        keys = list(self.layer._client) if stray > 1 else self.client_keys
        if keys and stray:
            _, branch, method = keys[pick % len(keys)].split("|")
        else:
            branch, method = MAGIC_COOKIE + "unknown", "INVITE"
        resp = response(request(method, branch=branch), status, to_tag="tt1")
        self.call(self.layer.receive_response, resp, source=FLOWS["udp"], now=self.now)

    # -- TU calls ----------------------------------------------------------------------------

    @rule(
        method=st.sampled_from(["INVITE", "INVITE", "OPTIONS", "CANCEL", "ACK"]),
        branch=st.sampled_from(OUR_BRANCHES),
        transport=st.sampled_from(["udp", "tcp"]),
    )
    def send_request(self, method: str, branch: str, transport: str) -> None:
        req = request(method, branch=branch, via=f"SIP/2.0/{transport.upper()} 10.0.0.9")
        key = self.call(self.layer.send_request, req, destination=FLOWS[transport], now=self.now)
        if key is not None:
            self.client_keys.append(key)

    @rule(
        status=st.sampled_from([*STATUSES, 700]),
        pick=st.integers(0, 1000),
        use_key=st.booleans(),
        live=st.integers(0, 4),
    )
    def send_response(self, status: int, pick: int, use_key: bool, live: int) -> None:
        keys = list(self.layer._server) if live else self.server_keys
        key = keys[pick % len(keys)] if keys else "s|none"
        req = self.layer.server_request(key) or request("OPTIONS", branch=MAGIC_COOKIE + "gone")
        resp = make_response(req, status, to_tag="tt1")
        self.call(self.layer.send_response, resp, now=self.now, key=key if use_key else None)

    @rule(pick=st.integers(0, 1000), server=st.booleans())
    def transport_failed(self, pick: int, server: bool) -> None:
        keys = self.server_keys if server else self.client_keys
        if keys:
            self.call(self.layer.transport_failed, keys[pick % len(keys)], now=self.now)

    @rule(delta=st.sampled_from(DELTAS), jitter=st.floats(0.0, 1.0))
    def advance(self, delta: float, jitter: float) -> None:
        self.now += delta * (1.0 + jitter)
        self.call(self.layer.handle_timer, self.now)

    @rule()
    def next_deadline(self) -> None:
        """Fire exactly the next timer, as the runtime's call_at does."""
        deadline = self.layer.get_timer()
        if deadline is not None:
            self.now = deadline
            self.call(self.layer.handle_timer, deadline)

    # -- invariants and the end of every walk ----------------------------------------------

    @invariant()
    def bookkeeping_is_consistent(self) -> None:
        layer = self.layer
        live: list[Transaction] = [*layer._client.values(), *layer._server.values()]
        assert all(tx.state is not State.TERMINATED for tx in live)
        assert layer._live == sum(len(tx.timers) for tx in live)
        kinds = [tx.KIND for tx in live] + [entry[0] for entry in layer._retired.values()]
        assert not set(layer._retired) & (set(layer._server) | set(layer._client))
        assert layer.counts == {kind: kinds.count(kind) for kind in layer.counts}
        deadline = layer.get_timer()
        assert deadline is None or deadline > self.now

    def teardown(self) -> None:
        layer = self.layer
        for _ in range(100_000):
            self.answer_everything()
            deadline = layer.get_timer()
            if deadline is None:
                break
            self.now = deadline
            self.call(layer.handle_timer, deadline)
        assert layer._client == {} and layer._server == {}
        assert layer._ack_index == {} and layer._heap == [] and layer._live == 0

    def answer_everything(self) -> None:
        """What a correct TU eventually does: a final response for every server transaction,
        a CANCEL for every INVITE stuck in Proceeding (RFC 3261 9.1)."""
        layer = self.layer
        for key, tx in list(layer._server.items()):
            if tx.state in (State.TRYING, State.PROCEEDING):
                req = layer.server_request(key)
                assert req is not None
                final = make_response(req, 500, to_tag="tt1")
                self.call(layer.send_response, final, now=self.now, key=key)
        for tx in list(layer._client.values()):
            if tx.state is State.PROCEEDING and isinstance(tx, ClientInviteTransaction):
                via = tx.request.top_via
                cancel = request("CANCEL", branch=via.branch, via=str(via).split(";")[0])
                self.call(layer.send_request, cancel, destination=tx.destination, now=self.now)


TransactionWalk.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_walks = TransactionWalk.TestCase


def _random_step(walk: TransactionWalk, rng: random.Random) -> None:
    """One rule of :class:`TransactionWalk` with random arguments (no Hypothesis)."""
    kind = rng.choices(
        ["new", "again", "ack", "bad", "resp", "send", "answer", "fail", "advance", "next"],
        weights=[6, 3, 4, 1, 8, 4, 6, 1, 3, 3],
    )[0]
    pick = rng.randrange(1000)
    if kind == "new":
        walk.new_request(
            rng.choice(METHODS), rng.choice(PEER_BRANCHES), rng.choice(["udp", "tcp"]),
            rng.randrange(2), rng.choice([None, "tt1"]),
        )  # fmt: skip
    elif kind == "again":
        walk.retransmitted_request(pick)
    elif kind == "ack":
        walk.ack_or_cancel(pick, rng.choice(["ACK", "ACK", "CANCEL"]), rng.random() < 0.8)
    elif kind == "bad":
        walk.malformed(rng.random() < 0.5, rng.choice(DROPPABLE), rng.choice(PEER_BRANCHES))
    elif kind == "resp":
        walk.response_received(rng.choice(STATUSES), pick, rng.randrange(6))
    elif kind == "send":
        method = rng.choice(["INVITE", "INVITE", "OPTIONS", "CANCEL", "ACK"])
        walk.send_request(method, rng.choice(OUR_BRANCHES), rng.choice(["udp", "tcp"]))
    elif kind == "answer":
        walk.send_response(rng.choice([*STATUSES, 700]), pick, rng.random() < 0.7, rng.randrange(5))
    elif kind == "fail":
        walk.transport_failed(pick, rng.random() < 0.5)
    elif kind == "advance":
        walk.advance(rng.choice(DELTAS), rng.random())
    else:
        walk.next_deadline()


@pytest.mark.parametrize("seed", range(40))
def test_long_random_walks(seed: int) -> None:
    """Long seeded walks reach deep sequences (Accepted then retransmissions, Confirmed
    then ACKs...) that short Hypothesis walks rarely build."""
    rng = random.Random(seed)
    walk = TransactionWalk()
    walk.start(timer_c=seed % 2 == 0)
    for _ in range(400):
        _random_step(walk, rng)
        walk.bookkeeping_is_consistent()
    walk.teardown()


# -- every (state, input) pair of every machine -----------------------------------------------

MACHINES = [
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
]
INPUTS: list[Input | Timer] = [*Input, *Timer]


def _transaction(
    machine: type[Transaction], layer: TransactionLayer, reliable: bool
) -> Transaction:
    flow = FLOWS["tcp" if reliable else "udp"]
    method = (
        "INVITE" if "Invite" in machine.__name__ and "Non" not in machine.__name__ else "OPTIONS"
    )
    req = request(method, branch=MAGIC_COOKIE + "x")
    if machine.SERVER:
        layer.receive_request(req, source=flow, now=0)
        (key,) = layer._server
        return layer._server[key]
    key = layer.send_request(req, destination=flow, now=0)
    return layer._client[key]


def _message_for(event: Input | Timer, tx: Transaction) -> SipRequest | SipResponse | None:
    req = request(
        "INVITE" if tx.KIND.split("_", 1)[1] == "invite" else "OPTIONS", branch=MAGIC_COOKIE + "x"
    )
    statuses: dict[Input | Timer, int] = {
        Input.PROVISIONAL: 180,
        Input.FINAL: 200,
        Input.FINAL_2XX: 200,
        Input.FINAL_NON2XX: 486,
    }
    status = statuses.get(event)
    if status is not None:
        return response(req, status) if not tx.SERVER else make_response(req, status, to_tag="tt1")
    if event is Input.ACK:
        return request("ACK", branch=MAGIC_COOKIE + "x", to_tag="tt1")
    if event is Input.REQUEST:
        return req
    return None


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_every_state_input_pair_is_a_transition_or_a_local_error(
    machine: type[Transaction], reliable: bool
) -> None:
    states = {state for state, _ in machine._TRANSITIONS}
    for state, event in itertools.product(states, INPUTS):
        layer = make_layer(timer_c=True)
        tx = _transaction(machine, layer, reliable)
        tx.state = state
        message = _message_for(event, tx)
        source = FLOWS["udp"] if message is not None else None
        if (state, event) not in machine._TRANSITIONS:
            with pytest.raises(LocalProtocolError):
                tx.handle(layer, event, 1.0, message, source)
            assert tx.state is state
            continue
        tx.handle(layer, event, 1.0, message, source)
        assert tx.state in State
        if tx.state is State.TERMINATED:
            assert tx.key not in layer._client and tx.key not in layer._server


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_network_inputs_are_defined_in_every_live_state(machine: type[Transaction]) -> None:
    """A peer can never trigger a missing pair: the tables list every network input."""
    invite = machine in (ClientInviteTransaction, ServerInviteTransaction)
    if machine.SERVER:
        network = [Input.REQUEST, Input.TRANSPORT_ERROR] + ([Input.ACK] if invite else [])
    elif invite:
        network = [
            Input.PROVISIONAL,
            Input.FINAL_2XX,
            Input.FINAL_NON2XX,
            Input.CANCEL_SENT,
            Input.TRANSPORT_ERROR,
        ]
    else:
        network = [Input.PROVISIONAL, Input.FINAL, Input.TRANSPORT_ERROR]
    states = {state for state, _ in machine._TRANSITIONS}
    for state in states:
        for event in network:
            assert (state, event) in machine._TRANSITIONS, (state, event)
