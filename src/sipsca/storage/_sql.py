"""What the SQL backends share: dialects, DDL, row mapping and :class:`SqlStorage`.

A backend only supplies connection handling and two primitives (``_fetch`` and
``_transaction``); every query, the schema and the model <-> row mapping live here, written
once with ``?`` placeholders that the :class:`Dialect` rewrites for its driver.

Mapping notes:

* ``sca_subscriptions`` is Kamailio's table (version 2) so that a Kamailio database restores
  as is. ``event`` = ``ScaEvent.db_code``, ``state`` = ``int(SubscriptionState)``,
  ``app_idx`` = ``index``, ``expires`` = ``expires_at`` (epoch seconds).
* ``notify_cseq`` is stored and loaded unchanged. Kamailio writes its in-memory counter + 1,
  and the counter + 1 is exactly the CSeq of the last NOTIFY it sent; our field means "last
  CSeq sent" too, so the next NOTIFY (``notify_cseq + 1``) is strictly higher in both
  directions (sipsca -> Kamailio and back). ``subscribe_cseq`` is likewise stored unchanged.
* ``Subscription.flow`` and ``Subscription.extra`` are not persisted: a transport flow dies
  with the process, so a restored subscription starts without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from sipsca.auth.model import Subscriber
from sipsca.errors import ConfigError, StorageError
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.storage.base import (
    SCHEMA_VERSION,
    AppearanceKey,
    BindingKey,
    SubscriptionKey,
    schema_step,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "KAMAILIO_SUBS_VERSION",
    "Dialect",
    "Row",
    "SqlStorage",
    "Step",
    "check_identifier",
    "check_server_url",
    "map_exceptions",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""Seconds a PostgreSQL/MySQL connection attempt may take before it counts as unreachable."""
TX_ATTEMPTS = 3
"""Tries of a write transaction that keeps losing deadlocks."""
KAMAILIO_SUBS_VERSION = 2
"""The ``sca_subscriptions`` table version Kamailio's sca module checks at start-up."""

