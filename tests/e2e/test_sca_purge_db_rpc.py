"""sca-behaviour.md section 9, scenarios 55-63: expiry purge, persistence, RPC."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest

from helpers.phone import call_info_of
from helpers.sca import BOB_URI, WILDCARD, Line, appearances, ci, full, sub_state
from helpers.server import RpcError

AOR = "sip:1000@127.0.0.1"


async def test_scenario_55_call_info_expiry(make_line: Any) -> None:
    """A call-info subscription that is not refreshed (Expires 2): at the first purge tick after
    expiry, NOTIFY ``terminated;reason=timeout`` with the full Call-Info; the record is gone."""
    line: Line = await make_line()
    a = await line.member("A", expires=2)
    await line.member("B")
    n = await a.expect_notify("call-info", call_id=line.subs["A"].call_id, timeout=6)
    assert sub_state(n) == ("terminated;reason=timeout", None)
    assert call_info_of(n) == WILDCARD
    await asyncio.sleep(1.5)
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(f"127.0.0.1:{a.port} call-info" in s for s in subs), subs
    assert any(f"127.0.0.1:{line['B'].port} call-info" in s for s in subs), subs


async def test_scenario_56_own_expires_per_subscriber(make_line: Any) -> None:
    """[R] decisions.md 1: each subscriber's NOTIFY carries its own remaining time (A 3600 s,
    B 1800 s); Kamailio copies the most recent subscriber's to everybody."""
    line: Line = await make_line()
    a = await line.member("A", expires=3600)
    b = await line.member("B", expires=1800)
    await line.seize(b, 1)
    na = next(n for n in reversed(a.notifies) if n.call_id == line.subs["A"].call_id)
    nb = next(n for n in reversed(b.notifies) if n.call_id == line.subs["B"].call_id)
    ea, eb = sub_state(na)[1], sub_state(nb)[1]
    assert ea is not None and 3590 <= ea <= 3600, na.headers.get("subscription-state")
    assert eb is not None and 1790 <= eb <= 1800, nb.headers.get("subscription-state")


async def test_scenario_57_notify_rejected_with_481(line: Line) -> None:
    """[R] A answers a NOTIFY with 481: its subscription is removed (the issue's rule and
    RFC 6665 4.1.3; [K] keeps it listed and notified, docs/compat.md). B is unaffected."""
    a, b = line["A"], line["B"]
    a.notify_reply = (481, "Call/Transaction Does Not Exist")
    await line.seize(b, 1)
    subs: list[str] = []
    for _ in range(50):
        subs = await line.server.arpc("sca.all_subscriptions")
        if not any(f"127.0.0.1:{a.port} call-info" in s for s in subs):
            break
        await asyncio.sleep(0.1)
    assert not any(f"127.0.0.1:{a.port} call-info" in s for s in subs), subs
    assert any(f"127.0.0.1:{b.port} call-info" in s for s in subs), subs
    line.drain()
    seen_by_a = len(a.notifies)
    await line.server.arpc("sca.update_appearance", line.aor, 1, "held")
    n = await b.expect_notify("call-info", call_id=line.subs["B"].call_id)
    assert "appearance-state=held" in (call_info_of(n) or "")
    await line.settle(0.5)
    assert len(a.notifies) == seen_by_a  # no NOTIFY for the removed subscription


async def test_scenario_58_persistence_and_restart(make_line: Any) -> None:
    """DB write-back (``db_update_interval`` 1 s): one ``sca_subscriptions`` row per call-info
    subscription (event 1, state 0, app_idx 0, absolute expires); no line-seize rows. After a
    graceful restart ([R] decisions.md 11): subscriptions are restored and NOTIFYs continue in
    the same dialog with a higher CSeq; the unsubscribed one does not come back; the
    appearance (call) state survives."""
    line: Line = await make_line({"db": {"db_update_interval": 1}})
    a = await line.member("A")
    b = await line.member("B")
    c = await line.member("C")
    bob = await line.callee(uas="answer", answer_delay=0.05)
    _, r = await c.subscribe("call-info", 0, dialog=line.subs.pop("C"))
    assert r.status == 202
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1, to_display='"Bob"')
    assert call.final is not None and call.final.status == 200
    await line.broadcast(full(ci(1, "active", BOB_URI)), strict=False)
    await asyncio.sleep(2.5)
    con = sqlite3.connect(str(line.server.db_path))
    try:
        rows = con.execute(
            "SELECT subscriber, aor, event, expires, state, app_idx, call_id, from_tag, to_tag, "
            "notify_cseq FROM sca_subscriptions"
        ).fetchall()
    finally:
        con.close()
    live = {r[0]: r for r in rows if r[4] == 0}
    assert set(live) == {a.contact_uri, b.contact_uri}, rows
    now = time.time()
    for row in live.values():
        assert row[1] == AOR and row[2] == 1 and row[5] == 0
        assert now + 3500 < row[3] <= now + 3601
        assert row[9] >= 1
    assert all(row[2] == 1 for row in rows), rows
    assert live[a.contact_uri][6] == line.subs["A"].call_id
    before = max(n.cseq.number for n in a.notifies if n.call_id == line.subs["A"].call_id)
    line.drain()
    await asyncio.to_thread(line.server.restart)
    assert await appearances(line) == [(1, "active")]
    subs = await line.server.arpc("sca.all_subscriptions")
    assert not any(f"127.0.0.1:{c.port} " in s for s in subs), subs
    assert sum(" call-info " in s for s in subs) == 2, subs
    _, idx = await line.seize(b, 0)
    assert idx == 2
    after = [n for n in a.notifies if n.call_id == line.subs["A"].call_id]
    assert after[-1].cseq.number > before
    assert call_info_of(after[-1]) == full(ci(1, "active", BOB_URI), ci(2, "seized"))
    assert bob.incoming


