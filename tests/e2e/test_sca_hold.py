"""sca-behaviour.md section 9, scenarios 37-46: hold, resume and retrieval of a held call."""

from __future__ import annotations

from typing import Any

from helpers.phone import Call, IncomingCall, Phone, call_info_of, make_sdp
from helpers.sca import BOB_URI, WILDCARD, Line, appearances, ci, established, full

AOR = "sip:1000@127.0.0.1"


async def hold(line: Line, a: Phone, call: Call | IncomingCall, **kw: Any) -> None:
    r = await a.reinvite(call, **kw)
    assert r.status == 200, r


async def test_scenario_37_hold_sendonly(make_line: Any) -> None:
    """re-INVITE (Call-Info index 1, ``a=sendonly``) -> broadcast ``held``."""
    line, a, _, _, call = await established(make_line)
    await hold(line, a, call, direction="sendonly", call_info=line.seize_ci % 1)
    await line.broadcast(full(ci(1, "held", BOB_URI)))
    await line.settle()
    assert await appearances(line) == [(1, "held")]


async def test_scenario_38_hold_private(make_line: Any) -> None:
    """Same with ``Call-Info: ...;appearance-index=1;appearance-state=held-private`` ->
    ``held-private``."""
    line, a, _, _, call = await established(make_line)
    await hold(
        line,
        a,
        call,
        direction="sendonly",
        call_info=(line.seize_ci % 1) + ";appearance-state=held-private",
    )
    await line.broadcast(full(ci(1, "held-private", BOB_URI)))


async def test_scenario_39_hold_zero_address(make_line: Any) -> None:
    """``c=IN IP4 0.0.0.0`` instead of sendonly -> ``held``."""
    line, a, _, _, call = await established(make_line)
    await hold(
        line,
        a,
        call,
        sdp=make_sdp("sendrecv", conn="0.0.0.0", version=5),
        call_info=line.seize_ci % 1,
    )
    await line.broadcast(full(ci(1, "held", BOB_URI)))


async def test_scenario_40_hold_session_level(make_line: Any) -> None:
    """[R] decisions.md 5: only a session-level ``a=sendonly`` -> ``held`` (Kamailio: active)."""
    line, a, _, _, call = await established(make_line)
    await hold(
        line,
        a,
        call,
        sdp=make_sdp(None, session_direction="sendonly", version=5),
        call_info=line.seize_ci % 1,
    )
    await line.broadcast(full(ci(1, "held", BOB_URI)))


async def test_scenario_41_resume(make_line: Any) -> None:
    """Resume with ``a=sendrecv`` -> ``active``."""
    line, a, _, _, call = await established(make_line)
    await hold(line, a, call, direction="sendonly", call_info=line.seize_ci % 1)
    await line.broadcast(full(ci(1, "held", BOB_URI)), strict=False)
    await line.settle()
    line.drain()
    await hold(line, a, call, direction="sendrecv", call_info=line.seize_ci % 1)
    await line.broadcast(full(ci(1, "active", BOB_URI)))
    await line.settle()
    assert await appearances(line) == [(1, "active")]


async def test_scenario_42_music_on_hold_ack(make_line: Any) -> None:
    """Polycom MOH: re-INVITE without body -> ``active``; its ACK carries SDP ``a=sendonly``
    -> ``held``, broadcast."""
    line, a, _, _, call = await established(make_line)
    await hold(
        line,
        a,
        call,
        sdp=b"",
        call_info=line.seize_ci % 1,
        ack_body=make_sdp("sendonly", version=7),
    )
    await line.broadcast(full(ci(1, "held", BOB_URI)), strict=False)
    await line.settle()
    assert await appearances(line) == [(1, "held")]


