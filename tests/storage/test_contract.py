"""The one storage contract, run against every backend (memory, SQLite, PostgreSQL, MySQL).

Also: restoring a database that Kamailio's sca module wrote (its exact SQLite DDL), the
``db_url`` registry and the mapping of driver errors to StorageError.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import aiomysql
import asyncpg
import pytest

from sipsca.auth.model import Subscriber
from sipsca.errors import ConfigError, StorageError
from sipsca.registrar.model import Binding
from sipsca.sca.model import Appearance, AppearanceState, ScaEvent, Subscription, SubscriptionState
from sipsca.storage import (
    SCHEMA_VERSION,
    MemoryStorage,
    MysqlStorage,
    PostgresStorage,
    SqliteStorage,
    Storage,
    open_storage,
)
from sipsca.storage._sql import SqlStorage, Step

Factory = Callable[..., Awaitable[Storage]]
AOR = "sip:shared@example.com"
KAMAILIO_DDL = Path(__file__).with_name("kamailio_sca_sqlite.sql")


def sub(subscriber: str = "sip:1000@192.0.2.10:5060", **kw: object) -> Subscription:
    fields: dict[str, object] = {
        "aor": AOR,
        "event": ScaEvent.CALL_INFO,
        "expires_at": 1_900_000_000,
        "state": SubscriptionState.ACTIVE,
        "call_id": f"cid-{subscriber}",
        "from_tag": "ftag",
        "to_tag": "ttag",
    }
    fields.update(kw)
    return Subscription(subscriber=subscriber, **fields)  # type: ignore[arg-type]


def appearance(index: int = 1, **kw: object) -> Appearance:
    fields: dict[str, object] = {"state": AppearanceState.ACTIVE, "owner": "sip:1000@192.0.2.10"}
    fields.update(kw)
    return Appearance(aor=AOR, index=index, **fields)  # type: ignore[arg-type]


def binding(contact: str = "sip:1000@192.0.2.10:5060", **kw: object) -> Binding:
    fields: dict[str, object] = {"expires_at": 1_900_000_000.5}
    fields.update(kw)
    return Binding(aor="sip:1000@example.com", contact=contact, **fields)  # type: ignore[arg-type]


def persisted(s: Subscription) -> Subscription:
    """What a load returns: the runtime-only fields are not stored."""
    return replace(s, flow="", extra={})


def by_key(subs: list[Subscription]) -> dict[tuple[str, ScaEvent, str], Subscription]:
    return {s.key: s for s in subs}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- schema --------------------------------------------------------------------------------


async def test_init_schema_is_idempotent(make_storage: Factory) -> None:
    storage = await make_storage()
    assert await storage.schema_version() is None
    await storage.init_schema()
    assert await storage.schema_version() == SCHEMA_VERSION
    await storage.init_schema()
    assert await storage.schema_version() == SCHEMA_VERSION
    assert await storage.migrate() == []


async def test_migrate_empty_then_current(make_storage: Factory) -> None:
    storage = await make_storage()
    steps = await storage.migrate()
    assert steps and all(isinstance(step, str) and step for step in steps)
    assert await storage.schema_version() == SCHEMA_VERSION
    assert await storage.migrate() == []


async def test_ping(store: Storage) -> None:
    await store.ping()


async def test_data_survives_close_and_open(store: Storage) -> None:
    await store.save_appearances([appearance()])
    await store.close()
    await store.open()
    assert await store.load_appearances() == [appearance()]


async def test_missing_schema_is_a_storage_error(make_storage: Factory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory backend needs no schema")
    storage = await make_storage()
    with pytest.raises(StorageError):
        await storage.load_subscriptions()


async def test_newer_schema_is_refused(make_storage: Factory, backend: str) -> None:
    storage = await make_storage()
    await storage.init_schema()
    if isinstance(storage, SqlStorage):
        await storage._transaction([("UPDATE sipsca_schema SET version = 99", [()])])
    else:
        assert isinstance(storage, MemoryStorage)
        storage._version = 99
    with pytest.raises(StorageError, match="newer"):
        await storage.migrate()


async def test_wrong_kamailio_table_version_is_refused(make_storage: Factory, backend: str) -> None:
    if backend == "memory":
        pytest.skip("no Kamailio tables in memory")
    storage = await make_storage()
    await storage.init_schema()
    assert isinstance(storage, SqlStorage)
    sql = "UPDATE version SET table_version = 1 WHERE table_name = 'sca_subscriptions'"
    await storage._transaction([(sql, [()])])
    with pytest.raises(StorageError, match="version 1"):
        await storage.init_schema()


async def test_custom_subs_table(make_storage: Factory) -> None:
    storage = await make_storage(subs_table="sca_subs_custom")  # dropped by conftest
    await storage.init_schema()
    await storage.save_subscriptions([sub()])
    assert await storage.load_subscriptions() == [sub()]


# -- subscriptions -------------------------------------------------------------------------


async def test_subscription_round_trip(store: Storage) -> None:
    full = sub(
        event=ScaEvent.LINE_SEIZE,
        expires_at=2_000_000_123,
        state=SubscriptionState.TERMINATED_TIMEOUT,
        index=3,
        record_route="<sip:p1.example.com;lr>,<sip:p2.example.com;lr;ftag=x>",
        notify_cseq=41,
        subscribe_cseq=7,
        flow="tcp:192.0.2.10:40000",
        extra={"note": "not persisted"},
    )
    plain = sub("sip:1001@192.0.2.11", call_id="other", record_route="")
    await store.save_subscriptions([full, plain])
    loaded = by_key(await store.load_subscriptions())
    assert loaded == {full.key: persisted(full), plain.key: plain}
    got = loaded[full.key]
    assert type(got.expires_at) is int and got.state is SubscriptionState.TERMINATED_TIMEOUT
    assert got.event is ScaEvent.LINE_SEIZE and got.flow == ""


async def test_every_subscription_state_round_trips(store: Storage) -> None:
    subs = [sub(f"sip:{state.value}@h", state=state) for state in SubscriptionState]
    await store.save_subscriptions(subs)
    assert by_key(await store.load_subscriptions()) == by_key(subs)


async def test_subscription_upsert_replaces(store: Storage) -> None:
    await store.save_subscriptions([sub(notify_cseq=1)])
    newer = sub(notify_cseq=9, expires_at=1_900_000_600, call_id="new", to_tag="t2", index=2)
    await store.save_subscriptions([newer])
    assert await store.load_subscriptions() == [newer]


async def test_subscription_key_includes_event_and_aor(store: Storage) -> None:
    subs = [
        sub(),
        sub(event=ScaEvent.LINE_SEIZE, call_id="seize"),
        sub(aor="sip:other@example.com", call_id="other"),
    ]
    await store.save_subscriptions(subs)
    assert by_key(await store.load_subscriptions()) == by_key(subs)


async def test_last_of_a_batch_wins(store: Storage) -> None:
    await store.save_subscriptions([sub(notify_cseq=1), sub(notify_cseq=2)])
    assert [s.notify_cseq for s in await store.load_subscriptions()] == [2]


async def test_same_dialog_under_another_key_evicts_the_stale_row(store: Storage) -> None:
    """Kamailio's UNIQUE (subscriber, call_id, from_tag, to_tag) must not block a write."""
    await store.save_subscriptions([sub(aor="sip:old@example.com")])
    await store.save_subscriptions([sub()])
    assert await store.load_subscriptions() == [sub()]


