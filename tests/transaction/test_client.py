"""Client transactions: RFC 3261 17.1.1 (INVITE, + RFC 6026) and 17.1.2 (non-INVITE)."""

from __future__ import annotations

from typing import Any

import pytest

from sipsca.config import TransactionConfig
from sipsca.errors import LocalProtocolError, RemoteProtocolError
from sipsca.sip import SipRequest, parse_message
from sipsca.sip.address import Flow
from sipsca.transaction import (
    MAGIC_COOKIE,
    ResponseReceived,
    StrayResponseReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

from .messages import request, response
from .network import TCP_PEER, UDP_PEER, drain, fire_timers, make_layer

BRANCH = MAGIC_COOKIE + "c1"


def start(
    layer: TransactionLayer,
    method: str = "INVITE",
    dest: Flow = UDP_PEER,
    now: float = 0.0,
    **kw: Any,
) -> tuple[str, SipRequest]:
    req = request(method, branch=kw.pop("branch", BRANCH), **kw)
    key = layer.send_request(req, destination=dest, now=now)
    out = layer.messages_to_send()
    assert len(out) == 1 and out[0].destination == dest
    assert out[0].data == req.to_bytes()
    return key, req


# -- INVITE: timers A, B ------------------------------------------------------------------


def test_timer_a_doubles_without_cap_until_b(layer: TransactionLayer) -> None:
    key, req = start(layer)
    assert key == f"c|{BRANCH}|INVITE"
    assert layer.get_timer() == 0.5
    log = fire_timers(layer, 100)
    times = [t for t, _, _ in log]
    # 17.1.1.2: A fires at T1, 2T1, 4T1... after the previous send; B at 64*T1.
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
    for _, out, _ in log[:-1]:
        assert len(out) == 1 and out[0].data == req.to_bytes()
    assert [type(e) for e in log[-1][2]] == [TransactionTimedOut, TransactionTerminated]
    timed_out = log[-1][2][0]
    assert isinstance(timed_out, TransactionTimedOut)
    assert timed_out.key == key and not timed_out.server and timed_out.timer == "B"
    assert layer.counts["client_invite"] == 0 and layer.get_timer() is None


def test_retransmissions_reuse_the_same_bytes(layer: TransactionLayer) -> None:
    layer.send_request(request("INVITE", branch=BRANCH), destination=UDP_PEER, now=0)
    first = layer.messages_to_send()[0]
    layer.handle_timer(0.5)
    again = layer.messages_to_send()[0]
    assert again is first  # kept, never re-serialised


def test_invite_over_tcp_has_only_timer_b(layer: TransactionLayer) -> None:
    start(layer, dest=TCP_PEER)
    assert layer.get_timer() == 32.0
    log = fire_timers(layer, 100)
    assert [t for t, _, _ in log] == [32.0]
    assert log[0][1] == []


def test_provisional_stops_a_and_b(layer: TransactionLayer) -> None:
    key, req = start(layer)
    layer.handle_timer(0.5)
    layer.messages_to_send()
    layer.receive_response(response(req, 180), source=UDP_PEER, now=1.0)
    assert layer.client_state(key) == "proceeding"
    events = drain(layer)
    assert (
        len(events) == 1
        and isinstance(events[0], ResponseReceived)
        and events[0].response.status == 180
    )
    assert layer.get_timer() is None  # no timer C unless asked for
    layer.receive_response(response(req, 183), source=UDP_PEER, now=2.0)
    assert [e.response.status for e in drain(layer) if isinstance(e, ResponseReceived)] == [183]


# -- INVITE: non-2xx, ACK and timer D -------------------------------------------------------


def test_non_2xx_is_acked_by_the_transaction_then_timer_d(layer: TransactionLayer) -> None:
    req = request(
        "INVITE",
        branch=BRANCH,
        extra=["Route: <sip:p1.example.com;lr>", "Route: <sip:p2.example.com;lr>"],
    )
    key = layer.send_request(req, destination=UDP_PEER, now=0)
    layer.messages_to_send()
    busy = response(req, 486, to_tag="uas-tag")
    layer.receive_response(busy, source=UDP_PEER, now=1.0)
    (ack_out,) = layer.messages_to_send()
    assert ack_out.destination == UDP_PEER
    ack = parse_message(ack_out.data)
    assert isinstance(ack, SipRequest)
    # RFC 3261 17.1.1.3
    assert ack.method == "ACK" and ack.uri == req.uri
    assert ack.call_id == req.call_id
    assert ack.headers.get("from") == req.headers.get("from")
    assert ack.to_tag == "uas-tag"
    assert (ack.cseq.number, ack.cseq.method) == (req.cseq.number, "ACK")
    assert ack.headers.values("via") == [req.headers.values("via")[0]]
    assert ack.headers.get_all("route") == req.headers.get_all("route")
    assert ack.max_forwards == 70
    events = drain(layer)
    assert isinstance(events[0], ResponseReceived) and events[0].response.status == 486
    assert layer.client_state(key) == "completed"
    # Retransmitted 486: ACK again, not reported.
    layer.receive_response(response(req, 486, to_tag="uas-tag"), source=UDP_PEER, now=2.0)
    (again,) = layer.messages_to_send()
    assert again.data is ack_out.data and again.destination == ack_out.destination  # not rebuilt
    assert ack_out.message is not None and again.message is None  # the trace tells them apart
    assert drain(layer) == []
    # Timer D: 32 s after the response (UDP).
    assert layer.get_timer() == 33.0
    log = fire_timers(layer, 100)
    assert [t for t, _, _ in log] == [33.0]
    assert log[0][2] == [TransactionTerminated(key=key)]


def test_timer_d_is_zero_over_tcp(layer: TransactionLayer) -> None:
    key, req = start(layer, dest=TCP_PEER)
    layer.receive_response(response(req, 603), source=TCP_PEER, now=1.0)
    assert len(layer.messages_to_send()) == 1  # the ACK
    events = drain(layer)
    assert [type(e) for e in events] == [ResponseReceived, TransactionTerminated]
    assert layer.client_state(key) is None and layer.get_timer() is None


# -- INVITE: 2xx and the Accepted state (RFC 6026), timer M ---------------------------------


def test_2xx_accepted_reports_every_2xx_until_timer_m(layer: TransactionLayer) -> None:
    key, req = start(layer)
    ok = response(req, 200)
    layer.receive_response(ok, source=UDP_PEER, now=1.0)
    assert layer.messages_to_send() == []  # the TU ACKs a 2xx, not the transaction
    assert layer.client_state(key) == "accepted"
    layer.receive_response(response(req, 200), source=UDP_PEER, now=2.0)
    layer.receive_response(response(req, 200, to_tag="fork-2"), source=UDP_PEER, now=3.0)
    layer.receive_response(response(req, 180), source=UDP_PEER, now=3.5)  # ignored
    layer.receive_response(response(req, 500), source=UDP_PEER, now=3.6)  # ignored
    statuses = [e.response.status for e in drain(layer) if isinstance(e, ResponseReceived)]
    assert statuses == [200, 200, 200]
    assert layer.get_timer() == 33.0  # timer M = 64*T1 after the first 2xx
    log = fire_timers(layer, 100)
    assert log[0][2] == [TransactionTerminated(key=key)]
    # After M, a late 2xx is stray (the proxy forwards it statelessly).
    layer.receive_response(response(req, 200), source=UDP_PEER, now=40.0)
    (stray,) = drain(layer)
    assert isinstance(stray, StrayResponseReceived)


def test_2xx_over_tcp_still_waits_timer_m(layer: TransactionLayer) -> None:
    _, req = start(layer, dest=TCP_PEER)
    layer.receive_response(response(req, 200), source=TCP_PEER, now=1.0)
    assert layer.get_timer() == 33.0


# -- INVITE: timer C (optional) and the CANCEL guard -----------------------------------------


def test_timer_c_restarts_on_provisional_and_guards_with_b() -> None:
    layer = make_layer(timer_c=True)
    key, req = start(layer, dest=TCP_PEER)
    layer.receive_response(response(req, 100), source=TCP_PEER, now=10.0)
    assert layer.get_timer() == 185.0  # 100 Trying does not restart C (16.7 step 2)
    layer.receive_response(response(req, 180), source=TCP_PEER, now=20.0)
    assert layer.get_timer() == 205.0
    drain(layer)
    log = fire_timers(layer, 205.0)
    assert log[0][2] == [TransactionTimedOut(key=key, server=False, timer="C")]
    assert layer.client_state(key) == "proceeding"
    assert layer.get_timer() == 237.0  # 9.1 guard: B = 64*T1
    log = fire_timers(layer, 1000.0)
    assert log[0][2] == [
        TransactionTimedOut(key=key, server=False, timer="B"),
        TransactionTerminated(key=key),
    ]


def test_timer_c_before_any_provisional_is_a_timeout() -> None:
    layer = make_layer(timer_c=True, config=TransactionConfig(timer_c=10.0))
    key, _ = start(layer, dest=TCP_PEER)
    log = fire_timers(layer, 100)
    assert log[0][0] == 10.0
    assert log[0][2] == [
        TransactionTimedOut(key=key, server=False, timer="C"),
        TransactionTerminated(key=key),
    ]


def test_cancel_in_proceeding_arms_the_9_1_guard(layer: TransactionLayer) -> None:
    key, req = start(layer)
    layer.receive_response(response(req, 180), source=UDP_PEER, now=1.0)
    assert layer.get_timer() is None
    cancel = request("CANCEL", branch=BRANCH)
    cancel_key = layer.send_request(cancel, destination=UDP_PEER, now=10.0)
    assert cancel_key == f"c|{BRANCH}|CANCEL"
    # CANCEL's own E/F plus the INVITE's B at 10 + 32.
    layer.receive_response(response(cancel, 200), source=UDP_PEER, now=10.1)
    drain(layer)
    log = fire_timers(layer, 1000)
    fired = {t: evs for t, _, evs in log}
    assert TransactionTimedOut(key=key, server=False, timer="B") in fired[42.0]
    assert layer.counts == dict.fromkeys(layer.counts, 0)


def test_cancel_before_provisional_restarts_b_on_first_provisional(layer: TransactionLayer) -> None:
    key, req = start(layer, dest=TCP_PEER)
    layer.send_request(request("CANCEL", branch=BRANCH), destination=TCP_PEER, now=5.0)
    layer.receive_response(response(req, 180), source=TCP_PEER, now=20.0)
    drain(layer)
    times = [
        t
        for t, _, evs in fire_timers(layer, 1000)
        if TransactionTimedOut(key=key, server=False, timer="B") in evs
    ]
    assert times == [52.0]


def test_487_after_cancel_completes_normally(layer: TransactionLayer) -> None:
    key, req = start(layer)
    layer.receive_response(response(req, 180), source=UDP_PEER, now=1.0)
    layer.send_request(request("CANCEL", branch=BRANCH), destination=UDP_PEER, now=2.0)
    layer.receive_response(response(req, 487), source=UDP_PEER, now=2.5)
    assert layer.client_state(key) == "completed"


# -- non-INVITE: timers E, F, K ---------------------------------------------------------------


def test_timer_e_doubles_to_t2_then_f(layer: TransactionLayer) -> None:
    key, _req = start(layer, "OPTIONS")
    log = fire_timers(layer, 100)
    times = [t for t, _, _ in log]
    # 17.1.2.2: E = T1, 2T1, 4T1, then T2 (4 s); F = 64*T1.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert all(len(out) == 1 for _, out, _ in log[:-1])
    assert log[-1][2] == [
        TransactionTimedOut(key=key, server=False, timer="F"),
        TransactionTerminated(key=key),
    ]


def test_timer_e_is_t2_after_a_provisional(layer: TransactionLayer) -> None:
    key, req = start(layer, "OPTIONS")
    layer.handle_timer(0.5)  # next E at 1.5
    layer.receive_response(response(req, 100), source=UDP_PEER, now=1.0)
    assert layer.client_state(key) == "proceeding"
    times = [t for t, out, _ in fire_timers(layer, 20) if out]
    assert times == [1.5, 5.5, 9.5, 13.5, 17.5]


def test_non_invite_over_tcp_has_only_timer_f(layer: TransactionLayer) -> None:
    start(layer, "OPTIONS", dest=TCP_PEER)
    assert [t for t, _, _ in fire_timers(layer, 100)] == [32.0]


def test_final_then_timer_k_absorbs_retransmissions(layer: TransactionLayer) -> None:
    key, req = start(layer, "OPTIONS")
    layer.receive_response(response(req, 200), source=UDP_PEER, now=2.0)
    assert [type(e) for e in drain(layer)] == [ResponseReceived]
    layer.receive_response(response(req, 200), source=UDP_PEER, now=3.0)
    layer.receive_response(response(req, 100), source=UDP_PEER, now=3.0)
    assert drain(layer) == [] and layer.messages_to_send() == []
    assert layer.get_timer() == 7.0  # K = T4
    log = fire_timers(layer, 100)
    assert [(t, evs) for t, _, evs in log] == [(7.0, [TransactionTerminated(key=key)])]


def test_completed_non_invite_client_is_kept_as_its_key(layer: TransactionLayer) -> None:
    """Waiting out timer K needs nothing but the key: the transaction object is dropped."""
    key, req = start(layer, "NOTIFY")
    layer.receive_response(response(req, 200), source=UDP_PEER, now=1.0)
    drain(layer)
    assert key not in layer._client and list(layer._retired) == [key]
    assert layer._retired[key][0] == "client_non_invite"
    assert layer.client_state(key) == "completed" and layer.counts["client_non_invite"] == 1
    with pytest.raises(LocalProtocolError):  # same branch while it lives: still refused
        layer.send_request(req, destination=UDP_PEER, now=2.0)
    layer.transport_failed(key, now=2.0)
    assert drain(layer) == [TransportFailed(key=key), TransactionTerminated(key=key)]
    assert layer.client_state(key) is None and layer.counts["client_non_invite"] == 0
    # A late retransmission after the end is a stray again.
    layer.receive_response(response(req, 200), source=UDP_PEER, now=3.0)
    assert [type(e) for e in drain(layer)] == [StrayResponseReceived]


def test_timer_k_is_zero_over_tcp(layer: TransactionLayer) -> None:
    _key, req = start(layer, "OPTIONS", dest=TCP_PEER)
    layer.receive_response(response(req, 404), source=TCP_PEER, now=1.0)
    assert [type(e) for e in drain(layer)] == [ResponseReceived, TransactionTerminated]
    assert layer.get_timer() is None


# -- matching, strays, transport errors, misuse ---------------------------------------------


def test_response_matching_uses_branch_and_cseq_method(layer: TransactionLayer) -> None:
    invite_key, _req = start(layer)
    cancel = request("CANCEL", branch=BRANCH)
    cancel_key = layer.send_request(cancel, destination=UDP_PEER, now=0.1)
    layer.messages_to_send()
    layer.receive_response(response(cancel, 200), source=UDP_PEER, now=0.2)
    (ev,) = drain(layer)
    assert isinstance(ev, ResponseReceived) and ev.key == cancel_key
    assert layer.client_state(invite_key) == "calling"
    # Same branch, other method: stray. Other branch: stray.
    layer.receive_response(response(request("BYE", branch=BRANCH), 200), source=UDP_PEER, now=0.3)
    layer.receive_response(
        response(request("INVITE", branch=MAGIC_COOKIE + "zz"), 200), source=UDP_PEER, now=0.3
    )
    layer.receive_response(response(request("INVITE", branch=None), 200), source=UDP_PEER, now=0.3)
    assert [type(e) for e in drain(layer)] == [StrayResponseReceived] * 3


def test_response_without_via_is_a_remote_error(layer: TransactionLayer) -> None:
    _, req = start(layer)
    resp = response(req, 200)
    resp.headers.remove("via")
    with pytest.raises(RemoteProtocolError):
        layer.receive_response(resp, source=UDP_PEER, now=1)


def test_transport_failure_reports_and_terminates(layer: TransactionLayer) -> None:
    key, _ = start(layer, "OPTIONS")
    layer.transport_failed(key, now=0.1)
    assert drain(layer) == [TransportFailed(key=key), TransactionTerminated(key=key)]
    assert layer.get_timer() is None
    layer.transport_failed(key, now=0.2)  # unknown now: ignored
    layer.transport_failed("c|nothing|OPTIONS", now=0.2)
    assert drain(layer) == []


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("OPTIONS", branch="rfc2543branch"), "z9hG4bK"),
        (request("OPTIONS", branch=None), "z9hG4bK"),
        (request("ACK"), "send_stateless"),
        (request("OPTIONS", cseq_method="INFO"), "CSeq"),
    ],
)
def test_send_request_misuse(layer: TransactionLayer, req: SipRequest, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        layer.send_request(req, destination=UDP_PEER, now=0)


def test_send_request_without_via_or_twice(layer: TransactionLayer) -> None:
    req = request("OPTIONS")
    req.headers.remove("via")
    with pytest.raises(LocalProtocolError):
        layer.send_request(req, destination=UDP_PEER, now=0)
    start(layer, "OPTIONS")
    with pytest.raises(LocalProtocolError, match="already exists"):
        start(layer, "OPTIONS")


def test_new_branch_carries_the_magic_cookie(layer: TransactionLayer) -> None:
    assert layer.new_branch() == MAGIC_COOKIE + "t0"
    assert layer.new_branch() != layer.new_branch()
