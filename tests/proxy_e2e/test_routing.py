"""REQINIT and WITHINDLG of the pipeline: loose and strict routing, record-routed in-dialog
NOTIFY, in-dialog SUBSCRIBE to us, stray ACK, ``404 Not here``, Proxy-Require, loops,
preloaded Routes and static routes to another domain."""

from __future__ import annotations

from typing import Any

import pytest
from support import ProxyServer, RawUdp, build_request, rand

from helpers.phone import Phone

RR = "<sip:127.0.0.1:{port};lr>"


async def established(server: ProxyServer, phones: Any) -> tuple[Phone, Phone, Any]:
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}", uas="answer", answer_delay=0.05)
    assert (await b.register()).status == 200
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200
    await b.wait_for(lambda: b.incoming[0].acked, what="ACK")
    return a, b, call


async def test_relayed_responses_keep_their_headers(server: ProxyServer, phones: Any) -> None:
    """A relayed response is the callee's: the proxy adds no ``Server`` header to it (only
    to the replies it makes itself, like the 100 Trying)."""
    _a, _b, call = await established(server, phones)
    assert call.final is not None
    assert call.final.headers.get("server") is None


async def test_strict_router_compat(server: ProxyServer, phones: Any) -> None:
    """An RFC 2543 strict router upstream puts our Record-Route URI in the Request-URI and
    the remote target in Route: we restore the Request-URI from the last Route value and
    forward there (RFC 3261 16.4)."""
    a, b, _call = await established(server, phones)
    d = b.incoming[0].dialog
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "INFO",
            f"sip:127.0.0.1:{server.port};lr",
            via=udp.via,
            from_=d.from_value(),
            to=d.to_value(),
            call_id=d.call_id,
            cseq=200,
            headers=[("Route", f"<{a.contact_uri}>")],
        )
        udp.send(req)
        resp = await udp.response(req.call_id, method="INFO")
    assert resp.status == 200, resp
    info = next(r for r in a.requests if r.method == "INFO")
    assert info.uri == a.contact_uri
    assert info.headers.values("route") == []
    assert info.top_via.port == server.port


async def test_in_dialog_notify_is_record_routed(server: ProxyServer, phones: Any) -> None:
    """An in-dialog NOTIFY routed through us gets our Record-Route (RFC 6665 4.3: the
    notifier's route set is fixed by the NOTIFY), loose-routed to its Request-URI."""
    _, b, _ = await established(server, phones)
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "NOTIFY",
            b.contact_uri,
            via=udp.via,
            from_=f"<sip:notifier@{server.domain}>;tag={rand(8)}",
            to=f"<{b.aor}>;tag={rand(8)}",
            headers=[
                ("Route", RR.format(port=server.port)),
                ("Event", "dialog"),
                ("Subscription-State", "active;expires=60"),
                ("Contact", f"<sip:notifier@127.0.0.1:{udp.port}>"),
            ],
        )
        udp.send(req)
        assert (await udp.response(req.call_id)).status == 200
    notify = next(r for r in b.notifies if r.call_id == req.call_id)
    assert notify.headers.values("record-route") == [RR.format(port=server.port)]
    assert notify.headers.values("route") == []


async def test_in_dialog_without_route_to_us_404(server: ProxyServer) -> None:
    """An in-dialog request addressed to the proxy itself, with no Route to consume and not a
    SUBSCRIBE: ``404 Not here``."""
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "INFO",
            f"sip:127.0.0.1:{server.port}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:y@{server.domain}>;tag={rand(8)}",
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
    assert (resp.status, resp.reason) == (404, "Not here")


