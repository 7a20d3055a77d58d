"""REGISTRAR of the built-in pipeline over real UDP (RFC 3261 10.3, RFC 3327, RFC 5626).

One server for the module with ``registrar.min_expires = 2`` so expiry can be watched in
seconds; every test uses its own AoR. Bindings are read back through RPC ``ul.dump``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from support import ProxyServer, RawUdp, bindings, build_request, rand

from helpers.phone import Phone

SERVER_CONFIG = {"registrar": {"min_expires": 2, "default_expires": 600, "max_expires": 3600}}


async def register(
    udp: RawUdp,
    server: ProxyServer,
    user: str,
    contacts: list[str],
    *,
    call_id: str,
    cseq: int,
    expires: int | None = None,
    headers: list[tuple[str, str]] | None = None,
    domain: str | None = None,
) -> Any:
    aor = f"sip:{user}@{domain or server.domain}"
    hdrs = [("Contact", c) for c in contacts]
    if expires is not None:
        hdrs.append(("Expires", str(expires)))
    hdrs += headers or []
    req = build_request(
        "REGISTER",
        f"sip:{server.domain}",
        via=udp.via,
        from_=f"<{aor}>;tag={rand(8)}",
        to=f"<{aor}>",
        call_id=call_id,
        cseq=cseq,
        headers=hdrs,
    )
    udp.send(req)
    return await udp.response(call_id, method="REGISTER")


def listed(resp: Any) -> dict[str, dict[str, str | None]]:
    """Contact URI -> its parameters, from a REGISTER 200."""
    return {c.uri_text: {k.lower(): v for k, v in c.params} for c in resp.contacts}


async def test_register_refresh_unregister(server: ProxyServer) -> None:
    """Add (200 lists the binding with its expires), refresh (same Call-ID, higher CSeq, new
    interval), remove with ``expires=0`` (200 lists nothing); ``ul.dump`` follows each step."""
    user, cid = f"reg-{rand(6)}", f"reg-{rand(12)}"
    aor = f"sip:{user}@{server.domain}"
    contact = f"sip:{user}@127.0.0.1:40001"
    async with RawUdp(server.sip_addr) as udp:
        r = await register(udp, server, user, [f"<{contact}>;expires=60"], call_id=cid, cseq=1)
        assert r.status == 200, r
        params = listed(r)
        assert list(params) == [contact]
        assert 58 <= int(params[contact]["expires"] or 0) <= 60
        rows = await bindings(server, aor)
        assert [row["contact"] for row in rows] == [contact]
        assert 58 <= rows[0]["expires"] <= 60
        assert rows[0]["call_id"] == cid and rows[0]["cseq"] == 1
        assert rows[0]["received"] == f"udp:127.0.0.1:{udp.port}"

        udp.messages.clear()
        r = await register(udp, server, user, [f"<{contact}>"], call_id=cid, cseq=2, expires=300)
        assert r.status == 200, r
        assert 298 <= int(listed(r)[contact]["expires"] or 0) <= 300
        rows = await bindings(server, aor)
        assert len(rows) == 1 and rows[0]["cseq"] == 2 and rows[0]["expires"] > 200

        udp.messages.clear()
        r = await register(udp, server, user, [f"<{contact}>;expires=0"], call_id=cid, cseq=3)
        assert r.status == 200, r
        assert r.contacts == []
        assert await bindings(server, aor) == []


async def test_binding_expires(server: ProxyServer, phones: Any) -> None:
    """A 2 s binding (min_expires lowered to 2) disappears by itself; a call to the AoR is
    then ``404 Not Found``."""
    user = f"exp-{rand(6)}"
    aor = f"sip:{user}@{server.domain}"
    callee: Phone = await phones(server, "callee", user, uas="answer")
    caller: Phone = await phones(server, "caller", f"c-{rand(4)}")
    assert (await callee.register(expires=2)).status == 200
    assert len(await bindings(server, aor)) == 1
    await asyncio.sleep(3.2)
    assert await bindings(server, aor) == []
    call = await caller.invite(user)
    assert call.final is not None and call.final.status == 404
    assert callee.incoming == []


async def test_several_contacts_and_q(server: ProxyServer) -> None:
    """One REGISTER with three Contacts (q=0.5, q=1.0, no q): all bound, the 200 lists each
    with its own expires and q (1.0 is implied); a second REGISTER adds a fourth."""
    user, cid = f"multi-{rand(6)}", f"multi-{rand(12)}"
    aor = f"sip:{user}@{server.domain}"
    c1, c2, c3, c4 = (f"sip:{user}@127.0.0.1:{p}" for p in (41001, 41002, 41003, 41004))
    async with RawUdp(server.sip_addr) as udp:
        r = await register(
            udp,
            server,
            user,
            [f"<{c1}>;q=0.5;expires=100", f"<{c2}>;q=1.0", f"<{c3}>"],
            call_id=cid,
            cseq=1,
            expires=200,
        )
        assert r.status == 200, r
        got = listed(r)
        assert set(got) == {c1, c2, c3}
        assert got[c1]["q"] == "0.5" and 98 <= int(got[c1]["expires"] or 0) <= 100
        assert "q" not in got[c2] and 198 <= int(got[c2]["expires"] or 0) <= 200
        assert "q" not in got[c3]
        rows = {row["contact"]: row for row in await bindings(server, aor)}
        assert rows[c1]["q"] == 0.5 and rows[c2]["q"] == 1.0 and rows[c3]["q"] == 1.0

        udp.messages.clear()
        r = await register(udp, server, user, [f"<{c4}>;q=0.1"], call_id=f"other-{rand(8)}", cseq=1)
        assert r.status == 200, r
        assert set(listed(r)) == {c1, c2, c3, c4}, "the 200 must list all current bindings"
        assert listed(r)[c4]["q"] == "0.1"


async def test_wildcard_unregister(server: ProxyServer) -> None:
    """``Contact: *`` needs ``Expires: 0`` (else 400) and must be alone (else 400); with it
    every binding of the AoR goes."""
    user, cid = f"star-{rand(6)}", f"star-{rand(12)}"
    aor = f"sip:{user}@{server.domain}"
    contacts = [f"<sip:{user}@127.0.0.1:{p}>" for p in (42001, 42002)]
    async with RawUdp(server.sip_addr) as udp:
        r = await register(udp, server, user, contacts, call_id=cid, cseq=1, expires=600)
        assert r.status == 200 and len(r.contacts) == 2
        udp.messages.clear()
        r = await register(udp, server, user, ["*"], call_id=cid, cseq=2, expires=60)
        assert r.status == 400, r
        assert "Expires" in r.reason
        udp.messages.clear()
        r = await register(udp, server, user, ["*", contacts[0]], call_id=cid, cseq=3, expires=0)
        assert r.status == 400, r
        assert len(await bindings(server, aor)) == 2, "a failed REGISTER changes nothing"
        udp.messages.clear()
        r = await register(udp, server, user, ["*"], call_id=cid, cseq=4, expires=0)
        assert r.status == 200, r
        assert r.contacts == []
        assert await bindings(server, aor) == []


async def test_interval_too_brief(server: ProxyServer) -> None:
    """``expires=1`` below ``min_expires = 2``: 423 Interval Too Brief + ``Min-Expires: 2``,
    nothing bound."""
    user = f"brief-{rand(6)}"
    async with RawUdp(server.sip_addr) as udp:
        r = await register(
            udp,
            server,
            user,
            [f"<sip:{user}@127.0.0.1:43001>;expires=1"],
            call_id=f"b-{rand(10)}",
            cseq=1,
        )
    assert r.status == 423, r
    assert r.headers.get("min-expires") == "2"
    assert await bindings(server, f"sip:{user}@{server.domain}") == []


async def test_out_of_order_cseq(server: ProxyServer) -> None:
    """Same Call-ID with a CSeq not above the stored one: the request fails (500 "Out of
    order", RFC 3261 10.3 step 7 names no code) and the binding keeps its CSeq/expiry; a
    different Call-ID may replace it whatever its CSeq."""
    user, cid = f"ooo-{rand(6)}", f"ooo-{rand(12)}"
    aor = f"sip:{user}@{server.domain}"
    contact = f"<sip:{user}@127.0.0.1:44001>"
    async with RawUdp(server.sip_addr) as udp:
        assert (
            await register(udp, server, user, [contact], call_id=cid, cseq=10, expires=600)
        ).status == 200
        for cseq in (10, 9):
            udp.messages.clear()
            r = await register(udp, server, user, [contact], call_id=cid, cseq=cseq, expires=60)
            assert r.status == 500, r
            assert "order" in r.reason.lower()
        rows = await bindings(server, aor)
        assert rows[0]["cseq"] == 10 and rows[0]["expires"] > 500
        udp.messages.clear()
        r = await register(udp, server, user, [contact], call_id=f"new-{cid}", cseq=1, expires=60)
        assert r.status == 200, r
        rows = await bindings(server, aor)
        assert len(rows) == 1 and rows[0]["cseq"] == 1 and rows[0]["expires"] <= 60


async def test_nat_source_flow(server: ProxyServer, phones: Any) -> None:
    """A phone registers a Contact it cannot be reached at (a private address behind NAT;
    here an unused loopback port): calls to its AoR go to the address the REGISTER came
    from, with the Request-URI still the registered Contact."""
    user = f"nat-{rand(6)}"
    natted: Phone = await phones(server, "natted", user, uas="answer")
    contact = f"sip:{user}@127.0.0.99:9"
    req = natted._build(
        "REGISTER",
        f"sip:{server.domain}",
        from_=f"<{natted.aor}>;tag={rand(8)}",
        to=f"<{natted.aor}>",
        call_id=f"nat-{rand(10)}",
        cseq=1,
        contact=f"<{contact}>;expires=600",
    )
    assert (await natted.send_request(req)).status == 200
    row = (await bindings(server, natted.aor))[0]
    assert row["contact"] == contact and row["received"] == f"udp:127.0.0.1:{natted.port}"
    caller: Phone = await phones(server, "caller", f"c-{rand(4)}")
    call = await caller.invite(user)
    assert call.final is not None and call.final.status == 200
    assert natted.incoming[0].invite.uri == contact
    assert (await caller.bye(call)).status == 200


async def test_path_is_stored_and_used(server: ProxyServer, phones: Any) -> None:
    """RFC 3327: the Path of a REGISTER is echoed in the 200 (the UA supports ``path``) and
    requests for the AoR visit the Path first: the edge proxy gets the INVITE with the Path
    URI as Route and the registered Contact as Request-URI."""
    user = f"path-{rand(6)}"
    edge: Phone = await phones(server, "edge", "edge", uas=486)
    path = f"<sip:edge@127.0.0.1:{edge.port};lr>"
    contact = f"sip:{user}@127.0.0.1:45001"
    async with RawUdp(server.sip_addr) as udp:
        r = await register(
            udp,
            server,
            user,
            [f"<{contact}>"],
            call_id=f"p-{rand(10)}",
            cseq=1,
            expires=600,
            headers=[("Path", path), ("Supported", "path")],
        )
    assert r.status == 200, r
    assert r.headers.get_all("path") == [path]
    caller: Phone = await phones(server, "caller", f"c-{rand(4)}")
    call = await caller.invite(user)
    assert call.final is not None and call.final.status == 486
    inv = edge.incoming[0].invite
    assert inv.uri == contact
    assert inv.headers.values("route")[0] == path


async def test_outbound_instance_reg_id(server: ProxyServer) -> None:
    """RFC 5626: ``+sip.instance`` + ``reg-id`` with ``Supported: outbound`` binds the
    (instance, reg-id) pair: the 200 has ``Require: outbound``; re-registering the same pair
    from a new Contact URI (new Call-ID: the phone rebooted behind a new port) replaces the
    flow instead of adding a second binding."""
    user = f"ob-{rand(6)}"
    aor = f"sip:{user}@{server.domain}"
    inst = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    async with RawUdp(server.sip_addr) as udp:
        r = await register(
            udp,
            server,
            user,
            [f"<sip:{user}@127.0.0.1:46001>;+sip.instance={inst};reg-id=1"],
            call_id=f"ob-{rand(10)}",
            cseq=1,
            expires=600,
            headers=[("Supported", "outbound, path")],
        )
        assert r.status == 200, r
        assert "outbound" in (r.headers.get("require") or "")
        udp.messages.clear()
        r = await register(
            udp,
            server,
            user,
            [f"<sip:{user}@127.0.0.1:46002>;+sip.instance={inst};reg-id=1"],
            call_id=f"ob2-{rand(10)}",
            cseq=1,
            expires=600,
            headers=[("Supported", "outbound")],
        )
        assert r.status == 200, r
    rows = await bindings(server, aor)
    assert [row["contact"] for row in rows] == [f"sip:{user}@127.0.0.1:46002"]
    assert rows[0]["instance"] == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


async def test_bindings_survive_graceful_restart(make_server: Any, phones: Any) -> None:
    """Bindings written before a SIGTERM (exit 0) are back after the restart (``ul.dump``
    equal but for the elapsed seconds, source flow included), and a call still reaches the
    phone at the address it registered from."""
    srv = make_server({"db": {"db_update_interval": 300}})  # flushed at shutdown only
    bob: Phone = await phones(srv, "bob", "bob", uas="answer")
    carol: Phone = await phones(srv, "carol", "carol", uas="answer")
    assert (await bob.register(expires=600)).status == 200
    assert (await carol.register(expires=900)).status == 200
    before = await bindings(srv)
    assert len(before) == 2
    await asyncio.to_thread(srv.restart)
    after = await bindings(srv)
    assert len(after) == 2

    def key(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["aor"], r["contact"], r["received"], r["call_id"], r["cseq"]) for r in rows]

    assert key(after) == key(before)
    for b, a in zip(before, after, strict=True):
        assert 0 <= b["expires"] - a["expires"] <= 5
    alice: Phone = await phones(srv, "alice", "alice")
    call = await alice.invite("bob")
    assert call.final is not None and call.final.status == 200
    assert (await alice.bye(call)).status == 200


async def test_sigterm_right_after_register_write_through(make_server: Any) -> None:
    """Write-through (``db_update_interval = 0``): a REGISTER answered 200 just before a
    SIGTERM. The server must still exit 0 promptly and the binding must be there after the
    restart (the write in flight when the stop begins must not wedge the database)."""
    srv = make_server({"db": {"db_update_interval": 0}})
    for round_ in range(3):
        user = f"wt{round_}-{rand(5)}"
        async with RawUdp(srv.sip_addr) as udp:
            r = await register(
                udp,
                srv,
                user,
                [f"<sip:{user}@127.0.0.1:47001>"],
                call_id=rand(12),
                cseq=1,
                expires=600,
            )
            assert r.status == 200, r
        t0 = asyncio.get_running_loop().time()
        await asyncio.to_thread(srv.stop, 8.0)  # exit status 0 asserted
        assert asyncio.get_running_loop().time() - t0 < 5, "graceful stop took too long"
        await asyncio.to_thread(srv.start)
        rows = await bindings(srv, f"sip:{user}@{srv.domain}")
        assert [row["contact"] for row in rows] == [f"sip:{user}@127.0.0.1:47001"]


async def test_aor_of_another_domain_is_404(server: ProxyServer) -> None:
    """RFC 3261 10.3 step 5: a REGISTER to us for an AoR in a domain we do not serve is
    404, and nothing is bound."""
    aor = "sip:alice@evil.example"
    async with RawUdp(server.sip_addr) as udp:
        resp = await register(
            udp,
            server,
            "alice",
            [f"<sip:alice@127.0.0.1:{udp.port}>"],
            call_id=f"evil-{rand(8)}",
            cseq=1,
            domain="evil.example",
        )
    assert resp.status == 404, resp
    assert await bindings(server, aor) == []


async def test_unsupported_require_is_420(server: ProxyServer) -> None:
    """RFC 3261 8.2.2.3: what we answer ourselves (REGISTER, OPTIONS to us) with a Require
    option we do not support is 420 with Unsupported; a supported one is fine."""
    async with RawUdp(server.sip_addr) as udp:

        async def register_requiring(options: str) -> Any:
            return await register(
                udp,
                server,
                f"req-{rand(5)}",
                [f"<sip:r@127.0.0.1:{udp.port}>"],
                call_id=f"req-{rand(8)}",
                cseq=1,
                headers=[("Require", options)],
            )

        resp = await register_requiring("foo, path")
        assert (resp.status, resp.headers.get("unsupported")) == (420, "foo")
        options = build_request(
            "OPTIONS",
            f"sip:{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:{server.domain}>",
            headers=[("Require", "bar")],
        )
        udp.send(options)
        resp = await udp.response(options.call_id)
        assert (resp.status, resp.headers.get("unsupported")) == (420, "bar")
        resp = await register_requiring("path")
        assert resp.status == 200, resp
