"""Matching (RFC 3261 17.1.3, 17.2.3 incl. the RFC 2543 fallback) and where responses go
(RFC 3261 18.2.2, RFC 3581)."""

from __future__ import annotations

import pytest

from sipsca.errors import RemoteProtocolError
from sipsca.runtime.app import stamp_via
from sipsca.sip import SipRequest, parse_via
from sipsca.sip.address import Flow
from sipsca.transaction import (
    MAGIC_COOKIE,
    CancelReceived,
    RequestReceived,
    TransactionLayer,
    TransactionTerminated,
    reply_via_problem,
    response_destination,
    stateless_response_destination,
)

from .messages import reply, request
from .network import UDP_PEER, drain, fire_timers


def new_key(layer: TransactionLayer, req: SipRequest, now: float = 0.0) -> str | None:
    layer.receive_request(req, source=UDP_PEER, now=now)
    keys = [e.key for e in drain(layer) if isinstance(e, (RequestReceived, CancelReceived))]
    return keys[0] if keys else None


# -- 17.2.3 with the magic cookie -------------------------------------------------------------


def test_sent_by_is_part_of_the_server_key(layer: TransactionLayer) -> None:
    a = new_key(layer, request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5060"))
    b = new_key(layer, request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5070"))
    c = new_key(layer, request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1"))
    assert None not in (a, b, c) and len({a, b, c}) == 3
    # Only branch, sent-by and method count: not Call-ID or CSeq number, not host case.
    assert (
        new_key(layer, request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5060", call_id="x", cseq=9))
        is None
    )
    assert new_key(layer, request("OPTIONS", via="SIP/2.0/UDP Host.Example.com")) is not None
    assert new_key(layer, request("OPTIONS", via="SIP/2.0/UDP host.example.COM")) is None


def test_method_is_part_of_the_server_key(layer: TransactionLayer) -> None:
    branch = MAGIC_COOKIE + "m"
    keys = {
        new_key(layer, request(m, branch=branch)) for m in ("INVITE", "CANCEL", "BYE", "OPTIONS")
    }
    assert len(keys) == 4 and None not in keys


def test_find_server_key(layer: TransactionLayer) -> None:
    branch = MAGIC_COOKIE + "f"
    assert layer.find_server_key(request("INVITE", branch=branch)) is None
    key = new_key(layer, request("INVITE", branch=branch))
    assert layer.find_server_key(request("INVITE", branch=branch)) == key
    assert layer.find_server_key(request("ACK", branch=branch)) == key
    assert layer.find_server_key(request("CANCEL", branch=branch)) == key
    no_via = request("INVITE", branch=branch)
    no_via.headers.remove("via")
    assert layer.find_server_key(no_via) is None
    assert layer.server_state("s|nope") is None and layer.server_request("s|nope") is None


# -- RFC 2543 fallback ----------------------------------------------------------------------


def test_rfc2543_retransmission_ack_and_cancel(layer: TransactionLayer) -> None:
    invite = request("INVITE", branch=None, call_id="old-1")
    key = new_key(layer, invite)
    assert key is not None
    assert key.startswith("s2543|")
    # Retransmission: identical Request-URI, tags, Call-ID, CSeq, top Via.
    assert new_key(layer, request("INVITE", branch=None, call_id="old-1"), 0.1) is None
    # A different Call-ID or CSeq is a new transaction.
    assert new_key(layer, request("INVITE", branch=None, call_id="old-2"), 0.1) is not None
    assert new_key(layer, request("INVITE", branch=None, call_id="old-1", cseq=2), 0.1) is not None
    # CANCEL: same fields, method CANCEL (RFC 3261 9.2).
    cancel = request("CANCEL", branch=None, call_id="old-1")
    layer.receive_request(cancel, source=UDP_PEER, now=0.2)
    (ev,) = drain(layer)
    assert isinstance(ev, CancelReceived) and ev.invite_key == key
    # Non-2xx, then the ACK carrying the To tag of our response.
    layer.send_response(reply(invite, 486, to_tag="ours"), now=0.3, key=key)
    layer.messages_to_send()
    wrong = request("ACK", branch=None, call_id="old-1", to_tag="theirs")
    layer.receive_request(wrong, source=UDP_PEER, now=0.4)
    assert drain(layer) == [RequestReceived(request=wrong, source=UDP_PEER, key=None)]
    ack = request("ACK", branch=None, call_id="old-1", to_tag="ours")
    assert layer.find_server_key(ack) == key
    layer.receive_request(ack, source=UDP_PEER, now=0.5)
    assert drain(layer) == []
    assert layer.server_state(key) == "confirmed"
    fire_timers(layer, 1000)
    assert layer._ack_index == {}


def test_rfc2543_reinvite_with_to_tag(layer: TransactionLayer) -> None:
    invite = request("INVITE", branch="old-style", call_id="re", to_tag="dlg")
    key = new_key(layer, invite)
    assert key is not None
    layer.send_response(reply(invite, 488, to_tag="dlg"), now=0.0, key=key)
    layer.receive_request(
        request("ACK", branch="old-style", call_id="re", to_tag="dlg"), source=UDP_PEER, now=0.1
    )
    assert drain(layer) == [] and layer.server_state(key) == "confirmed"


def test_rfc2543_responses_need_the_key(layer: TransactionLayer) -> None:
    invite = request("INVITE", branch=None)
    key = new_key(layer, invite)
    assert key is not None
    layer.send_response(reply(invite, 200), now=0.0)  # no key: stateless
    assert layer.server_state(key) == "proceeding"
    layer.send_response(reply(invite, 200), now=0.0, key=key)
    assert layer.server_state(key) == "accepted"
    assert fire_timers(layer, 100)[-1][2] == [TransactionTerminated(key=key)]


# -- 18.2.2 / RFC 3581 ----------------------------------------------------------------------

SOURCE = Flow("udp", "203.0.113.9", 40123)


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        (
            "SIP/2.0/TCP 10.0.0.1:5060",
            Flow("tcp", "203.0.113.9", 40123),
            Flow("tcp", "203.0.113.9", 40123),
        ),
        (
            "SIP/2.0/TLS 10.0.0.1",
            Flow("tls", "203.0.113.9", 40123),
            Flow("tls", "203.0.113.9", 40123),
        ),
        ("SIP/2.0/UDP 10.0.0.1:5062;maddr=239.1.1.1", SOURCE, Flow("udp", "239.1.1.1", 5062)),
        ("SIP/2.0/UDP 10.0.0.1;maddr=239.1.1.1", SOURCE, Flow("udp", "239.1.1.1", 5060)),
        ("SIP/2.0/UDP 10.0.0.1:5062;rport", SOURCE, Flow("udp", "203.0.113.9", 40123)),
        (
            "SIP/2.0/UDP 10.0.0.1:5062;rport=40123;received=203.0.113.9",
            SOURCE,
            Flow("udp", "203.0.113.9", 40123),
        ),
        (
            "SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.3",
            SOURCE,
            Flow("udp", "198.51.100.3", 5062),
        ),
        ("SIP/2.0/UDP 10.0.0.1:5062", SOURCE, Flow("udp", "203.0.113.9", 5062)),
        ("SIP/2.0/UDP 10.0.0.1", SOURCE, Flow("udp", "203.0.113.9", 5060)),
        ("SIP/2.0/TLS 10.0.0.1", SOURCE, Flow("udp", "203.0.113.9", 5061)),
        # the first maddr, the one reply_via_problem checked (a second named any host)
        (
            "SIP/2.0/UDP 10.0.0.1;maddr=192.0.2.1;maddr=victim.example",
            SOURCE,
            Flow("udp", "192.0.2.1", 5060),
        ),
    ],
)
def test_response_destination(via: str, source: Flow, expected: Flow) -> None:
    assert response_destination(parse_via(via), source) == expected


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5062", Flow("udp", "10.0.0.1", 5062)),
        (
            "SIP/2.0/UDP 10.0.0.1;received=198.51.100.3;rport=7000",
            Flow("udp", "198.51.100.3", 7000),
        ),
        ("SIP/2.0/UDP 10.0.0.1;rport", Flow("udp", "10.0.0.1", 5060)),
        ("SIP/2.0/TLS [2001:db8::1]", Flow("tls", "2001:db8::1", 5061)),
        ("SIP/2.0/UDP 10.0.0.1;maddr=239.1.1.1", Flow("udp", "239.1.1.1", 5060)),
        # maddr is not honoured over TCP/TLS (a caller could make us connect anywhere), nor
        # as a name (no DNS for responses)
        (
            "SIP/2.0/TCP 203.0.113.9:6379;received=203.0.113.9;maddr=redis.internal",
            Flow("tcp", "203.0.113.9", 6379),
        ),
        ("SIP/2.0/TLS 10.0.0.1;maddr=192.0.2.1", Flow("tls", "10.0.0.1", 5061)),
        ("SIP/2.0/UDP 10.0.0.1;maddr=victim.example", Flow("udp", "10.0.0.1", 5060)),
    ],
)
def test_stateless_response_destination(via: str, expected: Flow) -> None:
    assert stateless_response_destination(parse_via(via)) == expected


