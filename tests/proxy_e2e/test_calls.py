"""Basic calls through the stateful proxy (RFC 3261 16): LOCATION + RELAY + WITHINDLG.

Alice calls Bob (both registered over UDP); what each side receives is checked header by
header: our Via on top of forwarded requests and gone from forwarded responses, ``received``
/``rport`` on the caller's Via, Max-Forwards decremented, Record-Route inserted, unknown
headers and the body passed through byte for byte, non-2xx ACK hop-by-hop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from support import ProxyServer, RawUdp, build_request, rand

from helpers.phone import Phone, make_sdp

RR = "<sip:127.0.0.1:{port};lr>"


def header_line(raw: bytes, name: bytes) -> bytes:
    """The raw header line(s) named ``name`` (case-insensitive) of a serialised message."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    lines = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(name + b":")]
    assert lines, f"no {name!r} in {head!r}"
    return b"\r\n".join(lines)


async def pair(server: ProxyServer, phones: Any, uas: Any = "answer") -> tuple[Phone, Phone]:
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}", uas=uas, answer_delay=0.1)
    assert (await a.register()).status == 200
    assert (await b.register()).status == 200
    return a, b


async def test_call_headers_body_and_dialog(server: ProxyServer, phones: Any) -> None:
    """INVITE -> 100 (from us), 180, 200, ACK, BYE. Bob's INVITE: our Via on top (fresh
    ``z9hG4bK`` branch, ``rport``), Alice's Via below with ``received``/``rport`` filled,
    Max-Forwards 70 -> 69, our Record-Route, Request-URI = Bob's contact, the unknown header
    (odd spacing and commas) and the binary SDP body byte for byte. Alice's responses carry
    only her own Via, and the 200 the Record-Route. ACK and BYE follow the route set."""
    a, b = await pair(server, phones)
    body = make_sdp("sendrecv") + b"a=x-binary:\x01\x02\xff\r\n"
    call = await a.invite(
        b.user,
        sdp=body,
        headers=[("X-Odd-Header", "  some;  value ,with = commas\t"), ("P-Foo", "bar")],
    )
    assert call.final is not None and call.final.status == 200, call.statuses()
    assert call.statuses()[0] == 100 and 180 in call.statuses()

    inv = b.incoming[0].invite
    vias = inv.headers.values("via")
    assert len(vias) == 2, vias
    top = inv.top_via
    assert top.host == "127.0.0.1" and top.port == server.port
    assert (top.branch or "").startswith("z9hG4bK") and top.branch != call.invite.top_via.branch
    assert top.has_param("rport")
    caller_via = inv.vias[1]
    assert caller_via.branch == call.invite.top_via.branch
    assert caller_via.param("rport") == str(a.port)
    assert caller_via.param("received") == "127.0.0.1"  # RFC 3581 4: even if equal to sent-by
    assert inv.max_forwards == 69
    assert inv.headers.values("record-route") == [RR.format(port=server.port)]
    assert inv.uri == b.contact_uri
    assert header_line(inv.to_bytes(), b"x-odd-header") == header_line(
        call.invite.to_bytes(), b"x-odd-header"
    )
    assert inv.headers.get("p-foo") == "bar"
    assert inv.body == body
    assert inv.headers.get("call-id") == call.invite.call_id
    assert inv.headers.get("from") == call.invite.headers.get("from")

    for resp in call.responses:
        assert len(resp.headers.values("via")) == 1, resp
        assert resp.top_via.branch == call.invite.top_via.branch
    ok = call.final
    assert ok.headers.values("record-route") == [RR.format(port=server.port)]
    assert ok.body == b.incoming[0].last_final.split(b"\r\n\r\n", 1)[1]  # type: ignore[union-attr]

    await b.wait_for(lambda: b.incoming[0].acked, what="ACK at Bob")
    ack = next(r for r in b.requests if r.method == "ACK")
    assert ack.headers.values("route") == [], "our Route is consumed"
    assert ack.top_via.host == "127.0.0.1" and ack.top_via.port == server.port
    assert (await a.bye(call)).status == 200
    bye = next(r for r in b.requests if r.method == "BYE")
    assert bye.max_forwards == 69 and len(bye.headers.values("via")) == 2


