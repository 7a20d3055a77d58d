"""Transports (RFC 3261 18, RFC 5658): TCP end to end, UDP caller to TCP callee with double
Record-Route, and a TLS listener with a self-signed certificate made by the test (register
and call in both directions over TLS)."""

from __future__ import annotations

import asyncio
from typing import Any

from support import ProxyServer, StreamClient, build_request, rand

from helpers.phone import Phone, make_sdp

SERVER_TLS = True


def rr(server: ProxyServer, transport: str) -> str:
    port = {"udp": server.port, "tcp": server.port, "tls": server.tls_port}[transport]
    tp = "" if transport == "udp" else f";transport={transport}"
    return f"<sip:127.0.0.1:{port}{tp};lr>"


async def test_tcp_to_tcp_call(server: ProxyServer, phones: Any) -> None:
    """Both phones on TCP: one Record-Route with ``transport=tcp``; the INVITE reaches Bob
    over the connection he registered on (no new connection), Via says TCP."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}", transport="tcp")
    b: Phone = await phones(
        server, "bob", f"bob-{rand(5)}", transport="tcp", uas="answer", answer_delay=0.05
    )
    assert (await b.register()).status == 200
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200, call.statuses()
    inv = b.incoming[0].invite
    assert inv.headers.values("record-route") == [rr(server, "tcp")]
    assert inv.top_via.transport.upper() == "TCP"
    assert b._tcp_server is not None and len(b._conns) == 0, "reused Bob's registration flow"
    assert call.final.headers.values("record-route") == [rr(server, "tcp")]
    await b.wait_for(lambda: b.incoming[0].acked, what="ACK")
    assert (await b.bye(b.incoming[0])).status == 200
    assert any(r.method == "BYE" for r in a.requests)


async def test_udp_caller_tcp_callee_double_record_route(server: ProxyServer, phones: Any) -> None:
    """UDP in, TCP out: two Record-Route values (RFC 5658), the outbound (TCP) one first.
    Both in-dialog directions work: Alice's BYE reaches Bob over TCP, Bob's re-INVITE
    reaches Alice over UDP, and both Route values are consumed by the proxy."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(
        server, "bob", f"bob-{rand(5)}", transport="tcp", uas="answer", answer_delay=0.05
    )
    assert (await b.register()).status == 200
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200, call.statuses()
    both = [rr(server, "tcp"), rr(server, "udp")]
    inv = b.incoming[0].invite
    assert inv.headers.values("record-route") == both
    assert call.final.headers.values("record-route") == both
    assert call.dialog.route_set == list(reversed(both))
    inc = b.incoming[0]
    await b.wait_for(lambda: inc.acked, what="ACK over TCP")
    ack = next(r for r in b.requests if r.method == "ACK")
    assert ack.headers.values("route") == []
    r = await b.reinvite(inc, "sendonly")
    assert r.status == 200, r
    reinv = next(m for m in a.requests if m.method == "INVITE")
    assert reinv.headers.values("route") == [] and reinv.top_via.transport.upper() == "UDP"
    assert (await a.bye(call)).status == 200
    bye = next(m for m in b.requests if m.method == "BYE")
    assert bye.headers.values("route") == [] and bye.top_via.transport.upper() == "TCP"


