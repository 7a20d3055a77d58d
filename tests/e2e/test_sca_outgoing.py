"""sca-behaviour.md section 9, scenarios 25-36: an outgoing call from the shared line.

A seizes index 1 and calls ``bob`` (a plain UAS driven by the test) through sipsca.
"""

from __future__ import annotations

from typing import Any

import pytest

from helpers.phone import Call, IncomingCall, Phone, call_info_of
from helpers.sca import BOB_URI, WILDCARD, Line, appearances, ci, full, sub_state

AOR = "sip:1000@127.0.0.1"


async def setup(
    make_line: Any, bob_uas: str | int = "manual", a_transport: str = "udp"
) -> tuple[Line, Phone, Phone, Phone, Any]:
    line: Line = await make_line()
    a = await line.member("A", transport=a_transport)
    b = await line.member("B")
    bob = await line.callee(uas=bob_uas)
    seize, _ = await line.seize(a, 1)
    return line, a, b, bob, seize


async def place_call(
    line: Line, a: Phone, bob: Phone, *, call_info: bool = True
) -> tuple[Call, IncomingCall]:
    call = await a.invite(
        "bob", call_info=(line.seize_ci % 1) if call_info else None, to_display='"Bob"', wait=False
    )
    inc = await bob.wait_incoming()
    return call, inc


async def test_scenario_25_invite_strips_call_info(make_line: Any) -> None:
    """The relayed INVITE carries no Call-Info; the group gets ``1 seized`` again (dialog
    stored)."""
    line, a, _, bob, _ = await setup(make_line)
    _, inc = await place_call(line, a, bob)
    assert call_info_of(inc.invite) is None
    await line.broadcast(full(ci(1, "seized")))


async def test_scenario_26_ringing(make_line: Any) -> None:
    """180 (with Contact) -> broadcast ``progressing``; A's line-seize NOTIFY
    ``terminated;reason=noresource``; a second 180, or a 183, changes nothing."""
    line, a, _, bob, seize = await setup(make_line)
    _, inc = await place_call(line, a, bob)
    await line.broadcast(full(ci(1, "seized")))
    await bob.provisional(inc, 180)
    await line.broadcast(full(ci(1, "progressing")))
    n = await a.expect_notify("line-seize", call_id=seize.call_id)
    assert sub_state(n) == ("terminated;reason=noresource", None)
    assert call_info_of(n) == ci(1)
    await bob.provisional(inc, 180)
    await bob.provisional(inc, 183, "Session Progress")
    await line.no_notify()


async def test_scenario_27_session_progress_first(make_line: Any) -> None:
    """183 as the first provisional -> identical to 26 (``progressing``, never ``alerting``)."""
    line, a, _, bob, seize = await setup(make_line)
    _, inc = await place_call(line, a, bob)
    await line.broadcast(full(ci(1, "seized")))
    await bob.provisional(inc, 183, "Session Progress")
    await line.broadcast(full(ci(1, "progressing")))
    n = await a.expect_notify("line-seize", call_id=seize.call_id)
    assert sub_state(n) == ("terminated;reason=noresource", None)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_scenario_28_answer(make_line: Any, transport: str) -> None:
    """200 from bob (To ``"Bob" <sip:bob@...>``): the relayed 200 carries
    ``P-Asserted-Identity: "Bob" <sip:bob@127.0.0.1>``; broadcast
    ``1 active;appearance-uri="\\"Bob\\" <sip:bob@127.0.0.1>"``."""
    line, a, _, bob, _ = await setup(make_line, a_transport=transport)
    call, inc = await place_call(line, a, bob)
    await bob.provisional(inc, 180)
    await line.broadcast(lambda v: ci(1, "progressing") in v, strict=False)
    await bob.answer(inc)
    final = await a.finish_invite(call)
    assert final.status == 200
    assert (final.headers.get("p-asserted-identity") or "").strip() == '"Bob" <sip:bob@127.0.0.1>'
    await line.broadcast(full(ci(1, "active", BOB_URI)))


async def test_retransmitted_answer_is_edited_like_the_first(make_line: Any) -> None:
    """Every copy of bob's 200 reaching A has its SCA Call-Info stripped and carries the
    P-Asserted-Identity (the retransmissions are relayed statelessly once the call's
    context is finished; Kamailio runs each through its reply route)."""
    line, a, _, bob, _ = await setup(make_line)
    call, inc = await place_call(line, a, bob)
    await bob.answer(inc, headers=[("Call-Info", "<sip:127.0.0.1>;appearance-index=2")])
    assert (await a.finish_invite(call)).status == 200
    await bob.resend_final(inc, times=2)
    oks = await a.wait_for(
        lambda: (
            found
            if len(
                found := [
                    m
                    for m in a.received
                    if getattr(m, "status", 0) == 200 and m.call_id == call.dialog.call_id
                ]
            )
            >= 3
            else None
        ),
        what="the 200 and its two retransmissions",
    )
    for ok in oks:
        assert call_info_of(ok) is None
        assert (ok.headers.get("p-asserted-identity") or "").strip() == '"Bob" <sip:bob@127.0.0.1>'


async def answered(
    make_line: Any, **kw: Any
) -> tuple[Line, Phone, Phone, Phone, Call, IncomingCall]:
    line, a, b, bob, _ = await setup(make_line, **kw)
    call, inc = await place_call(line, a, bob)
    await bob.provisional(inc, 180)
    await bob.answer(inc)
    assert (await a.finish_invite(call)).status == 200
    await line.broadcast(full(ci(1, "active", BOB_URI)), strict=False)
    await line.settle()
    line.drain()
    return line, a, b, bob, call, inc