def test_server_responses_go_to_the_18_2_2_destination(layer: TransactionLayer) -> None:
    req = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5062", via_params=";rport")
    layer.receive_request(req, source=SOURCE, now=0)
    (ev,) = drain(layer)
    assert isinstance(ev, RequestReceived)
    layer.send_response(reply(req, 200), now=0, key=ev.key)
    assert layer.messages_to_send()[0].destination == SOURCE


# -- hostile Vias (bounded fuzzing of a real server, tests/ops/test_ops_fuzz.py) --------------


@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/XYZ 10.0.0.1;received=198.51.100.3;rport=7000",
        "SIP/2.0/SCTP 10.0.0.1:5062",
        "SIP/2.0/UDP 10.0.0.1;received=198.51.100.3;rport=99999",
        "SIP/2.0/UDP 10.0.0.1;received=198.51.100.3;rport=0",
        "SIP/2.0/UDP 10.0.0.1;received=198.51.100.3;rport=abc",
    ],
)
def test_stateless_response_destination_refuses_what_nothing_can_reach(via: str) -> None:
    # A stray 2xx whose next Via said rport=99999 went to port 34463 (uvloop truncates),
    # rport=0 to port 0, and SIP/2.0/XYZ opened a TCP connection.
    with pytest.raises(RemoteProtocolError, match="Unusable Via"):
        stateless_response_destination(parse_via(via))