async def test_a_dialog_given_up_by_a_key_no_longer_evicts_it(store: Storage) -> None:
    """A re-subscribe moves a key to a new dialog; the old dialog, reused under another key,
    replaces nothing but its own row, and deletes forget the dialog with the row."""
    first = sub(call_id="c1")
    await store.save_subscriptions([first])
    moved = sub(call_id="c2", notify_cseq=5)  # same key, new dialog
    await store.save_subscriptions([moved])
    reused = sub(aor="sip:other@example.com", call_id="c1")  # the old dialog, another key
    await store.save_subscriptions([reused])
    assert by_key(await store.load_subscriptions()) == by_key([moved, reused])
    await store.delete_subscriptions([moved.key])
    again = sub(aor="sip:third@example.com", call_id="c2")
    await store.save_subscriptions([again])
    assert by_key(await store.load_subscriptions()) == by_key([reused, again])


async def test_saving_thousands_of_changed_subscriptions_again(store: Storage) -> None:
    """Thousands of stored subscriptions saved again (NOTIFY CSeqs moved on), as the
    write-back does every db_update_interval under load: all replaced, none duplicated."""
    count = 3000
    subs = [sub(f"sip:m{i}@192.0.2.1", call_id=f"c{i}") for i in range(count)]
    await store.save_subscriptions(subs)
    for s in subs:
        s.notify_cseq += 1
    await store.save_subscriptions(subs)
    loaded = await store.load_subscriptions()
    assert len(loaded) == count
    assert {s.notify_cseq for s in loaded} == {subs[0].notify_cseq}


