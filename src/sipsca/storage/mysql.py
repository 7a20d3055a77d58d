"""MySQL / MariaDB backend (aiomysql pool).

Connections run in autocommit mode and writes open an explicit transaction, so a pooled
connection never keeps a stale REPEATABLE READ snapshot between two loads. Server warnings
are logged instead of being raised through Python's ``warnings`` machinery.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql

from sipsca.errors import ConfigError, StorageError
from sipsca.storage._sql import CONNECT_TIMEOUT, MYSQL, Row, SqlStorage, Step, map_exceptions

__all__ = ["MysqlStorage", "parse_mysql_url"]

log = logging.getLogger(__name__)

_ERRORS = (aiomysql.MySQLError, OSError)
_DEADLOCK = 1213  # ER_LOCK_DEADLOCK: InnoDB rolled the transaction back, run it again


class _LoggingCursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql turns server warnings into ``warnings.warn``; log them instead."""

    async def _show_warnings(self, conn: Any) -> None:
        if self._result and self._result.has_next:
            return  # SHOW WARNINGS cannot run while results are pending
        for warning in await conn.show_warnings() or ():
            log.warning("mysql: %s", warning[-1])


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database`` -> aiomysql connect arguments."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    if not parts.hostname or not database:
        raise ConfigError(f"db_url: a MySQL URL needs a host and a database: {parts.scheme}://...")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigError(f"db_url: bad MySQL port: {exc}") from None
    return {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "db": unquote(database),
    }


class MysqlStorage(SqlStorage):
    """Storage in MySQL or MariaDB; ``url`` is ``mysql://`` or ``mariadb://``."""

    dialect = MYSQL

    def __init__(
        self,
        url: str,
        *,
        subs_table: str = "sca_subscriptions",
        server_id: int = 0,
        pool_size: int = 4,
    ) -> None:
        super().__init__(subs_table=subs_table, server_id=server_id)
        self._connect_args = parse_mysql_url(url)
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        with map_exceptions(_ERRORS, "mysql: cannot connect"):
            self._pool = await aiomysql.create_pool(
                minsize=1,
                maxsize=self.pool_size,
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
                charset="utf8mb4",
                # Fewer gap locks, so fewer deadlocks between servers sharing the tables.
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                cursorclass=_LoggingCursor,
                pool_recycle=3600,
                **self._connect_args,
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with map_exceptions(_ERRORS, "mysql: close"):
                pool.close()
                await pool.wait_closed()

    def _is_transient(self, exc: BaseException | None) -> bool:
        return isinstance(exc, aiomysql.OperationalError) and exc.args[:1] == (_DEADLOCK,)

    def _checked_pool(self) -> Any:
        if self._pool is None:
            raise StorageError("mysql: storage is not open")
        return self._pool

    async def _fetch(self, sql: str, params: Row = ()) -> list[Row]:
        pool = self._checked_pool()
        with map_exceptions(_ERRORS, "mysql: query failed"):
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, tuple(params) or None)
                return list(await cur.fetchall())

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        pool = self._checked_pool()
        counts = []
        with map_exceptions(_ERRORS, "mysql: write failed"):
            async with pool.acquire() as conn:
                await conn.begin()
                try:
                    async with conn.cursor() as cur:
                        for sql, rows in steps:
                            if len(rows) == 1:
                                counts.append(await cur.execute(sql, tuple(rows[0]) or None))
                            else:
                                counts.append(await cur.executemany(sql, rows))
                    await conn.commit()
                except BaseException:
                    await conn.rollback()
                    raise
        return counts
