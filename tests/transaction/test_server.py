"""Server transactions: RFC 3261 17.2.1 (INVITE, + RFC 6026) and 17.2.2 (non-INVITE)."""

from __future__ import annotations

import pytest

from sipsca.errors import LocalProtocolError, RemoteProtocolError
from sipsca.sip import SipRequest
from sipsca.sip.address import Flow
from sipsca.transaction import (
    MAGIC_COOKIE,
    CancelReceived,
    RequestReceived,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)

from .messages import reply, request
from .network import TCP_PEER, UDP_PEER, drain, fire_timers

BRANCH = MAGIC_COOKIE + "s1"


def receive(
    layer: TransactionLayer, req: SipRequest, now: float = 0.0, source: Flow = UDP_PEER
) -> str | None:
    layer.receive_request(req, source=source, now=now)
    events = drain(layer)
    assert len(events) <= 1
    if not events:
        return None
    ev = events[0]
    assert isinstance(ev, (RequestReceived, CancelReceived))
    return ev.key


def new_tx(
    layer: TransactionLayer, req: SipRequest, now: float = 0.0, source: Flow = UDP_PEER
) -> str:
    """Receive a request that must start a server transaction; its key."""
    key = receive(layer, req, now, source)
    assert key is not None
    return key


# -- INVITE: Proceeding ---------------------------------------------------------------------