async def test_subscriptions_by_server_id(store: Storage) -> None:
    mine, theirs = sub(), sub(server_id=1, call_id="theirs")
    await store.save_subscriptions([mine, theirs])
    assert await store.load_subscriptions() == [mine]
    assert await store.load_subscriptions(server_id=1) == [theirs]
    await store.delete_subscriptions([mine.key])  # the store is server 0
    assert await store.load_subscriptions() == []
    assert await store.load_subscriptions(server_id=1) == [theirs]


async def test_delete_subscriptions(store: Storage) -> None:
    a, b = sub(), sub("sip:1001@192.0.2.11")
    await store.save_subscriptions([a, b])
    await store.delete_subscriptions([a.key, ("sip:nobody@x", ScaEvent.LINE_SEIZE, "sip:y")])
    assert await store.load_subscriptions() == [b]
    await store.delete_subscriptions([a.key])
    await store.delete_subscriptions([])
    await store.save_subscriptions([])
    assert await store.load_subscriptions() == [b]


async def test_no_aliasing(store: Storage) -> None:
    s = sub()
    await store.save_subscriptions([s])
    s.notify_cseq = 99
    loaded = await store.load_subscriptions()
    assert loaded[0].notify_cseq == 0
    loaded[0].notify_cseq = 50
    assert (await store.load_subscriptions())[0].notify_cseq == 0


async def test_concurrent_writers_do_not_interleave(store: Storage) -> None:
    """Many coroutines writing at once (one SQLite connection, or a pool) all land."""
    subs = [sub(f"sip:{n}@192.0.2.1", notify_cseq=n) for n in range(20)]
    await asyncio.gather(
        *(store.save_subscriptions([s]) for s in subs),
        *(store.save_appearances([appearance(n)]) for n in range(1, 11)),
        *(store.load_subscriptions() for _ in range(5)),
    )
    assert by_key(await store.load_subscriptions()) == by_key(subs)
    assert len(await store.load_appearances()) == 10


# -- appearances ---------------------------------------------------------------------------


async def test_appearance_round_trip(store: Storage) -> None:
    apps = [
        appearance(
            index=i,
            state=state,
            callee="sip:2000@192.0.2.20",
            uri='"Zoë, \\"the boss\\"" <sip:2000@example.com>',
            call_id=f"call-{i}",
            from_tag="f",
            to_tag="t" if i % 2 else "",
            created_at=1_700_000_000.25,
            changed_at=1_700_000_001.125,
            private_owner="sip:1000@192.0.2.10" if state is AppearanceState.HELD_PRIVATE else "",
        )
        for i, state in enumerate(AppearanceState, start=1)
    ]
    await store.save_appearances(apps)
    loaded = sorted(await store.load_appearances(), key=lambda a: a.index)
    assert loaded == apps
    assert loaded[0].state is AppearanceState.IDLE


async def test_appearance_upsert_and_delete(store: Storage) -> None:
    await store.save_appearances([appearance(1), appearance(2)])
    await store.save_appearances([appearance(1, state=AppearanceState.HELD, changed_at=5.5)])
    await store.delete_appearances([(AOR, 2), (AOR, 99), ("sip:nobody@x", 1)])
    assert await store.load_appearances() == [
        appearance(1, state=AppearanceState.HELD, changed_at=5.5)
    ]
    await store.delete_appearances([])
    await store.delete_appearances([(AOR, 1)])
    assert await store.load_appearances() == []


# -- bindings ------------------------------------------------------------------------------


async def test_binding_round_trip(store: Storage) -> None:
    full = binding(
        q=0.5,
        call_id="reg-1",
        cseq=12,
        path=("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr;x=a,b>"),
        instance_id='"<urn:uuid:00000000-0000-1000-8000-000000000001>"',
        reg_id=1,
        received="udp:192.0.2.10:5060",
        user_agent="Polycom/6.4",
        updated_at=1_700_000_000.75,
    )
    bare = binding("sip:1000@192.0.2.99")
    await store.save_bindings([full, bare])
    loaded = {b.contact: b for b in await store.load_bindings()}
    assert loaded == {full.contact: full, bare.contact: bare}
    assert loaded[full.contact].path == full.path and loaded[bare.contact].path == ()


async def test_binding_upsert_and_delete(store: Storage) -> None:
    await store.save_bindings([binding(), binding("sip:b@h")])
    await store.save_bindings([binding(cseq=2, q=0.1)])
    await store.delete_bindings([("sip:1000@example.com", "sip:b@h"), ("sip:x@y", "sip:z")])
    assert await store.load_bindings() == [binding(cseq=2, q=0.1)]
    await store.delete_bindings([])


