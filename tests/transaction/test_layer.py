"""Layer-wide behaviour: the timer heap, bookkeeping, the public surface."""

from __future__ import annotations

import dataclasses

import pytest

import sipsca.transaction as transaction
from sipsca.config import TransactionConfig
from sipsca.errors import ConfigError, LocalProtocolError
from sipsca.sip.address import Flow
from sipsca.transaction import (
    MAGIC_COOKIE,
    Outgoing,
    RequestReceived,
    TransactionLayer,
    TransactionTerminated,
)
from sipsca.transaction._core import _COMPACT_MIN, _COMPACT_RATIO

from .messages import reply, request, response
from .network import TCP_PEER, UDP_PEER, drain, fire_timers


def test_public_surface() -> None:
    assert sorted(transaction.__all__) == sorted(
        [
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
    )
    for name in transaction.__all__:
        assert hasattr(transaction, name)


def test_events_are_frozen_keyword_only() -> None:
    event = TransactionTerminated(key="k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TransactionTerminated("k")  # type: ignore[call-arg]
    assert not hasattr(event, "__dict__")


def test_timer_values_follow_the_config(layer: TransactionLayer) -> None:
    values = layer.timer_values
    assert (values.t1, values.t2, values.t4, values.b, values.d, values.c) == (
        0.5,
        4.0,
        5.0,
        32.0,
        32.0,
        0.0,
    )


def test_counts_by_kind(layer: TransactionLayer) -> None:
    layer.send_request(request("INVITE", branch=MAGIC_COOKIE + "1"), destination=UDP_PEER, now=0)
    layer.send_request(request("OPTIONS", branch=MAGIC_COOKIE + "2"), destination=UDP_PEER, now=0)
    layer.receive_request(request("INVITE", branch=MAGIC_COOKIE + "3"), source=UDP_PEER, now=0)
    layer.receive_request(request("BYE", branch=MAGIC_COOKIE + "4"), source=UDP_PEER, now=0)
    layer.receive_request(request("CANCEL", branch=MAGIC_COOKIE + "3"), source=UDP_PEER, now=0)
    assert layer.counts == {
        "client_invite": 1,
        "client_non_invite": 1,
        "server_invite": 1,
        "server_non_invite": 2,
    }
    layer.counts["client_invite"] = 99  # a copy
    assert layer.counts["client_invite"] == 1


def test_stale_heap_entries_are_compacted(layer: TransactionLayer) -> None:
    """Transactions ending early leave cancelled E/F entries behind; the heap must not
    grow with them (15,000 transactions/s * 32 s of timer F would be 480,000 entries)."""
    peak = 0
    for i in range(3 * _COMPACT_MIN):
        req = request("OPTIONS", branch=f"{MAGIC_COOKIE}x{i}")
        layer.send_request(req, destination=UDP_PEER, now=i * 0.001)
        layer.receive_response(response(req, 200), source=UDP_PEER, now=i * 0.001)
        peak = max(peak, len(layer._heap))
    live = layer._live
    assert live == 0  # each waits out timer K retired, outside the heap
    assert len(layer._retired) == layer.counts["client_non_invite"] == 3 * _COMPACT_MIN
    assert peak <= max(_COMPACT_MIN, _COMPACT_RATIO * live) + 2
    fire_timers(layer, 1000)
    assert layer._heap == [] and layer._client == {} and layer._retired == {}


def test_handle_timer_before_any_deadline_does_nothing(layer: TransactionLayer) -> None:
    layer.send_request(request("OPTIONS"), destination=UDP_PEER, now=0)
    layer.messages_to_send()
    layer.handle_timer(0.49)
    assert layer.messages_to_send() == [] and drain(layer) == []
    assert layer.get_timer() == 0.5


def test_a_late_handle_timer_fires_everything_due_once(layer: TransactionLayer) -> None:
    layer.send_request(request("OPTIONS"), destination=UDP_PEER, now=0)
    layer.messages_to_send()
    layer.handle_timer(100.0)  # E was due at 0.5 (re-armed from 100), F at 32
    assert len(layer.messages_to_send()) == 1
    assert [type(e).__name__ for e in drain(layer)] == [
        "TransactionTimedOut",
        "TransactionTerminated",
    ]


def test_send_stateless(layer: TransactionLayer) -> None:
    ack = request("ACK", to_tag="t")
    layer.send_stateless(ack, destination=UDP_PEER)
    assert layer.messages_to_send() == [
        Outgoing(data=ack.to_bytes(), destination=UDP_PEER, message=ack)
    ]
    assert layer.get_timer() is None and drain(layer) == []


def test_stateless_response_needs_a_via(layer: TransactionLayer) -> None:
    resp = reply(request("OPTIONS"), 200)
    resp.headers.remove("via")
    with pytest.raises(LocalProtocolError):
        layer.send_response(resp, now=0, key="s|gone")


def test_rfc2543_2xx_retransmission_and_find_key(layer: TransactionLayer) -> None:
    invite = request("INVITE", branch=None)
    layer.receive_request(invite, source=UDP_PEER, now=0)
    (ev,) = drain(layer)
    assert isinstance(ev, RequestReceived) and ev.key is not None
    assert layer.find_server_key(request("INVITE", branch=None)) == ev.key
    ok = reply(invite, 200, to_tag="me")
    layer.send_response(ok, now=0, key=ev.key)
    layer.send_response(ok, now=1, key=ev.key)
    assert len(layer.messages_to_send()) == 2
    ack = request("ACK", branch=None, to_tag="me")
    layer.receive_request(ack, source=UDP_PEER, now=2)
    assert drain(layer) == [RequestReceived(request=ack, source=UDP_PEER, key=None)]  # 2xx ACK: TU
    fire_timers(layer, 100)
    assert layer._ack_index == {}


@pytest.mark.parametrize(
    ("config", "timer_c"),
    [
        (TransactionConfig(t1=0.0), False),
        (TransactionConfig(t1=1.0, t2=0.5), False),
        (TransactionConfig(t4=-1.0), False),
        (TransactionConfig(timer_c=0.0), True),
    ],
)
def test_unusable_timer_config_is_refused(config: TransactionConfig, timer_c: bool) -> None:
    with pytest.raises(ConfigError):
        TransactionLayer(config, branch_factory=str, timer_c=timer_c)


@pytest.mark.parametrize("peer", [UDP_PEER, TCP_PEER], ids=["udp", "tcp"])
def test_abandon_ends_a_non_invite_without_a_response(layer: TransactionLayer, peer: Flow) -> None:
    """RFC 4320 4.2: a non-INVITE that cannot be answered in time gets no final response.
    The abandoned transaction sends nothing, absorbs retransmissions silently for timer J
    (UDP; at once over TCP) and then ends; a response sent for it afterwards is refused."""
    msg = request("MESSAGE", branch=MAGIC_COOKIE + "ab")
    layer.receive_request(msg, source=peer, now=0)
    [received] = drain(layer)
    assert isinstance(received, RequestReceived) and received.key is not None
    key = received.key
    layer.abandon(key, now=10.0)
    assert layer.messages_to_send() == [] and drain(layer) == []
    layer.receive_request(msg, source=peer, now=11.0)  # retransmission: absorbed, unanswered
    assert layer.messages_to_send() == [] and drain(layer) == []
    with pytest.raises(LocalProtocolError):
        layer.send_response(reply(msg, 200), now=11.0, key=key)
    ended = fire_timers(layer, 100.0)
    assert [type(e).__name__ for _, _, events in ended for e in events] == ["TransactionTerminated"]
    assert ended[0][0] == (10.0 if peer.reliable else 42.0)
    assert all(sent == [] for _, sent, _ in ended)


def test_abandon_leaves_invites_and_answered_transactions_alone(
    layer: TransactionLayer,
) -> None:
    invite = request("INVITE", branch=MAGIC_COOKIE + "inv")
    options = request("OPTIONS", branch=MAGIC_COOKIE + "opt")
    for msg in (invite, options):
        layer.receive_request(msg, source=UDP_PEER, now=0)
    keys = [e.key for e in drain(layer) if isinstance(e, RequestReceived)]
    layer.send_response(reply(options, 200), now=0, key=keys[1])
    sent = layer.messages_to_send()
    for key in keys:
        layer.abandon(key, now=1.0)
    assert layer.server_state(keys[0]) in ("trying", "proceeding")
    layer.receive_request(options, source=UDP_PEER, now=2.0)  # still answered with its 200
    assert [o.data for o in layer.messages_to_send()] == [o.data for o in sent]
