"""Transports (RFC 3261 18, RFC 5658): TCP end to end, UDP caller to TCP callee with double
Record-Route, and a TLS listener with a self-signed certificate made by the test (register
and call in both directions over TLS); SIPS (RFC 3261 16.6 step 4, RFC 5630): ``sips:``
Record-Route, TLS-only forwarding, 480/380 and 416 refusals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from support import ProxyServer, RawUdp, StreamClient, build_request, rand, self_signed_cert

from helpers.phone import Phone, make_sdp
from sipsca.config import ServerConfig, SipscaConfig
from sipsca.service import tls_contexts
from sipsca.sip import make_response

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


# ------------------------------------------------------------------------------ SIPS
def sips_rr(host: str, port: int | None) -> str:
    return f"<sips:{host}:{port};lr>"


async def register_on(
    client: Any, server: ProxyServer, aor: str, contact: str, *, via: str | None = None
) -> None:
    """REGISTER ``contact`` for ``aor`` (a ``sip:`` or ``sips:`` AoR) from ``client``."""
    scheme = aor.partition(":")[0]
    reg = build_request(
        "REGISTER",
        f"{scheme}:{server.domain}",
        via=via or client.via,
        from_=f"<{aor}>;tag={rand(8)}",
        to=f"<{aor}>",
        headers=[("Contact", f"<{contact}>;expires=600"), ("Content-Length", "0")],
    )
    client.send(reg)
    r = await client.response(reg.call_id)
    assert r.status == 200, r


def new_request(
    method: str,
    target: str,
    client: Any,
    server: ProxyServer,
    user: str,
    *,
    contact: str | None = None,
) -> Any:
    """An out-of-dialog ``method`` from ``client`` as ``user`` of the server's domain (the
    scheme of ``target``) to ``target``: an INVITE carries SDP, anything else a text body."""
    scheme = target.partition(":")[0]
    invite = method == "INVITE"
    return build_request(
        method,
        target,
        via=client.via,
        from_=f"<{scheme}:{user}@{server.domain}>;tag={rand(8)}",
        to=f"<{target}>",
        headers=[("Contact", f"<{contact}>")] if contact else [],
        body=make_sdp("sendrecv") if invite else b"hi",
        content_type="application/sdp" if invite else "text/plain",
    )


@dataclasses.dataclass
class TlsPeer:
    """A TLS listener on 127.0.0.1 that keeps the first read of every connection."""

    port: int
    cert: Path
    received: list[bytes]


@contextlib.asynccontextmanager
async def tls_peer(directory: Path) -> AsyncIterator[TlsPeer]:
    cert, key = self_signed_cert(directory)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    received: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.read(65535))
        finally:
            writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ctx)
    try:
        yield TlsPeer(listener.sockets[0].getsockname()[1], cert, received)
    finally:
        listener.close()
        await listener.wait_closed()


async def sips_call_and_bye(server: ProxyServer, rr_host: str) -> None:
    """A TLS caller calls a ``sips:`` AoR bound over TLS with a ``sips:`` contact: the INVITE
    reaches the callee over TLS with one ``<sips:rr_host:TLS port;lr>`` Record-Route, and
    the caller's ACK and BYE, routed by that value, reach the callee (the proxy knows its
    own ``sips:`` Route) and the BYE is answered."""
    assert server.tls_port is not None
    want_rr = sips_rr(rr_host, server.tls_port)
    callee_user, caller_user = f"sbob-{rand(5)}", f"salice-{rand(5)}"
    callee_aor = f"sips:{callee_user}@{server.domain}"
    caller_aor = f"sips:{caller_user}@{server.domain}"
    async with (
        StreamClient(server.tls_addr, tls=True) as callee,
        StreamClient(server.tls_addr, tls=True) as caller,
    ):
        callee_contact = f"sips:{callee_user}@{callee.local[0]}:{callee.local[1]}"
        caller_contact = f"sips:{caller_user}@{caller.local[0]}:{caller.local[1]}"
        await register_on(callee, server, callee_aor, callee_contact)

        cid = f"sips-{rand(8)}"
        invite = build_request(
            "INVITE",
            callee_aor,
            via=caller.via,
            from_=f"<{caller_aor}>;tag={rand(8)}",
            to=f"<{callee_aor}>",
            call_id=cid,
            headers=[("Contact", f"<{caller_contact}>")],
            body=make_sdp("sendrecv"),
            content_type="application/sdp",
        )
        caller.send(invite)
        inv = await callee.request("INVITE")
        assert inv.uri == callee_contact
        assert inv.top_via.transport.upper() == "TLS"
        assert inv.headers.values("record-route") == [want_rr]
        callee.send(build_ok(inv, callee_contact))
        answered = await caller.response(cid, status=200)
        assert answered.headers.values("record-route") == [want_rr]

        routes = list(reversed(answered.headers.values("record-route")))
        target = answered.contacts[0].uri_text
        assert target == callee_contact
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            caller.send(
                build_request(
                    method,
                    target,
                    via=caller.via,
                    from_=invite.headers.get("from") or "",
                    to=f"<{callee_aor}>;tag={answered.to_tag}",
                    call_id=cid,
                    cseq=cseq,
                    headers=[("Route", v) for v in routes] + [("Content-Length", "0")],
                )
            )
        ack = await callee.request("ACK")
        assert ack.call_id == cid and ack.headers.values("route") == []
        bye = await callee.request("BYE")
        assert bye.call_id == cid and bye.headers.values("route") == []
        assert bye.top_via.transport.upper() == "TLS"
        callee.send(build_ok(bye, callee_contact, body=b""))
        bye_ok = await caller.wait(
            lambda m: getattr(m, "status", 0) == 200 and (m.headers.get("cseq") or "") == "2 BYE",
            what="200 to BYE",
        )
        assert bye_ok is not None


async def test_sips_call_over_tls_is_record_routed_with_sips(server: ProxyServer) -> None:
    """RFC 3261 16.6 step 4: a ``sips:`` Request-URI gets a ``sips:`` Record-Route (our TLS
    listener's address and port, no ``transport=tls``: RFC 5630 3.1.4), and the dialog
    it sets up routes through it."""
    await sips_call_and_bye(server, "127.0.0.1")


async def test_sips_record_route_names_the_advertised_host(make_server: Any) -> None:
    """With ``advertised_address = "name:port"`` the ``sips:`` Record-Route is the name with
    the TLS listener's port, and an in-dialog request routed by it is recognised as ours
    (the static route only keeps a wrong answer from reaching real DNS)."""
    srv = make_server(
        lambda s: {
            "server": {"advertised_address": f"proxy.test:{s.port}"},
            "proxy": {"static_routes": [["proxy.test", f"tls:127.0.0.1:{s.tls_port}"]]},
        },
        tls=True,
    )
    await sips_call_and_bye(srv, "proxy.test")


async def test_sips_aor_bound_only_over_udp_is_refused(server: ProxyServer) -> None:
    """RFC 5630 5.3: a ``sips:`` target whose only binding is a ``sip:`` contact registered
    over UDP is not forwarded there: ``480`` with ``Warning: 380 ... "SIPS Not Allowed"``,
    and nothing reaches the UDP phone."""
    user = f"scarol-{rand(5)}"
    aor = f"sips:{user}@{server.domain}"
    async with RawUdp(server.sip_addr) as phone:
        await register_on(phone, server, aor, f"sip:{user}@127.0.0.1:{phone.port}")
        async with StreamClient(server.tls_addr, tls=True) as caller:
            contact = f"sips:dave@{caller.local[0]}:{caller.local[1]}"
            req = new_request("INVITE", aor, caller, server, "dave", contact=contact)
            caller.send(req)
            final = await caller.response(req.call_id)
        assert final.status == 480, final
        warning = final.headers.get("warning") or ""
        assert warning.startswith("380 ") and warning.endswith('"SIPS Not Allowed"'), warning
        assert not [m for m in phone.messages if getattr(m, "method", "") == "INVITE"]


async def test_sips_target_with_a_udp_static_route_is_refused(make_server: Any) -> None:
    """A ``sips:`` target in another domain whose static route is a UDP next hop is never
    sent there (the route's transport cannot carry a SIPS request): ``480`` + ``380``."""
    async with RawUdp(("127.0.0.1", 9)) as other:
        srv = make_server(
            {"proxy": {"static_routes": [["other.example", f"udp:127.0.0.1:{other.port}"]]}},
            tls=True,
        )
        async with StreamClient(srv.tls_addr, tls=True) as caller:
            req = new_request("MESSAGE", "sips:eve@other.example", caller, srv, "frank")
            caller.send(req)
            final = await caller.response(req.call_id)
        assert final.status == 480, final
        assert (final.headers.get("warning") or "").startswith("380 ")
        assert other.messages == []


async def test_sips_target_without_a_tls_listener_is_416(make_server: Any) -> None:
    """Without a ``tls`` listener sipsca cannot Record-Route with ``sips:`` (nothing could
    reach it over TLS in the dialog): a request for a ``sips:`` target it would forward is
    ``416 Unsupported URI Scheme`` (decisions.md), even when the AoR has a (UDP) binding."""
    srv = make_server()
    user = f"serin-{rand(5)}"
    aor = f"sips:{user}@{srv.domain}"
    async with RawUdp(srv.sip_addr) as phone, RawUdp(srv.sip_addr) as caller:
        await register_on(phone, srv, aor, f"sip:{user}@127.0.0.1:{phone.port}")
        contact = f"sip:gina@127.0.0.1:{caller.port}"
        req = new_request("INVITE", aor, caller, srv, "gina", contact=contact)
        caller.send(req)
        final = await caller.response(req.call_id)
        assert final.status == 416, final
        assert not [m for m in phone.messages if getattr(m, "method", "") == "INVITE"]


async def test_sip_aor_with_only_sips_contacts_and_no_tls_is_480_381(make_server: Any) -> None:
    """Without a ``tls`` listener a ``sips:`` contact cannot be called (no ``sips:``
    Record-Route for its side of the dialog): a
    ``sip:`` AoR bound only to one gets ``480`` + ``Warning: 381 ... "SIPS Required"``
    (RFC 5630 5.3) instead of the contact being sent to over the UDP flow it came from."""
    srv = make_server()
    user = f"shank-{rand(5)}"
    aor = f"sip:{user}@{srv.domain}"
    async with RawUdp(srv.sip_addr) as phone, RawUdp(srv.sip_addr) as caller:
        await register_on(phone, srv, aor, f"sips:{user}@127.0.0.1:{phone.port}")
        req = new_request("MESSAGE", aor, caller, srv, "ivy")
        caller.send(req)
        final = await caller.response(req.call_id)
        assert final.status == 480, final
        warning = final.headers.get("warning") or ""
        assert warning.startswith("381 ") and warning.endswith('"SIPS Required"'), warning
        assert not [m for m in phone.messages if getattr(m, "method", "") == "MESSAGE"]


async def test_sips_contact_bound_over_udp_is_reached_over_tls(
    server: ProxyServer, tmp_path: Path
) -> None:
    """A ``sips:`` contact means TLS (RFC 5630): registered over UDP, it is not sent to
    over that UDP flow but at its own address over TLS."""
    user = f"sjoe-{rand(5)}"
    aor = f"sip:{user}@{server.domain}"
    async with (
        tls_peer(tmp_path) as peer,
        RawUdp(server.sip_addr) as phone,
        RawUdp(server.sip_addr) as caller,
    ):
        await register_on(phone, server, aor, f"sips:{user}@127.0.0.1:{peer.port}")
        caller.send(new_request("MESSAGE", aor, caller, server, "kim"))
        for _ in range(50):
            if peer.received:
                break
            await asyncio.sleep(0.1)
        assert peer.received and peer.received[0].startswith(
            f"MESSAGE sips:{user}@127.0.0.1:{peer.port} SIP/2.0\r\nVia: SIP/2.0/TLS ".encode()
        ), peer.received
        assert not [m for m in phone.messages if getattr(m, "method", "") == "MESSAGE"]


def tls_route(peer: TlsPeer) -> dict[str, Any]:
    """``[proxy]`` with ``tlspeer.test`` statically routed over TLS to ``peer``."""
    return {"static_routes": [["tlspeer.test", f"tls:127.0.0.1:{peer.port}"]]}


async def _message_via_static_route(
    srv: ProxyServer, received: list[bytes], method: str = "MESSAGE"
) -> Any:
    """A MESSAGE (or ``method``) from a UDP phone to ``sip:dan@tlspeer.test`` (statically
    routed over TLS); returns the caller's final response, if one came within 10 s."""
    async with RawUdp(srv.sip_addr) as caller:
        contact = f"sip:eve@127.0.0.1:{caller.port}"
        req = new_request(method, "sip:dan@tlspeer.test", caller, srv, "eve", contact=contact)
        caller.send(req)
        for _ in range(100):
            if received or [m for m in caller.messages if getattr(m, "status", 0) >= 200]:
                break
            await asyncio.sleep(0.1)
        finals = [m for m in caller.messages if getattr(m, "status", 0) >= 200]
        return finals[0] if finals else None


async def test_tls_next_hop_is_tls_without_a_tls_listener(make_server: Any, tmp_path: Any) -> None:
    """A next hop reached over TLS (static route ``tls:``) gets TLS even when sipsca has no
    TLS listener of its own; it used to get the request in clear text over TCP."""
    async with tls_peer(tmp_path) as peer:
        srv = make_server({"proxy": tls_route(peer)})
        await _message_via_static_route(srv, peer.received)
    received = peer.received
    assert received and received[0].startswith(b"MESSAGE sip:dan@tlspeer.test SIP/2.0\r\n")
    assert b"Via: SIP/2.0/TLS " in received[0]


async def test_tls_verify_refuses_a_peer_outside_the_ca_file(
    make_server: Any, tmp_path: Any
) -> None:
    """``tls_verify``: a peer whose certificate the CA file does not vouch for gets nothing
    (the caller gets 503); with its certificate in ``tls_ca_file`` it gets the request."""
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_ca, _ = self_signed_cert(other_dir)
    async with tls_peer(tmp_path) as peer:
        received = peer.received
        for ca, trusted in ((other_ca, False), (peer.cert, True)):
            received.clear()
            srv = make_server(
                {"server": {"tls_verify": True, "tls_ca_file": str(ca)}, "proxy": tls_route(peer)}
            )
            final = await _message_via_static_route(srv, received)
            if trusted:
                assert received and received[0].startswith(b"MESSAGE sip:dan@tlspeer.test ")
            else:
                assert final is not None and final.status == 503, final
                assert not [r for r in received if r]


async def test_advertised_port_is_not_given_to_the_tls_side(make_server: Any) -> None:
    """``advertised_address = "name:port"`` names the UDP/TCP port: the TLS side of a double
    Record-Route and the Via toward a TLS phone carry the advertised name with the TLS
    listener's own port (they carried the UDP port, where a phone's TLS handshake fails)."""
    srv = make_server(
        lambda s: {"server": {"advertised_address": f"proxy.test:{s.port}"}}, tls=True
    )
    user = f"adv-{rand(5)}"
    aor = f"sip:{user}@{srv.domain}"
    async with StreamClient(srv.tls_addr, tls=True) as tls, RawUdp(srv.sip_addr) as caller:
        await register_on(tls, srv, aor, f"sip:{user}@{tls.local[0]}:{tls.local[1]};transport=tls")
        contact = f"sip:hal@127.0.0.1:{caller.port}"
        invite = new_request("INVITE", aor, caller, srv, "hal", contact=contact)
        caller.send(invite)
        inv = await tls.request("INVITE")
        assert inv.headers.values("record-route") == [
            f"<sip:proxy.test:{srv.tls_port};transport=tls;lr>",
            f"<sip:proxy.test:{srv.port};lr>",
        ]
        assert inv.top_via.host == "proxy.test" and inv.top_via.port == srv.tls_port
        tls.send(make_response(inv, 486, "Busy Here", to_tag=rand(8)))
        assert (await caller.response(invite.call_id)).status == 486


def test_tls_ca_file_replaces_the_system_cas(tmp_path: Any) -> None:
    """With ``tls_verify`` and ``tls_ca_file`` the client trusts that file only: a private
    CA added to the system store would let any publicly certified host pass (the host name
    is not checked, decisions 38). Without ``tls_verify`` nothing is verified."""
    cert, _ = self_signed_cert(tmp_path)
    server = ServerConfig(tls_verify=True, tls_ca_file=str(cert))
    _, client = tls_contexts(dataclasses.replace(SipscaConfig(), server=server))
    assert client.cert_store_stats()["x509"] == 1
    assert client.verify_mode == ssl.CERT_REQUIRED
    _, plain = tls_contexts(SipscaConfig())
    assert plain.verify_mode == ssl.CERT_NONE


async def test_tls_next_hop_without_a_tls_listener_is_record_routed_over_tcp(
    make_server: Any, tmp_path: Any
) -> None:
    """An INVITE sent over TLS by a server with no TLS listener is record-routed with its
    TCP listener (``transport=tcp``) on that side: a ``transport=tls`` URI with the UDP/TCP
    port would send the far end's BYE as a TLS handshake to a port that does not speak it."""
    async with tls_peer(tmp_path) as peer:
        srv = make_server({"proxy": tls_route(peer)})
        await _message_via_static_route(srv, peer.received, "INVITE")
    received = peer.received
    assert received and received[0].startswith(b"INVITE sip:dan@tlspeer.test SIP/2.0\r\n")
    routes = [
        line.split(":", 1)[1].strip()
        for line in received[0].decode().split("\r\n")
        if line.lower().startswith("record-route:")
    ]
    assert routes == [
        f"<sip:127.0.0.1:{srv.port};transport=tcp;lr>",
        f"<sip:127.0.0.1:{srv.port};lr>",
    ], routes