def test_stateless_response_to_an_unusable_via_is_dropped(layer: TransactionLayer) -> None:
    req = request("OPTIONS", via="SIP/2.0/XYZ 10.0.0.1:5062")
    layer.send_response(reply(req, 200), now=0)  # no transaction: stateless
    assert layer.messages_to_send() == []


@pytest.mark.parametrize(
    ("via", "source", "problem"),
    [
        ("SIP/2.0/UDP 10.0.0.1;maddr=proxy.example.com", SOURCE, True),
        ("SIP/2.0/UDP 10.0.0.1;maddr=not_a_host", SOURCE, True),
        ("SIP/2.0/UDP 10.0.0.1;maddr=", SOURCE, True),
        ("SIP/2.0/UDP 10.0.0.1;maddr", SOURCE, True),
        ("SIP/2.0/UDP 10.0.0.1;maddr=239.1.1.1", SOURCE, False),
        # the reply leaves by the IPv4 socket the request came in on: every send failed
        ("SIP/2.0/UDP 10.0.0.1;maddr=[2001:db8::1]", SOURCE, True),
        ("SIP/2.0/UDP 10.0.0.1;maddr=[::1]", SOURCE, True),
        ("SIP/2.0/UDP [2001:db8::9];maddr=[2001:db8::1]", Flow("udp", "2001:db8::9", 1), False),
        ("SIP/2.0/UDP [2001:db8::9];maddr=192.0.2.1", Flow("udp", "2001:db8::9", 1), True),
        ("SIP/2.0/UDP 10.0.0.1;received=garbage;rport=1", SOURCE, False),
        ("SIP/2.0/TCP 10.0.0.1;maddr=proxy.example.com", Flow("tcp", "203.0.113.9", 1), False),
    ],
)
def test_reply_via_problem(via: str, source: Flow, problem: bool) -> None:
    # A maddr host name (we resolve none for responses) lost every reply over UDP.
    reason = reply_via_problem(parse_via(via), source)
    assert (reason is not None) is problem
    if problem:
        assert reason is not None and reason.startswith("Unusable Via maddr (")


# The runtime's RFC 3261 18.2.1 stamping decides what response_destination reads.
@pytest.mark.parametrize(
    ("params", "stamped"),
    [
        ("", ""),
        (";rport", ";rport=40123;received=203.0.113.9"),
        # the sender's own received/rport values: replaced by the packet's source
        (";received=10.1.2.3", ""),
        (";received=203.0.113.9", ";received=203.0.113.9"),  # true already: left as it is
        (";received=garbage;rport", ";rport=40123;received=203.0.113.9"),
        (";rport=99999", ";rport=40123;received=203.0.113.9"),
        (";rport=abc;received=203.0.113.9", ";rport=40123;received=203.0.113.9"),
    ],
)
def test_stamp_via_writes_received_and_rport_itself(params: str, stamped: str) -> None:
    # received=10.1.2.3 (or 127.0.0.3, garbage) with sent-by = source sent every reply there.
    req = request("OPTIONS", via="SIP/2.0/UDP 203.0.113.9:5062", via_params=params)
    stamp_via(req, SOURCE)
    assert str(req.top_via) == f"SIP/2.0/UDP 203.0.113.9:5062;branch={MAGIC_COOKIE}b1{stamped}"
    assert response_destination(req.top_via, SOURCE) == Flow(
        "udp", "203.0.113.9", 40123 if "rport" in stamped else 5062
    )


def test_stamp_via_refuses_a_top_via_no_reply_can_follow() -> None:
    req = request("OPTIONS", via_params=";maddr=proxy.example.com")
    with pytest.raises(RemoteProtocolError, match="Unusable Via maddr"):
        stamp_via(req, SOURCE)
    stamp_via(request("ACK", via_params=";maddr=proxy.example.com"), SOURCE)  # never answered