async def test_tls_register_and_calls(server: ProxyServer, phones: Any) -> None:
    """A TLS phone registers over TLS (certificate self-signed by the test), is called by a
    UDP phone over its TLS connection (double Record-Route tls/udp), and calls the UDP phone
    itself (200, ACK and BYE over TLS)."""
    assert server.tls_port is not None
    udp_phone: Phone = await phones(
        server, "udp", f"udp-{rand(5)}", uas="answer", answer_delay=0.05
    )
    assert (await udp_phone.register()).status == 200
    user = f"tls-{rand(5)}"
    aor = f"sip:{user}@{server.domain}"
    async with StreamClient(server.tls_addr, tls=True) as tls:
        contact = f"sip:{user}@{tls.local[0]}:{tls.local[1]};transport=tls"
        reg = build_request(
            "REGISTER",
            f"sip:{server.domain}",
            via=tls.via,
            from_=f"<{aor}>;tag={rand(8)}",
            to=f"<{aor}>",
            headers=[("Contact", f"<{contact}>;expires=600"), ("Content-Length", "0")],
        )
        tls.send(reg)
        r = await tls.response(reg.call_id)
        assert r.status == 200, r

        # UDP -> TLS
        call = await udp_phone.invite(user, wait=False)
        inv = await tls.request("INVITE")
        assert inv.uri == contact
        assert inv.headers.values("record-route") == [rr(server, "tls"), rr(server, "udp")]
        assert inv.top_via.transport.upper() == "TLS"
        ok = build_ok(inv, contact)
        tls.send(ok)
        final = await udp_phone.finish_invite(call)  # waits for the 200 and ACKs it
        assert final.status == 200 and final.body == ok.body
        ack = await tls.request("ACK")
        assert ack.call_id == inv.call_id
        bye_task = asyncio.ensure_future(udp_phone.bye(call))
        bye = await tls.request("BYE")
        assert bye.headers.values("route") == []
        tls.send(build_ok(bye, contact, body=b""))
        assert (await bye_task).status == 200

        # TLS -> UDP
        cid = f"tls-out-{rand(8)}"
        out = build_request(
            "INVITE",
            f"sip:{udp_phone.user}@{server.domain}",
            via=tls.via,
            from_=f"<{aor}>;tag={rand(8)}",
            to=f"<sip:{udp_phone.user}@{server.domain}>",
            call_id=cid,
            headers=[("Contact", f"<{contact}>")],
            body=make_sdp("sendrecv"),
            content_type="application/sdp",
        )
        tls.send(out)
        answered = await tls.response(cid, status=200)
        routes = list(reversed(answered.headers.values("record-route")))
        assert routes == [rr(server, "tls"), rr(server, "udp")]
        target = answered.contacts[0].uri_text
        tag = answered.to_tag
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            req = build_request(
                method,
                target,
                via=tls.via,
                from_=out.headers.get("from") or "",
                to=f"<sip:{udp_phone.user}@{server.domain}>;tag={tag}",
                call_id=cid,
                cseq=cseq,
                headers=[("Route", v) for v in routes] + [("Content-Length", "0")],
            )
            tls.send(req)
        bye_ok = await tls.wait(
            lambda m: getattr(m, "status", 0) == 200 and (m.headers.get("cseq") or "") == "2 BYE",
            what="200 to BYE",
        )
        assert bye_ok is not None
        assert udp_phone.incoming[0].acked


def build_ok(req: Any, contact: str, body: bytes | None = None) -> Any:
    from sipsca.sip import make_response

    sdp = make_sdp("sendrecv", port=42000) if body is None else body
    extra = [("Contact", f"<{contact}>")]  # make_response copies Record-Route itself
    if sdp:
        extra.append(("Content-Type", "application/sdp"))
    return make_response(req, 200, "OK", to_tag=rand(8), extra=extra, body=sdp)


async def test_tcp_phone_whose_connection_closed_is_reached_at_its_contact(
    make_server: Any,
) -> None:
    """A phone registered over TCP is reached over its connection while it is open; once
    the server closed it (idle timeout, restart), a new connection to the phone's ephemeral
    source port reaches nobody, so the request goes to its Contact (where it listens)."""
    received: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65535))
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    contact_port = listener.sockets[0].getsockname()[1]
    srv = make_server({"server": {"tcp_idle_timeout": 0.5}})
    try:
        async with StreamClient(srv.sip_addr) as phone:
            reg = build_request(
                "REGISTER",
                f"sip:{srv.domain}",
                via=phone.via,
                from_=f"<sip:bob@{srv.domain}>;tag={rand(8)}",
                to=f"<sip:bob@{srv.domain}>",
                headers=[("Contact", f"<sip:bob@127.0.0.1:{contact_port};transport=tcp>")],
            )
            phone.send(reg)
            assert (await phone.response(reg.call_id)).status == 200
            await asyncio.wait_for(phone.closed.wait(), 5)  # the server's idle timeout
        async with StreamClient(srv.sip_addr) as caller:
            msg = build_request(
                "MESSAGE",
                f"sip:bob@{srv.domain}",
                via=caller.via,
                from_=f"<sip:alice@{srv.domain}>;tag={rand(8)}",
                to=f"<sip:bob@{srv.domain}>",
                body=b"hi",
                content_type="text/plain",
            )
            caller.send(msg)
            for _ in range(50):
                if received:
                    break
                await asyncio.sleep(0.1)
        assert received and received[0].startswith(
            f"MESSAGE sip:bob@127.0.0.1:{contact_port}".encode()
        )
    finally:
        listener.close()
        await listener.wait_closed()