async def test_scenario_59_subscription_count(line: Line) -> None:
    """``sca.subscription_count call-info`` -> ``2 call-info``; a bad event -> fault 500
    ``usage: sca.subscription_count {call-info | line-seize}``."""
    assert await line.server.arpc("sca.subscription_count", "call-info") == ["2 call-info"]
    with pytest.raises(RpcError) as exc:
        await line.server.arpc("sca.subscription_count", "foo")
    assert exc.value.code == 500
    assert exc.value.message == "usage: sca.subscription_count {call-info | line-seize}"


async def test_scenario_60_update_appearance(line: Line) -> None:
    """``sca.update_appearance AOR 1 held`` -> broadcast ``held``; ``busy`` -> fault
    ``busy: invalid state``; index 9 (unused) -> fault
    ``Failed to update sip:1000@127.0.0.1 appearance-index 9``."""
    await line.seize(line["A"], 1)
    assert await line.server.arpc("sca.update_appearance", AOR, 1, "held") == []
    await line.broadcast(full(ci(1, "held")))
    with pytest.raises(RpcError) as exc:
        await line.server.arpc("sca.update_appearance", AOR, 1, "busy")
    assert (exc.value.code, exc.value.message) == (500, "busy: invalid state")
    with pytest.raises(RpcError) as exc:
        await line.server.arpc("sca.update_appearance", AOR, 9, "held")
    assert (exc.value.code, exc.value.message) == (
        500,
        f"Failed to update {AOR} appearance-index 9",
    )
    await line.no_notify()


async def test_scenario_61_release_appearance(line: Line) -> None:
    """``sca.release_appearance AOR 0`` -> fault ``appearance-index must be > 0``; 5 (unused)
    -> fault ``sip:1000@127.0.0.1 appearance index 5 is not in use``; an existing index ->
    removed, wildcard broadcast, no output."""
    await line.seize(line["A"], 1)
    with pytest.raises(RpcError) as exc:
        await line.server.arpc("sca.release_appearance", AOR, 0)
    assert (exc.value.code, exc.value.message) == (500, "appearance-index must be > 0")
    with pytest.raises(RpcError) as exc:
        await line.server.arpc("sca.release_appearance", AOR, 5)
    assert (exc.value.code, exc.value.message) == (500, f"{AOR} appearance index 5 is not in use")
    assert await line.server.arpc("sca.release_appearance", AOR, 1) == []
    await line.broadcast(WILDCARD)
    assert await appearances(line) == []


async def test_scenario_62_deactivate_all(line: Line) -> None:
    """``sca.deactivate_all_subscriptions``: a NOTIFY ``terminated;reason=deactivated`` per
    subscription, one output line each; the records disappear at the next purge without another
    NOTIFY."""
    a, b = line["A"], line["B"]
    out = await line.server.arpc("sca.deactivate_all_subscriptions")
    assert sorted(out) == sorted(
        f"Deactivating call-info subscription from {p.contact_uri}" for p in (a, b)
    )
    for p in (a, b):
        n = await p.expect_notify("call-info", call_id=line.subs[p.name].call_id)
        assert sub_state(n) == ("terminated;reason=deactivated", None)
        assert call_info_of(n) == WILDCARD
    await asyncio.sleep(2.0)
    assert await line.server.arpc("sca.all_subscriptions") == []
    await line.no_notify(within=0.1)


async def test_scenario_63_all_appearances_during_call(line: Line) -> None:
    """``sca.all_appearances`` during scenario 28:
    ``AOR 1 active <mtime> <A's Contact> <bob's Contact> <call-id> <A's tag> <bob's tag>``."""
    a, bob = line["A"], line["bob"]
    await line.seize(a, 1)
    call = await a.invite("bob", call_info=line.seize_ci % 1)
    assert call.final is not None and call.final.status == 200
    await line.broadcast(lambda v: f"{ci(1, 'active')};" in v, strict=False)
    rows = await line.server.arpc("sca.all_appearances")
    assert len(rows) == 1, rows
    f = rows[0].split()
    assert f[:3] == [AOR, "1", "active"]
    assert abs(int(f[3]) - time.time()) < 30
    assert f[4:] == [
        a.contact_uri,
        bob.contact_uri,
        call.dialog.call_id,
        call.dialog.local_tag,
        call.dialog.remote_tag,
    ]