async def test_scenario_29_bye(make_line: Any) -> None:
    """A's BYE -> broadcast with the wildcard only; the 200 to the BYE changes nothing more."""
    line, a, _, _, call, _ = await answered(make_line)
    assert (await a.bye(call)).status == 200
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []


async def test_scenario_30_cancel(make_line: Any) -> None:
    """A CANCELs before any answer -> broadcast wildcard only; the 487 changes nothing more."""
    line, a, _, bob, _ = await setup(make_line)
    call, inc = await place_call(line, a, bob)
    await bob.provisional(inc, 180)
    await line.broadcast(lambda v: ci(1, "progressing") in v, strict=False)
    r = await a.cancel(call)
    assert r.status == 200
    assert (await call.wait_final()).status == 487
    await line.broadcast(WILDCARD)
    await line.no_notify(event="call-info")
    assert await appearances(line) == []


async def test_scenario_31_busy_before_ringing(make_line: Any) -> None:
    """486 before any 18x, relayed to A: A's line-seize ``terminated;reason=noresource``,
    appearance 1 removed, one wildcard broadcast (sca-behaviour.md 5.7: no FAILURE_ROUTE
    re-broadcast of ``seized``)."""
    line, a, _, bob, seize = await setup(make_line)
    call, inc = await place_call(line, a, bob)
    await line.broadcast(full(ci(1, "seized")))
    await bob.answer(inc, 486)
    assert (await call.wait_final()).status == 486
    n = await a.expect_notify("line-seize", call_id=seize.call_id)
    assert sub_state(n) == ("terminated;reason=noresource", None)
    await line.broadcast(WILDCARD)
    await line.no_notify()
    assert await appearances(line) == []


async def test_scenario_32_busy_after_ringing(make_line: Any) -> None:
    """486 after a 180 -> appearance removed (by Call-ID + From-tag), wildcard broadcast."""
    line, a, _, bob, _ = await setup(make_line)
    call, inc = await place_call(line, a, bob)
    await bob.provisional(inc, 180)
    await line.broadcast(lambda v: ci(1, "progressing") in v, strict=False)
    await bob.answer(inc, 486)
    assert (await call.wait_final()).status == 486
    await line.broadcast(WILDCARD)
    assert await appearances(line) == []


async def test_scenario_33_proxy_failure(make_line: Any) -> None:
    """The proxy itself answers the INVITE 404 (unknown user) -> A's line-seize terminated
    (``noresource``), appearance released, wildcard broadcast. A 407 (here relayed from the
    callee; decisions.md 3) changes nothing. Kamailio does the 404 part in its sl callback
    (stateless replies of the script); sipsca has no script: this tests its built-in
    equivalent, the failure path of a locally generated final response."""
    line, a, _, bob, seize = await setup(make_line, bob_uas=407)
    call = await a.invite("nobody", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 404
    n = await a.expect_notify(
        "line-seize",
        call_id=seize.call_id,
        predicate=lambda n: "terminated" in (n.headers.get("subscription-state") or ""),
    )
    assert sub_state(n) == ("terminated;reason=noresource", None)
    await line.broadcast(WILDCARD, strict=False)
    assert await appearances(line) == []
    line.drain()
    seize2, _ = await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 407
    await line.settle(1.0)
    for p in line.members():
        for n in p.pending_notifies("call-info"):
            assert call_info_of(n) == full(ci(1, "seized")), call_info_of(n)
    assert not a.pending_notifies("line-seize")
    assert await appearances(line) == [(1, "seized")]
    del bob, seize2


async def test_scenario_34_redirect(make_line: Any) -> None:
    """302 Moved Temporarily -> relayed to A, no change (the appearance stays seized)."""
    line, a, _, bob, seize = await setup(make_line, bob_uas=302)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 302
    await line.settle(1.0)
    for p in line.members():
        for n in p.pending_notifies("call-info"):
            assert call_info_of(n) == full(ci(1, "seized")), call_info_of(n)
    assert not a.pending_notifies("line-seize")
    assert await appearances(line) == [(1, "seized")]
    del bob, seize


async def test_scenario_35_call_being_forwarded(make_line: Any) -> None:
    """[R] decisions.md 3: ``181 Call Is Being Forwarded`` (with Contact) releases nothing
    (Kamailio removes appearance 1); the call then rings and is answered normally."""
    line, a, _, bob, _ = await setup(make_line)
    call, inc = await place_call(line, a, bob)
    await line.broadcast(full(ci(1, "seized")))
    await bob.provisional(inc, 181, "Call Is Being Forwarded")
    await line.settle(0.6)
    for p in line.members():
        for n in p.pending_notifies("call-info"):
            assert ci(1) in (call_info_of(n) or ""), call_info_of(n)
    assert [i for i, _ in await appearances(line)] == [1]
    await bob.provisional(inc, 180)
    await line.broadcast(lambda v: ci(1, "progressing") in v, strict=False)
    await bob.answer(inc)
    assert (await a.finish_invite(call)).status == 200
    await line.broadcast(full(ci(1, "active", BOB_URI)), strict=False)


async def test_scenario_36_invite_without_seize(make_line: Any) -> None:
    """[R] decisions.md 8: an outgoing INVITE without Call-Info and without line-seize gets the
    lowest free appearance, so the group sees the call (Kamailio: invisible); BYE -> idle."""
    line: Line = await make_line()
    a = await line.member("A")
    await line.member("B")
    bob = await line.callee(uas="answer")
    call = await a.invite("bob", to_display='"Bob"')
    assert call.final is not None and call.final.status == 200
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)
    assert await appearances(line) == [(1, "active")]
    line.drain()
    assert (await a.bye(call)).status == 200
    await line.broadcast(WILDCARD, strict=False)
    assert await appearances(line) == []
    del bob