@pytest.mark.parametrize("via_route", [False, True], ids=["direct", "route-to-us"])
async def test_in_dialog_subscribe_to_us_goes_to_sca(server: ProxyServer, via_route: bool) -> None:
    """An in-dialog call-info SUBSCRIBE to us is the SCA engine's (it knows no such
    subscription: 481), not the ``404 Not here`` of other in-dialog requests; also when the
    phone sends it via its outbound proxy (Route: us), where it must not be relayed to
    ourselves (482 Loop Detected)."""
    async with RawUdp(server.sip_addr) as udp:
        aor = f"sip:line-{rand(5)}@{server.domain}"
        route = [("Route", RR.format(port=server.port))] if via_route else []
        req = build_request(
            "SUBSCRIBE",
            f"sip:127.0.0.1:{server.port}",
            via=udp.via,
            from_=f"<{aor}>;tag={rand(8)}",
            to=f"<{aor}>;tag={rand(8)}",
            headers=[
                *route,
                ("Event", "call-info"),
                ("Expires", "60"),
                ("Contact", f"<sip:m@127.0.0.1:{udp.port}>"),
            ],
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
    assert resp.reason != "Not here"
    assert resp.status == 481, resp


async def test_stray_ack_absorbed(server: ProxyServer, phones: Any) -> None:
    """An ACK with a To-tag for us and no Route (e.g. for a reply we generated) is absorbed:
    no response, nothing forwarded, and the server keeps answering."""
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}")
    assert (await b.register()).status == 200
    async with RawUdp(server.sip_addr) as udp:
        for ruri in (f"sip:127.0.0.1:{server.port}", f"sip:{b.user}@{server.domain}"):
            req = build_request(
                "ACK",
                ruri,
                via=udp.via,
                from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
                to=f"<sip:{b.user}@{server.domain}>;tag={rand(8)}",
            )
            udp.send(req)
        assert await udp.silence(0.6) == []
        probe = build_request(
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
        )
        udp.send(probe)
        assert (await udp.response(probe.call_id)).status == 200
    assert not any(r.method == "ACK" for r in b.requests)


async def test_proxy_require_unsupported_420(server: ProxyServer, phones: Any) -> None:
    """REQINIT: ``Proxy-Require`` with an option we do not support -> ``420 Bad Extension``
    with ``Unsupported`` listing exactly the unknown ones; a supported one (``path``) passes."""
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}")
    assert (await b.register()).status == 200
    async with RawUdp(server.sip_addr) as udp:
        bad = build_request(
            "OPTIONS",
            f"sip:{b.user}@{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{b.user}@{server.domain}>",
            headers=[("Proxy-Require", "path, x-teleport"), ("Proxy-Require", "foo")],
        )
        udp.send(bad)
        r = await udp.response(bad.call_id)
        assert r.status == 420, r
        assert [v.strip() for v in (r.headers.get("unsupported") or "").split(",")] == [
            "x-teleport",
            "foo",
        ]
        ok = build_request(
            "OPTIONS",
            f"sip:{b.user}@{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{b.user}@{server.domain}>",
            headers=[("Proxy-Require", "path")],
        )
        udp.send(ok)
        assert (await udp.response(ok.call_id)).status == 200
        ping = build_request(  # to the server itself: no stateless 200 short-cut around 420
            "OPTIONS",
            f"sip:127.0.0.1:{server.port}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:127.0.0.1:{server.port}>",
            headers=[("Proxy-Require", "x-teleport")],
        )
        udp.send(ping)
        r = await udp.response(ping.call_id)
        assert (r.status, r.headers.get("unsupported")) == (420, "x-teleport")


async def test_preloaded_route_removed(server: ProxyServer, phones: Any) -> None:
    """docs/decisions.md 8: Route headers of an initial request are dropped (edge proxy),
    so the request goes to the registered contact, not to the preloaded hop."""
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}")
    assert (await b.register()).status == 200
    async with RawUdp(server.sip_addr) as udp, RawUdp(server.sip_addr) as trap:
        req = build_request(
            "OPTIONS",
            f"sip:{b.user}@{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{b.user}@{server.domain}>",
            headers=[("Route", f"<sip:127.0.0.1:{trap.port};lr>")],
        )
        udp.send(req)
        assert (await udp.response(req.call_id)).status == 200
        assert trap.datagrams == []
    got = next(r for r in b.requests if r.method == "OPTIONS")
    assert got.headers.values("route") == []


