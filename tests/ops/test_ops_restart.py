"""Graceful restart on every backend: with ``db_update_interval = 300`` only deletes are
written before the stop (with what was queued at that moment), so the rest comes from the
stop's flush. Restored: subscriptions, appearances (a call in progress), registrar bindings.
Dropped: what was unsubscribed and what expired while the server was down. NOTIFYs continue
in the same dialogs with higher CSeqs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from helpers.phone import Ladder, call_info_of
from helpers.sca import Line, ci, full
from ops.support import Database, OpsServer, result, wait_until

AOR = "sip:1000@127.0.0.1"
BOB = '\\"Bob\\" <sip:bob@127.0.0.1>'


async def _not_stored(database: Database, phone: Any) -> bool:
    return (phone.contact_uri, AOR) not in await database.subscription_keys()


def last_cseq(phone: Any, call_id: str) -> int:
    return max(n.cseq.number for n in phone.notifies if n.call_id == call_id)


async def test_graceful_restart_restores_state(
    database: Database, ops_server: Callable[..., OpsServer], ladder: Ladder
) -> None:
    srv = ops_server(
        database, {"db": {"db_update_interval": 300}, "sca": {"purge_expired_interval": 1}}
    )
    line = Line(srv, ladder)
    try:
        a = await line.member("A")
        b = await line.member("B")
        c = await line.member("C")
        bob = await line.callee(uas="answer", answer_delay=0.05)
        _, r = await c.subscribe("call-info", 0, dialog=line.subs.pop("C"))  # unsubscribe
        assert r.status == 202
        await wait_until(
            lambda: _not_stored(database, c), 5, "the unsubscribe to be written at once"
        )
        await line.seize(a, 1)
        call = await a.invite("bob", call_info=line.seize_ci % 1, to_display='"Bob"')
        assert call.final is not None and call.final.status == 200
        await line.broadcast(full(ci(1, "active", BOB)), strict=False)
        # D's subscription is alive at the stop and expired when the server starts again.
        d = await line.phone("D")
        d_dialog, r = await d.subscribe("call-info", 3, aor=AOR)
        assert r.status == 202
        d_expires = time.time() + 3
        await d.expect_notify("call-info", call_id=d_dialog.call_id)
        before = {p.name: last_cseq(p, line.subs[p.name].call_id) for p in (a, b)}
        # Only the unsubscribe forced a write (deletes are never delayed); everything after it
        # waits for the interval, i.e. for the stop.
        assert (d.contact_uri, AOR) not in await database.subscription_keys()
        assert await database.fetch("SELECT aor FROM sipsca_appearances") == []
        line.drain()

        await asyncio.to_thread(srv.stop)
        stored = await database.subscription_keys()
        assert stored == {(p.contact_uri, AOR) for p in (a, b, d)}, "stop did not flush"
        assert await database.fetch("SELECT aor, idx, state FROM sipsca_appearances") == [
            (AOR, 1, "active")
        ]
        contacts = {r[0] for r in await database.fetch("SELECT contact FROM sipsca_location")}
        assert contacts == {p.contact_uri for p in (a, b, c, bob)}
        await asyncio.sleep(max(0.0, d_expires + 1.1 - time.time()))  # D expires meanwhile

        await asyncio.to_thread(srv.start)
        subs = result(srv, "sca.all_subscriptions")
        assert sorted(s.split()[1] for s in subs) == sorted(f"127.0.0.1:{p.port}" for p in (a, b))
        assert all(" call-info " in s for s in subs), subs
        apps = result(srv, "sca.all_appearances")
        assert [x.split()[:3] for x in apps] == [[AOR, "1", "active"]]
        dumped = {(x["aor"], x["contact"]) for x in result(srv, "ul.dump")}
        assert dumped == {(p.aor, p.contact_uri) for p in (a, b, c, bob)}
        stored = await database.subscription_keys()  # D deleted at once by the restore
        assert stored == {(p.contact_uri, AOR) for p in (a, b)}
        # ... and the raised NOTIFY CSeqs are written before serving (a crash now is safe)
        rows = await database.fetch("SELECT subscriber, notify_cseq FROM sca_subscriptions")
        cseqs = {str(r[0]): int(r[1]) for r in rows}
        assert all(cseqs[p.contact_uri] >= before[p.name] + 100 for p in (a, b)), cseqs

        # NOTIFYs continue in the same dialogs, CSeq going up; the call survived.
        _, idx = await line.seize(b, 0)
        assert idx == 2
        for p in (a, b):
            dialog = line.subs[p.name]
            n = [x for x in p.notifies if x.call_id == dialog.call_id][-1]
            assert n.cseq.number > before[p.name]
            assert f"tag={dialog.local_tag}" in (n.headers.get("to") or "")
            assert f"tag={dialog.remote_tag}" in (n.headers.get("from") or "")
            assert call_info_of(n) == full(ci(1, "active", BOB), ci(2, "seized"))
        assert not c.pending_notifies("call-info") and not d.pending_notifies("call-info")
        r = await a.bye(call)
        assert r.status == 200
        await line.broadcast(lambda v: f"{ci(1)};" not in v, strict=False)
    finally:
        await line.close()