Row = Sequence[Any]
Step = tuple[str, Sequence[Row]]
"""One statement of a transaction and its parameter rows (executemany); ``[()]`` runs it once."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(name: str, *, what: str = "subs_table") -> str:
    """Reject anything but a plain SQL identifier: table names are spliced into SQL text."""
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{what}: {name!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def check_server_url(url: str, backend: str) -> SplitResult:
    """``url`` split into its parts, refusing what the driver would only trip over when it
    connects, with a Python traceback rather than an error (``ValueError: Invalid IPv6 URL``,
    ``OverflowError`` for port 99999): a ``[`` host that does not close or is no IPv6
    address, a port that is not 1-65535 (checked for each host of a PostgreSQL host list,
    ``host1:5432,host2:5433``), a query that is not ``name=value&...``.

    Raises:
        ConfigError: naming ``db_url``, without the URL (it may hold a password).
    """

    def malformed(problem: str) -> ConfigError:
        return ConfigError(f"db_url: malformed {backend} URL: {problem}")

    try:
        parts = urlsplit(url)
    except ValueError as exc:  # the host part only: no password in the message
        raise malformed(f"{exc}: a host in [brackets] must be a whole IPv6 address") from None
    for spec in parts.netloc.rpartition("@")[2].split(","):
        if spec.startswith("["):
            port = spec.partition("]")[2].removeprefix(":")
        else:
            port = spec.partition(":")[2]
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise malformed("the port must be a number 1-65535")
    if parts.query:
        try:
            parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            raise malformed("the query is not name=value&...") from None
    return parts


@contextmanager
def map_exceptions(errors: tuple[type[BaseException], ...], what: str) -> Iterator[None]:
    """Translate the driver's exceptions into StorageError (the original stays ``__cause__``)."""
    try:
        yield
    except StorageError:
        raise
    except errors as exc:
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few places where SQLite, PostgreSQL and MySQL/MariaDB differ."""

    name: str
    placeholder: str
    """``?`` (sqlite3), ``$`` (asyncpg: ``$1``, ``$2``...) or ``%s`` (aiomysql)."""
    id_column: str
    """Kamailio's auto-increment ``id`` primary key."""
    table_options: str = ""
    prefix_index_names: bool = True
    """Index names are global (SQLite, PostgreSQL): Kamailio prefixes them with the table name."""
    upsert_style: str = "on_conflict"
    table_exists_sql: str = ""
    fold_lower: bool = False
    """Unquoted identifiers are stored lower-case (PostgreSQL)."""

    def sql(self, text: str) -> str:
        """Rewrite ``?`` placeholders for this driver."""
        if self.placeholder == "?":
            return text
        if self.placeholder == "%s":
            return text.replace("?", "%s")
        parts = text.split("?")
        out = [parts[0]]
        for n, part in enumerate(parts[1:], start=1):
            out.append(f"${n}{part}")
        return "".join(out)

    def index_name(self, table: str, name: str) -> str:
        return f"{table}_{name}" if self.prefix_index_names else name

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT that replaces the row with the same primary key."""
        marks = ", ".join("?" for _ in columns)
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        rest = [c for c in columns if c not in key]
        if self.upsert_style == "on_duplicate_key":
            sets = ", ".join(f"{c} = VALUES({c})" for c in rest)
            return self.sql(f"{head} ON DUPLICATE KEY UPDATE {sets}")
        sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
        return self.sql(f"{head} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}")


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    id_column="INTEGER PRIMARY KEY NOT NULL",
    table_exists_sql="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)
POSTGRES = Dialect(
    name="postgresql",
    placeholder="$",
    id_column="SERIAL PRIMARY KEY NOT NULL",
    table_exists_sql=(
        "SELECT 1 FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = ?"
    ),
    fold_lower=True,
)
MYSQL = Dialect(
    name="mysql",
    placeholder="%s",
    id_column="INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL",
    # Binary collation: SIP URIs and tags compare case-sensitively (the default collation
    # would make 'sip:Alice@x' and 'sip:alice@x' the same key).
    table_options=" DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    prefix_index_names=False,
    upsert_style="on_duplicate_key",
    table_exists_sql=(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
    ),
)

# -- schema --------------------------------------------------------------------------------

SUBS_COLUMNS = (
    "subscriber, aor, event, expires, state, app_idx, call_id, from_tag, to_tag,"
    " record_route, notify_cseq, subscribe_cseq, server_id"
)
APPEARANCE_COLUMNS = (
    "aor", "idx", "state", "owner", "callee", "uri", "call_id", "from_tag", "to_tag",
    "created_at", "changed_at", "private_owner",
)  # fmt: skip
LOCATION_COLUMNS = (
    "aor", "contact", "expires_at", "q", "call_id", "cseq", "path", "instance_id", "reg_id",
    "received", "user_agent", "updated_at",
)  # fmt: skip
SUBSCRIBER_COLUMNS = ("username", "domain", "ha1_md5", "ha1_sha256")


SIPSCA_TABLES = ("sipsca_appearances", "sipsca_location", "sipsca_subscriber", "sipsca_schema")


def ddl(name: str, d: Dialect, table: str | None = None) -> list[str]:
    """Statements of ``sql/<name>.sql`` for this dialect (the files are package data).

    Key columns are VARCHAR in every dialect because MySQL cannot index TEXT.
    """
    text = (resources.files("sipsca.storage") / "sql" / f"{name}.sql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    table = table or name
    text = Template(text).substitute(
        table=table,
        id_column=d.id_column,
        table_options=d.table_options,
        index_prefix=d.index_name(table, ""),
    )
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


# -- row mapping ---------------------------------------------------------------------------


def subscription_row(s: Subscription) -> tuple[Any, ...]:
    """Columns in SUBS_COLUMNS order (notify_cseq unchanged: see the module docstring)."""
    return (
        s.subscriber, s.aor, s.event.db_code, int(s.expires_at), int(s.state), s.index,
        s.call_id, s.from_tag, s.to_tag, s.record_route, s.notify_cseq, s.subscribe_cseq,
        s.server_id,
    )  # fmt: skip


def subscription_from_row(r: Row) -> Subscription | None:
    """Rebuild a subscription; None (logged) for a row with an unknown event or state code."""
    event = int(r[2])
    try:
        state = SubscriptionState(int(r[4]))
        if event not in (1, 2):
            raise ValueError(event)
    except ValueError:
        log.warning("skipping stored subscription %s/%s: event=%s state=%s", r[1], r[0], r[2], r[4])
        return None
    return Subscription(
        subscriber=str(r[0]), aor=str(r[1]), event=ScaEvent.from_db_code(event),
        expires_at=int(r[3]), state=state, index=int(r[5]),
        call_id=str(r[6]), from_tag=str(r[7]), to_tag=str(r[8]), record_route=str(r[9] or ""),
        notify_cseq=int(r[10]), subscribe_cseq=int(r[11]), server_id=int(r[12]),
    )  # fmt: skip


def appearance_row(a: Appearance) -> tuple[Any, ...]:
    return (
        a.aor, a.index, a.state.value, a.owner, a.callee, a.uri, a.call_id, a.from_tag,
        a.to_tag, float(a.created_at), float(a.changed_at), a.private_owner,
    )  # fmt: skip


def appearance_from_row(r: Row) -> Appearance | None:
    try:
        state = AppearanceState(r[2])
    except ValueError:
        log.warning("skipping stored appearance %s/%s: state=%r", r[0], r[1], r[2])
        return None
    return Appearance(
        aor=str(r[0]), index=int(r[1]), state=state, owner=str(r[3]),
        callee=str(r[4]), uri=str(r[5]), call_id=str(r[6]), from_tag=str(r[7]),
        to_tag=str(r[8]), created_at=float(r[9]), changed_at=float(r[10]),
        private_owner=str(r[11]),
    )  # fmt: skip


def binding_row(b: Binding) -> tuple[Any, ...]:
    """``path`` is stored as a JSON array: unambiguous whatever the Path values contain."""
    return (
        b.aor, b.contact, float(b.expires_at), float(b.q), b.call_id, b.cseq,
        json.dumps(list(b.path)), b.instance_id, b.reg_id, b.received, b.user_agent,
        float(b.updated_at),
    )  # fmt: skip


def binding_from_row(r: Row) -> Binding:
    return Binding(
        aor=str(r[0]), contact=str(r[1]), expires_at=float(r[2]), q=float(r[3]),
        call_id=str(r[4]), cseq=int(r[5]), path=tuple(str(p) for p in json.loads(r[6] or "[]")),
        instance_id=str(r[7]), reg_id=int(r[8]), received=str(r[9]), user_agent=str(r[10]),
        updated_at=float(r[11]),
    )  # fmt: skip


def subscriber_from_row(r: Row) -> Subscriber:
    return Subscriber(str(r[0]), str(r[1]), str(r[2]), str(r[3]))


_BY_SUBSCRIPTION_KEY = "subscriber = ? AND event = ? AND aor = ? AND +server_id = ?"
"""One subscription by its key. The unary plus keeps planners off the ``(server_id, expires)``
index: every row of a single server has the same server_id, and SQLite (no statistics) chose
that index over ``(subscriber, event)``, so each DELETE scanned the whole table and a
write-back of 20,000 changed subscriptions ran for minutes instead of a fraction of a second."""
_BY_SUBSCRIPTION_DIALOG = "subscriber = ? AND call_id = ? AND from_tag = ? AND to_tag = ?"
"""Kamailio's unique dialog key (a stale row of the same dialog under another key)."""
_BY_APPEARANCE_KEY = "aor = ? AND idx = ?"
_BY_BINDING_KEY = "aor = ? AND contact = ?"


def latest_subscriptions(subscriptions: Sequence[Subscription]) -> list[Subscription]:
    """Drop earlier duplicates of a batch (same key, or same Kamailio dialog key): last wins."""
    by_key: dict[tuple[object, ...], Subscription] = {}
    for s in subscriptions:
        by_key.pop((*s.key, s.server_id), None)
        by_key[(*s.key, s.server_id)] = s
    by_dialog: dict[tuple[str, ...], Subscription] = {}
    for s in by_key.values():
        by_dialog.pop((s.subscriber, s.call_id, s.from_tag, s.to_tag), None)
        by_dialog[(s.subscriber, s.call_id, s.from_tag, s.to_tag)] = s
    return list(by_dialog.values())


# -- the shared implementation -------------------------------------------------------------


class SqlStorage(ABC):
    """The Storage protocol over SQL; subclasses provide connections and two primitives."""

    dialect: Dialect

    def __init__(self, *, subs_table: str = "sca_subscriptions", server_id: int = 0) -> None:
        self.subs_table = check_identifier(subs_table)
        self.server_id = server_id
        """This server's id: deletes by key touch only its rows in a shared database."""
        self._write_lock = asyncio.Lock()

    # primitives ---------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _fetch(self, sql: str, params: Row = ()) -> list[Row]:
        """Run one SELECT (placeholders already rewritten) and return every row."""

    @abstractmethod
    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        """Run the steps in one transaction; returns each step's affected row count."""

    def _is_transient(self, exc: BaseException | None) -> bool:
        """Whether a failed transaction may simply be run again (deadlock victim)."""
        return False

    # helpers ------------------------------------------------------------------------------

    async def _tx(self, steps: Sequence[Step]) -> list[int]:
        """Run a write transaction: one at a time per instance (no deadlocks between our own
        coroutines, no race on Kamailio's unique key), retried when the database picked it as
        a deadlock victim (another server sharing the database)."""
        async with self._write_lock:
            for attempt in range(1, TX_ATTEMPTS + 1):
                try:
                    return await self._transaction(steps)
                except StorageError as exc:
                    if attempt == TX_ATTEMPTS or not self._is_transient(exc.__cause__):
                        raise
                    log.info("retrying a transaction after %s", exc)
        raise AssertionError("unreachable")

    async def _write(self, sql: str, rows: Sequence[Row]) -> None:
        if rows:
            await self._tx([(self.dialect.sql(sql), rows)])

    async def _table_exists(self, name: str) -> bool:
        if self.dialect.fold_lower:
            name = name.lower()
        return bool(await self._fetch(self.dialect.sql(self.dialect.table_exists_sql), (name,)))

    async def _run_ddl(self, statements: Sequence[str]) -> None:
        await self._tx([(sql, [()]) for sql in statements])

    # schema -------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def schema_version(self) -> int | None:
        if not await self._table_exists("sipsca_schema"):
            return None
        rows = await self._fetch("SELECT MAX(version) FROM sipsca_schema")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def init_schema(self) -> None:
        await self._ensure_schema()

    async def migrate(self) -> list[str]:
        return await self._ensure_schema()

    async def _ensure_schema(self) -> list[str]:
        """Create what is missing, check Kamailio's table version, record ours; list the steps."""
        d, t, steps = self.dialect, self.subs_table, []
        current = await self.schema_version()
        if current is not None and current > SCHEMA_VERSION:
            raise StorageError(f"database schema {current} is newer than sipsca's {SCHEMA_VERSION}")
        if not await self._table_exists("version"):
            await self._run_ddl(ddl("version", d))
            steps.append("created table version")
        if not await self._table_exists(t):
            await self._run_ddl(ddl("sca_subscriptions", d, t))
            steps.append(f"created table {t} with its 3 indexes")
        rows = await self._fetch(
            d.sql("SELECT table_version FROM version WHERE table_name = ?"), (t,)
        )
        if not rows:
            insert = "INSERT INTO version (table_name, table_version) VALUES (?, ?)"
            await self._write(insert, [(t, KAMAILIO_SUBS_VERSION)])
            steps.append(f"recorded {t} table version {KAMAILIO_SUBS_VERSION}")
        elif int(rows[0][0]) != KAMAILIO_SUBS_VERSION:
            raise StorageError(
                f"table {t} has version {rows[0][0]}, sipsca (like Kamailio's sca module) "
                f"needs version {KAMAILIO_SUBS_VERSION}: upgrade the table first"
            )
        for name in SIPSCA_TABLES:
            if not await self._table_exists(name):
                await self._run_ddl(ddl(name, d))
                steps.append(f"created table {name}")
        if current != SCHEMA_VERSION:
            await self._tx(
                [
                    ("DELETE FROM sipsca_schema", [()]),
                    (d.sql("INSERT INTO sipsca_schema (version) VALUES (?)"), [(SCHEMA_VERSION,)]),
                ]
            )
            steps.append(schema_step(current))
        return steps

    # subscriptions ------------------------------------------------------------------------

    async def load_subscriptions(self, *, server_id: int = 0) -> list[Subscription]:
        sql = f"SELECT {SUBS_COLUMNS} FROM {self.subs_table} WHERE server_id = ?"
        rows = await self._fetch(self.dialect.sql(sql), (server_id,))
        return [s for s in map(subscription_from_row, rows) if s is not None]

    async def save_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Delete the rows with our key, then any row holding Kamailio's unique dialog key
        (a stale duplicate would make the INSERT fail forever), then insert: one transaction."""
        subs = latest_subscriptions(subscriptions)
        if not subs:
            return
        d, t = self.dialect, self.subs_table
        by_key = f"DELETE FROM {t} WHERE {_BY_SUBSCRIPTION_KEY}"
        by_dialog = f"DELETE FROM {t} WHERE {_BY_SUBSCRIPTION_DIALOG}"
        insert = f"INSERT INTO {t} ({SUBS_COLUMNS}) VALUES ({', '.join('?' * 13)})"
        await self._tx(
            [
                (
                    d.sql(by_key),
                    [(s.subscriber, s.event.db_code, s.aor, s.server_id) for s in subs],
                ),
                (d.sql(by_dialog), [(s.subscriber, s.call_id, s.from_tag, s.to_tag) for s in subs]),
                (d.sql(insert), [subscription_row(s) for s in subs]),
            ]
        )

    async def delete_subscriptions(self, keys: Sequence[SubscriptionKey]) -> None:
        sql = f"DELETE FROM {self.subs_table} WHERE {_BY_SUBSCRIPTION_KEY}"
        await self._write(sql, [(s, e.db_code, a, self.server_id) for a, e, s in keys])

    # appearances --------------------------------------------------------------------------

    async def load_appearances(self) -> list[Appearance]:
        rows = await self._fetch(f"SELECT {', '.join(APPEARANCE_COLUMNS)} FROM sipsca_appearances")
        return [a for a in map(appearance_from_row, rows) if a is not None]

    async def save_appearances(self, appearances: Sequence[Appearance]) -> None:
        sql = self.dialect.upsert("sipsca_appearances", APPEARANCE_COLUMNS, ("aor", "idx"))
        if appearances:
            await self._tx([(sql, [appearance_row(a) for a in appearances])])

    async def delete_appearances(self, keys: Sequence[AppearanceKey]) -> None:
        await self._write(f"DELETE FROM sipsca_appearances WHERE {_BY_APPEARANCE_KEY}", list(keys))

    # bindings -----------------------------------------------------------------------------

    async def load_bindings(self) -> list[Binding]:
        rows = await self._fetch(f"SELECT {', '.join(LOCATION_COLUMNS)} FROM sipsca_location")
        return [binding_from_row(r) for r in rows]

    async def save_bindings(self, bindings: Sequence[Binding]) -> None:
        sql = self.dialect.upsert("sipsca_location", LOCATION_COLUMNS, ("aor", "contact"))
        if bindings:
            await self._tx([(sql, [binding_row(b) for b in bindings])])

    async def delete_bindings(self, keys: Sequence[BindingKey]) -> None:
        await self._write(f"DELETE FROM sipsca_location WHERE {_BY_BINDING_KEY}", list(keys))

    # subscribers --------------------------------------------------------------------------

    async def add_subscriber(self, subscriber: Subscriber) -> None:
        sql = self.dialect.upsert("sipsca_subscriber", SUBSCRIBER_COLUMNS, ("username", "domain"))
        s = subscriber
        await self._tx([(sql, [(s.username, s.domain, s.ha1_md5, s.ha1_sha256)])])

    async def delete_subscriber(self, username: str, domain: str) -> bool:
        sql = self.dialect.sql("DELETE FROM sipsca_subscriber WHERE username = ? AND domain = ?")
        (count,) = await self._tx([(sql, [(username, domain)])])
        return count > 0

    async def get_subscriber(self, username: str, domain: str) -> Subscriber | None:
        sql = (
            f"SELECT {', '.join(SUBSCRIBER_COLUMNS)} FROM sipsca_subscriber"
            " WHERE username = ? AND domain = ?"
        )
        rows = await self._fetch(self.dialect.sql(sql), (username, domain))
        return subscriber_from_row(rows[0]) if rows else None

    async def list_subscribers(self) -> list[Subscriber]:
        """Sorted in Python: database collations disagree on the order of text."""
        rows = await self._fetch(f"SELECT {', '.join(SUBSCRIBER_COLUMNS)} FROM sipsca_subscriber")
        return sorted(map(subscriber_from_row, rows), key=lambda s: (s.domain, s.username))
