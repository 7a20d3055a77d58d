"""SQLite backend (aiosqlite): the default, a single file next to the server.

WAL mode lets readers (``sqlite3`` on the command line, a monitoring script) look at the
file while sipsca writes; ``synchronous=NORMAL`` is durable across a process crash, which is
what the write-back needs. Writes go through one connection, serialised by a lock so one
coroutine's transaction cannot swallow another one's statements; reads use a second connection
(WAL readers never wait for a writer), so a digest lookup is not stuck behind a write that
waits for another process's lock. That wait (up to :data:`BUSY_TIMEOUT`) is done in short
slices, so a cancelled write lets go of the connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from sipsca.errors import StorageError
from sipsca.storage._sql import SQLITE, Row, SqlStorage, Step, map_exceptions

__all__ = ["SqliteStorage"]

_ERRORS = (sqlite3.Error, OSError)
T = TypeVar("T")
BUSY_TIMEOUT = 5.0
"""Seconds a write waits for another process's lock on the file before it fails."""
_WORKER_STOP_TIMEOUT = 5.0
"""Seconds to wait for the thread of a connection that failed to open to end."""
_BUSY_SLICE_MS = 100
"""SQLite's own busy wait per attempt: short, because a statement running in aiosqlite's
thread cannot be interrupted, so a cancelled write (time limit, graceful stop) would otherwise
hold the connection for the whole busy timeout."""


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


async def _patiently(call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await call(*args)``, retried while the file is locked, for up to BUSY_TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_TIMEOUT
    while True:
        try:
            return await call(*args)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(0.02)


async def _worker_stopped(conn: aiosqlite.Connection) -> None:
    """Wait (bounded) until the worker thread of a connection that failed to open is gone.

    aiosqlite answers a failed connect by queueing its thread's stop without waiting for it:
    the thread then reports to the event loop, which a start-up error may have closed by
    then (``RuntimeError: Event loop is closed`` in ``_connection_worker_thread``), and as a
    non-daemon thread it keeps the process alive until it is done.
    """
    thread = getattr(conn, "_thread", None)  # aiosqlite has no public handle on it
    if isinstance(thread, threading.Thread) and thread.is_alive():
        await asyncio.to_thread(thread.join, _WORKER_STOP_TIMEOUT)


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
        conn = aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn
        except BaseException:
            await _worker_stopped(conn)
            raise
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute(f"PRAGMA busy_timeout={_BUSY_SLICE_MS}")
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
            try:
                if reader is not None:
                    await reader.close()
            finally:  # each connection has a thread that would keep the process alive
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
                    return list(await _patiently(conn.execute_fetchall, sql, params))
        async with self._read_lock:
            with map_exceptions(_ERRORS, "sqlite: query failed"):
                return list(await _patiently(reader.execute_fetchall, sql, params))

    async def _begin(self, conn: aiosqlite.Connection) -> None:
        """BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT for the write lock in short slices."""
        await _patiently(conn.execute, "BEGIN IMMEDIATE")

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        conn = self._connection()
        counts = []
        async with self._lock:
            with map_exceptions(_ERRORS, "sqlite: write failed"):
                try:
                    # BEGIN inside the try: if this coroutine is cancelled (write timeout,
                    # graceful stop) while aiosqlite's thread still runs a statement, the
                    # ROLLBACK is queued behind it, so no transaction is ever left open.
                    await self._begin(conn)
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
                    with contextlib.suppress(sqlite3.Error):  # "no transaction is active"
                        await conn.execute("ROLLBACK")
                    raise
        return counts
