"""Replies sent without a transaction, as Kamailio's sample config sends them with ``sl``
(and the STUN answers to outbound keep-alives on the SIP port).

An OPTIONS ping to the server and an in-dialog request to the server for no dialog (the
BYE of a call a 503 ended) are answered at once and leave nothing behind: a transaction
would be kept 32 s per request (timer J) for a reply nobody needs again. Everything the
stateless path does not take (a malformed request, Max-Forwards 0, a Route to follow) gets
the stateful pipeline's answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct

import pytest

from ops.support import loopback_udp
from sipsca.runtime.app import SipApplication
from sipsca.runtime.stateless import error_reply_bytes
from sipsca.runtime.stun import MAGIC, binding_response, is_stun

HOST = "127.0.0.1"


def _request(method: str, server_port: int, *, extra: str = "", tag: str = "t1") -> bytes:
    """An in-dialog request to the server itself (replies go to the source port: rport)."""
    return (
        f"{method} sip:{HOST}:{server_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:9;branch=z9hG4bK-sl-{method}-{tag};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:a@{HOST}>;tag=from-{tag}\r\n"
        f"To: <sip:b@{HOST}>;tag={tag}\r\n"
        f"Call-ID: sl-{method}-{tag}@{HOST}\r\n"
        f"CSeq: 2 {method}\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


async def _exchange(app: SipApplication, datagrams: list[bytes]) -> list[bytes]:
    """Send each datagram from one phone socket; collect every reply (0.3 s quiet ends it)."""
    server_port = app.transports.listeners[0].port
    phone = loopback_udp()
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []
    try:
        for data in datagrams:
            phone.sendto(data, (HOST, server_port))
            await asyncio.sleep(0.02)
        while True:
            try:
                replies.append(await asyncio.wait_for(loop.sock_recv(phone, 65535), 0.3))
            except TimeoutError:
                return replies
    finally:
        phone.close()


def _live(app: SipApplication) -> int:
    return sum(app.tl.counts.values())


async def test_in_dialog_request_for_no_dialog_gets_a_stateless_404(
    inprocess_app: SipApplication,
) -> None:
    app = inprocess_app
    server_port = app.transports.listeners[0].port
    bye = _request("BYE", server_port)
    replies = await _exchange(app, [bye, bye])  # the request, then its retransmission
    assert len(replies) == 2
    assert replies[0] == replies[1]
    assert replies[0].startswith(b"SIP/2.0 404 Not here\r\n")
    assert b"To: <sip:b@127.0.0.1>;tag=t1\r\n" in replies[0]
    assert _live(app) == 0


async def test_options_ping_keeps_no_transaction(inprocess_app: SipApplication) -> None:
    app = inprocess_app
    server_port = app.transports.listeners[0].port
    ping = _request("OPTIONS", server_port).replace(b";tag=t1\r\n", b"\r\n", 1)
    ping = ping.replace(b"To: <sip:b@127.0.0.1>;tag=t1", b"To: <sip:127.0.0.1>")
    replies = await _exchange(app, [ping])
    assert [r.split(b"\r\n", 1)[0] for r in replies] == [b"SIP/2.0 200 OK"]
    assert _live(app) == 0


async def test_what_the_stateless_path_leaves_gets_the_stateful_answer(
    inprocess_app: SipApplication,
) -> None:
    """Max-Forwards 0 is REQINIT's 483 and a missing CSeq a 400 (both before WITHINDLG),
    and the in-dialog SUBSCRIBE is the SCA engine's 481: none of them is ``Not here``."""
    app = inprocess_app
    server_port = app.transports.listeners[0].port
    hops = _request("INFO", server_port, tag="mf").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    no_cseq = _request("INFO", server_port, tag="cs").replace(b"CSeq: 2 INFO\r\n", b"")
    subscribe = _request(
        "SUBSCRIBE",
        server_port,
        tag="sub",
        extra=f"Event: call-info\r\nExpires: 60\r\nContact: <sip:m@{HOST}:9>\r\n",
    )
    replies = await _exchange(app, [hops, no_cseq, subscribe])
    starts = sorted(r.split(b"\r\n", 1)[0] for r in replies)
    assert starts == sorted(
        [
            b"SIP/2.0 483 Too Many Hops",
            b"SIP/2.0 400 Missing CSeq header",
            b"SIP/2.0 481 Call Leg/Transaction Does Not Exist",
        ]
    ), starts


