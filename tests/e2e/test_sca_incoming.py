"""sca-behaviour.md section 9, scenarios 47-54: incoming calls to the line and Call-Info
handling. Scenario 53 (Kamailio's ``mask`` argument) tests sipsca's built-in equivalent."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers.phone import Call, IncomingCall, Phone, call_info_of
from helpers.sca import WILDCARD, Line, ci, full

AOR = "sip:1000@127.0.0.1"
CAROL = "sip:carol@carrier.invalid"
CAROL_URI = '\\"Carol\\" <sip:carol@carrier.invalid>'


async def appearances(server: Any) -> list[tuple[str, int, str]]:
    return sorted(
        (r.split()[0], int(r.split()[1]), r.split()[2])
        for r in await server.arpc("sca.all_appearances")
    )


async def incoming_setup(
    make_line: Any, config: dict[str, Any] | None = None
) -> tuple[Line, Phone, Phone, Phone]:
    line: Line = await make_line(config)
    a = await line.member("A", uas="ring")
    b = await line.member("B", uas="manual")
    carol = await line.phone("carol", "carol")
    return line, a, b, carol


async def ring_line(
    line: Line, a: Phone, b: Phone, carol: Phone, target: str
) -> tuple[Call, IncomingCall]:
    """Carol calls ``target``; both members ring with ``Call-Info`` index 1 and the group
    sees it ``alerting``. Returns Carol's call and B's incoming call."""
    call = await carol.invite(target, from_uri=CAROL, from_display='"Carol"', wait=False)
    inc_b = await b.wait_incoming()
    inc_a = await a.wait_incoming()
    assert call_info_of(inc_a.invite) == ci(1)
    assert call_info_of(inc_b.invite) == ci(1)
    await line.broadcast(lambda v: v.startswith(ci(1, "alerting")) and v.endswith(WILDCARD))
    return call, inc_b


async def test_scenario_47_incoming_call(make_line: Any) -> None:
    """Carol calls the line (forked to A and B). [R] decisions.md 8: while it rings the group
    sees index 1 ``alerting`` and each forked INVITE carries
    ``Call-Info: <sip:127.0.0.1>;appearance-index=1``. B answers -> ``1 active;appearance-uri=
    "\\"Carol\\" <sip:carol@carrier.invalid>"``. [R] decisions.md 2: it stays active while the
    call is up, past ``pending_ttl`` (2 s here; Kamailio's stale purge shows idle)."""
    line, a, b, carol = await incoming_setup(make_line, {"sca": {"pending_ttl": 2}})
    call, inc_b = await ring_line(line, a, b, carol, AOR)
    await b.provisional(inc_b, 180)
    await b.answer(inc_b)
    assert (await carol.finish_invite(call)).status == 200
    await line.broadcast(full(ci(1, "active", CAROL_URI)), strict=False)
    await line.settle()
    line.drain()
    await asyncio.sleep(3.5)
    for p in line.members():
        assert not p.pending_notifies("call-info"), [call_info_of(n) for n in p.pending_notifies()]
    assert await appearances(line.server) == [(AOR, 1, "active")]
    assert (await carol.bye(call)).status == 200
    await line.broadcast(WILDCARD)


async def test_scenario_48_answer_names_index(make_line: Any) -> None:
    """(``incoming_alerting = false``, Kamailio's model) B's 200 carries
    ``Call-Info: <sip:127.0.0.1>;appearance-index=2`` -> index 2 is used."""
    line, _, b, carol = await incoming_setup(make_line, {"sca": {"incoming_alerting": False}})
    call = await carol.invite(AOR, from_uri=CAROL, from_display='"Carol"', wait=False)
    inc_b = await b.wait_incoming()
    await b.answer(inc_b, headers=[("Call-Info", "<sip:127.0.0.1>;appearance-index=2")])
    assert (await carol.finish_invite(call)).status == 200
    await line.broadcast(full(ci(2, "active", CAROL_URI)), strict=False)
    assert await appearances(line.server) == [(AOR, 2, "active")]


async def test_scenario_49_caller_hangs_up(make_line: Any) -> None:
    """[R] decisions.md 2: the caller's BYE releases the answered appearance at once (wildcard
    broadcast; Kamailio keeps it until the stale purge)."""
    line, _, b, carol = await incoming_setup(make_line)
    call = await carol.invite(AOR, from_uri=CAROL, from_display='"Carol"', wait=False)
    inc_b = await b.wait_incoming()
    await b.answer(inc_b)
    assert (await carol.finish_invite(call)).status == 200
    await line.broadcast(full(ci(1, "active", CAROL_URI)), strict=False)
    await line.settle()
    line.drain()
    assert (await carol.bye(call)).status == 200
    await line.broadcast(WILDCARD)
    assert await appearances(line.server) == []


async def test_scenario_50_non_sca_call_info(make_line: Any) -> None:
    """[R] decisions.md 6: an INVITE whose first Call-Info is ``<http://...>;purpose=icon`` is
    still tracked through its SCA Call-Info; only the SCA value is removed, the icon reaches bob
    (Kamailio: no SCA update, header forwarded unchanged)."""
    line: Line = await make_line()
    a = await line.member("A")
    await line.member("B")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    await line.seize(a, 1)
    icon = "<http://127.0.0.1/a.png>;purpose=icon"
    call = await a.invite("bob", headers=[("Call-Info", icon), ("Call-Info", line.seize_ci % 1)])
    assert call.final is not None and call.final.status == 200
    assert call_info_of(bob.incoming[0].invite) == icon
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)


