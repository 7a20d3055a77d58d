"""The database goes away at runtime, on every backend (PostgreSQL stopped with ``-m immediate``,
MariaDB killed with SIGKILL, the SQLite file locked by another process's exclusive
transaction), with digest authentication on and write-through (``db_update_interval = 0``):

* SIP keeps being served from memory, promptly: REGISTER, SUBSCRIBE + NOTIFY, RPC seize with
  its broadcast; digest users seen recently still authenticate (cached); an unknown user gets
  503 with Retry-After (PostgreSQL, MariaDB) instead of a hang;
* the failures are logged once and counted (``sipsca_db_errors_total``, RPC stats);
* once the database is back everything is written, once (no duplicate rows), and a graceful
  restart restores it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from helpers.phone import Ladder, Phone
from helpers.sca import Line, ci, full
from ops.support import Database, OpsServer, metric_value, result, scrape, wait_until

AOR = "sip:1000@127.0.0.1"
PASSWORD = "s3cret-1000"
CREDS = ("1000", PASSWORD)
FAST = 1.5  # seconds within which a request must be answered during the outage


async def timed(coro: object) -> tuple[object, float]:
    start = time.monotonic()
    value = await coro  # type: ignore[misc]
    return value, time.monotonic() - start


async def test_database_outage(
    database: Database, ops_server: Callable[..., OpsServer], ladder: Ladder
) -> None:
    srv = ops_server(
        database,
        {"db": {"db_update_interval": 0}, "auth": {"mode": "digest"}},
        start=False,
    )
    srv.add_user("1000@127.0.0.1", PASSWORD)
    srv.add_user("carol@127.0.0.1", "c4rol")
    srv.start()
    line = Line(srv, ladder)
    carol = Phone(
        "carol", "carol", server=srv.sip_addr, ladder=ladder, credentials=("carol", "c4rol")
    )
    try:
        a = await line.member("A", credentials=CREDS)
        b = await line.member("B", credentials=CREDS)
        await carol.start()
        await wait_until(
            lambda: _stored(database, a, b), 10, "A and B to be written (write-through)"
        )
        offset = srv.log_size()

        database.down()
        c = await line.phone("C", credentials=CREDS)
        r, took = await timed(c.register())
        assert r.status == 200 and took < FAST, (r, took)  # type: ignore[attr-defined]
        _, took = await timed(line.subscribe(c))
        assert took < FAST, took
        seized, took = await timed(
            asyncio.to_thread(result, srv, "sca.seize_appearance", AOR, a.contact_uri)
        )
        assert took < FAST and seized, seized
        await line.broadcast(full(ci(1, "seized")))  # A, B and C all notified
        r, took = await timed(carol.register())
        if database.backend == "sqlite":  # a locked SQLite file can still be read (WAL)
            assert r.status == 200, r  # type: ignore[attr-defined]
        else:
            assert r.status == 503, r  # type: ignore[attr-defined]
            assert r.headers.get("retry-after") == "5"  # type: ignore[attr-defined]
        assert took < 3, took

        # SQLite writers wait busy_timeout (5 s) before failing.
        await wait_until(lambda: srv.stats().get("db.healthy") == 0, 12, "db.healthy 0")
        text = scrape(srv)
        assert metric_value(text, "sipsca_db_errors_total", op="write") >= 1
        stats = srv.stats()
        assert stats["db.pending_writes"] > 0 and stats["db.write_failures"] >= 1
        log = srv.log_since(offset)
        assert log.count("database write failed, serving from memory and retrying") == 1, log
        if database.backend != "sqlite":
            assert metric_value(text, "sipsca_db_errors_total", op="auth") >= 1
            assert metric_value(text, "sipsca_auth_failures_total", reason="db_unavailable") >= 1
        r, took = await timed(a.register())  # still served, from the cached user
        assert r.status == 200 and took < FAST  # type: ignore[attr-defined]

        database.up()
        await wait_until(
            lambda: (s := srv.stats())["db.healthy"] == 1 and s["db.pending_writes"] == 0,
            15,
            "the queued changes to be written once the database is back",
        )
        assert "database is back: wrote" in srv.log_since(offset)
        rows = await database.fetch("SELECT subscriber FROM sca_subscriptions WHERE event = 1")
        assert sorted(r[0] for r in rows) == sorted(p.contact_uri for p in (a, b, c))
        apps = await database.fetch("SELECT aor, idx, state, owner FROM sipsca_appearances")
        assert apps == [(AOR, 1, "seized", a.contact_uri)]
        contacts = [r[0] for r in await database.fetch("SELECT contact FROM sipsca_location")]
        registered = [a, b, c] + ([carol] if database.backend == "sqlite" else [])
        assert sorted(contacts) == sorted(p.contact_uri for p in registered)
        r = await carol.register()
        assert r.status == 200, r

        line.drain()
        await asyncio.to_thread(srv.restart)
        subs = result(srv, "sca.all_subscriptions")
        assert sorted(s.split()[1] for s in subs) == sorted(
            f"127.0.0.1:{p.port}" for p in (a, b, c)
        )
        assert [x.split()[:3] for x in result(srv, "sca.all_appearances")] == [[AOR, "1", "seized"]]
    finally:
        database.up()
        await carol.close()
        await line.close()


async def _stored(database: Database, *phones: Phone) -> bool:
    keys = await database.subscription_keys()
    return all((p.contact_uri, AOR) in keys for p in phones)
