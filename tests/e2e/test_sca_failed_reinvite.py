"""A hold or resume re-INVITE that fails leaves the appearance as it was (decisions.md 41).

Over real sockets: bob rejects A's re-INVITE; the group is told the state the request
announced (Kamailio's INVITE broadcast, sca-behaviour.md §5.3) and then the state the
call really has again (RFC 3261 14.1: a failed re-INVITE changes nothing).
"""

from __future__ import annotations

from typing import Any

from helpers.sca import BOB_URI, appearances, ci, established, full

AOR = "sip:1000@127.0.0.1"


async def test_failed_hold_leaves_the_call_active(make_line: Any) -> None:
    """488 to A's hold: ``held`` is announced with the request, ``active`` again with the
    488, and B's INVITE for index 1 is no retrieval (no Replaces for A's call reaches bob)."""
    line, a, b, bob, call = await established(make_line)
    bob.reinvite_reply = (488, "Not Acceptable Here")
    r = await a.reinvite(call, "sendonly", call_info=line.seize_ci % 1)
    assert r.status == 488, r
    await line.broadcast(full(ci(1, "held", BOB_URI)))
    await line.broadcast(full(ci(1, "active", BOB_URI)))
    await line.no_notify()
    assert await appearances(line) == [(1, "active")]
    calls_to_bob = len(bob.incoming)
    attempt = await b.invite(AOR, call_info=line.seize_ci % 1, timeout=8)
    assert attempt.final is not None and attempt.final.status != 200
    assert len(bob.incoming) == calls_to_bob


async def test_failed_resume_keeps_the_call_held(make_line: Any) -> None:
    """491 to A's resume of a held call: ``active`` with the request, ``held`` again with
    the 491."""
    line, a, _, bob, call = await established(make_line)
    assert (await a.reinvite(call, "sendonly", call_info=line.seize_ci % 1)).status == 200
    await line.broadcast(full(ci(1, "held", BOB_URI)), strict=False)
    await line.settle()
    line.drain()
    bob.reinvite_reply = (491, "Request Pending")
    r = await a.reinvite(call, "sendrecv", call_info=line.seize_ci % 1)
    assert r.status == 491, r
    await line.broadcast(full(ci(1, "active", BOB_URI)))
    await line.broadcast(full(ci(1, "held", BOB_URI)))
    await line.no_notify()
    assert await appearances(line) == [(1, "held")]