async def test_in_dialog_requests_from_callee(server: ProxyServer, phones: Any) -> None:
    """The callee uses the route set too: its re-INVITE and BYE go through us (loose
    routing) and reach Alice with our Via on top; the re-INVITE is not record-routed again."""
    a, b = await pair(server, phones)
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200
    inc = b.incoming[0]
    await b.wait_for(lambda: inc.acked, what="ACK")
    assert inc.dialog.route_set == [RR.format(port=server.port)]
    r = await b.reinvite(inc, "sendonly")
    assert r.status == 200, r
    reinv = next(m for m in a.requests if m.method == "INVITE")
    assert reinv.top_via.port == server.port and len(reinv.headers.values("via")) == 2
    assert reinv.headers.values("route") == []
    assert reinv.uri == a.contact_uri
    assert (await b.bye(inc)).status == 200
    assert any(m.method == "BYE" for m in a.requests)


async def test_busy_ack_is_hop_by_hop(server: ProxyServer, phones: Any) -> None:
    """486 from Bob: the proxy ACKs it itself (same branch as its INVITE, no Route) and
    forwards the 486; Alice's ACK for the forwarded 486 is absorbed by the proxy, so Bob
    sees exactly one ACK."""
    a, b = await pair(server, phones, uas="busy")
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 486
    await b.wait_for(lambda: any(r.method == "ACK" for r in b.requests), what="ACK")
    await a.quiet(0.6)
    acks = [r for r in b.requests if r.method == "ACK"]
    assert len(acks) == 1, [r.to_bytes() for r in acks]
    inv = b.incoming[0].invite
    assert acks[0].top_via.branch == inv.top_via.branch
    assert len(acks[0].headers.values("via")) == 1, "the ACK is the proxy's own"
    assert acks[0].to_tag == b.incoming[0].to_tag