def test_new_invite_is_reported_and_no_100_is_sent_by_the_layer(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    assert key == f"s|{BRANCH}|10.0.0.1:5060|INVITE"
    assert layer.messages_to_send() == []  # the TU sends 100 Trying itself
    assert layer.server_state(key) == "proceeding"
    assert layer.server_request(key) is req
    assert layer.get_timer() is None


def test_retransmitted_invite_gets_the_latest_provisional(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    assert (
        receive(layer, request("INVITE", branch=BRANCH), 0.4) is None
    )  # absorbed, nothing to resend
    assert layer.messages_to_send() == []
    layer.send_response(reply(req, 100), now=0.5, key=key)
    (_trying,) = layer.messages_to_send()
    layer.send_response(reply(req, 180), now=0.6)  # found by Via branch + sent-by + CSeq method
    (ringing,) = layer.messages_to_send()
    assert b"180 Ringing" in ringing.data
    assert receive(layer, request("INVITE", branch=BRANCH), 1.0) is None
    assert layer.messages_to_send() == [ringing]


# -- INVITE: non-2xx, timers G, H, I ---------------------------------------------------------


def test_timer_g_retransmits_until_h(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    layer.send_response(reply(req, 486), now=0.0, key=key)
    (final,) = layer.messages_to_send()
    assert layer.server_state(key) == "completed"
    log = fire_timers(layer, 100)
    times = [t for t, _, _ in log]
    # 17.2.1: G = T1, doubling to T2; H = 64*T1.
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    for _, out, _ in log[:-1]:
        assert out == [final]
    assert log[-1][2] == [
        TransactionTimedOut(key=key, server=True, timer="H"),
        TransactionTerminated(key=key),
    ]


def test_ack_confirms_then_timer_i(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    layer.send_response(reply(req, 404), now=0.0, key=key)
    (final,) = layer.messages_to_send()
    assert receive(layer, request("INVITE", branch=BRANCH), 0.2) is None
    assert layer.messages_to_send() == [final]  # Completed: retransmission answered
    ack = request("ACK", branch=BRANCH, to_tag="tt1")
    assert receive(layer, ack, 1.0) is None  # hop-by-hop ACK absorbed
    assert layer.server_state(key) == "confirmed"
    assert receive(layer, request("ACK", branch=BRANCH, to_tag="tt1"), 1.1) is None
    assert receive(layer, request("INVITE", branch=BRANCH), 1.2) is None
    assert layer.messages_to_send() == []  # Confirmed absorbs everything
    log = fire_timers(layer, 100)
    assert [(t, evs) for t, _, evs in log] == [(6.0, [TransactionTerminated(key=key)])]  # I = T4


def test_over_tcp_no_g_and_i_is_zero(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH, via="SIP/2.0/TCP 10.0.0.1")
    key = new_tx(layer, req, source=TCP_PEER)
    layer.send_response(reply(req, 500), now=0.0, key=key)
    (final,) = layer.messages_to_send()
    assert final.destination == TCP_PEER
    assert layer.get_timer() == 32.0  # H only
    ack = request("ACK", branch=BRANCH, via="SIP/2.0/TCP 10.0.0.1", to_tag="tt1")
    layer.receive_request(ack, source=TCP_PEER, now=1.0)
    assert drain(layer) == [TransactionTerminated(key=key)]  # I = 0
    assert layer.get_timer() is None


# -- INVITE: 2xx and the Accepted state, timer L --------------------------------------------


def test_2xx_accepted_absorbs_invites_passes_acks_sends_2xx_until_l(
    layer: TransactionLayer,
) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    ok = reply(req, 200)
    layer.send_response(ok, now=0.0, key=key)
    (sent,) = layer.messages_to_send()
    assert layer.server_state(key) == "accepted"
    assert receive(layer, request("INVITE", branch=BRANCH), 0.5) is None
    assert layer.messages_to_send() == []  # RFC 6026: absorbed, the TU retransmits 2xx
    layer.send_response(ok, now=0.5, key=key)  # the TU's 2xx retransmission
    assert layer.messages_to_send()[0].data == sent.data
    # The ACK for the 2xx has its own branch: transaction-less, passed up.
    ack = request("ACK", branch=MAGIC_COOKIE + "ack1", to_tag="tt1")
    layer.receive_request(ack, source=UDP_PEER, now=1.0)
    assert drain(layer) == [RequestReceived(request=ack, source=UDP_PEER, key=None)]
    # Even an ACK with the INVITE's branch goes up in Accepted (RFC 6026).
    ack2 = request("ACK", branch=BRANCH, to_tag="tt1")
    layer.receive_request(ack2, source=UDP_PEER, now=1.0)
    assert drain(layer) == [RequestReceived(request=ack2, source=UDP_PEER, key=None)]
    with pytest.raises(LocalProtocolError):
        layer.send_response(reply(req, 486), now=1.0, key=key)
    assert layer.get_timer() == 32.0  # L = 64*T1
    assert fire_timers(layer, 100)[0][2] == [TransactionTerminated(key=key)]


def test_stray_ack_is_passed_up(layer: TransactionLayer) -> None:
    ack = request("ACK", to_tag="x")
    layer.receive_request(ack, source=UDP_PEER, now=0)
    assert drain(layer) == [RequestReceived(request=ack, source=UDP_PEER, key=None)]


def test_ack_in_proceeding_is_passed_up(layer: TransactionLayer) -> None:
    receive(layer, request("INVITE", branch=BRANCH))
    ack = request("ACK", branch=BRANCH)
    layer.receive_request(ack, source=UDP_PEER, now=0.1)
    assert drain(layer) == [RequestReceived(request=ack, source=UDP_PEER, key=None)]


# -- non-INVITE: Trying, Proceeding, Completed, timer J -------------------------------------


def test_non_invite_trying_absorbs_silently(layer: TransactionLayer) -> None:
    req = request("OPTIONS", branch=BRANCH)
    key = new_tx(layer, req)
    assert layer.server_state(key) == "trying"
    assert receive(layer, request("OPTIONS", branch=BRANCH), 0.5) is None
    assert layer.messages_to_send() == []


def test_non_invite_proceeding_and_completed_resend_latest(layer: TransactionLayer) -> None:
    req = request("REGISTER", branch=BRANCH)
    key = new_tx(layer, req)
    layer.send_response(reply(req, 100, to_tag=None), now=0.1, key=key)
    (trying,) = layer.messages_to_send()
    assert layer.server_state(key) == "proceeding"
    receive(layer, request("REGISTER", branch=BRANCH), 0.5)
    assert layer.messages_to_send() == [trying]
    layer.send_response(reply(req, 200), now=1.0, key=key)
    (ok,) = layer.messages_to_send()
    receive(layer, request("REGISTER", branch=BRANCH), 1.5)
    assert layer.messages_to_send() == [ok]
    with pytest.raises(LocalProtocolError):
        layer.send_response(reply(req, 200), now=1.6, key=key)
    with pytest.raises(LocalProtocolError):
        layer.send_response(reply(req, 180), now=1.6, key=key)
    assert layer.get_timer() == 33.0  # J = 64*T1 after the final
    assert fire_timers(layer, 100)[0][2] == [TransactionTerminated(key=key)]
    # After J the same request is new again.
    assert receive(layer, request("REGISTER", branch=BRANCH), 40.0) == key


def test_timer_j_is_zero_over_tcp(layer: TransactionLayer) -> None:
    req = request("OPTIONS", branch=BRANCH, via="SIP/2.0/TCP 10.0.0.1")
    key = new_tx(layer, req, source=TCP_PEER)
    layer.send_response(reply(req, 200), now=0.0, key=key)
    assert layer.messages_to_send()[0].destination == TCP_PEER
    assert drain(layer) == [TransactionTerminated(key=key)]
    assert layer.get_timer() is None and layer.counts["server_non_invite"] == 0


# -- CANCEL ---------------------------------------------------------------------------------


def test_cancel_matches_its_invite(layer: TransactionLayer) -> None:
    invite_key = new_tx(layer, request("INVITE", branch=BRANCH))
    cancel = request("CANCEL", branch=BRANCH)
    layer.receive_request(cancel, source=UDP_PEER, now=1.0)
    (ev,) = drain(layer)
    assert isinstance(ev, CancelReceived)
    assert ev.invite_key == invite_key and ev.key == f"s|{BRANCH}|10.0.0.1:5060|CANCEL"
    assert layer.find_server_key(cancel) == invite_key
    # A retransmitted CANCEL is absorbed by its own transaction.
    assert receive(layer, request("CANCEL", branch=BRANCH), 1.1) is None
    layer.send_response(reply(cancel, 200), now=1.2)  # found by branch + CANCEL
    assert layer.server_state(ev.key) == "completed"
    assert layer.server_state(invite_key) == "proceeding"  # the TU answers 487 itself


def test_cancel_matching_nothing(layer: TransactionLayer) -> None:
    receive(layer, request("INVITE", branch=BRANCH))
    cancel = request("CANCEL", branch=MAGIC_COOKIE + "other")
    layer.receive_request(cancel, source=UDP_PEER, now=1.0)
    (ev,) = drain(layer)
    assert isinstance(ev, CancelReceived) and ev.invite_key is None
    # Same branch but another sent-by: another transaction (17.2.3).
    other = request("CANCEL", branch=BRANCH, via="SIP/2.0/UDP 10.9.9.9:5060")
    layer.receive_request(other, source=UDP_PEER, now=1.0)
    (ev,) = drain(layer)
    assert isinstance(ev, CancelReceived) and ev.invite_key is None


# -- responses without a transaction, transport errors, misuse -------------------------------


def test_response_without_transaction_is_sent_statelessly(layer: TransactionLayer) -> None:
    req = request(
        "OPTIONS", via="SIP/2.0/UDP 192.0.2.7:5070", via_params=";received=198.51.100.1;rport=6000"
    )
    layer.send_response(reply(req, 200), now=0)
    (out,) = layer.messages_to_send()
    assert out.destination == Flow("udp", "198.51.100.1", 6000)
    layer.send_response(reply(req, 200), now=0, key="s|gone")
    (out,) = layer.messages_to_send()
    assert out.destination == Flow("udp", "198.51.100.1", 6000)


def test_server_transport_failure(layer: TransactionLayer) -> None:
    key = new_tx(layer, request("INVITE", branch=BRANCH))
    assert key is not None
    layer.transport_failed(key, now=1.0)
    assert drain(layer) == [TransportFailed(key=key), TransactionTerminated(key=key)]
    assert layer.server_state(key) is None


def test_send_response_misuse(layer: TransactionLayer) -> None:
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    with pytest.raises(LocalProtocolError):
        layer.send_response(reply(req, 700), now=0, key=key)
    resp = reply(req, 200)
    resp.headers.remove("via")
    with pytest.raises(LocalProtocolError):
        layer.send_response(resp, now=0)
    layer.send_response(reply(req, 486), now=0, key=key)
    with pytest.raises(LocalProtocolError, match="completed"):
        layer.send_response(reply(req, 180), now=0, key=key)
    with pytest.raises(LocalProtocolError, match="completed"):
        layer.send_response(reply(req, 404), now=0, key=key)
    assert layer.server_state(key) == "completed"  # misuse changes nothing


@pytest.mark.parametrize("header", ["via", "cseq"])
def test_unmatchable_request_is_a_remote_error(layer: TransactionLayer, header: str) -> None:
    req = request("OPTIONS")
    req.headers.remove(header)
    with pytest.raises(RemoteProtocolError) as info:
        layer.receive_request(req, source=UDP_PEER, now=0)
    assert info.value.status_hint == 400


def test_cseq_method_mismatch_is_a_remote_error(layer: TransactionLayer) -> None:
    with pytest.raises(RemoteProtocolError):
        layer.receive_request(request("OPTIONS", cseq_method="INFO"), source=UDP_PEER, now=0)


def test_a_2xx_racing_our_487_is_still_sent(layer: TransactionLayer) -> None:
    """A proxy forwards a callee's 200 that crossed its CANCEL (RFC 3261 16.7 step 5)."""
    req = request("INVITE", branch=BRANCH)
    key = new_tx(layer, req)
    layer.send_response(reply(req, 487), now=0, key=key)
    (terminated,) = layer.messages_to_send()
    layer.send_response(reply(req, 200, to_tag="callee"), now=0.1, key=key)
    (ok,) = layer.messages_to_send()
    assert b"200 OK" in ok.data and ok.destination == terminated.destination
    assert layer.server_state(key) == "completed"
    layer.handle_timer(0.5)
    assert layer.messages_to_send() == [terminated]  # timer G still re-sends the 487
    layer.receive_request(request("ACK", branch=BRANCH, to_tag="tt1"), source=UDP_PEER, now=1)
    layer.send_response(reply(req, 200, to_tag="callee"), now=1.1, key=key)
    assert len(layer.messages_to_send()) == 1
    assert layer.server_state(key) == "confirmed"


def test_completed_non_invite_is_kept_as_plain_data(layer: TransactionLayer) -> None:
    """During timer J (32 s over UDP) a finished non-INVITE transaction is only its response
    bytes and destination, in a tuple the cyclic GC stops tracking: at thousands of requests
    per second these are most of the live transactions."""
    import gc

    req = request("SUBSCRIBE", branch=BRANCH)
    key = new_tx(layer, req)
    layer.send_response(reply(req, 202), now=0.0, key=key)
    (ok,) = layer.messages_to_send()
    assert key not in layer._server and key in layer._retired
    assert layer.server_state(key) == "completed" and layer.counts["server_non_invite"] == 1
    assert layer.find_server_key(request("SUBSCRIBE", branch=BRANCH)) == key
    gc.collect()
    assert not gc.is_tracked(layer._retired[key])
    receive(layer, request("SUBSCRIBE", branch=BRANCH), 3.0)
    (again,) = layer.messages_to_send()
    assert again.data == ok.data and again.destination == ok.destination
    # A transport failure ends it at once, like any other transaction.
    layer.transport_failed(key, now=4.0)
    assert drain(layer) == [TransportFailed(key=key), TransactionTerminated(key=key)]
    assert layer.server_state(key) is None and layer.counts["server_non_invite"] == 0
    # The same request again is a new transaction; the first one's timer J (due at 32 s)
    # must not end it: its own runs from its own final response.
    assert receive(layer, request("SUBSCRIBE", branch=BRANCH), 10.0) == key
    layer.send_response(reply(req, 202), now=10.0, key=key)
    layer.messages_to_send()
    assert layer.get_timer() == 42.0
    assert fire_timers(layer, 100) == [(42.0, [], [TransactionTerminated(key=key)])]
    assert layer.counts["server_non_invite"] == 0 and layer.get_timer() is None
