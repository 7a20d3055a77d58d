"""PostgreSQL backend (asyncpg pool), for servers that share one database.

The URL is checked when the backend is built (:func:`~sipsca.storage._sql.check_server_url`),
so ``check-config`` refuses a malformed one.

The pool connects at :meth:`PostgresStorage.open` (``min_size=1``) so that a wrong DSN fails
at start-up, and each attempt gives up after ``CONNECT_TIMEOUT`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from sipsca.errors import StorageError
from sipsca.storage._sql import (
    CONNECT_TIMEOUT,
    POSTGRES,
    Row,
    SqlStorage,
    Step,
    check_server_url,
    map_exceptions,
)

__all__ = ["PostgresStorage"]

_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _affected(status: str) -> int:
    """Row count from a command tag such as ``DELETE 3`` (-1 for tags without one)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PostgresStorage(SqlStorage):
    """Storage in PostgreSQL; ``dsn`` is a ``postgresql://`` (or ``postgres://``) URL."""

    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        *,
        subs_table: str = "sca_subscriptions",
        server_id: int = 0,
        pool_size: int = 4,
    ) -> None:
        super().__init__(subs_table=subs_table, server_id=server_id)
        check_server_url(dsn, "PostgreSQL")  # a ConfigError now, not a traceback at open()
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        # ValueError: a DSN asyncpg cannot read (what check_server_url does not look at)
        with map_exceptions((*_ERRORS, ValueError), "postgresql: cannot connect"):
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=CONNECT_TIMEOUT
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with map_exceptions(_ERRORS, "postgresql: close"):
                await pool.close()

    def _is_transient(self, exc: BaseException | None) -> bool:
        return isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError)

    def _checked_pool(self) -> Any:
        if self._pool is None:
            raise StorageError("postgresql: storage is not open")
        return self._pool

    async def _fetch(self, sql: str, params: Row = ()) -> list[Row]:
        pool = self._checked_pool()
        with map_exceptions(_ERRORS, "postgresql: query failed"):
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                return [tuple(r) for r in await conn.fetch(sql, *params)]

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        pool = self._checked_pool()
        counts = []
        with map_exceptions(_ERRORS, "postgresql: write failed"):
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as conn, conn.transaction():
                for sql, rows in steps:
                    if len(rows) == 1:
                        counts.append(_affected(await conn.execute(sql, *rows[0])))
                    else:
                        await conn.executemany(sql, rows)
                        counts.append(-1)
        return counts