async def test_unknown_user_404(server: ProxyServer, phones: Any) -> None:
    """No binding for a local user: ``404 Not Found`` from the proxy (docs/decisions.md 7)."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    call = await a.invite(f"nobody-{rand(6)}")
    assert call.final is not None
    assert (call.final.status, call.final.reason) == (404, "Not Found")


async def test_missing_max_forwards_gets_70(server: ProxyServer, phones: Any) -> None:
    """REQINIT: a request without Max-Forwards (RFC 2543 peers omit it) is forwarded with
    70 (RFC 3261 16.6 step 3; Kamailio's ``mf_process_maxfwd_header`` adds its value as
    is, not decremented)."""
    _, b = await pair(server, phones)
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "OPTIONS",
            f"sip:{b.user}@{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{b.user}@{server.domain}>",
            max_forwards=None,
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
    assert resp.status == 200, resp
    got = next(r for r in b.requests if r.method == "OPTIONS")
    assert got.max_forwards == 70


async def test_unknown_headers_and_body_byte_for_byte(server: ProxyServer) -> None:
    """On the wire: the callee's datagram holds the caller's unknown header lines (odd case,
    spacing, a compact form, a folded continuation line) and the body exactly as sent; only
    Via, Max-Forwards, Record-Route and the Request-URI differ."""
    user = f"raw-{rand(6)}"
    async with RawUdp(server.sip_addr) as callee, RawUdp(server.sip_addr) as caller:
        contact = f"sip:{user}@127.0.0.1:{callee.port}"
        reg = build_request(
            "REGISTER",
            f"sip:{server.domain}",
            via=callee.via,
            from_=f"<sip:{user}@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{user}@{server.domain}>",
            headers=[("Contact", f"<{contact}>;expires=600")],
        )
        callee.send(reg)
        assert (await callee.response(reg.call_id)).status == 200
        body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=\xc3\xa9\x00\x01 odd\r\nt=0 0\r\n"
        unknown = (
            b'x-WEIRD-case :  a ,  b;c="d, e"\r\nX-Folded: first\r\n   second part\r\nP-Empty:\r\n'
        )
        call_id = f"raw-{rand(12)}"
        raw = (
            (
                f"INVITE sip:{user}@{server.domain} SIP/2.0\r\n"
                f"Via: {caller.via}\r\n"
                "Max-Forwards: 42\r\n"
                f"f: <sip:caller@{server.domain}>;tag={rand(8)}\r\n"
                f"t: <sip:{user}@{server.domain}>\r\n"
                f"i: {call_id}\r\n"
                "CSeq: 7 INVITE\r\n"
                f"m: <sip:caller@127.0.0.1:{caller.port}>\r\n"
            ).encode()
            + unknown
            + (f"c: application/sdp\r\nl: {len(body)}\r\n\r\n".encode() + body)
        )
        caller.send(raw)
        inv = await callee.request("INVITE")
        data = next(d for d, _ in callee.datagrams if d.startswith(b"INVITE "))
        head, _, got_body = data.partition(b"\r\n\r\n")
        assert got_body == body
        for line in (
            b'x-WEIRD-case :  a ,  b;c="d, e"',
            b"X-Folded: first\r\n   second part",
            b"P-Empty:",
            b"i: " + call_id.encode(),
            b"CSeq: 7 INVITE",
        ):
            assert line in head, (line, head)
        assert inv.max_forwards == 41
        assert inv.uri == contact
        callee.answer(inv, 486)
        final = await caller.response(call_id)
        assert final.status == 486
        ack = await callee.request("ACK")
        assert ack.top_via.branch == inv.top_via.branch


async def test_2xx_retransmission_reaches_caller(server: ProxyServer) -> None:
    """The callee's 200 retransmissions (its ACK is late) pass the proxy statelessly (the
    client transaction ended with the first 2xx, RFC 3261 16.7/17.1.1.2) and reach the caller
    with the proxy's Via removed."""
    user = f"rtx-{rand(6)}"
    async with RawUdp(server.sip_addr) as callee, RawUdp(server.sip_addr) as caller:
        reg = build_request(
            "REGISTER",
            f"sip:{server.domain}",
            via=callee.via,
            from_=f"<sip:{user}@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{user}@{server.domain}>",
            headers=[("Contact", f"<sip:{user}@127.0.0.1:{callee.port}>;expires=600")],
        )
        callee.send(reg)
        assert (await callee.response(reg.call_id)).status == 200
        inv = build_request(
            "INVITE",
            f"sip:{user}@{server.domain}",
            via=caller.via,
            from_=f"<sip:c@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{user}@{server.domain}>",
            headers=[("Contact", f"<sip:c@127.0.0.1:{caller.port}>")],
        )
        caller.send(inv)
        got = await callee.request("INVITE")
        ok = callee.answer(got, 200, extra=[("Contact", f"<sip:{user}@127.0.0.1:{callee.port}>")])
        for _ in range(2):
            await asyncio.sleep(0.2)
            callee.send(ok)
        await caller.wait(
            lambda m: len([x for x in caller.messages if getattr(x, "status", 0) == 200]) >= 3,
            3.0,
            "three 200s",
        )
        oks = [m for m in caller.messages if getattr(m, "status", 0) == 200]
        for m in oks:
            assert len(m.headers.values("via")) == 1
            assert m.top_via.branch == inv.top_via.branch


async def test_nat_via_received_rport(server: ProxyServer, phones: Any) -> None:
    """A caller behind NAT writes a private sent-by and an empty ``rport`` in its Via: the
    proxy stamps ``received``/``rport`` with the real source (RFC 3261 18.2.1, RFC 3581),
    the callee sees them, and the responses come back to the source address, not to the
    sent-by."""
    _, b = await pair(server, phones)
    async with RawUdp(server.sip_addr) as caller:
        branch = f"z9hG4bK{rand(12)}"
        req = build_request(
            "MESSAGE",
            f"sip:{b.user}@{server.domain}",
            via=f"SIP/2.0/UDP 192.0.2.7:5099;branch={branch};rport",
            from_=f"<sip:c@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{b.user}@{server.domain}>",
            body=b"hi",
            content_type="text/plain",
        )
        caller.send(req)
        resp = await caller.response(req.call_id)
    assert resp.status == 200, resp
    assert resp.top_via.param("received") == "127.0.0.1"
    assert resp.top_via.param("rport") == str(caller.port)
    got = next(r for r in b.requests if r.method == "MESSAGE")
    below = got.vias[1]
    assert (below.host, below.port, below.branch) == ("192.0.2.7", 5099, branch)
    assert below.param("received") == "127.0.0.1" and below.param("rport") == str(caller.port)
