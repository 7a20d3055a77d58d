"""Storage backends under faults, on every backend: a write cut off in the middle (the
write-back's time limit, a graceful stop) leaves the connection usable and no transaction open;
a write blocked by another client's lock fails within the limit instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomysql
import asyncpg
import pytest

from ops.support import Database
from sipsca.errors import StorageError
from sipsca.runtime.persistence import WriteBack
from sipsca.sca.model import ScaEvent, Subscription, SubscriptionState
from sipsca.storage import MysqlStorage, PostgresStorage, Storage, open_storage
from sipsca.storage.mysql import parse_mysql_url


def sub(n: int) -> Subscription:
    return Subscription(
        subscriber=f"sip:1000@192.0.2.1:{5000 + n}",
        aor="sip:1000@example.com",
        event=ScaEvent.CALL_INFO,
        expires_at=int(time.time()) + 3600,
        state=SubscriptionState.ACTIVE,
        call_id=f"cid-{n}",
        from_tag=f"f{n}",
        to_tag=f"t{n}",
    )


@contextlib.asynccontextmanager
async def table_locked(database: Database, storage: Storage) -> AsyncIterator[None]:
    """Another client holds a write lock on ``sca_subscriptions`` inside the block."""
    if isinstance(storage, PostgresStorage):
        conn = await asyncpg.connect(database.url)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE sca_subscriptions IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await conn.close()
    elif isinstance(storage, MysqlStorage):
        conn = await aiomysql.connect(**parse_mysql_url(database.url), autocommit=True)
        async with conn.cursor() as cur:
            await cur.execute("LOCK TABLES sca_subscriptions WRITE")
        try:
            yield
        finally:
            async with conn.cursor() as cur:
                await cur.execute("UNLOCK TABLES")
            conn.close()
    else:
        assert database.sqlite_path is not None
        lock = sqlite3.connect(database.sqlite_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.rollback()
            lock.close()


async def test_cancelled_write_leaves_storage_usable(
    backend: str, make_database: Callable[[str], Database]
) -> None:
    database = make_database(backend)
    storage = open_storage(database.url)
    await storage.open()
    try:
        await storage.init_schema()
        await storage.save_subscriptions([sub(1)])
        async with table_locked(database, storage):
            for _ in range(3):  # cut off while blocked (in BEGIN for SQLite, in a DELETE else)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(storage.save_subscriptions([sub(2)]), 0.3)
        await asyncio.wait_for(storage.save_subscriptions([sub(3)]), 10)
        await asyncio.wait_for(storage.save_subscriptions([sub(4)]), 10)
        keys = {s.key for s in await storage.load_subscriptions()}
        assert {sub(1).key, sub(3).key, sub(4).key} <= keys
    finally:
        await storage.close()


async def test_writeback_times_out_on_a_blocked_database_and_recovers(
    backend: str, make_database: Callable[[str], Database]
) -> None:
    database = make_database(backend)
    storage = open_storage(database.url)
    await storage.open()
    errors: list[str] = []
    wb: Any = WriteBack(storage, interval=0, on_error=errors.append, op_timeout=0.5)
    try:
        await storage.init_schema()
        wb.start()
        async with table_locked(database, storage):
            wb.save_subscription(sub(1))
            start = time.monotonic()
            while not errors:
                assert time.monotonic() - start < 8, "a blocked write did not time out"
                await asyncio.sleep(0.05)
            assert not wb.healthy
        deadline = time.monotonic() + 10
        while not wb.healthy or wb.pending:
            assert time.monotonic() < deadline, "not recovered after the lock was released"
            await asyncio.sleep(0.05)
        assert sub(1).key in {s.key for s in await storage.load_subscriptions()}
    finally:
        await wb.close()
        await storage.close()


async def test_unreachable_database_is_a_storage_error_quickly(backend: str) -> None:
    """Nothing listens: opening fails at once with StorageError (no driver exception leaks)."""
    url = {
        "sqlite": "sqlite:///proc/no/such/dir/x.sqlite",
        "postgresql": "postgresql://u:pw@127.0.0.1:1/x",
        "mysql": "mysql://u:pw@127.0.0.1:1/x",
    }[backend]
    storage = open_storage(url)
    start = time.monotonic()
    with pytest.raises(StorageError):
        await storage.open()
    assert time.monotonic() - start < 6
