"""Storage fixtures: one factory per backend, each test on a fresh set of tables.

memory and sqlite always run; PostgreSQL and MySQL/MariaDB run when ``SIPSCA_TEST_PG_URL`` /
``SIPSCA_TEST_MYSQL_URL`` point at a throwaway database (``eval "$(bash .ci/db.sh start)"``).
Server tests start by dropping every table the suite creates, so they cannot share a database
with anything precious, nor run in parallel against the same one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sipsca.storage import MemoryStorage, MysqlStorage, PostgresStorage, SqliteStorage, Storage
from sipsca.storage._sql import SqlStorage

PG_URL = os.environ.get("SIPSCA_TEST_PG_URL", "")
MYSQL_URL = os.environ.get("SIPSCA_TEST_MYSQL_URL", "")
CUSTOM_SUBS_TABLE = "sca_subs_custom"
TABLES = (
    "version",
    "sca_subscriptions",
    CUSTOM_SUBS_TABLE,
    "sipsca_appearances",
    "sipsca_location",
    "sipsca_subscriber",
    "sipsca_schema",
)

BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.db,
            pytest.mark.skipif(not PG_URL, reason="SIPSCA_TEST_PG_URL not set (.ci/db.sh start)"),
        ],
    ),
    pytest.param(
        "mysql",
        marks=[
            pytest.mark.db,
            pytest.mark.skipif(
                not MYSQL_URL, reason="SIPSCA_TEST_MYSQL_URL not set (.ci/db.sh start)"
            ),
        ],
    ),
]

Factory = Callable[..., Awaitable[Storage]]


def build(backend: str, tmp_path: Path, **kw: Any) -> Storage:
    """A not yet opened storage of the given kind."""
    if backend == "memory":
        return MemoryStorage(**kw)
    if backend == "sqlite":
        return SqliteStorage(tmp_path / "db" / "sipsca.sqlite", **kw)
    if backend == "postgresql":
        return PostgresStorage(PG_URL, **kw)
    return MysqlStorage(MYSQL_URL, **kw)


async def drop_tables(storage: Storage) -> None:
    """Give a server-backed test an empty database (SQLite gets a fresh tmp_path instead)."""
    if isinstance(storage, PostgresStorage | MysqlStorage):
        assert isinstance(storage, SqlStorage)
        await storage._transaction([(f"DROP TABLE IF EXISTS {t}", [()]) for t in TABLES])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def make_storage(backend: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """``await make(**kw)``: an opened, empty (no tables) storage; all closed at teardown.

    Every call of one test shares the same database, like two servers would."""
    made: list[Storage] = []

    async def make(**kw: Any) -> Storage:
        storage = build(backend, tmp_path, **kw)
        await storage.open()
        if not made:
            await drop_tables(storage)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        await storage.close()


@pytest_asyncio.fixture
async def store(make_storage: Factory) -> Storage:
    """An opened storage with the current schema."""
    storage = await make_storage()
    await storage.init_schema()
    return storage