async def test_acks_are_never_answered_nor_crash(
    inprocess_app: SipApplication, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed ACK gets no 400 (RFC 3261 17.2.1: an ACK is never answered), and an ACK
    with Max-Forwards 0 along our route is dropped quietly (there is nobody to answer 483
    to), not an internal error per packet."""
    app = inprocess_app
    server_port = app.transports.listeners[0].port
    bad_cseq = _request("ACK", server_port, tag="cs").replace(b"CSeq: 2 ACK", b"CSeq: 2 INVITE")
    route = f"Route: <sip:{HOST}:{server_port};lr>\r\n".encode()
    no_hops = (
        _request("ACK", server_port, tag="mf")
        .replace(f"ACK sip:{HOST}:{server_port}".encode(), f"ACK sip:b@{HOST}:9".encode())
        .replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 0\r\n" + route)
    )
    caplog.set_level("INFO")
    assert await _exchange(app, [bad_cseq, no_hops]) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_2xx_retransmission_goes_to_the_callers_rport(
    inprocess_app: SipApplication,
) -> None:
    """A 2xx relayed statelessly (its call's context is gone) goes where the caller's Via
    says by received/rport (RFC 3581), not to its sent-by: a phone behind NAT gets it."""
    app = inprocess_app
    server_port = app.transports.listeners[0].port
    phone = loopback_udp()
    port = phone.getsockname()[1]
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{server_port};branch=z9hG4bK-ours;rport\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.77:5999;branch=z9hG4bK-caller;rport={port};received={HOST}\r\n"
        f"From: <sip:a@{HOST}>;tag=fa\r\n"
        f"To: <sip:b@{HOST}>;tag=tb\r\n"
        f"Call-ID: stray-2xx@{HOST}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:b@{HOST}:9>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    try:
        phone.sendto(ok, (HOST, server_port))
        relayed = await asyncio.wait_for(loop.sock_recv(phone, 65535), 2.0)
    finally:
        phone.close()
    assert relayed.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"z9hG4bK-ours" not in relayed and b"z9hG4bK-caller" in relayed


def _xor_mapped(response: bytes) -> tuple[str, int]:
    """Decode the XOR-MAPPED-ADDRESS of a STUN Binding success response (RFC 5389 15.2)."""
    assert response[:2] == b"\x01\x01" and response[4:8] == MAGIC
    attr_type, length = struct.unpack_from("!HH", response, 20)
    assert attr_type == 0x0020
    family, xport = struct.unpack_from("!xBH", response, 24)
    raw = response[28 : 24 + length]
    mask = MAGIC if family == 1 else MAGIC + response[8:20]
    host = ipaddress.ip_address(bytes(a ^ b for a, b in zip(raw, mask, strict=True)))
    return str(host), xport ^ 0x2112


@pytest.mark.parametrize("addr", [("127.0.0.1", 40000), ("2001:db8::7", 5060)])
def test_stun_binding_response_maps_the_source(addr: tuple[str, int]) -> None:
    request = struct.pack("!HH4s12s", 0x0001, 0, MAGIC, b"t" * 12)
    assert is_stun(request)
    response = binding_response(request, addr)
    assert response is not None and response[8:20] == b"t" * 12
    assert _xor_mapped(response) == addr
    indication = struct.pack("!HH4s12s", 0x0011, 0, MAGIC, b"t" * 12)
    assert binding_response(indication, addr) is None
    assert not is_stun(b"OPTIONS sip:x SIP/2.0\r\n\r\n")


async def test_outbound_keep_alive_on_the_sip_port_is_answered(
    inprocess_app: SipApplication,
) -> None:
    """RFC 5626 4.4.1 / 8: a phone using outbound (our 200 to its REGISTER says Require:
    outbound) sends STUN Binding requests to the SIP port and re-registers when none is
    answered; the server answers with the address it sees, and SIP goes on."""
    server_port = inprocess_app.transports.listeners[0].port
    phone = loopback_udp()
    loop = asyncio.get_running_loop()
    try:
        phone.sendto(struct.pack("!HH4s12s", 1, 0, MAGIC, b"k" * 12), (HOST, server_port))
        response = await asyncio.wait_for(loop.sock_recv(phone, 2048), 2.0)
        assert _xor_mapped(response) == phone.getsockname()
    finally:
        phone.close()
    replies = await _exchange(inprocess_app, [_request("BYE", server_port, tag="after")])
    assert replies and replies[0].startswith(b"SIP/2.0 404 Not here")


def test_stateless_400_unfolds_via_adds_a_to_tag_and_echoes_no_control_characters() -> None:
    """The 400 to an unparsable request: a folded Via comes back whole (the sender matches
    the reply by it), To gets a tag (RFC 3261 8.2.6.2), and no copied line carries a bare
    CR that would start a header of the sender's choosing in our reply."""
    data = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP\r\n 127.0.0.1:5999;branch=z9hG4bK-fold\r\n"
        b"From: <sip:a@127.0.0.1>;tag=f\r\n"
        b"To: <sip:x@127.0.0.1>\r\n"
        b"Call-ID: c1\rContact: <sip:evil@192.0.2.66>\r\n"
        b"CSeq: 1 OPTIONS\r\nBroken line\r\n\r\n"
    )
    reply = error_reply_bytes(data, 400, "Malformed header line")
    assert reply is not None
    lines = reply.decode().split("\r\n")
    assert "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-fold" in lines
    assert any(line.startswith("To: <sip:x@127.0.0.1>;tag=") for line in lines)
    assert b"evil" not in reply and b"\r" not in reply.replace(b"\r\n", b"")
    assert error_reply_bytes(data, 400, "Malformed header line") == reply  # retransmission
