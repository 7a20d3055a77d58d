"""CANCEL route of the pipeline (RFC 3261 9.2, 16.10): matched -> ``200 canceling``, a CANCEL
on every pending branch and 487 to the INVITE; unmatched -> 481."""

from __future__ import annotations

from typing import Any

from support import ProxyServer, RawUdp, build_request, rand

from helpers.phone import Phone


async def test_cancel_while_ringing(server: ProxyServer, phones: Any) -> None:
    """Bob rings; Alice CANCELs: her CANCEL gets ``200 canceling``, Bob gets a CANCEL that
    matches the INVITE he received (same branch, Request-URI, Call-ID, From/To, CSeq number)
    and answers 487, Alice gets 487; the proxy ACKs Bob's 487 itself and absorbs Alice's ACK
    (Bob sees one ACK)."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}", uas="ring")
    assert (await b.register()).status == 200
    call = await a.invite(b.user, wait=False)
    await call.wait_status(180)
    resp = await a.cancel(call)
    assert (resp.status, resp.reason) == (200, "canceling")
    final = await call.wait_final()
    assert final.status == 487, call.statuses()
    cancel = next(r for r in b.requests if r.method == "CANCEL")
    inv = b.incoming[0].invite
    assert cancel.top_via.branch == inv.top_via.branch
    assert cancel.uri == inv.uri and cancel.call_id == inv.call_id
    assert cancel.headers.get("from") == inv.headers.get("from")
    assert cancel.headers.get("to") == inv.headers.get("to")
    assert cancel.cseq.number == inv.cseq.number and cancel.cseq.method == "CANCEL"
    assert len(cancel.headers.values("via")) == 1, "hop-by-hop: only the proxy's Via"
    await b.wait_for(lambda: any(r.method == "ACK" for r in b.requests), what="ACK for 487")
    await a.quiet(0.6)
    acks = [r for r in b.requests if r.method == "ACK"]
    assert len(acks) == 1 and acks[0].top_via.branch == inv.top_via.branch


async def test_cancel_forked_call_reaches_every_branch(server: ProxyServer, phones: Any) -> None:
    """Two ringing contacts of one AoR: a CANCEL from the caller is sent on both branches,
    with the caller's RFC 3326 Reason (answered elsewhere: the phones must not log a missed
    call)."""
    user = f"fork-{rand(5)}"
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b1: Phone = await phones(server, "bob1", user, uas="ring")
    b2: Phone = await phones(server, "bob2", user, uas="ring")
    assert (await b1.register()).status == 200
    assert (await b2.register()).status == 200
    call = await a.invite(user, wait=False)
    await b1.wait_incoming()
    await b2.wait_incoming()
    await call.wait_status(180)
    await a.quiet(0.2)
    elsewhere = 'SIP;cause=200;text="Call completed elsewhere"'
    assert (await a.cancel(call, reason=elsewhere)).status == 200
    assert (await call.wait_final()).status == 487
    for b in (b1, b2):
        await b.wait_for(lambda b=b: any(r.method == "CANCEL" for r in b.requests), what="CANCEL")
        assert b.incoming[0].final_status == 487
        cancel = next(r for r in b.requests if r.method == "CANCEL")
        assert cancel.headers.get("reason") == elsewhere


async def test_unmatched_cancel_481(server: ProxyServer) -> None:
    """A CANCEL matching no INVITE transaction: ``481 Call/Transaction Does Not Exist``."""
    async with RawUdp(server.sip_addr) as udp:
        req = build_request(
            "CANCEL",
            f"sip:nobody@{server.domain}",
            via=udp.via,
            from_=f"<sip:x@{server.domain}>;tag={rand(8)}",
            to=f"<sip:nobody@{server.domain}>",
        )
        udp.send(req)
        resp = await udp.response(req.call_id)
    assert resp.status == 481, resp


async def test_cancel_after_final_is_harmless(server: ProxyServer, phones: Any) -> None:
    """A CANCEL for an INVITE already answered 200: the CANCEL is answered (RFC 3261 9.2:
    200 while the transaction exists, the call stays up) and the call can be hung up."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}", uas="answer", answer_delay=0.05)
    assert (await b.register()).status == 200
    call = await a.invite(b.user)
    assert call.final is not None and call.final.status == 200
    resp = await a.cancel(call)
    assert resp.status in (200, 481), resp
    assert not any(r.method == "CANCEL" for r in b.requests), "no CANCEL for an answered branch"
    assert (await a.bye(call)).status == 200


async def test_cancel_after_100_only(server: ProxyServer, phones: Any) -> None:
    """The callee only sent ``100 Trying`` (no ringing): that is enough to CANCEL the branch
    (RFC 3261 9.1 "any provisional response"); the caller gets 487."""
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b: Phone = await phones(server, "bob", f"bob-{rand(5)}", uas="manual")
    assert (await b.register()).status == 200
    call = await a.invite(b.user, wait=False)
    inc = await b.wait_incoming()
    await b.provisional(inc, 100, contact=False)
    await a.quiet(0.2)
    assert (await a.cancel(call)).status == 200
    assert (await call.wait_final()).status == 487
    assert any(r.method == "CANCEL" for r in b.requests)
    assert 100 in call.statuses() and 180 not in call.statuses()