async def test_loop_detected_482(make_server: Any) -> None:
    """A static route that points back at the proxy itself: the request returns with our
    Via and an unchanged branch hash, so the second pass answers ``482 Loop Detected``."""
    srv = make_server(
        lambda s: {"proxy": {"static_routes": [["loop.example", f"udp:127.0.0.1:{s.port}"]]}}
    )
    async with RawUdp(srv.sip_addr) as udp:
        req = build_request(
            "OPTIONS",
            "sip:someone@loop.example",
            via=udp.via,
            from_=f"<sip:x@{srv.domain}>;tag={rand(8)}",
            to="<sip:someone@loop.example>",
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
    assert (resp.status, resp.reason) == (482, "Loop Detected")


async def test_static_route_to_other_domain(make_server: Any) -> None:
    """A request for another domain is relayed to its static route with the Request-URI
    unchanged, our Via on top and the response relayed back."""
    async with RawUdp(("127.0.0.1", 9)) as other:
        srv = make_server(
            {"proxy": {"static_routes": [["other.example", f"udp:127.0.0.1:{other.port}"]]}}
        )
        async with RawUdp(srv.sip_addr) as udp:
            req = build_request(
                "MESSAGE",
                "sip:carol@other.example",
                via=udp.via,
                from_=f"<sip:alice@{srv.domain}>;tag={rand(8)}",
                to="<sip:carol@other.example>",
                body=b"hello",
                content_type="text/plain",
            )
            udp.send(req)
            got = await other.request("MESSAGE")
            assert got.uri == "sip:carol@other.example"
            assert got.top_via.port == srv.port and len(got.vias) == 2
            assert got.body == b"hello"
            other.answer(got, 202, "Accepted", to=srv.sip_addr)
            resp = await udp.response(req.call_id)
            assert resp.status == 202 and len(resp.vias) == 1


def stray_200(top_via: str, second_via: str) -> bytes:
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: {top_via}\r\n"
        f"Via: {second_via}\r\n"
        f"From: <sip:a@127.0.0.1>;tag={rand(8)}\r\n"
        f"To: <sip:b@127.0.0.1>;tag={rand(8)}\r\n"
        f"Call-ID: stray-{rand(10)}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_stray_2xx_forwarding_needs_our_via(server: ProxyServer) -> None:
    """RFC 3261 16.7 step 3 / 18.1.2: a 2xx retransmission with no transaction is forwarded
    statelessly only when its top Via is ours (RFC 4475 bcast: a proxy must not send a
    response on to whatever the second Via names). A 200 whose top Via is someone else's is
    dropped: the proxy is no reflector toward an address chosen by the sender."""
    async with RawUdp(server.sip_addr) as sender, RawUdp(server.sip_addr) as victim:
        victim_via = f"SIP/2.0/UDP 127.0.0.1:{victim.port};branch=z9hG4bK{rand(12)}"
        sender.send(stray_200(f"SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK{rand(12)}", victim_via))
        assert await victim.silence(0.6) == [], "forwarded a response whose top Via is not ours"
        ours = f"SIP/2.0/UDP 127.0.0.1:{server.port};branch=z9hG4bK{rand(12)}.0;rport"
        sender.send(stray_200(ours, victim_via))
        got = await victim.wait(lambda m: getattr(m, "status", 0) == 200, 3.0, "2xx")
        assert got.headers.values("via") == [victim_via]
        assert sender.datagrams == []


async def test_a_to_tag_alone_is_not_relayed(make_server: Any) -> None:
    """With auth on, a request for another domain from a stranger is 403; adding a To-tag
    must not turn it into an in-dialog request we relay (no route set: the sample config's
    404 ``Not here``), or anyone could use the proxy (and its static routes) unchallenged."""
    async with RawUdp(("127.0.0.1", 9)) as other:
        srv = make_server(
            {
                "auth": {"mode": "digest"},
                "proxy": {"static_routes": [["other.example", f"udp:127.0.0.1:{other.port}"]]},
            }
        )
        async with RawUdp(srv.sip_addr) as udp:
            for to_tag in ("", f";tag={rand(8)}"):
                req = build_request(
                    "MESSAGE",
                    "sip:carol@other.example",
                    via=udp.via,
                    from_=f"<sip:mallory@elsewhere.example>;tag={rand(8)}",
                    to=f"<sip:carol@other.example>{to_tag}",
                    body=b"free call",
                    content_type="text/plain",
                )
                udp.send(req)
                resp = await udp.response(req.call_id)
                assert (resp.status, resp.reason) == (
                    (404, "Not here") if to_tag else (403, "Not relaying")
                )
            with pytest.raises(TimeoutError):
                await other.request("MESSAGE", timeout=0.5)
