"""SQLite backend (aiosqlite): the default, a single file next to the server.

WAL mode lets readers (``sqlite3`` on the command line, a monitoring script) look at the
file while sipsca writes; ``synchronous=NORMAL`` is durable across a process crash, which is
what the write-back needs. One connection serves everything, so a lock keeps one coroutine's
transaction from swallowing another one's statements.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from sipsca.errors import StorageError
from sipsca.storage._sql import SQLITE, Row, SqlStorage, Step, map_exceptions

__all__ = ["SqliteStorage"]

_ERRORS = (sqlite3.Error, OSError)


class SqliteStorage(SqlStorage):
    """Storage in one SQLite file (``:memory:`` works too, for throwaway use)."""

    dialect = SQLITE

    def __init__(
        self, path: str | Path, *, subs_table: str = "sca_subscriptions", server_id: int = 0
    ) -> None:
        super().__init__(subs_table=subs_table, server_id=server_id)
        self.path = str(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._conn is not None:
            return
        with map_exceptions(_ERRORS, f"sqlite: cannot open {self.path}"):
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA busy_timeout=5000")
            except BaseException:
                await conn.close()
                raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with map_exceptions(_ERRORS, "sqlite: close"):
                await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError(f"sqlite: {self.path} is not open")
        return self._conn

    async def _fetch(self, sql: str, params: Row = ()) -> list[Row]:
        conn = self._connection()
        async with self._lock:
            with map_exceptions(_ERRORS, "sqlite: query failed"):
                return list(await conn.execute_fetchall(sql, params))

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        conn = self._connection()
        counts = []
        async with self._lock:
            with map_exceptions(_ERRORS, "sqlite: write failed"):
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, rows in steps:
                        # sqlite3's executemany refuses DDL, so single rows go through execute.
                        if len(rows) == 1:
                            cursor = await conn.execute(sql, rows[0])
                        else:
                            cursor = await conn.executemany(sql, rows)
                        counts.append(cursor.rowcount)
                        await cursor.close()
                    await conn.execute("COMMIT")
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
        return counts