# -- subscribers ---------------------------------------------------------------------------


async def test_subscribers(store: Storage) -> None:
    alice = Subscriber("alice", "b.example.com", "a" * 32, "b" * 64)
    bob = Subscriber("bob", "a.example.com", "c" * 32, "d" * 64)
    carol = Subscriber("Carol", "b.example.com", "e" * 32, "f" * 64)
    for s in (alice, bob, carol):
        await store.add_subscriber(s)
    assert await store.get_subscriber("alice", "b.example.com") == alice
    assert await store.get_subscriber("alice", "a.example.com") is None
    assert await store.get_subscriber("ALICE", "b.example.com") is None
    assert await store.list_subscribers() == [bob, carol, alice]
    changed = replace(alice, ha1_md5="0" * 32)
    await store.add_subscriber(changed)
    assert await store.get_subscriber("alice", "b.example.com") == changed
    assert await store.delete_subscriber("alice", "b.example.com") is True
    assert await store.delete_subscriber("alice", "b.example.com") is False
    assert await store.list_subscribers() == [bob, carol]


# -- errors --------------------------------------------------------------------------------


async def test_closed_storage_raises_storage_error(store: Storage) -> None:
    await store.close()
    with pytest.raises(StorageError):
        await store.ping()
    with pytest.raises(StorageError):
        await store.load_subscriptions()
    with pytest.raises(StorageError):
        await store.save_appearances([appearance()])
    await store.close()  # closing twice is harmless


