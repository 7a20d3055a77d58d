"""SQLite backend (aiosqlite): the default, a single file next to the server.

WAL mode lets readers (``sqlite3`` on the command line, a monitoring script) look at the
file while sipsca writes; ``synchronous=NORMAL`` is durable across a process crash, which is
what the write-back needs. Writes go through one connection, serialised by a lock so one
coroutine's transaction cannot swallow another one's statements; reads use a second connection
(WAL readers never wait for a writer), so a digest lookup is not stuck behind a write that
waits ``busy_timeout`` for another process's lock.
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
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def open(self) -> None:
        if self._conn is not None:
            return
        with map_exceptions(_ERRORS, f"sqlite: cannot open {self.path}"):
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = await self._connect()
            reader = None
            if self.path != ":memory:":  # a second :memory: connection is another database
                try:
                    reader = await self._connect()
                except BaseException:
                    await conn.close()
                    raise
        self._conn, self._reader = conn, reader

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        with map_exceptions(_ERRORS, "sqlite: close"):
            if reader is not None:
                await reader.close()
            if conn is not None:
                await conn.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError(f"sqlite: {self.path} is not open")
        return self._conn

    async def _fetch(self, sql: str, params: Row = ()) -> list[Row]:
        conn = self._connection()
        reader = self._reader
        if reader is None:
            async with self._lock:
                with map_exceptions(_ERRORS, "sqlite: query failed"):
                    return list(await conn.execute_fetchall(sql, params))
        async with self._read_lock:
            with map_exceptions(_ERRORS, "sqlite: query failed"):
                return list(await reader.execute_fetchall(sql, params))

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
