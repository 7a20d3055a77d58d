"""MySQL / MariaDB backend (aiomysql pool).

Connections run in autocommit mode and writes open an explicit transaction, so a pooled
connection never keeps a stale REPEATABLE READ snapshot between two loads. Server warnings
are logged instead of being raised through Python's ``warnings`` machinery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import aiomysql

from sipsca.errors import ConfigError, StorageError
from sipsca.sca.model import Subscription
from sipsca.storage._sql import (
    CONNECT_TIMEOUT,
    MYSQL,
    SUBS_COLUMNS,
    Row,
    SqlStorage,
    Step,
    check_server_url,
    latest_subscriptions,
    map_exceptions,
    subscription_row,
)
from sipsca.storage.base import SubscriptionKey

__all__ = ["MysqlStorage", "parse_mysql_url"]

log = logging.getLogger(__name__)

_ERRORS = (aiomysql.MySQLError, OSError)
_DEADLOCK = 1213  # ER_LOCK_DEADLOCK: InnoDB rolled the transaction back, run it again
_CHUNK = 250
"""Rows per bulk DELETE statement (two or four placeholders each)."""


def _chunks(items: Sequence[Subscription], size: int = _CHUNK) -> list[Sequence[Subscription]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _by_event(keys: Sequence[tuple[str, int, str, int]]) -> dict[tuple[int, int], list[Row]]:
    """(aor, event code, subscriber, server_id) keys grouped by (event code, server_id)."""
    groups: dict[tuple[int, int], list[Row]] = {}
    for aor, event, subscriber, server_id in keys:
        groups.setdefault((event, server_id), []).append((aor, subscriber))
    return groups


class _LoggingCursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql turns server warnings into ``warnings.warn``; log them instead."""

    async def _show_warnings(self, conn: Any) -> None:
        if self._result and self._result.has_next:
            return  # SHOW WARNINGS cannot run while results are pending
        for warning in await conn.show_warnings() or ():
            log.warning("mysql: %s", warning[-1])


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database`` -> aiomysql connect arguments."""
    parts = check_server_url(url, "MySQL")
    database = parts.path.lstrip("/")
    if not parts.hostname or not database or "," in parts.netloc.rpartition("@")[2]:
        raise ConfigError(
            f"db_url: a MySQL URL needs one host and a database: {parts.scheme}://..."
        )
    port = parts.port or 3306
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

    # Bulk statements: aiomysql's executemany sends a DELETE once per row (one round trip
    # each), which made a write-back batch of a few hundred subscriptions take most of a
    # second. Row-value IN lists of strings only (event and server_id outside), so MariaDB
    # looks them up by index instead of comparing every row with every tuple.

    def _delete_by_key(self, keys: Sequence[tuple[str, int, str, int]]) -> list[Step]:
        t = self.subs_table
        steps: list[Step] = []
        for (event, server_id), pairs in _by_event(keys).items():
            for i in range(0, len(pairs), _CHUNK):
                chunk = pairs[i : i + _CHUNK]
                marks = ", ".join("(%s, %s)" for _ in chunk)
                sql = (
                    f"DELETE FROM {t} WHERE event = %s AND server_id = %s"
                    f" AND (aor, subscriber) IN ({marks})"
                )
                steps.append((sql, [(event, server_id, *(v for pair in chunk for v in pair))]))
        return steps

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """As :meth:`SqlStorage.save_subscriptions` (delete by key, by Kamailio's dialog key,
        insert; one transaction), in a few statements per batch."""
        subs = latest_subscriptions(subscriptions)
        if not subs:
            return
        t = self.subs_table
        steps = self._delete_by_key(
            [(s.aor, s.event.db_code, s.subscriber, s.server_id) for s in subs]
        )
        for chunk in _chunks(subs):
            marks = ", ".join("(%s, %s, %s, %s)" for _ in chunk)
            sql = f"DELETE FROM {t} WHERE (subscriber, call_id, from_tag, to_tag) IN ({marks})"
            params = tuple(
                v for s in chunk for v in (s.subscriber, s.call_id, s.from_tag, s.to_tag)
            )
            steps.append((sql, [params]))
        insert = f"INSERT INTO {t} ({SUBS_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})"
        steps.append((insert, [subscription_row(s) for s in subs]))  # batched by aiomysql
        await self._tx(steps)

    async def delete_subscriptions(self, keys: Sequence[SubscriptionKey]) -> None:
        steps = self._delete_by_key([(a, e.db_code, s, self.server_id) for a, e, s in keys])
        if steps:
            await self._tx(steps)

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        pool = self._checked_pool()
        counts = []
        with map_exceptions(_ERRORS, "mysql: write failed"):
            async with pool.acquire() as conn:
                try:
                    await conn.begin()
                    async with conn.cursor() as cur:
                        for sql, rows in steps:
                            if len(rows) == 1:
                                counts.append(await cur.execute(sql, tuple(rows[0]) or None))
                            else:
                                counts.append(await cur.executemany(sql, rows))
                    await conn.commit()
                except asyncio.CancelledError:
                    # Cancelled mid-exchange (write timeout, graceful stop): the connection may
                    # hold an unread reply, so it is dropped, not reused (the server rolls the
                    # transaction back when the connection closes).
                    conn.close()
                    raise
                except BaseException:
                    await conn.rollback()
                    raise
        return counts