def unreachable(kind: str, tmp_path: Path) -> Storage:
    port = closed_port()
    if kind == "sqlite":
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return SqliteStorage(blocker / "db.sqlite")  # its parent cannot be created
    if kind == "postgresql":
        return PostgresStorage(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    return MysqlStorage(f"mysql://sipsca:sipsca@127.0.0.1:{port}/sipsca")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
async def test_unreachable_backend_raises_storage_error(kind: str, tmp_path: Path) -> None:
    storage = unreachable(kind, tmp_path)
    with pytest.raises(StorageError) as info:
        await storage.open()
    assert info.value.__cause__ is not None
    with pytest.raises(StorageError):
        await storage.ping()


class Victim(Exception):
    """Stands for a driver's deadlock error."""


class FlakySqlite(SqliteStorage):
    """Loses ``failures`` write transactions as a deadlock victim would."""

    def __init__(self, path: Path, failures: int, transient: bool = True) -> None:
        super().__init__(path)
        self.failures, self.transient, self.attempts = failures, transient, 0

    def _is_transient(self, exc: BaseException | None) -> bool:
        return self.transient and isinstance(exc, Victim)

    async def _transaction(self, steps: Sequence[Step]) -> list[int]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageError("deadlock") from Victim()
        return await super()._transaction(steps)


@pytest.mark.parametrize(
    ("failures", "transient", "attempts", "ok"),
    [(0, True, 1, True), (2, True, 3, True), (3, True, 3, False), (1, False, 1, False)],
)
async def test_deadlock_victims_are_retried(
    tmp_path: Path, failures: int, transient: bool, attempts: int, ok: bool
) -> None:
    storage = FlakySqlite(tmp_path / "db.sqlite", failures=0)
    await storage.open()
    try:
        await storage.init_schema()
        storage.failures, storage.transient, storage.attempts = failures, transient, 0
        if ok:
            await storage.save_appearances([appearance()])
        else:
            with pytest.raises(StorageError, match="deadlock"):
                await storage.save_appearances([appearance()])
        assert storage.attempts == attempts
        assert await storage.load_appearances() == ([appearance()] if ok else [])
    finally:
        await storage.close()


def test_driver_deadlock_errors_are_transient() -> None:
    pg = PostgresStorage("postgresql://u@db.example.com/sipsca")
    my = MysqlStorage("mysql://u@db.example.com/sipsca")
    assert pg._is_transient(asyncpg.DeadlockDetectedError("deadlock detected"))
    assert not pg._is_transient(asyncpg.UniqueViolationError("duplicate key"))
    assert my._is_transient(aiomysql.OperationalError(1213, "Deadlock found"))
    assert not my._is_transient(aiomysql.OperationalError(2003, "Can't connect"))
    assert not my._is_transient(None)


# -- Kamailio's own database ---------------------------------------------------------------


def kamailio_db(path: Path) -> None:
    """A database as ``kamdbctl create`` + Kamailio's sca write-back leave it."""
    now = 1_900_000_000
    with sqlite3.connect(path) as db:
        db.executescript(KAMAILIO_DDL.read_text())
        # What sca_subscription_db_update() INSERTs: call-info only, app_idx 0,
        # notify_cseq/subscribe_cseq = in-memory counter + 1.
        db.executemany(
            "INSERT INTO sca_subscriptions (subscriber, aor, event, expires, state, app_idx,"
            " call_id, from_tag, to_tag, record_route, notify_cseq, subscribe_cseq, server_id)"
            " VALUES (?, ?, 1, ?, 0, 0, ?, ?, ?, ?, ?, 1, ?)",
            [
                ("sip:1000@192.0.2.10:5060", AOR, now, "c1", "f1", "t1", None, 6, 0),
                ("sip:1001@192.0.2.11:5060", AOR, now + 60, "c2", "f2", "t2",
                 "<sip:p1.example.com;lr>,<sip:p2.example.com;lr>", 1, 0),
                ("sip:1002@192.0.2.12:5060", AOR, now, "c3", "f3", "t3", "", 3, 7),
            ],
        )  # fmt: skip
    db.close()


async def test_restores_a_kamailio_database(tmp_path: Path) -> None:
    path = tmp_path / "kamailio.sqlite"
    kamailio_db(path)
    storage = SqliteStorage(path)
    await storage.open()
    try:
        steps = await storage.migrate()
        assert not any("sca_subscriptions" in step for step in steps)
        restored = by_key(await storage.load_subscriptions())
        first = restored[(AOR, ScaEvent.CALL_INFO, "sip:1000@192.0.2.10:5060")]
        # The stored notify_cseq (Kamailio's counter + 1) is the last CSeq it sent: kept as
        # is, so our next NOTIFY (notify_cseq + 1 = 7) is strictly higher.
        assert first == Subscription(
            subscriber="sip:1000@192.0.2.10:5060", aor=AOR, event=ScaEvent.CALL_INFO,
            expires_at=1_900_000_000, state=SubscriptionState.ACTIVE, call_id="c1",
            from_tag="f1", to_tag="t1", index=0, record_route="", notify_cseq=6,
            subscribe_cseq=1, server_id=0,
        )  # fmt: skip
        second = restored[(AOR, ScaEvent.CALL_INFO, "sip:1001@192.0.2.11:5060")]
        assert second.record_route == "<sip:p1.example.com;lr>,<sip:p2.example.com;lr>"
        assert len(restored) == 2  # server_id 7 belongs to another server
        await storage.save_subscriptions([replace(first, notify_cseq=8)])
    finally:
        await storage.close()
    with sqlite3.connect(path) as db:
        versions = dict(db.execute("SELECT table_name, table_version FROM version"))
        row = db.execute(
            "SELECT notify_cseq FROM sca_subscriptions WHERE call_id = 'c1'"
        ).fetchone()
    db.close()
    assert versions["sca_subscriptions"] == 2 and versions["version"] == 1
    assert row == (8,)


# -- registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("memory://", MemoryStorage),
        ("sqlite:///var/lib/sipsca/sca.db", SqliteStorage),
        ("postgresql://u:p@db.example.com/sipsca", PostgresStorage),
        ("postgres://u@db.example.com:5433/sipsca", PostgresStorage),
        ("mysql://u:p@db.example.com/sipsca", MysqlStorage),
        ("MariaDB://u:p@db.example.com:3307/sipsca", MysqlStorage),
    ],
)
def test_open_storage_picks_the_backend(url: str, cls: type) -> None:
    assert isinstance(open_storage(url, subs_table="sca_x", server_id=3), cls)


def test_sqlite_url_paths() -> None:
    absolute = open_storage("sqlite:///var/lib/sipsca/sca.db")
    relative = open_storage("sqlite://var/sca.db")
    assert isinstance(absolute, SqliteStorage) and absolute.path == "/var/lib/sipsca/sca.db"
    assert isinstance(relative, SqliteStorage) and relative.path == "var/sca.db"


@pytest.mark.parametrize(
    "url", ["redis://localhost", "sca.db", "", "sqlite://", "mysql://u@host/", "mysql://h:x/db"]
)
def test_bad_db_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="db_url"):
        open_storage(url)


@pytest.mark.parametrize("name", ["", "1abc", "sca subs", "sca;DROP TABLE x", "a" * 64, "é"])
def test_subs_table_must_be_an_identifier(name: str) -> None:
    with pytest.raises(ConfigError, match="subs_table"):
        open_storage("memory://", subs_table=name)
    with pytest.raises(ConfigError, match="subs_table"):
        SqliteStorage("/nonexistent/db.sqlite", subs_table=name)