async def test_scenario_51_call_info_between_non_sca_users(make_line: Any) -> None:
    """An INVITE between two users that are not SCA lines, carrying an SCA Call-Info: the
    header is stripped, nobody is notified."""
    line: Line = await make_line()
    await line.member("A")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    carol = await line.phone("carol", "carol")
    call = await carol.invite("bob", call_info="<sip:127.0.0.1>;appearance-index=1")
    assert call.final is not None and call.final.status == 200
    assert call_info_of(bob.incoming[0].invite) is None
    await line.no_notify()


async def test_scenario_52_line_without_subscribers(make_line: Any) -> None:
    """Once the line's last call-info subscription is gone (expired and purged), a request
    without Call-Info from it drops the line's appearance list: a later line-seize gets
    500 Internal Server Error - seize appearance index, until a call-info SUBSCRIBE."""
    line: Line = await make_line()
    a = await line.member("A", subscribe=False)
    bob = await line.callee(uas="answer", answer_delay=0.05)
    d, r = await a.subscribe("call-info", 1)
    assert r.status == 202
    await a.expect_notify(
        "call-info",
        call_id=d.call_id,
        predicate=lambda n: "terminated" in (n.headers.get("subscription-state") or ""),
        timeout=5,
    )
    await asyncio.sleep(1.5)
    call = await a.invite("bob")
    assert call.final is not None and call.final.status == 200
    assert (await a.bye(call)).status == 200
    _, r = await a.subscribe("line-seize", 15, call_info=line.seize_ci % 1)
    assert (r.status, r.reason) == (500, "Internal Server Error - seize appearance index")
    await line.subscribe(a)
    _, r = await a.subscribe("line-seize", 15, call_info=line.seize_ci % 1)
    assert r.status == 200
    assert bob.incoming


async def test_scenario_53_line_to_line_call(make_line: Any) -> None:
    """Kamailio's ``sca_call_info_update(mask)`` selects which side of a call is tracked; sipsca
    has no script, its built-in equivalent is mask 0 (both sides): a call from line 1000 to line
    2000 updates both lines' appearances, and both end idle."""
    line: Line = await make_line()
    a = await line.member("A")
    await line.member("B")
    c = await line.phone("C", "2000", uas="answer", answer_delay=0.05)
    await c.register()
    d2, r = await c.subscribe("call-info", 3600, aor="sip:2000@127.0.0.1")
    assert r.status == 202
    await c.expect_notify("call-info", call_id=d2.call_id)
    await line.seize(a, 1)
    call = await a.invite("2000", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 200
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)
    await c.expect_notify(
        "call-info",
        call_id=d2.call_id,
        predicate=lambda n: f"{ci(1, 'active')};" in (call_info_of(n) or ""),
    )
    assert await appearances(line.server) == [
        (AOR, 1, "active"),
        ("sip:2000@127.0.0.1", 1, "active"),
    ]
    line.drain()
    assert (await a.bye(call)).status == 200
    await line.broadcast(WILDCARD, strict=False)
    await c.expect_notify(
        "call-info", call_id=d2.call_id, predicate=lambda n: call_info_of(n) == WILDCARD
    )
    assert await appearances(line.server) == []


async def test_scenario_54_other_methods_ignored(make_line: Any) -> None:
    """INFO / UPDATE in the call and MESSAGE outside it, each with an SCA Call-Info: not SCA's
    business - the header reaches bob unchanged and nobody is notified."""
    line: Line = await make_line()
    a = await line.member("A")
    await line.member("B")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 200
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)
    await line.settle()
    line.drain()
    value = line.seize_ci % 1
    for method in ("INFO", "UPDATE"):
        r = await a.request(method, dialog=call.dialog, headers=[("Call-Info", value)])
        assert r.status == 200, (method, r)
    r = await a.request(
        "MESSAGE",
        "sip:bob@127.0.0.1",
        headers=[("Call-Info", value)],
        body=b"hello",
        content_type="text/plain",
    )
    assert r.status == 200
    got = {
        req.method: call_info_of(req)
        for req in bob.requests
        if req.method in ("INFO", "UPDATE", "MESSAGE")
    }
    assert got == {"INFO": value, "UPDATE": value, "MESSAGE": value}
    await line.no_notify()


async def test_call_to_a_line_alias_rings_the_line(make_line: Any) -> None:
    """A DID (``sip:5551234@...``) and an E.164 number (listed as ``tel:+15551234``, called as
    ``sip:+15551234@...;user=phone``) that are aliases of the line reach its members: the
    line AoR's bindings are used, not the Request-URI's own (none: 404 before), and the
    group sees the call ``alerting``."""
    config = {"sca": {"lines": [{"aor": AOR, "aliases": ["5551234", "tel:+15551234"]}]}}
    line, a, b, carol = await incoming_setup(make_line, config)
    for target in ("sip:5551234@127.0.0.1", "sip:+15551234@127.0.0.1;user=phone"):
        call, inc_b = await ring_line(line, a, b, carol, target)
        await b.answer(inc_b)
        assert (await carol.finish_invite(call)).status == 200
        await line.broadcast(full(ci(1, "active", CAROL_URI)), strict=False)
        assert (await carol.bye(call)).status == 200
        await line.broadcast(WILDCARD)
        await line.settle()
        line.drain()
        a.incoming.clear()
        b.incoming.clear()
