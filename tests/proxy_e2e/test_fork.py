"""LOCATION + RELAY with several contacts: parallel forking in q order, best response,
"Call completed elsewhere", 6xx, timer C and unreachable contacts (RFC 3261 16.6-16.9)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support import ProxyServer, RawUdp, build_request, rand

from helpers.phone import Phone

COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'


async def fork_pair(
    server: ProxyServer, phones: Any, uas1: Any, uas2: Any, **kw: Any
) -> tuple[Phone, Phone, Phone, str]:
    user = f"fork-{rand(5)}"
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    b1: Phone = await phones(server, "bob1", user, uas=uas1, **kw)
    b2: Phone = await phones(server, "bob2", user, uas=uas2, **kw)
    assert (await b1.register()).status == 200
    assert (await b2.register()).status == 200
    return a, b1, b2, user


async def test_first_200_wins_other_branch_cancelled(server: ProxyServer, phones: Any) -> None:
    """Both contacts get the INVITE (distinct branches); Bob1 answers: Alice gets that 200,
    Bob2 gets a CANCEL with ``Reason: SIP;cause=200;text="Call completed elsewhere"`` and
    its 487 never reaches Alice."""
    a, b1, b2, user = await fork_pair(server, phones, "answer", "ring", answer_delay=0.3)
    call = await a.invite(user)
    assert call.final is not None and call.final.status == 200
    assert call.final.to_tag == b1.incoming[0].to_tag
    inv1, inv2 = b1.incoming[0].invite, b2.incoming[0].invite
    assert inv1.top_via.branch != inv2.top_via.branch
    await b2.wait_for(lambda: any(r.method == "CANCEL" for r in b2.requests), what="CANCEL")
    cancel = next(r for r in b2.requests if r.method == "CANCEL")
    assert cancel.headers.get("reason") == COMPLETED_ELSEWHERE
    assert cancel.top_via.branch == inv2.top_via.branch
    await a.quiet(0.5)
    assert 487 not in call.statuses()
    assert not any(r.method == "CANCEL" for r in b1.requests)
    assert (await a.bye(call)).status == 200


async def test_parallel_fork_in_q_order(server: ProxyServer, phones: Any) -> None:
    """Contacts with q=0.2 and q=0.9: both are tried at once; the q=0.9 branch is created
    (and sent) first."""
    user = f"q-{rand(5)}"
    a: Phone = await phones(server, "alice", f"alice-{rand(5)}")
    low: Phone = await phones(server, "low", user, uas=486)
    high: Phone = await phones(server, "high", user, uas=486)
    for p, q in ((low, "0.2"), (high, "0.9")):
        req = p._build(
            "REGISTER",
            f"sip:{server.domain}",
            from_=f"<{p.aor}>;tag={rand(8)}",
            to=f"<{p.aor}>",
            call_id=f"q-{rand(10)}",
            cseq=1,
            contact=f"<{p.contact_uri}>;q={q};expires=600",
        )
        assert (await p.send_request(req)).status == 200
    call = await a.invite(user)
    assert call.final is not None and call.final.status == 486
    b_high = high.incoming[0].invite.top_via.branch or ""
    b_low = low.incoming[0].invite.top_via.branch or ""
    assert b_high.endswith(".0") and b_low.endswith(".1"), (b_high, b_low)


async def test_6xx_cancels_other_branches(server: ProxyServer, phones: Any) -> None:
    """Bob1 declines with 603 while Bob2 rings: Bob2's branch is cancelled at once and
    Alice gets the 603 (a 6xx ends the search)."""
    a, b1, b2, user = await fork_pair(server, phones, "manual", "ring")
    call = await a.invite(user, wait=False)
    inc1 = await b1.wait_incoming()
    await b2.wait_incoming()
    await call.wait_status(180)
    await b1.answer(inc1, 603, "Decline")
    final = await call.wait_final()
    assert final.status == 603, call.statuses()
    cancel = await b2.wait_for(
        lambda: next((r for r in b2.requests if r.method == "CANCEL"), None), what="CANCEL"
    )
    assert "cause=603" in (cancel.headers.get("reason") or "")


async def test_best_response_lowest_class(server: ProxyServer, phones: Any) -> None:
    """Bob1 486 and Bob2 404: both 4xx, the proxy forwards one final (the lower code,
    Kamailio's rule) and ACKs both branches itself."""
    a, b1, b2, user = await fork_pair(server, phones, 486, 404)
    call = await a.invite(user)
    assert call.final is not None and call.final.status == 404
    assert [s for s in call.statuses() if s >= 200] == [404]
    for b in (b1, b2):
        await b.wait_for(lambda b=b: any(r.method == "ACK" for r in b.requests), what="ACK")


async def test_timer_c_gives_408(make_server: Any, phones: Any) -> None:
    """Bob rings forever: when timer C (2 s here) fires the proxy CANCELs the branch and
    answers Alice ``408 Request Timeout``."""
    srv = make_server({"transaction": {"timer_c": 2.0}})
    a: Phone = await phones(srv, "alice", "alice")
    b: Phone = await phones(srv, "bob", "bob", uas="ring")
    assert (await b.register()).status == 200
    t0 = time.monotonic()
    call = await a.invite("bob", wait=False)
    await call.wait_status(180)
    final = await call.wait_final(timeout=8)
    elapsed = time.monotonic() - t0
    assert final.status == 408, call.statuses()
    assert 1.5 <= elapsed <= 6, elapsed
    await b.wait_for(lambda: any(r.method == "CANCEL" for r in b.requests), what="CANCEL")


async def test_unreachable_tcp_contact(make_server: Any, phones: Any) -> None:
    """Bob registered over TCP, then went away (connection and listening port closed): the
    proxy cannot connect, the branch fails and Alice gets 503 (transport failure, the issue's
    RELAY spec) or 408 - promptly.

    Open failure (reported to the lead): sipsca answers ``500 Server Internal Error``, because
    ``ResponseContext._best`` turns a lone 503 - here the synthetic one of RFC 3261 16.9 - into
    a 500 (16.7 step 6), which reads like a crash to the caller."""
    srv = make_server({"transaction": {"timer_c": 10.0}})
    a: Phone = await phones(srv, "alice", "alice")
    b: Phone = await phones(srv, "bob", "bob", transport="tcp", uas="answer")
    assert (await b.register()).status == 200
    await b.close()
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    call = await a.invite("bob", timeout=10)
    assert call.final is not None
    assert call.final.status in (503, 408), (call.final.status, call.final.reason)
    assert time.monotonic() - t0 < 9


async def test_silent_udp_contact_408(make_server: Any, phones: Any) -> None:
    """A registered UDP contact that never answers: the proxy retransmits the INVITE (timer
    A) and, when timer B fires (64*T1, T1 = 50 ms here), answers Alice ``408``; no CANCEL is
    sent to a branch that never sent a provisional response (RFC 3261 9.1)."""
    srv = make_server({"transaction": {"t1": 0.05}})
    a: Phone = await phones(srv, "alice", "alice")
    async with RawUdp(srv.sip_addr) as silent:
        reg = build_request(
            "REGISTER",
            f"sip:{srv.domain}",
            via=silent.via,
            from_=f"<sip:mute@{srv.domain}>;tag={rand(8)}",
            to=f"<sip:mute@{srv.domain}>",
            headers=[("Contact", f"<sip:mute@127.0.0.1:{silent.port}>;expires=600")],
        )
        silent.send(reg)
        assert (await silent.response(reg.call_id)).status == 200
        t0 = time.monotonic()
        call = await a.invite("mute", timeout=10)
        assert call.final is not None and call.final.status == 408, call.statuses()
        assert time.monotonic() - t0 < 8
        invites = [d for d, _ in silent.datagrams if d.startswith(b"INVITE ")]
        assert len(invites) >= 3, "timer A retransmissions"
        assert not any(d.startswith(b"CANCEL ") for d, _ in silent.datagrams)
