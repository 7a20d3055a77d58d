"""End to end over the fake network: loss, duplication, reordering; no leaks."""

from __future__ import annotations

from typing import Any

import pytest

from sipsca.sip import SipRequest, SipResponse
from sipsca.transaction import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionLayer,
    TransactionTimedOut,
)

from .messages import ack_for_2xx, reply, request
from .network import Network, Node

T1 = 0.5
SEEDS = range(20)


class Uas:
    """A UAS core: 100 + final for INVITE (2xx retransmitted until ACK, RFC 3261
    13.3.1.4), 200 for anything else, 200 + 487 for CANCEL."""

    def __init__(self, net: Network, final: int = 200) -> None:
        self.net = net
        self.final = final
        self.acks: list[SipRequest] = []
        self.requests: list[SipRequest] = []

    def __call__(self, node: Node, event: TransactionEvent) -> None:
        layer = node.layer
        now = node.now
        if isinstance(event, CancelReceived):
            layer.send_response(reply(event.request, 200), now=now, key=event.key)
            if event.invite_key is not None:
                invite = layer.server_request(event.invite_key)
                if invite is not None and layer.server_state(event.invite_key) == "proceeding":
                    layer.send_response(reply(invite, 487), now=now, key=event.invite_key)
            return
        if not isinstance(event, RequestReceived):
            return
        req = event.request
        if event.key is None:
            self.acks.append(req)
            return
        self.requests.append(req)
        if req.method != "INVITE":
            layer.send_response(reply(req, 200), now=now, key=event.key)
            return
        layer.send_response(reply(req, 100, to_tag=None), now=now, key=event.key)
        response = reply(req, self.final)
        layer.send_response(response, now=now, key=event.key)
        if self.final < 300:
            self._retransmit_2xx(node, event.key, response, now, T1)

    def _acked(self, call_id: str) -> bool:
        return any(ack.call_id == call_id for ack in self.acks)

    def _retransmit_2xx(
        self, node: Node, key: str, response: SipResponse, start: float, interval: float
    ) -> None:
        def fire() -> None:
            if self._acked(response.call_id) or node.now - start >= 64 * T1:
                return
            node.layer.send_response(response, now=node.now, key=key)
            node.pump()
            self._retransmit_2xx(node, key, response, start, min(interval * 2, 4.0))

        self.net.call_at(node.now + interval, fire)


class Uac:
    """A UAC core: ACKs every 2xx to INVITE (RFC 3261 13.2.2.4)."""

    def __init__(self, uas: Node) -> None:
        self.uas = uas
        self.finals: list[int] = []
        self.invites: dict[str, SipRequest] = {}

    def __call__(self, node: Node, event: TransactionEvent) -> None:
        if not isinstance(event, ResponseReceived) or event.response.status < 200:
            return
        self.finals.append(event.response.status)
        invite = self.invites.get(event.key)
        if invite is not None and event.response.status < 300:
            ack = ack_for_2xx(invite, event.response, node.layer.new_branch())
            node.layer.send_stateless(ack, destination=self.uas.flow())


def pair(net: Network, final: int = 200) -> tuple[Node, Node, Uac, Uas]:
    uas_tu = Uas(net, final)
    uas = net.add_node("uas", "10.0.0.2", 5060, uas_tu)
    uac_tu = Uac(uas)
    uac = net.add_node("uac", "10.0.0.1", 5060, uac_tu)
    return uac, uas, uac_tu, uas_tu


def send(uac: Node, uac_tu: Uac, uas: Node, method: str, transport: str = "udp", **kw: Any) -> str:
    via = f"SIP/2.0/{transport.upper()} {uac.host}:{uac.port}"
    req = request(method, branch=uac.layer.new_branch(), via=via, **kw)
    key = uac.layer.send_request(req, destination=uas.flow(transport), now=uac.now)
    if method == "INVITE":
        uac_tu.invites[key] = req
    uac.pump()
    return key


def assert_empty(layer: TransactionLayer) -> None:
    assert layer.counts == dict.fromkeys(layer.counts, 0)
    assert layer._client == {} and layer._server == {} and layer._ack_index == {}
    assert layer._heap == [] and layer._live == 0
    assert layer.get_timer() is None


def lossy(seed: int) -> Network:
    """30 % loss, 10 % duplicates, 5-400 ms of delay (so reordering)."""
    return Network(seed=seed, loss=0.3, duplicate=0.1, delay=(0.005, 0.4))


