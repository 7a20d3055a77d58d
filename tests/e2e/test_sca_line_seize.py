"""sca-behaviour.md section 9, scenarios 14-24: line-seize, end to end over real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.phone import call_info_of
from helpers.sca import WILDCARD, Line, appearances, ci, full, sub_state

AOR = "sip:1000@127.0.0.1"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_scenario_14_line_seize(make_line: Any, transport: str) -> None:
    """line-seize Expires 60 index 0 -> 200 OK, Expires 15; line-seize NOTIFY with index 1
    ([R] decisions.md 1: ``active;expires=15``); then the seized broadcast to A and B."""
    line: Line = await make_line()
    a = await line.member("A", transport=transport)
    await line.member("B")
    d, r = await a.subscribe("line-seize", 60, call_info=line.seize_ci % 0)
    assert (r.status, r.reason) == (200, "OK")
    assert r.headers.get("event") == "line-seize"
    assert r.headers.get("contact") == AOR
    assert r.headers.get("allow-events") == "call-info, line-seize"
    assert r.headers.get("expires") == "15"
    n = await a.expect_notify("line-seize", call_id=d.call_id)
    assert call_info_of(n) == ci(1)
    assert n.headers.get("event") == "line-seize"
    state, expires = sub_state(n)
    assert state == "active" and expires is not None and 13 <= expires <= 15
    await line.broadcast(full(ci(1, "seized")))
    await line.no_notify()


async def test_scenario_15_missing_call_info(line: Line) -> None:
    """line-seize without Call-Info -> 400 Bad Request - missing Call-Info header."""
    _, r = await line["A"].subscribe("line-seize", 15)
    assert (r.status, r.reason) == (400, "Bad Request - missing Call-Info header")
    await line.no_notify()


async def test_scenario_16_invalid_call_info(line: Line) -> None:
    """``appearance-index=*`` -> 400 Bad Request - Invalid Call-Info header. [R] decisions.md 6
    (lenient parsing): ``<sip:...>; appearance-index=1`` (a space) is accepted (Kamailio: 400)."""
    a = line["A"]
    _, r = await a.subscribe("line-seize", 15, call_info="<sip:127.0.0.1>;appearance-index=*")
    assert (r.status, r.reason) == (400, "Bad Request - Invalid Call-Info header")
    await line.no_notify()
    d, r = await a.subscribe("line-seize", 15, call_info="<sip:127.0.0.1>; appearance-index=1")
    assert r.status == 200, r
    n = await a.expect_notify("line-seize", call_id=d.call_id)
    assert call_info_of(n) == ci(1)


async def test_scenario_17_index_taken(line: Line) -> None:
    """Index 1 seized by A; B asks for 1 -> 480 Temporarily Unavailable + Retry-After: 1,
    no NOTIFY, no line-seize subscription stored for B."""
    a, b = line["A"], line["B"]
    await line.seize(a, 1)
    _, r = await b.subscribe("line-seize", 15, call_info=line.seize_ci % 1)
    assert (r.status, r.reason) == (480, "Temporarily Unavailable")
    assert r.headers.get("retry-after") == "1"
    await line.no_notify()
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(f"127.0.0.1:{b.port} line-seize" in s for s in subs), subs


async def test_scenario_18_next_free_index(line: Line) -> None:
    """Indexes 1 and 3 in use; index 0 -> 2 (lowest gap); explicit 7 -> 7 (no upper bound)."""
    a, b = line["A"], line["B"]
    await line.seize(a, 1)
    await line.seize(a, 3)
    _, idx = await line.seize(b, 0)
    assert idx == 2
    _, idx = await line.seize(b, 7)
    assert idx == 7
    assert await appearances(line) == [(1, "seized"), (2, "seized"), (3, "seized"), (7, "seized")]


async def test_scenario_19_line_without_call_info_subscription(line: Line) -> None:
    """line-seize for ``sip:2000@127.0.0.1``, which never had a call-info subscription ->
    500 Internal Server Error - seize appearance index."""
    _, r = await line["A"].subscribe(
        "line-seize",
        15,
        aor="sip:2000@127.0.0.1",
        call_info="<sip:2000@127.0.0.1>;appearance-index=1",
    )
    assert (r.status, r.reason) == (500, "Internal Server Error - seize appearance index")


async def test_scenario_20_release_by_unsubscribe(line: Line) -> None:
    """In-dialog line-seize Expires 0 naming index 1 -> 200 Expires 0; NOTIFY terminated with
    ``appearance-index=1``; broadcast wildcard only; the appearance is gone."""
    a = line["A"]
    d, _ = await line.seize(a, 1)
    _, r = await a.subscribe("line-seize", 0, call_info=line.seize_ci % 1, dialog=d)
    assert r.status == 200 and r.headers.get("expires") == "0"
    n = await a.expect_notify("line-seize", call_id=d.call_id)
    assert sub_state(n) == ("terminated", None)
    assert call_info_of(n) == ci(1)
    await line.broadcast(WILDCARD)
    assert await appearances(line) == []


async def test_scenario_21_release_unused_index(line: Line) -> None:
    """line-seize Expires 0 on an existing subscription naming index 4 (not in use) ->
    500 Internal Server Error - release seized line; a refused release changes nothing the
    group sees: no NOTIFY (neither in A's line-seize dialog nor a broadcast, also not at the
    next purge), index 4 stays unused and A's index 1 stays seized by A."""
    a = line["A"]
    d, _ = await line.seize(a, 1)
    before = await line.server.arpc("sca.all_appearances")
    _, r = await a.subscribe("line-seize", 0, call_info=line.seize_ci % 4, dialog=d)
    assert (r.status, r.reason) == (500, "Internal Server Error - release seized line")
    await line.no_notify(within=1.5)  # > purge_expired_interval (1 s): a purge ran too
    assert await appearances(line) == [(1, "seized")]
    after = await line.server.arpc("sca.all_appearances")
    assert after == before  # same owner, same mtime: the appearance was not touched
    assert after[0].split()[4] == a.contact_uri