async def test_scenario_43_reinvite_without_call_info(make_line: Any) -> None:
    """A re-INVITE without Call-Info is matched by dialog: on a call A placed -> ``held``; and
    ([R] decisions.md 2, either tag orientation) on a call A answered -> ``held`` too."""
    line, a, _, bob, call = await established(make_line)
    await hold(line, a, call, direction="sendonly")
    await line.broadcast(full(ci(1, "held", BOB_URI)), strict=False)
    await line.settle()
    assert (await a.bye(call)).status == 200
    await line.broadcast(WILDCARD, strict=False)
    await line.settle()
    line.drain()
    a.uas, a.answer_delay = "answer", 0.05
    line["B"].uas = "ring"
    carol = await line.phone("carol", "carol")
    incoming = await carol.invite(AOR, from_uri="sip:carol@127.0.0.1")
    assert incoming.final is not None and incoming.final.status == 200
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)
    await line.settle()
    line.drain()
    inc = a.incoming[-1]
    assert inc.final_status == 200
    await hold(line, a, inc, direction="sendonly")
    await line.broadcast(lambda v: f"{ci(1, 'held')};" in v, strict=False)
    assert bob.incoming


async def test_scenario_44_retrieve_held_call(make_line: Any) -> None:
    """B retrieves A's held call: INVITE ``sip:1000@...`` (From = To = AoR, new Call-ID,
    Call-Info index 1) is sent to bob only, without Call-Info, with ``Replaces: <A's Call-ID>;
    to-tag=<bob's tag>;from-tag=<A's tag>``; broadcast ``active``; bob's 200 reaches B with a
    P-Asserted-Identity; index 1 stays active with ``appearance-uri="<sip:bob@127.0.0.1>"``;
    bob's BYE to A changes nothing."""
    line, a, b, bob, call = await established(make_line)
    await hold(line, a, call, direction="sendonly", call_info=line.seize_ci % 1)
    await line.broadcast(full(ci(1, "held", BOB_URI)), strict=False)
    await line.settle()
    line.drain()
    n_before = len(bob.incoming)
    a_before = len(a.incoming)
    retrieve = await b.invite(AOR, call_info=line.seize_ci % 1)
    assert retrieve.final is not None and retrieve.final.status == 200
    assert len(bob.incoming) == n_before + 1 and len(a.incoming) == a_before
    inv = bob.incoming[-1].invite
    assert call_info_of(inv) is None
    replaces = inv.headers.get("replaces")
    assert replaces is not None
    parts = [p.strip() for p in replaces.split(";")]
    params = dict(p.split("=", 1) for p in parts[1:])
    orig = bob.incoming[0]
    assert parts[0] == call.dialog.call_id
    assert params == {"to-tag": orig.to_tag, "from-tag": call.dialog.local_tag}
    assert retrieve.final.headers.get("p-asserted-identity")
    await line.broadcast(full(ci(1, "active", "<sip:bob@127.0.0.1>")), strict=False)
    await line.settle()
    line.drain()
    assert (await bob.bye(orig)).status == 200
    await line.settle(0.6)
    for p in line.members():
        for n in p.pending_notifies("call-info"):
            assert f"{ci(1, 'active')};" in (call_info_of(n) or ""), call_info_of(n)
    assert await appearances(line) == [(1, "active")]


async def test_scenario_45_retrieve_private_hold(make_line: Any) -> None:
    """[R] decisions.md 4: retrieving a ``held-private`` appearance from another member ->
    403 Forbidden (Kamailio: processed as an ordinary INVITE)."""
    line, a, b, bob, call = await established(make_line)
    await hold(
        line,
        a,
        call,
        direction="sendonly",
        call_info=(line.seize_ci % 1) + ";appearance-state=held-private",
    )
    await line.broadcast(full(ci(1, "held-private", BOB_URI)), strict=False)
    n_before = len(bob.incoming)
    retrieve = await b.invite(AOR, call_info=line.seize_ci % 1)
    assert retrieve.final is not None and retrieve.final.status == 403
    assert len(bob.incoming) == n_before
    await line.settle()
    assert await appearances(line) == [(1, "held-private")]


async def test_scenario_46_retrieve_active_index(make_line: Any) -> None:
    """A "retrieval" INVITE for an index that is ``active`` (not held) is an ordinary INVITE to
    the AoR: no rewrite to bob, no Replaces."""
    line, a, b, bob, _ = await established(make_line)
    n_before = len(bob.incoming)
    retrieve = await b.invite(AOR, call_info=line.seize_ci % 1, timeout=8)
    assert retrieve.final is not None and retrieve.final.status != 200
    assert len(bob.incoming) == n_before
    assert a.incoming and a.incoming[-1].invite.headers.get("replaces") is None