@pytest.mark.parametrize("seed", SEEDS)
def test_invite_200_ack_over_a_lossy_link(seed: int) -> None:
    net = lossy(seed)
    uac, uas, uac_tu, uas_tu = pair(net)
    send(uac, uac_tu, uas, "INVITE")
    net.run(64 * T1, stop=lambda: bool(uac_tu.finals and uas_tu.acks))
    assert uac_tu.finals[0] == 200 and uas_tu.acks, f"seed {seed}: lost {net.lost}"
    assert net.now < 64 * T1
    assert len(uas_tu.requests) == 1  # INVITE retransmissions were absorbed
    net.run(1000)
    assert net.idle()
    assert_empty(uac.layer)
    assert_empty(uas.layer)
    assert not uac.of_type(TransactionTimedOut) and not uas.of_type(TransactionTimedOut)


@pytest.mark.parametrize("seed", SEEDS)
def test_invite_rejected_over_a_lossy_link(seed: int) -> None:
    net = lossy(seed)
    uac, uas, uac_tu, uas_tu = pair(net, final=486)
    key = send(uac, uac_tu, uas, "INVITE")
    net.run(1000)
    assert uac_tu.finals == [486]  # retransmitted 486s absorbed
    assert not uas.of_type(TransactionTimedOut)  # some ACK got through before timer H
    assert not uas_tu.acks  # hop-by-hop ACKs never reach the TU
    assert [e for e in uac.of_type(ResponseReceived) if e.key == key]
    assert_empty(uac.layer)
    assert_empty(uas.layer)


@pytest.mark.parametrize("seed", SEEDS)
def test_non_invite_over_a_lossy_link(seed: int) -> None:
    net = lossy(seed)
    uac, uas, uac_tu, uas_tu = pair(net)
    send(uac, uac_tu, uas, "OPTIONS")
    net.run(64 * T1, stop=lambda: bool(uac_tu.finals))
    assert uac_tu.finals == [200]
    assert len(uas_tu.requests) == 1
    net.run(1000)
    assert_empty(uac.layer)
    assert_empty(uas.layer)


def test_cancel_end_to_end() -> None:
    net = lossy(1)
    uac, uas, _uac_tu, uas_tu = pair(net)

    def slow_uas(node: Node, event: TransactionEvent) -> None:
        # Rings and never answers unless cancelled.
        if (
            isinstance(event, RequestReceived)
            and event.key is not None
            and event.request.method == "INVITE"
        ):
            node.layer.send_response(reply(event.request, 180), now=node.now, key=event.key)
        else:
            uas_tu(node, event)

    uas.on_event = slow_uas
    via = f"SIP/2.0/UDP {uac.host}:{uac.port}"
    branch = uac.layer.new_branch()
    invite = request("INVITE", branch=branch, via=via)
    invite_key = uac.layer.send_request(invite, destination=uas.flow(), now=0)
    uac.pump()
    net.run(64 * T1, stop=lambda: bool(uac.of_type(ResponseReceived)))
    uac.layer.send_request(
        request("CANCEL", branch=branch, via=via), destination=uas.flow(), now=net.now
    )
    uac.pump()
    net.run(1000)
    statuses = sorted(
        e.response.status for e in uac.of_type(ResponseReceived) if e.response.status >= 200
    )
    assert statuses == [200, 487]
    assert any(e.key == invite_key for e in uac.of_type(ResponseReceived))
    assert_empty(uac.layer)
    assert_empty(uas.layer)


def test_the_lossy_link_does_lose_duplicate_and_reorder() -> None:
    net = lossy(0)
    uac, uas, uac_tu, _ = pair(net)
    for _ in range(20):
        send(uac, uac_tu, uas, "OPTIONS")
    sent_order = [seq for _, seq, _, _, _ in sorted(net._packets)]
    assert net.lost > 0 and net.duplicated > 0
    assert sent_order != sorted(sent_order)  # reordered
    net.run(1000)
    assert len(uac_tu.finals) == 20


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_many_transactions_leave_nothing_behind(transport: str) -> None:
    net = Network(
        seed=7, loss=0.1 if transport == "udp" else 0.0, duplicate=0.05, delay=(0.001, 0.05)
    )
    uac, uas, uac_tu, _uas_tu = pair(net)
    methods = ["OPTIONS", "INVITE", "REGISTER", "INVITE", "MESSAGE"]
    for i in range(300):
        net.now = max(net.now, i * 0.01)
        send(uac, uac_tu, uas, methods[i % len(methods)], transport, call_id=f"c{i}")
        net.run(net.now + 0.01)
    net.run(10_000)
    assert len(uac_tu.finals) >= 300
    assert_empty(uac.layer)
    assert_empty(uas.layer)


def test_duplicates_are_absorbed_and_bounded_in_time() -> None:
    net = Network(seed=3, duplicate=1.0, delay=(0.001, 0.2))
    uac, uas, uac_tu, uas_tu = pair(net)
    for _ in range(10):
        send(uac, uac_tu, uas, "OPTIONS")
    net.run(5.0)
    assert uac_tu.finals == [200] * 10
    assert len(uas_tu.requests) == 10