async def test_scenario_22_refresh_keeps_index(line: Line) -> None:
    """In-dialog refresh (Expires 15, index 1) -> 200; no new index; NOTIFY to A with index 1;
    a broadcast with the unchanged state."""
    a = line["A"]
    d, _ = await line.seize(a, 1)
    _, r = await a.subscribe("line-seize", 15, call_info=line.seize_ci % 1, dialog=d)
    assert r.status == 200 and r.headers.get("expires") == "15"
    n = await a.expect_notify("line-seize", call_id=d.call_id)
    assert call_info_of(n) == ci(1)
    assert sub_state(n)[0] == "active"
    await line.broadcast(full(ci(1, "seized")))
    assert await appearances(line) == [(1, "seized")]


async def test_scenario_23_seize_expires(line: Line) -> None:
    """A seizes index 1 (Expires 2) and never calls: at the next purge tick (1 s) the
    line-seize NOTIFY ``terminated;reason=timeout`` with index 1, then a wildcard broadcast."""
    a = line["A"]
    d, _ = await line.seize(a, 1, expires=2)
    n = await a.expect_notify("line-seize", call_id=d.call_id, timeout=6)
    assert sub_state(n) == ("terminated;reason=timeout", None)
    assert call_info_of(n) == ci(1)
    await line.broadcast(WILDCARD, timeout=3)
    assert await appearances(line) == []


async def test_scenario_24_rpc_seize_stale_purge(make_line: Any) -> None:
    """``sca.seize_appearance AOR CONTACT`` seizes index 1 with no subscription (seized
    broadcast); the stale purge removes it once ``seized_ttl`` (2 s here, 120 s default) has
    passed, with a wildcard broadcast."""
    line: Line = await make_line({"sca": {"seized_ttl": 2}})
    a = await line.member("A")
    await line.member("B")
    out = await line.server.arpc("sca.seize_appearance", AOR, a.contact_uri)
    assert out == [f"Seized {AOR} appearance-index 1 for {a.contact_uri}"]
    await line.broadcast(full(ci(1, "seized")))
    await line.broadcast(WILDCARD, timeout=6)
    assert await appearances(line) == []
